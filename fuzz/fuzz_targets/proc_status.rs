//! `parse_status` on arbitrary UTF-8 (the text of `/proc/PID/status`): never panics.
#![no_main]

use captrace::container::parse_status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let status = parse_status(text);
    assert_eq!(status.host_pid().is_some(), !status.nspid.is_empty());
    assert_eq!(status.inner_pid().is_some(), !status.nspid.is_empty());
    if status.name.is_some() {
        assert!(text.contains("Name:"), "a name without a Name: line in {text:?}");
    }
    if status.uid.is_some() {
        assert!(text.contains("Uid:"), "a uid without a Uid: line in {text:?}");
    }
    if status.cap_eff.is_some() {
        assert!(text.contains("CapEff:"), "CapEff without a CapEff: line in {text:?}");
    }
});
