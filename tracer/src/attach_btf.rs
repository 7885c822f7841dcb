//! The BTF ids that tp_btf, fexit and lsm programs attach by, handed to aya without aya parsing
//! the kernel's BTF.
//!
//! aya's `load(name, &Btf)` only looks the target up by name and kind to get its type id, but
//! building its `Btf` from /sys/kernel/btf/vmlinux parses every type of the kernel: ~30 ms of
//! CPU and 17 MB of peak memory measured here (monitor's peak RSS went from 24 to 41 MB). The
//! ids are found instead in captrace's one pass over the kernel's BTF (`kernel_btf`) and given
//! to aya as a small BTF of the same numbering: each wanted type at its kernel id, 12-byte placeholders in between. The kernel
//! checks the id against its own BTF when the program loads, so a wrong id is refused, never
//! attached somewhere else.
use aya::Btf;

use crate::kernel_btf::{Found, HEADER_LEN, KIND_PTR, Kind, MAGIC};

/// What a program attaches to, as aya looks it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `btf_trace_<tracepoint>` (tp_btf).
    Tracepoint(&'static str),
    /// A kernel function (fexit), or `bpf_lsm_<hook>` (lsm).
    Function(&'static str),
}

impl Target {
    /// The name and kind to look up in the kernel's BTF.
    pub fn lookup(self) -> (String, Kind) {
        match self {
            Target::Tracepoint(tp) => (format!("btf_trace_{tp}"), Kind::Typedef),
            Target::Function(f) => (f.to_string(), Kind::Func),
        }
    }
}

/// The kernel's id of each target it has (absent ones are left out: aya then reports them
/// unknown, as it would with the full BTF).
pub fn ids(found: &Found, targets: &[Target]) -> Vec<(Target, u32)> {
    targets
        .iter()
        .filter_map(|&t| {
            let (name, kind) = t.lookup();
            Some((t, found.id(&name, kind)?))
        })
        .collect()
}

/// A BTF in which each target sits at its kernel id, for aya's lookups.
pub fn for_aya(ids: &[(Target, u32)]) -> Result<Btf, String> {
    let blob = encode(ids);
    Btf::parse(&blob, aya::Endianness::default()).map_err(|e| e.to_string())
}

/// The raw BTF: header, types 1..=max id, strings.
fn encode(ids: &[(Target, u32)]) -> Vec<u8> {
    let max = ids.iter().map(|&(_, id)| id).max().unwrap_or(0);
    let mut strings = vec![0u8];
    let mut named = std::collections::HashMap::new();
    for &(t, id) in ids {
        let (name, kind) = t.lookup();
        let off = strings.len() as u32;
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
        named.insert(id, (off, kind.raw()));
    }
    let mut types = Vec::with_capacity(max as usize * 12);
    for id in 1..=max {
        // name_off, info (kind << 24), type: a pointer to void where nothing is wanted.
        let (name_off, kind) = named.get(&id).copied().unwrap_or((0, KIND_PTR));
        for word in [name_off, kind << 24, 0] {
            types.extend_from_slice(&word.to_ne_bytes());
        }
    }
    let mut blob = Vec::with_capacity(HEADER_LEN + types.len() + strings.len());
    blob.extend_from_slice(&MAGIC.to_ne_bytes());
    blob.push(1); // version
    blob.push(0); // flags
    for word in [
        HEADER_LEN as u32,
        0,                    // type_off
        types.len() as u32,   // type_len
        types.len() as u32,   // str_off
        strings.len() as u32, // str_len
    ] {
        blob.extend_from_slice(&word.to_ne_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strings);
    blob
}

#[cfg(test)]
mod tests {
    use aya_obj::btf::BtfKind;

    use super::*;

    #[test]
    fn aya_finds_each_target_at_its_kernel_id() {
        let ids = [
            (Target::Tracepoint("cap_capable"), 5),
            (Target::Function("cap_capable"), 3),
            (Target::Function("bpf_lsm_capable"), 9),
        ];
        let btf = for_aya(&ids).unwrap();
        assert_eq!(
            btf.id_by_type_name_kind("btf_trace_cap_capable", BtfKind::Typedef)
                .unwrap(),
            5
        );
        assert_eq!(
            btf.id_by_type_name_kind("cap_capable", BtfKind::Func)
                .unwrap(),
            3
        );
        assert_eq!(
            btf.id_by_type_name_kind("bpf_lsm_capable", BtfKind::Func)
                .unwrap(),
            9
        );
        assert!(btf.id_by_type_name_kind("sys_exit", BtfKind::Func).is_err());
    }

    #[test]
    fn no_targets_give_an_empty_btf() {
        let btf = for_aya(&[]).unwrap();
        assert!(
            btf.id_by_type_name_kind("cap_capable", BtfKind::Func)
                .is_err()
        );
    }
}
