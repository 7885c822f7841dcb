//! `kernel_btf::scan` on arbitrary bytes (the kernel's BTF, read at every start): never
//! panics, and what it finds is consistent with what was asked.
#![no_main]

use captrace::kernel_btf::{Kind, scan};
use libfuzzer_sys::fuzz_target;

const WANTED: &[(&str, Kind)] = &[
    ("task_struct", Kind::Struct),
    ("pid", Kind::Struct),
    ("cap_capable", Kind::Func),
    ("btf_trace_cap_capable", Kind::Typedef),
];

fuzz_target!(|data: &[u8]| {
    let Ok(found) = scan(data, WANTED) else {
        return;
    };
    for &(name, kind) in WANTED {
        if let Some(id) = found.id(name, kind) {
            assert!(id >= 1, "type ids start at 1");
        }
    }
    assert!(found.id("not_asked", Kind::Func).is_none());
    if found.id("task_struct", Kind::Struct).is_none() {
        assert!(found.member_offset("task_struct", "pid").is_err());
    }
});
