//! The kfunc calls of the programs (`tracer_common::kfunc`), made real before the object is
//! loaded: aya 0.14 cannot relocate a call to a kernel function, so each is built into the
//! object as a call instruction with a placeholder id, replaced here with the function's id in
//! this kernel's BTF. Where the kernel has no such function, the call becomes `r0 = 0`, and
//! `Config` tells the programs not to take the path it sits on (the verifier then never walks
//! it).
use std::borrow::Cow;

use object::{
    Endianness,
    elf::FileHeader64,
    read::elf::{FileHeader as _, SectionHeader as _},
};
use tracer_common::kfunc;

/// `r0 = 0`: BPF_ALU64 | BPF_MOV | BPF_K (0xb7), every other field zero.
const MOV_R0_0: u64 = 0xb7;

/// `object` with every `bpf_rdonly_cast` placeholder replaced: with a call of the kernel's
/// function `id` when it has one, else with `r0 = 0`. Also how many were replaced: the
/// programs may take the cast's path only when that is not zero.
pub(super) fn patched(object: &[u8], id: Option<u32>) -> (Cow<'_, [u8]>, usize) {
    let placeholder = kfunc::call_insn(kfunc::RDONLY_CAST_PLACEHOLDER).to_le_bytes();
    let with = match id {
        Some(id) => kfunc::call_insn(id),
        None => MOV_R0_0,
    }
    .to_le_bytes();
    let sites = placeholder_sites(object, &placeholder);
    if sites.is_empty() {
        return (Cow::Borrowed(object), 0);
    }
    let mut bytes = object.to_vec();
    for &at in &sites {
        bytes[at..at + 8].copy_from_slice(&with);
    }
    (Cow::Owned(bytes), sites.len())
}

/// The file offsets of the instructions equal to `insn` in the object's code sections (an
/// instruction is 8 bytes, 8-aligned in its section). An object that does not parse has none:
/// aya's own parse then reports it.
fn placeholder_sites(object: &[u8], insn: &[u8; 8]) -> Vec<usize> {
    // The section headers only: `object::File::parse` would also read the symbol table, a
    // millisecond of start-up for nothing.
    let Ok(header) = FileHeader64::<Endianness>::parse(object) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    let Ok(sections) = header.sections(endian, object) else {
        return Vec::new();
    };
    let mut sites = Vec::new();
    for section in sections.iter() {
        if section.sh_flags(endian) & u64::from(object::elf::SHF_EXECINSTR) == 0 {
            continue;
        }
        let Some((start, len)) = section.file_range(endian) else {
            continue;
        };
        let (start, len) = (start as usize, len as usize);
        let Some(code) = object.get(start..start + len) else {
            continue;
        };
        for (i, word) in code.chunks_exact(8).enumerate() {
            if word == insn {
                sites.push(start + 8 * i);
            }
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs the eBPF object, which AYA_BUILD_SKIP=1 leaves out (cargo xtask test runs it)"]
    fn the_call_is_made_real_or_harmless_and_nothing_else_changes() {
        let object = super::super::OBJECT;
        assert!(!object.is_empty(), "built with AYA_BUILD_SKIP=1: no object");
        let placeholder = kfunc::call_insn(kfunc::RDONLY_CAST_PLACEHOLDER).to_le_bytes();
        let sites = placeholder_sites(object, &placeholder);
        assert!(
            !sites.is_empty(),
            "the programs carry no bpf_rdonly_cast placeholder"
        );
        for (id, with) in [(Some(65486), kfunc::call_insn(65486)), (None, MOV_R0_0)] {
            let (patched, n) = patched(object, id);
            assert_eq!(n, sites.len());
            assert_eq!(patched.len(), object.len());
            let changed: Vec<usize> = (0..object.len())
                .filter(|&i| patched[i] != object[i])
                .collect();
            assert!(
                changed
                    .iter()
                    .all(|&i| sites.iter().any(|&s| (s..s + 8).contains(&i))),
                "bytes outside the placeholders changed"
            );
            for &s in &sites {
                assert_eq!(patched[s..s + 8], with.to_le_bytes());
            }
            assert!(placeholder_sites(&patched, &placeholder).is_empty());
        }
    }

    #[test]
    fn an_object_without_placeholders_is_left_as_it_is() {
        let (same, n) = patched(b"not an ELF file", Some(1));
        assert_eq!(n, 0);
        assert!(matches!(same, Cow::Borrowed(_)));
    }
}
