//! `Cap::parse` on arbitrary UTF-8: never panics; a capability that parses parses again from
//! its own name (Docker and kernel style) to the same capability.
#![no_main]

use captrace::capability::Cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Cap::parse(text) {
        Ok(cap) => {
            assert!(cap.info().is_some(), "{text:?} parsed to {cap:?}, which the table lacks");
            assert_eq!(Cap::parse(&cap.name()), Ok(cap), "name {:?} of {text:?}", cap.name());
            assert_eq!(Cap::parse(&cap.kernel_name()), Ok(cap), "kernel name of {text:?}");
        }
        Err(e) => {
            // Long input is cut to 32 characters and marked.
            if text.chars().count() <= 32 {
                assert_eq!(e.given, text);
            } else {
                let head: String = text.chars().take(32).collect();
                assert_eq!(e.given, format!("{head}..."));
            }
            let _ = e.to_string();
        }
    }
});
