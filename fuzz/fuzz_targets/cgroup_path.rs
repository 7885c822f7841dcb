//! `parse_cgroup_path` and `parse_proc_cgroup` on arbitrary UTF-8 (a path, a line of
//! `/proc/PID/cgroup`, or the whole file). Never panics, and the documented invariants hold.
#![no_main]

use captrace::container::{ContainerRef, Runtime, parse_cgroup_path, parse_proc_cgroup};
use libfuzzer_sys::fuzz_target;

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check(input: &str, r: &ContainerRef) {
    if let Some(id) = &r.id {
        if matches!(r.runtime, Runtime::Docker | Runtime::Podman | Runtime::CriO) {
            assert!(is_hex64(id), "{:?} id {id:?} is not 64 lower-case hex; input {input:?}", r.runtime);
        }
        assert!(!id.is_empty(), "empty id; input {input:?}");
        assert!(input.contains(id.as_str()), "id {id:?} is not in the input {input:?}");
    }
    if let Some(qos) = &r.qos {
        assert!(
            matches!(qos.as_str(), "guaranteed" | "burstable" | "besteffort"),
            "qos {qos:?}; input {input:?}"
        );
    }
    // Display and short_id slice the id: they must not panic.
    let _ = r.to_string();
    let _ = r.short_id();
    let _ = r.is_container();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text, &parse_cgroup_path(text));
    for line in text.lines().take(64) {
        check(line, &parse_cgroup_path(line));
    }
    if let Some(path) = parse_proc_cgroup(text) {
        assert!(path.starts_with('/'), "parse_proc_cgroup gave {path:?} for {text:?}");
        assert!(text.contains(path.as_str()), "parse_proc_cgroup gave {path:?}, not in {text:?}");
        check(&path, &parse_cgroup_path(&path));
    }
});
