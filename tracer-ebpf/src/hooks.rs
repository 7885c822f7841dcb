//! The four ways of watching `cap_capable`: the tracepoint (tp_btf or raw), fexit, and
//! kprobe + kretprobe. The loader attaches one of them.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, fexit, kprobe, kretprobe, raw_tracepoint},
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        tracing::StackIdContext,
    },
};
use tracer_common::{PendingCheck, stat};

use crate::{
    check::{CheckArgs, current_workload, current_workload_in, known_opts, on_check},
    kmem::{Kmem, Probed, Typed, config},
    maps::{CHECKS_PENDING, bump},
};

/// `capability:cap_capable`: TP_PROTO(cred, target_ns, capable_ns, cap, ret)
/// (include/trace/events/capability.h, kernels >= 6.14). It does not carry `opts`.
#[inline(always)]
fn on_tracepoint<M: Kmem, C: StackIdContext>(ctx: &C, arg: impl Fn(usize) -> u64) {
    let cfg = config();
    let task = M::current_task();
    let Some(workload) = current_workload_in::<M>(&cfg, task) else {
        return;
    };
    let args = CheckArgs {
        cred: arg(0),
        target_ns: arg(1),
        cap: arg(3),
        opts: 0,
        ret: arg(4) as i32,
    };
    on_check::<M, C>(ctx, &cfg, workload, task, args);
}

/// The tracepoint with BTF-typed arguments: fields are read without helper calls.
#[btf_tracepoint(function = "cap_capable")]
pub fn cap_capable_tp_btf(ctx: BtfTracePointContext) -> i32 {
    on_tracepoint::<Typed, _>(&ctx, |n| ctx.arg(n));
    0
}

/// The same tracepoint, raw: for when the kernel's BTF cannot be used for tp_btf.
#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn cap_capable_raw_tp(ctx: RawTracePointContext) -> i32 {
    on_tracepoint::<Probed, _>(&ctx, |n| ctx.arg(n));
    0
}

/// fexit on `int cap_capable(const struct cred *cred, struct user_namespace *ns, int cap,
/// unsigned int opts)` (security/commoncap.c, every kernel since 5.1): the arguments, `opts`
/// included, and the return value in one program.
#[fexit(function = "cap_capable")]
pub fn cap_capable_fexit(ctx: FExitContext) -> i32 {
    let cfg = config();
    let task = Typed::current_task();
    let Some(workload) = current_workload_in::<Typed>(&cfg, task) else {
        return 0;
    };
    let raw_opts: u64 = ctx.arg(3);
    let ret: u64 = ctx.arg(4);
    let args = CheckArgs {
        cred: ctx.arg(0),
        target_ns: ctx.arg(1),
        cap: ctx.arg::<u64>(2) & 0xff,
        opts: known_opts(raw_opts),
        ret: ret as i32,
    };
    on_check::<Typed, _>(&ctx, &cfg, workload, task, args);
    0
}

/// kprobe on `cap_capable`, for kernels without BPF trampolines: keeps the arguments until the
/// kretprobe sees the verdict.
#[kprobe(function = "cap_capable")]
pub fn cap_capable_kprobe(ctx: ProbeContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    let Some(workload) = current_workload(&cfg, pid_tgid) else {
        return 0;
    };
    let pending = PendingCheck {
        workload,
        cred: ctx.arg(0).unwrap_or(0),
        target_ns: ctx.arg(1).unwrap_or(0),
        cap: ctx.arg::<u64>(2).unwrap_or(0) as u32,
        opts: ctx.arg::<u64>(3).unwrap_or(0) as u32,
    };
    if CHECKS_PENDING.insert(pid_tgid as u32, pending, 0).is_err() {
        bump(stat::MAP_FULL);
    }
    0
}

#[kretprobe(function = "cap_capable")]
pub fn cap_capable_kretprobe(ctx: RetProbeContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: value copied out immediately.
    let Some(p) = (unsafe { CHECKS_PENDING.get(tid) }).copied() else {
        return 0;
    };
    let _ = CHECKS_PENDING.remove(tid);
    let cfg = config();
    let ret: u64 = ctx.ret();
    let args = CheckArgs {
        cred: p.cred,
        target_ns: p.target_ns,
        cap: u64::from(p.cap),
        opts: known_opts(u64::from(p.opts)),
        ret: ret as i32,
    };
    on_check::<Probed, _>(&ctx, &cfg, p.workload, Probed::current_task(), args);
    0
}
