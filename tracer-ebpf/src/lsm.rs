//! The enforcer: a BPF LSM program on `capable`.
use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
    },
    macros::lsm,
    programs::LsmContext,
};
use tracer_common::{Config, Denial, Policy, UsageKey, kind, mode, opts, origin, refused, verdict};

use crate::{
    check::{count_check, known_opts, send_event},
    kmem::{Typed, borrowed, config, current_syscall, userns_scope},
    maps::{DENIALS, ENFORCE_CGROUPS, POLICIES, TASKS, confined_child},
};

/// How the current thread may belong to a confined workload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tie {
    /// Only its own `TASKS` (or `CONFINED_CHILDREN`) entry (`run`, `enforce --pid`).
    Task,
    /// Its `TASKS` entry, else its cgroup's (`enforce --container`, `--cgroup`).
    TaskOrCgroup,
}

/// The workload whose policy applies to the current thread: its own when `run` or `enforce
/// --pid` registered it, else (with `Tie::TaskOrCgroup`) its cgroup's.
#[inline(always)]
fn enforced_workload(cfg: &Config, pid_tgid: u64, tie: Tie) -> Option<u64> {
    // SAFETY: values copied out immediately.
    if let Some(w) = unsafe { TASKS.get(pid_tgid as u32) } {
        return Some(*w);
    }
    if let Some(w) = confined_child() {
        return Some(w);
    }
    if tie == Tie::Task || cfg.enforce_cgroups == 0 {
        return None;
    }
    enforced_cgroup()
}

/// The current thread's workload and its policy, if that policy is armed: what every enforcer
/// hook asks first. `None` (the thread is not confined, or not yet) lets the operation through.
#[inline(always)]
pub(crate) fn armed_policy(cfg: &Config, pid_tgid: u64, tie: Tie) -> Option<(u64, Policy)> {
    let workload = enforced_workload(cfg, pid_tgid, tie)?;
    // SAFETY: value copied out immediately.
    let policy = (unsafe { POLICIES.get(workload) }).copied()?;
    if policy.armed == 0 {
        return None;
    }
    Some((workload, policy))
}

/// A refusal that is not of one capability (`refused::*` other than `CAPABILITY`), in the
/// current syscall.
#[inline(always)]
pub(crate) fn refusal(cfg: &Config, workload: u64, policy: &Policy, what: u8) -> Denial {
    Denial {
        workload,
        syscall: current_syscall::<Typed>(cfg),
        cap: 0,
        scope: 0,
        mode: policy.mode,
        opts: 0,
        what,
        _pad: [0; 7],
    }
}

/// Reports `denial` to user space.
#[inline(always)]
pub(crate) fn send_denial(pid_tgid: u64, denial: Denial) {
    send_event(kind::DENIAL, pid_tgid, denial);
}

/// Deepest cgroup level looked at: a process further down than this below the root is matched
/// by its ancestors up to this level only.
const MAX_CGROUP_LEVEL: i32 = 32;

/// The workload of the nearest confined cgroup that contains the current task's: a process
/// that moved (or was cloned with CLONE_INTO_CGROUP) into a child cgroup of a confined one is
/// still confined.
#[inline(always)]
fn enforced_cgroup() -> Option<u64> {
    // SAFETY: helper without preconditions; value copied out.
    let own = unsafe { bpf_get_current_cgroup_id() };
    if let Some(w) = unsafe { ENFORCE_CGROUPS.get(own) } {
        return Some(*w);
    }
    // Level 0 is the root: from just below it down to the task's own (whose id the helper
    // returns at its level; deeper levels return 0).
    let mut level = 1;
    while level < MAX_CGROUP_LEVEL {
        // SAFETY: helper without preconditions.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 || id == own {
            return None;
        }
        // SAFETY: value copied out immediately.
        if let Some(w) = unsafe { ENFORCE_CGROUPS.get(id) } {
            return Some(*w);
        }
        level += 1;
    }
    None
}

pub(crate) const EPERM: i32 = 1;

/// BPF LSM `capable` hook: (cred, ns, cap, opts, ret of the LSMs before). Refuses (or only
/// reports, in complain mode) every capability outside the workload's allowed set, in every
/// user namespace. Runs after the capability LSM, so it only sees what the task holds.
#[lsm(hook = "capable")]
pub fn enforce_capable(ctx: LsmContext) -> i32 {
    let prev: u64 = ctx.arg(4);
    if prev as i32 != 0 {
        return prev as i32;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    let Some((workload, policy)) = armed_policy(&cfg, pid_tgid, Tie::TaskOrCgroup) else {
        return 0;
    };
    let cap: u64 = ctx.arg(2);
    let cap = (cap & 0xff) as u32;
    if policy.allows(cap) {
        return 0;
    }
    // Kernel code acting with credentials it borrowed (overlayfs reading its own xattrs as
    // its mounter) is not the workload using a capability: refusing it would break the file
    // system under the workload. The other borrower a workload controls, an io_uring
    // personality, never gets this far: `enforce_uring_creds` refuses it to confined tasks.
    if borrowed::<Typed>(&cfg, ctx.arg(0)) {
        return 0;
    }
    let raw_opts: u64 = ctx.arg(3);
    let target_ns: u64 = ctx.arg(1);
    let refuse = policy.mode == mode::ENFORCE;
    let denial = Denial {
        workload,
        syscall: current_syscall::<Typed>(&cfg),
        cap: cap as u8,
        scope: userns_scope::<Typed>(&cfg, target_ns),
        mode: policy.mode,
        opts: known_opts(raw_opts),
        what: refused::CAPABILITY,
        _pad: [0; 7],
    };
    let key = UsageKey {
        workload,
        syscall: denial.syscall as i16,
        cap: denial.cap,
        verdict: if refuse {
            verdict::DENIED
        } else {
            verdict::GRANTED
        },
        scope: denial.scope,
        origin: origin::WORKLOAD,
        opts: denial.opts,
        _pad: 0,
    };
    count_check(&DENIALS, &key);
    // Noaudit checks are probes (the caller copes without the capability): refused like any
    // other, counted, but not reported one by one.
    if denial.opts & opts::NOAUDIT == 0 {
        send_denial(pid_tgid, denial);
    }
    if refuse { -EPERM } else { 0 }
}
