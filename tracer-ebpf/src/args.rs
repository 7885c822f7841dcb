//! What a check's syscall arguments say that its key does not, for the safer alternatives to a
//! capability: the port of a `bind` that needed CAP_NET_BIND_SERVICE (so user space can give
//! `net.ipv4.ip_unprivileged_port_start` instead), and whether a socket that needed CAP_NET_RAW
//! was a raw ICMP one (`net.ipv4.ping_group_range`). Read only for those two capabilities in
//! those two syscalls: every other check returns at the first comparison.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs},
};
use tracer_common::{ArgNote, Config, UsageKey, arg_note, stat};

use crate::{
    kmem::Kmem,
    maps::{ARG_NOTES, bump},
};

/// include/uapi/linux/capability.h
const CAP_NET_BIND_SERVICE: u8 = 10;
const CAP_NET_RAW: u8 = 13;
/// include/linux/socket.h, include/linux/net.h, include/uapi/linux/in.h and in6.h
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const SOCK_RAW: u64 = 3;
/// `socket(2)`'s type also carries SOCK_NONBLOCK and SOCK_CLOEXEC above these bits.
const SOCK_TYPE_MASK: u64 = 0xf;
const IPPROTO_ICMP: u64 = 1;
const IPPROTO_ICMPV6: u64 = 58;

#[inline(always)]
pub(crate) fn note_args<M: Kmem>(cfg: &Config, key: &UsageKey) {
    let syscall = key.syscall as i32;
    if key.cap == CAP_NET_BIND_SERVICE && syscall == cfg.nr_bind as i32 {
        note_bind_port::<M>(cfg, key.workload);
    } else if key.cap == CAP_NET_RAW && syscall == cfg.nr_socket as i32 {
        note_raw_icmp::<M>(cfg, key.workload);
    }
}

/// The current task's saved user registers.
#[inline(always)]
fn user_regs() -> *const u8 {
    // SAFETY: helpers on the current task; the result is a BTF-typed pointer to its saved user
    // registers (as `kmem::current_syscall`).
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8 }
}

/// The kernel asks for the capability in `__inet_bind`/`__inet6_bind`
/// (`inet_port_requires_bind_service`) only for a port below `ip_unprivileged_port_start`,
/// after copying the address in; the port sits at offset 2 of both `sockaddr_in` and
/// `sockaddr_in6`, in network byte order, and the caller's copy is still mapped while the
/// syscall runs.
#[inline(always)]
fn note_bind_port<M: Kmem>(cfg: &Config, workload: u64) {
    let Some(addr) = M::read::<u64>(user_regs(), cfg.regs_arg1_off) else {
        return;
    };
    // SAFETY: a probe read of user memory cannot fault; a bad address gives an error.
    let Ok(port) = (unsafe { bpf_probe_read_user((addr + 2) as *const u16) }) else {
        return;
    };
    note(workload, arg_note::BIND_PORT, u16::from_be(port));
}

/// `inet_create`/`inet6_create` ask for CAP_NET_RAW for every SOCK_RAW socket; an ICMP echo
/// needs none when the caller's group is in `ping_group_range` and it uses an ICMP datagram
/// socket instead (`ping_init_sock`).
#[inline(always)]
fn note_raw_icmp<M: Kmem>(cfg: &Config, workload: u64) {
    let regs = user_regs();
    let arg = |off| M::read::<u64>(regs, off).unwrap_or(u64::MAX);
    let family = arg(cfg.regs_arg0_off);
    let raw = arg(cfg.regs_arg1_off) & SOCK_TYPE_MASK == SOCK_RAW;
    let protocol = arg(cfg.regs_arg2_off);
    let icmp = (family == AF_INET && protocol == IPPROTO_ICMP)
        || (family == AF_INET6 && protocol == IPPROTO_ICMPV6);
    if raw && icmp {
        note(workload, arg_note::RAW_ICMP, family as u16);
    }
}

#[inline(always)]
fn note(workload: u64, kind: u16, value: u16) {
    let key = ArgNote {
        workload,
        kind,
        value,
        _pad: [0; 4],
    };
    if ARG_NOTES.insert(key, 1u8, BPF_ANY as u64).is_err() {
        bump(stat::MAP_FULL);
    }
}
