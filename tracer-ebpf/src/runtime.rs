//! Which threads are a container runtime's, from something a workload cannot set: the
//! executable. A thread is marked in `RUNTIME_TASKS` when it execs one of `RUNTIME_EXES` (runc,
//! crun, conmon, the containerd shim...); the mark survives an exec of an unlinked file by a
//! marked thread (runc 1.1 re-executes itself from a memfd copy, cloned_binary.c, so the
//! `runc init` that ends in the container runs no file of the host), passes to the threads it
//! creates, and is cleared by any other exec: the container's entrypoint comes from its image.
//! A check counts as the runtime's only when its task is also named like one (`origin_of`).
//!
//! Kept in every mode that tells origins apart (monitor's `trace_all`, record's
//! `follow_cgroups`); all reads are probe reads (raw tracepoints, and checks whose name already
//! looks like a runtime's: rare).
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel};
use tracer_common::{Config, RuntimeExe, runtime_task, stat};

use crate::maps::{RUNTIME_EXES, RUNTIME_TASKS, bump};

/// Whether this mode tells runtime checks from the workload's.
#[inline(always)]
pub(crate) fn tracked(cfg: &Config) -> bool {
    cfg.trace_all != 0 || cfg.follow_cgroups != 0
}

#[inline(always)]
fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: a probe read cannot fault; a bad address gives an error.
    unsafe { bpf_probe_read_kernel((base as *const u8).add(off as usize) as *const T) }.ok()
}

/// The identity of the inode of `file` (a `struct file *`), and whether it has no link left.
#[inline(always)]
fn exe_of(cfg: &Config, file: u64) -> Option<(RuntimeExe, bool)> {
    let inode = read::<u64>(file, cfg.file_inode_off)?;
    let ino = read::<u64>(inode, cfg.inode_ino_off)?;
    let sb = read::<u64>(inode, cfg.inode_sb_off)?;
    let dev = read::<u32>(sb, cfg.sb_dev_off)?;
    let unlinked =
        cfg.inode_nlink_off != 0 && read::<u32>(inode, cfg.inode_nlink_off).unwrap_or(1) == 0;
    Some((RuntimeExe { dev, _pad: 0, ino }, unlinked))
}

#[inline(always)]
fn is_runtime_exe(exe: &RuntimeExe) -> bool {
    // SAFETY: presence test only.
    unsafe { RUNTIME_EXES.get(exe) }.is_some()
}

#[inline(always)]
fn flagged(tid: u32) -> bool {
    // SAFETY: presence test only.
    unsafe { RUNTIME_TASKS.get(tid) }.is_some()
}

#[inline(always)]
fn mark(tid: u32) {
    if RUNTIME_TASKS.insert(tid, runtime_task::RUNTIME, 0).is_err() {
        // Unmarked, the runtime's checks count as the container's: more, never fewer.
        bump(stat::MAP_FULL);
    }
}

/// `task_newtask`: a thread created by a runtime thread is the runtime's.
#[inline(always)]
pub(crate) fn on_new_task(cfg: &Config, parent: u32, child: u32) {
    if tracked(cfg) && flagged(parent) {
        mark(child);
    }
}

/// `sched_process_exec`: `old` is the thread that called exec, `tid` its id after it
/// (de_thread gives it the leader's), `bprm` the `struct linux_binprm *`.
#[inline(always)]
pub(crate) fn on_exec(cfg: &Config, old: u32, tid: u32, bprm: u64) {
    if !tracked(cfg) {
        return;
    }
    let was = flagged(old);
    if old != tid {
        let _ = RUNTIME_TASKS.remove(old);
    }
    let runtime = match read::<u64>(bprm, cfg.bprm_file_off).and_then(|f| exe_of(cfg, f)) {
        Some((exe, unlinked)) => is_runtime_exe(&exe) || (was && unlinked),
        None => false,
    };
    if runtime {
        mark(tid);
    } else if was || flagged(tid) {
        let _ = RUNTIME_TASKS.remove(tid);
    }
}

/// `sched_process_exit`.
#[inline(always)]
pub(crate) fn on_exit(cfg: &Config, tid: u32) {
    if tracked(cfg) {
        let _ = RUNTIME_TASKS.remove(tid);
    }
}

/// Whether the current thread was marked.
#[inline(always)]
pub(crate) fn current_flagged() -> bool {
    flagged(bpf_get_current_pid_tgid() as u32)
}

/// Whether the current thread runs a runtime executable now (a runtime started before
/// captrace, whose exec was not seen): `task->mm->exe_file`.
#[inline(always)]
pub(crate) fn current_runs_runtime_exe(cfg: &Config) -> bool {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    read::<u64>(task, cfg.task_mm_off)
        .and_then(|mm| read::<u64>(mm, cfg.mm_exe_file_off))
        .and_then(|file| exe_of(cfg, file))
        .is_some_and(|(exe, _)| is_runtime_exe(&exe))
}
