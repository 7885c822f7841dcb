//! The few bpf(2) commands the bench needs, without an object file: an empty raw tracepoint
//! program (the floor), run-time statistics, and reading them back from `/proc/PID/fdinfo`.
use std::{
    collections::BTreeMap,
    ffi::CString,
    fs, io,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::Context as _;

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

/// An empty program (`r0 = 0; exit`) attached to a raw tracepoint; detached on drop.
pub struct EmptyRawTp {
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// Loads `r0 = 0; exit` as a raw tracepoint program named `bench_floor` and attaches it to
/// `tracepoint` (e.g. `cap_capable`), the hook captrace itself uses.
pub fn attach_empty_raw_tp(tracepoint: &str) -> anyhow::Result<EmptyRawTp> {
    // mov64 r0, 0 ; exit
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"bench_floor");
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
        bpf_fd(BPF_PROG_LOAD, &mut load).context("loading an empty raw_tracepoint program")?;
    let tp = CString::new(tracepoint)?;
    let mut open = RawTpOpenAttr {
        name: tp.as_ptr() as u64,
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        _pad: 0,
    };
    let link = bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &mut open)
        .with_context(|| format!("attaching the empty program to raw_tracepoint/{tracepoint}"))?;
    Ok(EmptyRawTp {
        _link: link,
        _prog: prog,
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
