//! The enforcer's hooks on task creation. A confined task's children must be confined from
//! their first instruction, whatever the maps hold. `task_newtask` gives a child its parent's
//! `TASKS` entry, but that insert fails when `TASKS` is full. So `lsm/task_alloc`, which runs
//! in copy_process() before the child exists (in the forking thread), enters the new task in
//! `CONFINED_CHILDREN` under its `task_struct`'s address, and refuses the fork when there is no
//! room: the workload sees EAGAIN, as with any other task limit. That entry is the child's until
//! `lsm/task_free`: it never moves, so no other fork can take its slot in between (a slot
//! handed from the parent to the child could be, issue 14).
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::lsm, programs::LsmContext};
use tracer_common::{mode, refused, stat};

use crate::{
    kmem::config,
    lsm::{Tie, armed_policy, refusal, send_denial},
    maps::{CONFINED_CHILDREN, bump},
};

const EAGAIN: i32 = 11;

/// BPF LSM `task_alloc` hook: (new task, clone_flags, ret of the LSMs before). Runs in the
/// thread that forks.
#[lsm(hook = "task_alloc")]
pub fn enforce_task_alloc(ctx: LsmContext) -> i32 {
    let prev: u64 = ctx.arg(2);
    if prev as i32 != 0 {
        return prev as i32;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    // Only confined threads need room for their children: a cgroup-confined task
    // (`enforce --container`) is matched by its cgroup, which its children share.
    let Some((workload, policy)) = armed_policy(&cfg, pid_tgid, Tie::Task) else {
        return 0;
    };
    if policy.mode != mode::ENFORCE {
        return 0;
    }
    let task: u64 = ctx.arg(0);
    // BPF_ANY: an entry at this address can only be a stale one (a task freed before
    // `task_free` was attached), and it becomes this child's.
    if CONFINED_CHILDREN.insert(task, workload, 0).is_ok() {
        return 0;
    }
    bump(stat::FORKS_REFUSED);
    send_denial(
        pid_tgid,
        refusal(&cfg, workload, &policy, refused::UNTRACKABLE_TASK),
    );
    -EAGAIN
}

/// BPF LSM `task_free` hook: (task). Every task is freed once, also one whose fork failed after
/// `task_alloc` (security_task_free() runs on that path too): its entry goes, so a later task
/// at the same address does not inherit it.
#[lsm(hook = "task_free")]
pub fn enforce_task_free(ctx: LsmContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let _ = CONFINED_CHILDREN.remove(task);
    0
}
