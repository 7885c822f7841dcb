//! The few facts captrace needs from the kernel's BTF (/sys/kernel/btf/vmlinux), found in one
//! pass over its ~150,000 types: the ids of named functions and typedefs, and member offsets
//! of a few structs.
//!
//! A BTF library looks each name up with a scan of every type (btf-rs's lazy mmap backend: ~2.5
//! ms a lookup here, 7 lookups per start) or parses everything first (aya: ~20 ms and ~17 MB);
//! captrace's start-up is measured in tens of milliseconds (issue #6), so it asks all its
//! questions in a single pass. The format is include/uapi/linux/btf.h.
use std::{collections::HashMap, fs, io, path::Path};

pub mod cache;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kinds captrace looks names up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Struct,
    Typedef,
    Func,
}

impl Kind {
    /// Its `BTF_KIND_*` number.
    pub(crate) fn raw(self) -> u32 {
        match self {
            Kind::Struct => KIND_STRUCT,
            Kind::Typedef => KIND_TYPEDEF,
            Kind::Func => KIND_FUNC,
        }
    }
}

const KIND_INT: u32 = 1;
pub(crate) const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

pub(crate) const MAGIC: u16 = 0xeb9f;
pub(crate) const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;

/// What one pass found: ids by (name, kind), and the byte offset of each member of the
/// structs asked for.
#[derive(Debug, Default)]
pub struct Found {
    ids: HashMap<(String, Kind), u32>,
    members: HashMap<(String, String), u32>,
}

impl Found {
    /// The id of the first type named `name` of kind `kind`.
    pub fn id(&self, name: &str, kind: Kind) -> Option<u32> {
        self.ids.get(&(name.to_string(), kind)).copied()
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, String> {
        if self.id(name, Kind::Struct).is_none() {
            return Err(format!("the kernel's BTF has no struct {name}"));
        }
        self.members
            .get(&(name.to_string(), member.to_string()))
            .copied()
            .ok_or_else(|| format!("struct {name} has no member {member}"))
    }
}

/// Reads the kernel's BTF and finds `wanted` in it.
pub fn scan_vmlinux(wanted: &[(&str, Kind)]) -> Result<Found, String> {
    scan_file(Path::new(VMLINUX), wanted)
}

/// Reads the BTF at `path` (the kernel's) and finds `wanted` in it.
fn scan_file(path: &Path, wanted: &[(&str, Kind)]) -> Result<Found, String> {
    let describe = |e: io::Error| format!("{}: {e}", path.display());
    let file = fs::File::open(path).map_err(describe)?;
    // SAFETY: a read-only mapping of a file the kernel never changes while it runs. The kernel
    // (>= 6.15) allows private read-only mappings only, prefaulted here in one call; older
    // kernels cannot map it, and it is read instead (in 4 KiB pieces: ~10 ms more).
    match unsafe {
        memmap2::MmapOptions::new()
            .populate()
            .map_copy_read_only(&file)
    } {
        Ok(map) => scan(&map, wanted),
        Err(_) => scan(&fs::read(path).map_err(describe)?, wanted),
    }
}

/// One pass over raw BTF `data` (native endianness), finding each of `wanted`; for structs
/// also their members' byte offsets. Names not found are absent from the result.
pub fn scan(data: &[u8], wanted: &[(&str, Kind)]) -> Result<Found, String> {
    let bad = |what: &str| format!("malformed BTF: {what}");
    let u32_at = |at: usize| -> Result<u32, String> {
        data.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated"))
    };
    if data.get(..2) != Some(&MAGIC.to_ne_bytes()[..]) {
        return Err(bad("no BTF magic (or another byte order)"));
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
    if hdr_len < HEADER_LEN {
        return Err(bad("short header"));
    }
    let types = data
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or_else(|| bad("type section out of bounds"))?;
    let strings = data
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| bad("string section out of bounds"))?;
    let name_at = |off: u32| -> &[u8] {
        let s = strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    // Where each wanted name sits in the string section (strings are deduplicated): the type
    // pass then compares offsets, not strings (a string comparison per named type made the
    // pass 6 ms).
    let lengths = wanted.iter().fold(0u128, |m, (n, _)| {
        m | 1u128.checked_shl(n.len() as u32).unwrap_or(0)
    });
    let mut wanted_at: Vec<(u32, &str, Kind)> = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(0, strings) {
        let len = end - start;
        if len < 128 && lengths & (1 << len) != 0 {
            let s = &strings[start..end];
            for &(name, kind) in wanted {
                if name.as_bytes() == s {
                    wanted_at.push((start as u32, name, kind));
                }
            }
        }
        start = end + 1;
    }
    let word =
        |at: usize| u32::from_ne_bytes([types[at], types[at + 1], types[at + 2], types[at + 3]]);
    // A member record at `at`: its name offset, its type id and its byte offset (the offset
    // is in bits; with kind_flag the low 24 bits are the offset and the high 8 a bitfield size).
    let member_at = |at: usize, kind_flag: bool| {
        let offset = word(at + 8);
        let bits = if kind_flag {
            offset & 0xff_ffff
        } else {
            offset
        };
        (word(at), word(at + 4), bits / 8)
    };

    let mut found = Found::default();
    // Where each type starts (id - 1), and the anonymous members (struct or union) of the
    // structs asked for: their fields are the struct's own in C (`mm_struct.exe_file` sits in an
    // anonymous struct, `inode.i_nlink` in an anonymous union), resolved after the pass.
    let mut starts: Vec<u32> = Vec::new();
    let mut anonymous: Vec<(String, u32, u32)> = Vec::new();
    let mut at = 0;
    let mut id = 0u32;
    while at < types.len() {
        if at + TYPE_LEN > types.len() {
            return Err(bad("truncated type"));
        }
        starts.push(at as u32);
        id += 1;
        let (name_off, info) = (word(at), word(at + 4));
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = match kind {
            k if k == 0 || k > KIND_MAX => {
                return Err(bad(&format!("unknown kind {kind} (type {id})")));
            }
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            _ => 0,
        };
        let body = at + TYPE_LEN;
        if body + extra > types.len() {
            return Err(bad("truncated type"));
        }
        let ours = match kind {
            KIND_STRUCT => Some(Kind::Struct),
            KIND_TYPEDEF => Some(Kind::Typedef),
            KIND_FUNC => Some(Kind::Func),
            _ => None,
        };
        if let Some(ours) = ours
            && name_off != 0
            && let Some(&(_, name, _)) = wanted_at
                .iter()
                .find(|&&(off, _, kind)| off == name_off && kind == ours)
        {
            let name = name.to_string();
            if let std::collections::hash_map::Entry::Vacant(slot) =
                found.ids.entry((name.clone(), ours))
            {
                slot.insert(id);
                if ours == Kind::Struct {
                    let kind_flag = info >> 31 == 1;
                    for m in 0..vlen {
                        let (name_off, type_id, bytes) = member_at(body + 12 * m, kind_flag);
                        if name_off == 0 {
                            anonymous.push((name.clone(), type_id, bytes));
                            continue;
                        }
                        let member = String::from_utf8_lossy(name_at(name_off));
                        found
                            .members
                            .insert((name.clone(), member.into_owned()), bytes);
                    }
                }
            }
        }
        at = body + extra;
    }
    // Nested anonymous members are followed a few levels down (the kernel nests at most two).
    let mut depth = 0;
    while !anonymous.is_empty() && depth < 4 {
        depth += 1;
        for (name, type_id, base) in std::mem::take(&mut anonymous) {
            let Some(&start) = (type_id as usize)
                .checked_sub(1)
                .and_then(|i| starts.get(i))
            else {
                continue;
            };
            let start = start as usize;
            let info = word(start + 4);
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            if kind != KIND_STRUCT && kind != KIND_UNION {
                continue;
            }
            let kind_flag = info >> 31 == 1;
            for m in 0..vlen {
                let (name_off, type_id, bytes) = member_at(start + TYPE_LEN + 12 * m, kind_flag);
                if name_off == 0 {
                    anonymous.push((name.clone(), type_id, base + bytes));
                    continue;
                }
                let member = String::from_utf8_lossy(name_at(name_off)).into_owned();
                found
                    .members
                    .entry((name.clone(), member))
                    .or_insert(base + bytes);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, kind, vlen, kind_flag, size_or_type, trailing words)
    type RawType<'a> = (&'a str, u32, u32, bool, u32, Vec<u32>);

    /// A BTF blob of `types`.
    /// `member_names` come first in the string section: see `member_name`.
    fn blob(types: &[RawType], member_names: &[&str]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut offs = HashMap::new();
        for name in member_names
            .iter()
            .copied()
            .chain(types.iter().map(|t| t.0))
        {
            if !name.is_empty() && !offs.contains_key(name) {
                offs.insert(name, strings.len() as u32);
                strings.extend_from_slice(name.as_bytes());
                strings.push(0);
            }
        }
        let off = |n: &str| if n.is_empty() { 0 } else { offs[n] };
        let mut ty = Vec::new();
        for (name, kind, vlen, flag, size, trailing) in types {
            let info = (u32::from(*flag) << 31) | (kind << 24) | vlen;
            for w in [off(name), info, *size] {
                ty.extend_from_slice(&w.to_ne_bytes());
            }
            for w in trailing {
                ty.extend_from_slice(&w.to_ne_bytes());
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            ty.len() as u32,
            ty.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend(ty);
        out.extend(strings);
        out
    }

    /// The string offset `blob` gives `member_names[i]`.
    fn member_name(names: &[&str], i: usize) -> u32 {
        1 + names[..i].iter().map(|n| n.len() as u32 + 1).sum::<u32>()
    }

    #[test]
    fn finds_ids_and_member_offsets_in_one_pass() {
        let names = ["pid", "comm", "level"];
        let data = {
            let off = |n: &str| member_name(&names, names.iter().position(|x| *x == n).unwrap());
            blob(
                &[
                    ("int", KIND_INT, 0, false, 4, vec![32]),
                    // struct task_struct { pid at byte 8; comm at byte 16 }, with kind_flag.
                    (
                        "task_struct",
                        KIND_STRUCT,
                        2,
                        true,
                        32,
                        vec![off("pid"), 1, 64, off("comm"), 1, (8 << 24) | 128],
                    ),
                    ("", KIND_FUNC_PROTO, 1, false, 1, vec![0, 1]),
                    ("cap_capable", KIND_FUNC, 0, false, 3, vec![]),
                    ("btf_trace_cap_capable", KIND_TYPEDEF, 0, false, 1, vec![]),
                    // A typedef named like the function is not the function.
                    (
                        "user_namespace",
                        KIND_STRUCT,
                        1,
                        false,
                        8,
                        vec![off("level"), 1, 32],
                    ),
                ],
                &names,
            )
        };
        let found = scan(
            &data,
            &[
                ("task_struct", Kind::Struct),
                ("user_namespace", Kind::Struct),
                ("cap_capable", Kind::Func),
                ("cap_capable", Kind::Typedef),
                ("btf_trace_cap_capable", Kind::Typedef),
                ("bpf_lsm_capable", Kind::Func),
            ],
        )
        .unwrap();
        assert_eq!(found.id("task_struct", Kind::Struct), Some(2));
        assert_eq!(found.id("cap_capable", Kind::Func), Some(4));
        assert_eq!(found.id("cap_capable", Kind::Typedef), None);
        assert_eq!(found.id("btf_trace_cap_capable", Kind::Typedef), Some(5));
        assert_eq!(found.id("bpf_lsm_capable", Kind::Func), None);
        assert_eq!(found.member_offset("task_struct", "pid"), Ok(8));
        assert_eq!(found.member_offset("task_struct", "comm"), Ok(16));
        assert_eq!(found.member_offset("user_namespace", "level"), Ok(4));
        assert!(found.member_offset("task_struct", "nope").is_err());
        assert!(found.member_offset("pid", "level").is_err());
    }

    #[test]
    fn members_of_anonymous_structs_and_unions_are_the_outer_structs() {
        let names = ["i_ino", "i_nlink", "__i_nlink", "exe_file"];
        let off = |n: &str| member_name(&names, names.iter().position(|x| *x == n).unwrap());
        let data = blob(
            &[
                ("int", KIND_INT, 0, false, 4, vec![32]),
                // union { i_nlink; __i_nlink; } (type 2), declared before its user.
                (
                    "",
                    KIND_UNION,
                    2,
                    false,
                    4,
                    vec![off("i_nlink"), 1, 0, off("__i_nlink"), 1, 0],
                ),
                // struct inode { i_ino at 64; union at 72; struct { exe_file at 8 } at 80 }.
                (
                    "inode",
                    KIND_STRUCT,
                    3,
                    false,
                    96,
                    vec![off("i_ino"), 1, 512, 0, 2, 576, 0, 4, 640],
                ),
                // struct { int pad; exe_file at byte 8 } (type 4), declared after its user.
                ("", KIND_STRUCT, 1, false, 16, vec![off("exe_file"), 1, 64]),
            ],
            &names,
        );
        let found = scan(&data, &[("inode", Kind::Struct)]).unwrap();
        assert_eq!(found.member_offset("inode", "i_ino"), Ok(64));
        assert_eq!(found.member_offset("inode", "i_nlink"), Ok(72));
        assert_eq!(found.member_offset("inode", "exe_file"), Ok(88));
    }

    #[test]
    fn malformed_btf_is_an_error_not_a_panic() {
        assert!(scan(b"", &[]).is_err());
        assert!(scan(&[0u8; 40], &[]).is_err());
        let good = blob(&[("int", KIND_INT, 0, false, 4, vec![32])], &[]);
        for cut in 0..good.len() {
            let _ = scan(&good[..cut], &[("int", Kind::Struct)]);
        }
        let unknown = blob(&[("x", 30, 0, false, 0, vec![])], &[]);
        assert!(scan(&unknown, &[]).is_err());
    }

    #[test]
    #[ignore = "reads the running kernel's BTF (cargo xtask test runs it)"]
    fn the_running_kernel_has_what_captrace_needs() {
        assert!(Path::new(VMLINUX).exists(), "this kernel has no {VMLINUX}");
        let found = scan_vmlinux(&[
            ("task_struct", Kind::Struct),
            ("cap_capable", Kind::Func),
            ("mm_struct", Kind::Struct),
            ("inode", Kind::Struct),
        ])
        .unwrap();
        assert!(found.id("task_struct", Kind::Struct).is_some());
        assert!(found.member_offset("task_struct", "real_cred").unwrap() > 0);
        // Both inside anonymous members on current kernels.
        assert!(found.member_offset("mm_struct", "exe_file").unwrap() > 0);
        let ino = found.member_offset("inode", "i_ino").unwrap();
        assert_eq!(found.member_offset("inode", "i_nlink"), Ok(ino + 8));
    }
}
