//! The enforcer's third hook: forks of a confined task. A child is confined because
//! `task_newtask` gives it its parent's `TASKS` entry; when `TASKS` is full that insert fails and
//! the child would run unconfined. So a confined thread reserves the child's slot before the
//! child exists (`security_task_alloc()` runs in copy_process() before `task_newtask`, in the
//! same thread), and a fork with no room is refused: the workload sees EAGAIN, as with any
//! other task limit.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::lsm, programs::LsmContext};
use tracer_common::{mode, refused, reservation, stat};

use crate::{
    kmem::config,
    lsm::{Tie, armed_policy, refusal, send_denial},
    maps::{TASKS, bump},
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
    // Only threads in `TASKS` need room for their children: a cgroup-confined task
    // (`enforce --container`) is matched by its cgroup, which its children share.
    let Some((workload, policy)) = armed_policy(&cfg, pid_tgid, Tie::Task) else {
        return 0;
    };
    if policy.mode != mode::ENFORCE {
        return 0;
    }
    // BPF_ANY: a reservation left by a fork that failed later in copy_process() is reused,
    // which needs no new slot.
    if TASKS
        .insert(reservation::key(pid_tgid as u32), reservation::VALUE, 0)
        .is_ok()
    {
        return 0;
    }
    bump(stat::FORKS_REFUSED);
    send_denial(
        pid_tgid,
        refusal(&cfg, workload, &policy, refused::UNTRACKABLE_TASK),
    );
    -EAGAIN
}
