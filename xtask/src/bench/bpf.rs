//! The few bpf(2) commands the bench needs, without an object file: an empty raw tracepoint
//! program (the floor), run-time statistics, and reading them back from `/proc/PID/fdinfo`.
use std::{
    collections::BTreeMap,
    ffi::CString,
    fs, io,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::Context as _;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_STATS_RUN_TIME: u32 = 0;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD; the kernel zero-fills the rest.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_F_NO_PREALLOC: u32 = 1;

/// `union bpf_attr` for BPF_MAP_UPDATE_ELEM.
#[repr(C)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_RAW_TRACEPOINT_OPEN.
#[repr(C)]
struct RawTpOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_ENABLE_STATS.
#[repr(C)]
struct EnableStatsAttr {
    kind: u32,
}

/// bpf(2) returning a new file descriptor.
fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, properly laid out prefix of `union bpf_attr` for `cmd`, and its
    // size is passed along; the kernel reads no further.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just handed us this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A reference program attached to a raw tracepoint; detached on drop.
pub struct FloorRawTp {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: Option<OwnedFd>,
}

/// One BPF instruction: opcode, registers, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | (((src << 4) | dst) as u64) << 8
        | ((off as u16) as u64) << 16
        | ((imm as u32) as u64) << 32
}

/// Loads `r0 = 0; exit` as a raw tracepoint program named `bench_floor` and attaches it to
/// `tracepoint` (e.g. `cap_capable`), the hook captrace itself uses.
pub fn attach_empty_raw_tp(tracepoint: &str) -> anyhow::Result<FloorRawTp> {
    // mov64 r0, 0 ; exit
    attach_raw_tp(tracepoint, b"bench_floor", &[0xb7, 0x95], None)
}

/// The least a tracer that follows chosen threads must do per event: look the current
/// thread up in a hash map keyed by thread id (as captrace's TASKS; it misses here), then
/// return. Named `bench_filter`.
pub fn attach_filter_raw_tp(tracepoint: &str) -> anyhow::Result<FloorRawTp> {
    let map = thread_map()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&map);
    const CALL: u8 = 0x85;
    let insns = [
        insn(CALL, 0, 0, 0, 14),  // r0 = bpf_get_current_pid_tgid()
        insn(0x63, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = r0 (the thread id)
        insn(0x18, 1, 1, 0, fd),  // r1 = the map (ld_imm64, BPF_PSEUDO_MAP_FD) ...
        0,                        // ... its second half
        insn(0xbf, 2, 10, 0, 0),  // r2 = r10
        insn(0x07, 2, 0, 0, -4),  // r2 += -4
        insn(CALL, 0, 0, 0, 1),   // r0 = bpf_map_lookup_elem(r1, r2)
        insn(0xb7, 0, 0, 0, 0),   // r0 = 0
        insn(0x95, 0, 0, 0, 0),   // exit
    ];
    attach_raw_tp(tracepoint, b"bench_filter", &insns, Some(map))
}

/// A thread-id hash map as the filter's, of 16,384 entries.
fn thread_map() -> anyhow::Result<OwnedFd> {
    let mut create = MapCreateAttr {
        map_type: BPF_MAP_TYPE_HASH,
        key_size: 4,
        value_size: 8,
        max_entries: 16_384,
        map_flags: BPF_F_NO_PREALLOC,
    };
    bpf_fd(BPF_MAP_CREATE, &mut create).context("creating a reference thread map")
}

/// Offset of `orig_ax` (the syscall number) in x86_64's `struct pt_regs`.
const PT_REGS_ORIG_AX: i16 = 15 * 8;

/// The least a tracer that counts the checks of chosen threads must do per event: the
/// filter's thread lookup, which hits for the threads added with [`CountRawTp::follow`], then
/// one per-CPU counter incremented in place (a per-CPU array slot, inlined by the verifier).
/// Named `bench_count`. With `by_syscall`, the counter is the syscall's, the number read from
/// the task's saved registers as captrace reads it (`bpf_get_current_task_btf`,
/// `bpf_task_pt_regs`, a load of `orig_ax`): named `bench_count_sys`.
pub fn attach_count_raw_tp(tracepoint: &str, by_syscall: bool) -> anyhow::Result<CountRawTp> {
    if by_syscall && !cfg!(target_arch = "x86_64") {
        anyhow::bail!(
            "floor_count_syscall reads x86_64's pt_regs.orig_ax (offset {PT_REGS_ORIG_AX}); \
             not measured on this architecture"
        );
    }
    let threads = thread_map()?;
    let mut create = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 512,
        map_flags: 0,
    };
    let counter = bpf_fd(BPF_MAP_CREATE, &mut create).context("creating the counter array")?;
    let (tfd, cfd) = (
        std::os::fd::AsRawFd::as_raw_fd(&threads),
        std::os::fd::AsRawFd::as_raw_fd(&counter),
    );
    const CALL: u8 = 0x85;
    let lookup_thread = [
        insn(CALL, 0, 0, 0, 14),  // r0 = bpf_get_current_pid_tgid()
        insn(0x63, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = r0 (the thread id)
        insn(0x18, 1, 1, 0, tfd), // r1 = the thread map ...
        0,                        // ... second half
        insn(0xbf, 2, 10, 0, 0),  // r2 = r10
        insn(0x07, 2, 0, 0, -4),  // r2 += -4
        insn(CALL, 0, 0, 0, 1),   // r0 = bpf_map_lookup_elem(r1, r2)
    ];
    // The counter's index at r10 - 8: 0, or the syscall number (masked to the array).
    let index: &[u64] = if by_syscall {
        &[
            insn(0x15, 0, 0, 16, 0),              // if r0 == 0 goto exit (not followed)
            insn(CALL, 0, 0, 0, 158),             // r0 = bpf_get_current_task_btf()
            insn(0xbf, 1, 0, 0, 0),               // r1 = r0
            insn(CALL, 0, 0, 0, 175),             // r0 = bpf_task_pt_regs(r1)
            insn(0x15, 0, 0, 12, 0),              // if r0 == 0 goto exit
            insn(0x79, 1, 0, PT_REGS_ORIG_AX, 0), // r1 = regs->orig_ax
            insn(0x57, 1, 0, 0, 511),             // r1 &= 511
            insn(0x63, 10, 1, -8, 0),             // *(u32 *)(r10 - 8) = r1
        ]
    } else {
        &[
            insn(0x15, 0, 0, 10, 0),  // if r0 == 0 goto exit (not followed)
            insn(0x62, 10, 0, -8, 0), // *(u32 *)(r10 - 8) = 0
        ]
    };
    let count = [
        insn(0x18, 1, 1, 0, cfd), // r1 = the counter array ...
        0,                        // ... second half
        insn(0xbf, 2, 10, 0, 0),  // r2 = r10
        insn(0x07, 2, 0, 0, -8),  // r2 += -8
        insn(CALL, 0, 0, 0, 1),   // r0 = bpf_map_lookup_elem(r1, r2)
        insn(0x15, 0, 0, 3, 0),   // if r0 == 0 goto exit
        insn(0x79, 1, 0, 0, 0),   // r1 = *(u64 *)(r0 + 0)
        insn(0x07, 1, 0, 0, 1),   // r1 += 1
        insn(0x7b, 0, 1, 0, 0),   // *(u64 *)(r0 + 0) = r1
        insn(0xb7, 0, 0, 0, 0),   // exit: r0 = 0
        insn(0x95, 0, 0, 0, 0),   // exit
    ];
    let insns: Vec<u64> = [&lookup_thread[..], index, &count[..]].concat();
    let name: &[u8] = if by_syscall {
        b"bench_count_sys"
    } else {
        b"bench_count"
    };
    let prog = attach_raw_tp(tracepoint, name, &insns, Some(counter))?;
    Ok(CountRawTp {
        _prog: prog,
        threads,
    })
}

/// The counting reference program and its thread map.
pub struct CountRawTp {
    _prog: FloorRawTp,
    threads: OwnedFd,
}

impl CountRawTp {
    /// Follows thread `tid`: the program's lookup hits for it from now on.
    pub fn follow(&self, tid: u32) -> anyhow::Result<()> {
        let (key, value) = (tid, 1u64);
        let mut update = MapUpdateAttr {
            map_fd: std::os::fd::AsRawFd::as_raw_fd(&self.threads) as u32,
            _pad: 0,
            key: std::ptr::from_ref(&key) as u64,
            value: std::ptr::from_ref(&value) as u64,
            flags: 0,
        };
        // SAFETY: `update` is laid out as `union bpf_attr` for BPF_MAP_UPDATE_ELEM and its
        // size is passed along; key and value point at live values of the map's sizes.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_ELEM,
                std::ptr::from_mut(&mut update),
                size_of::<MapUpdateAttr>() as libc::c_uint,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error())
                .context("adding a thread to the reference thread map");
        }
        Ok(())
    }
}

fn attach_raw_tp(
    tracepoint: &str,
    prog_name: &[u8],
    insns: &[u64],
    map: Option<OwnedFd>,
) -> anyhow::Result<FloorRawTp> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..prog_name.len()].copy_from_slice(prog_name);
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    let prog =
        bpf_fd(BPF_PROG_LOAD, &mut load).context("loading a reference raw_tracepoint program")?;
    let tp = CString::new(tracepoint)?;
    let mut open = RawTpOpenAttr {
        name: tp.as_ptr() as u64,
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        _pad: 0,
    };
    let link = bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &mut open)
        .with_context(|| format!("attaching a reference program to raw_tracepoint/{tracepoint}"))?;
    Ok(FloorRawTp {
        _link: link,
        _prog: prog,
        _map: map,
    })
}

/// Keeps the kernel's per-program run-time statistics on while alive (`BPF_ENABLE_STATS`, the
/// same as `sysctl kernel.bpf_stats_enabled=1`, but undone when the descriptor closes).
pub fn enable_stats() -> anyhow::Result<OwnedFd> {
    let mut attr = EnableStatsAttr {
        kind: BPF_STATS_RUN_TIME,
    };
    bpf_fd(BPF_ENABLE_STATS, &mut attr).context("BPF_ENABLE_STATS")
}

/// Run statistics of one program, as `/proc/PID/fdinfo` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Every BPF program `pid` holds a descriptor to, by program id.
pub fn prog_stats_of(pid: u32) -> anyhow::Result<BTreeMap<u32, ProgStats>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // A descriptor closed while we read is simply skipped.
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some((id, stats)) = parse_fdinfo(&text) {
            out.insert(id, stats);
        }
    }
    Ok(out)
}

/// The program id and statistics in a prog fd's fdinfo; None for any other descriptor (link
/// descriptors name a `prog_id` too but carry no run counts).
fn parse_fdinfo(text: &str) -> Option<(u32, ProgStats)> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse::<u64>().ok())?
        })
    };
    let id = u32::try_from(field("prog_id")?).ok()?;
    Some((
        id,
        ProgStats {
            run_time_ns: field("run_time_ns")?,
            run_cnt: field("run_cnt")?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_programs_load_and_attach() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root");
            eprintln!("skipped: loading BPF needs root");
            return;
        }
        // A tracepoint every kernel has; the bench uses cap_capable.
        let empty = attach_empty_raw_tp("sched_process_fork").unwrap();
        let filter = attach_filter_raw_tp("sched_process_fork").unwrap();
        let count = attach_count_raw_tp("sched_process_fork", false).unwrap();
        count.follow(std::process::id()).unwrap();
        let by_syscall = attach_count_raw_tp("sched_process_fork", true).unwrap();
        let ours = prog_stats_of(std::process::id()).unwrap();
        assert_eq!(ours.len(), 4, "{ours:?}");
        drop((empty, filter, count, by_syscall));
        assert!(prog_stats_of(std::process::id()).unwrap().is_empty());
    }

    #[test]
    fn parses_prog_fdinfo_and_ignores_links() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2071\nprog_type:\t17\n\
                    prog_jited:\t1\nprog_tag:\tb0e4ea6d1e5e3c9a\nmemlock:\t4096\nprog_id:\t1282\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\n";
        assert_eq!(
            parse_fdinfo(prog),
            Some((
                1282,
                ProgStats {
                    run_time_ns: 123456,
                    run_cnt: 789
                }
            ))
        );
        let link = "pos:\t0\nlink_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\tb0e4\nprog_id:\t1282\n\
                    tp_name:\tcap_capable\n";
        assert_eq!(parse_fdinfo(link), None);
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t02\n"), None);
    }
}
