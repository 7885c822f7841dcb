//! Namespace syscalls (unshare, setns, clone, clone3 with CLONE_NEW*) reported with their
//! result.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tracer_common::{Event, NsCall, clone_flags, kind, ns_syscall, stat};

use crate::{
    check::{current_workload, header},
    kmem::{Kmem, Probed, Typed, config},
    maps::{EVENTS, bump},
};

/// `sys_exit`: TP_PROTO(regs, ret). The only syscall hook: on x86-64 and arm64 the saved
/// registers still hold the syscall number and its arguments when it returns, so one program
/// sees the call and its result. A second one on `sys_enter` would cost every syscall of the
/// host another tracepoint run (~90 ns measured) for nothing this one cannot see.
#[inline(always)]
fn on_sys_exit<M: Kmem>(regs: *const u8, ret: i64) {
    let cfg = config();
    let reg = |off| M::read::<u64>(regs, off).unwrap_or(0);
    let id = reg(cfg.regs_syscall_off) as u32;
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
    let Some(workload) = current_workload(&cfg, pid_tgid) else {
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
    };
    match EVENTS.reserve::<Event<NsCall>>(0) {
        Some(mut entry) => {
            entry.write(Event {
                header: header(kind::NS_CALL, pid_tgid),
                data: call,
            });
            entry.submit(0);
        }
        None => bump(stat::EVENTS_LOST),
    }
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
