//! The enforcer's second hook: io_uring personalities. A personality is a set of credentials
//! registered with IORING_REGISTER_PERSONALITY; a request that names it runs with them
//! (io_init_req() -> security_uring_override_creds()) instead of the task's own. A workload
//! that registered one before it was confined (before `PR_SET_KEEPCAPS` and a drop of
//! privileges, or before `enforce --pid` adopted it) would use capabilities the policy refuses,
//! and the `capable` hook could not tell those credentials from overlayfs' legitimate borrowing.
//! So a confined task may not use a personality at all.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::lsm, programs::LsmContext};
use tracer_common::{mode, refused};

use crate::{
    kmem::config,
    lsm::{EPERM, Tie, armed_policy, refusal, send_denial},
};

/// BPF LSM `uring_override_creds` hook: (new cred, ret of the LSMs before). Runs in the task
/// that submits the request (or its SQPOLL thread, which `task_newtask` made the workload's).
#[lsm(hook = "uring_override_creds")]
pub fn enforce_uring_creds(ctx: LsmContext) -> i32 {
    let prev: u64 = ctx.arg(1);
    if prev as i32 != 0 {
        return prev as i32;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    let Some((workload, policy)) = armed_policy(&cfg, pid_tgid, Tie::TaskOrCgroup) else {
        return 0;
    };
    send_denial(
        pid_tgid,
        refusal(&cfg, workload, &policy, refused::URING_PERSONALITY),
    );
    if policy.mode == mode::ENFORCE {
        -EPERM
    } else {
        0
    }
}
