//! Namespace syscalls (unshare, setns, clone, clone3 with CLONE_NEW*) reported with their
//! result.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs,
    },
    macros::{btf_tracepoint, fexit, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, FExitContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{Config, NsCall, clone_flags, kind, ns_syscall};

use crate::{
    check::{current_workload, send_event},
    kmem::{Kmem, Probed, Typed, config},
};

/// A syscall's return: on x86-64 and arm64 the saved registers still hold the syscall number
/// and its arguments when it returns, so one program sees the call and its result. A second
/// one on `sys_enter` would cost every syscall of the host another tracepoint run (~90 ns
/// measured) for nothing this one cannot see.
#[inline(always)]
fn on_sys_exit<M: Kmem>(regs: *const u8, ret: i64) {
    let cfg = config();
    let id = M::read::<u64>(regs, cfg.regs_syscall_off).unwrap_or(0) as u32;
    report::<M>(&cfg, regs, id, ret);
}

/// Reports syscall `id`, which returned `ret`, if it is a namespace call of a followed task.
#[inline(always)]
fn report<M: Kmem>(cfg: &Config, regs: *const u8, id: u32, ret: i64) {
    let reg = |off| M::read::<u64>(regs, off).unwrap_or(0);
    let syscall = if id == cfg.nr_unshare {
        ns_syscall::UNSHARE
    } else if id == cfg.nr_setns {
        ns_syscall::SETNS
    } else if id == cfg.nr_clone {
        ns_syscall::CLONE
    } else if id == cfg.nr_clone3 {
        ns_syscall::CLONE3
    } else {
        return;
    };
    // A new process or thread returns 0 from its parent's clone: the parent's return is the
    // call.
    if ret == 0 && (syscall == ns_syscall::CLONE || syscall == ns_syscall::CLONE3) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(workload) = current_workload(cfg, pid_tgid) else {
        return;
    };
    let arg0 = reg(cfg.regs_arg0_off);
    let (flags, fd) = match syscall {
        ns_syscall::SETNS => (reg(cfg.regs_arg1_off) & 0xffff_ffff, arg0 as i32),
        // SAFETY: `flags` is the first field of the user's struct clone_args, still mapped
        // when the call returns.
        ns_syscall::CLONE3 => (
            unsafe { bpf_probe_read_user(arg0 as *const u64) }.unwrap_or(0),
            -1,
        ),
        _ => (arg0, -1),
    };
    if syscall != ns_syscall::SETNS && flags & clone_flags::ALL_NS == 0 {
        return;
    }
    let call = NsCall {
        workload,
        syscall,
        fd,
        flags,
        ret,
        origin: crate::check::origin_of::<M>(cfg, M::current_task(), workload),
        _pad: [0; 7],
    };
    send_event(kind::NS_CALL, pid_tgid, call);
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ns_sys_exit_tp_btf(ctx: BtfTracePointContext) -> i32 {
    let ret: i64 = ctx.arg(1);
    on_sys_exit::<Typed>(ctx.arg(0), ret);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ns_sys_exit(ctx: RawTracePointContext) -> i32 {
    let ret: i64 = ctx.arg(1);
    on_sys_exit::<Probed>(ctx.arg::<u64>(0) as *const u8, ret);
    0
}

/// `syscalls:sys_exit_{unshare,setns,clone,clone3}` (one program, attached four times): the
/// kernel runs it for those four syscalls only (a per-syscall bitmap in perf_syscall_exit), so
/// every other syscall of the host pays the syscall slow path but no program run. The record
/// (include/trace/events/syscalls.h, `struct syscall_trace_exit`) holds the number at offset 8
/// and the result at 16; the arguments come from the task's saved registers.
#[tracepoint]
pub fn ns_syscall_exit(ctx: TracePointContext) -> i32 {
    // SAFETY: fixed offsets of the syscall exit record, checked by the kernel's bounds.
    let (Ok(id), Ok(ret)) = (unsafe { ctx.read_at::<i32>(8) }, unsafe {
        ctx.read_at::<i64>(16)
    }) else {
        return 0;
    };
    // SAFETY: helpers on the current task; pt_regs sits at a fixed place on its kernel stack
    // (task_pt_regs). Read through the probe helper: this runs for namespace calls only.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    report::<Probed>(&config(), regs, id as u32, ret);
    0
}

/// fexit on a namespace syscall's own function (`__x64_sys_unshare(const struct pt_regs *)`
/// and its three siblings), where the kernel has trampolines: nothing runs on any other
/// syscall, which also keeps the syscall fast path (no tracepoint sets
/// TIF_SYSCALL_TRACEPOINT). Arguments: the user registers, then the result.
#[inline(always)]
fn on_fexit(ctx: &FExitContext, nr: fn(&Config) -> u32) -> i32 {
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let cfg = config();
    report::<Typed>(&cfg, regs as *const u8, nr(&cfg), ret);
    0
}

#[fexit(function = "__x64_sys_unshare")]
pub fn ns_unshare_fexit(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, |c| c.nr_unshare)
}

#[fexit(function = "__x64_sys_setns")]
pub fn ns_setns_fexit(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, |c| c.nr_setns)
}

#[fexit(function = "__x64_sys_clone")]
pub fn ns_clone_fexit(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, |c| c.nr_clone)
}

#[fexit(function = "__x64_sys_clone3")]
pub fn ns_clone3_fexit(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, |c| c.nr_clone3)
}
