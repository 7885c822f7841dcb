//! `Symbolizer::parse` on arbitrary UTF-8 (the text of `/proc/kallsyms`), `lookup` and `frames`
//! of addresses taken from the input, and `classifier::classify` of the input's lines as a
//! kernel stack (innermost first). Never panics.
#![no_main]

use captrace::classifier::{classify, short_path};
use captrace::profile::Audit;
use captrace::symbolizer::Symbolizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    let syms = Symbolizer::parse(text);
    let mut addrs = vec![0, 1, u64::MAX, 0xffff_ffff_8100_0000];
    addrs.extend(
        text.split_whitespace()
            .filter_map(|t| u64::from_str_radix(t, 16).ok())
            .take(32)
            .flat_map(|a| [a, a.wrapping_sub(1), a.wrapping_add(1)]),
    );
    for &a in &addrs {
        if let Some(name) = syms.lookup(a) {
            assert!(text.contains(name), "lookup({a:#x}) = {name:?}, not in the input");
        }
    }
    // Every symbol is at or below u64::MAX: a non-empty table resolves it.
    assert_eq!(syms.is_empty(), syms.lookup(u64::MAX).is_none());
    assert_eq!(syms.frames(&addrs).len(), addrs.len());

    let frames: Vec<String> = text.lines().take(256).map(str::to_string).collect();
    let c = classify(&frames);
    assert!(c.callers.len() <= frames.len());
    assert!(frames.ends_with(&c.callers), "callers are not a suffix of the stack");
    if c.callers.is_empty() {
        assert_eq!(c.audit, Audit::Unknown);
    }
    let _ = short_path(&c.callers, 3);
    let _ = classify(&syms.frames(&addrs));
});
