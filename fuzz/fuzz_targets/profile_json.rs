//! `Profile::from_json` on arbitrary UTF-8: it must never panic (errors are fine), and a profile
//! that parses must survive `to_json` -> `from_json` unchanged.
#![no_main]

use captrace::profile::Profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = Profile::from_json(text, "fuzz") else {
        return;
    };
    let json = profile.to_json();
    let again = match Profile::from_json(&json, "fuzz") {
        Ok(p) => p,
        Err(e) => panic!("to_json output does not parse back: {e}\ninput: {text:?}\njson: {json}"),
    };
    assert_eq!(profile, again, "round trip changed the profile\njson: {json}");
    assert_eq!(json, again.to_json(), "serialisation is not stable");
});
