//! Following processes: a workload's threads and their children, in the kernel.
use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::stat;

use crate::{
    kmem::{config, task_pid},
    maps::{CONFINED_CHILDREN, LIVE, POLICIES, TASKS, bump, confined_child, set_tasks_overflowed},
    runtime,
};

#[inline(always)]
fn live_add(workload: u64, delta: i64) {
    match LIVE.get_ptr_mut(workload) {
        // SAFETY: this CPU's slot of a live map value.
        Some(p) => unsafe { *p += delta },
        None => {
            if LIVE.insert(workload, delta, BPF_NOEXIST as u64).is_err()
                && let Some(p) = LIVE.get_ptr_mut(workload)
            {
                // SAFETY: as above.
                unsafe { *p += delta };
            }
        }
    }
}

/// `task_newtask`, raw: TP_PROTO(task, clone_flags), fired by copy_process() for every new
/// task, before it first runs: a child (process or thread) inherits the workload of the thread
/// that created it. `sched_process_fork` would miss the io_uring worker and SQPOLL threads,
/// which create_io_thread() makes without kernel_clone(): work a workload hands to io_uring
/// (an openat forced async with IOSQE_ASYNC) would then be nobody's.
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn task_newtask(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    let parent = bpf_get_current_pid_tgid() as u32;
    let Some(child) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    runtime::on_new_task(&cfg, parent, child);
    if cfg.trace_all != 0 {
        return 0;
    }
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(parent) })
        .copied()
        .or_else(confined_child)
    else {
        return 0;
    };
    if TASKS.insert(child, workload, 0).is_ok() {
        live_add(workload, 1);
        return 0;
    }
    bump(stat::MAP_FULL);
    // A confined thread's child has its `CONFINED_CHILDREN` entry since `lsm/task_alloc`:
    // the enforcer looks there from now on, before the child first runs.
    let task: u64 = ctx.arg(0);
    // SAFETY: only tested for presence.
    if unsafe { CONFINED_CHILDREN.get(task) }.is_some() {
        set_tasks_overflowed();
        live_add(workload, 1);
    }
    0
}

/// `sched_process_exit`, raw: TP_PROTO(p, ...). Fires for every exiting thread, before it
/// becomes a zombie.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    let Some(pid) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    runtime::on_exit(&cfg, pid);
    if cfg.trace_all != 0 {
        return 0;
    }
    // SAFETY: value copied out immediately.
    if let Some(workload) = (unsafe { TASKS.get(pid) }).copied() {
        if TASKS.remove(pid).is_ok() {
            live_add(workload, -1);
        }
    } else if let Some(workload) = confined_child() {
        // Counted live by `task_newtask` without a `TASKS` entry.
        live_add(workload, -1);
    }
    0
}

/// `sched_process_exec`, raw: TP_PROTO(p, old_pid, bprm). A non-leader thread that execs takes
/// over the leader's id (de_thread), so its entry moves to the new id.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    let old: u64 = ctx.arg(1);
    let old = old as u32;
    let Some(pid) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    runtime::on_exec(&cfg, old, pid, ctx.arg(2));
    if cfg.trace_all != 0 {
        return 0;
    }
    arm_policy(old);
    if pid == old {
        return 0;
    }
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(old) }).copied() else {
        return 0;
    };
    if TASKS.insert(pid, workload, 0).is_ok() {
        let _ = TASKS.remove(old);
        return 0;
    }
    let _ = TASKS.remove(old);
    if TASKS.insert(pid, workload, 0).is_ok() {
        return 0;
    }
    bump(stat::MAP_FULL);
    let task: u64 = ctx.arg(0);
    // SAFETY: only tested for presence.
    if unsafe { CONFINED_CHILDREN.get(task) }.is_some() {
        // Still confined, and still counted live (see `sched_process_exit`).
        set_tasks_overflowed();
    } else {
        live_add(workload, -1);
    }
    0
}

/// A workload's policy takes effect at its first exec: until then the process is captrace
/// setting the workload up.
#[inline(always)]
fn arm_policy(tid: u32) {
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(tid) }).copied() else {
        return;
    };
    if let Some(p) = POLICIES.get_ptr_mut(workload) {
        // SAFETY: a live map value; a racing exec writes the same byte.
        unsafe { (*p).armed = 1 };
    }
}
