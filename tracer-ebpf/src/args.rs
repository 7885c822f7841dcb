//! What a check's syscall arguments say that its key does not: the port of a `bind` that needed
//! CAP_NET_BIND_SERVICE, so user space can give `net.ipv4.ip_unprivileged_port_start` instead.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs},
};
use tracer_common::{BindPort, Config, UsageKey};

use crate::{
    kmem::Kmem,
    maps::{BIND_PORTS, bump},
};

/// `CAP_NET_BIND_SERVICE` (include/uapi/linux/capability.h).
const CAP_NET_BIND_SERVICE: u8 = 10;

/// Notes the port of the `bind` this check is made in. The kernel asks for the capability in
/// `__inet_bind`/`__inet6_bind` (`inet_port_requires_bind_service`) only for a port below
/// `ip_unprivileged_port_start`, after copying the address in; the port sits at offset 2 of
/// both `sockaddr_in` and `sockaddr_in6`, in network byte order, and the caller's copy is
/// still mapped while the syscall runs.
#[inline(always)]
pub(crate) fn note_bind_port<M: Kmem>(cfg: &Config, key: &UsageKey) {
    if key.cap != CAP_NET_BIND_SERVICE || key.syscall as i32 != cfg.nr_bind as i32 {
        return;
    }
    // SAFETY: helpers on the current task; the result is a BTF-typed pointer to its saved
    // user registers (as `kmem::current_syscall`).
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    let Some(addr) = M::read::<u64>(regs, cfg.regs_arg1_off) else {
        return;
    };
    // SAFETY: a probe read of user memory cannot fault; a bad address gives an error.
    let Ok(port) = (unsafe { bpf_probe_read_user((addr + 2) as *const u16) }) else {
        return;
    };
    let key = BindPort {
        workload: key.workload,
        port: u16::from_be(port),
        _pad: [0; 6],
    };
    if BIND_PORTS.insert(key, 1u8, BPF_ANY as u64).is_err() {
        bump(tracer_common::stat::MAP_FULL);
    }
}
