//! Types, names and flag bits shared by the kernel programs (`tracer-ebpf`) and user space
//! (`tracer`). This crate is the only place where the two sides agree on a layout: every
//! `#[repr(C)]` struct here is read by both.
#![no_std]

pub mod usage_cache;

/// Names of the maps, programs and globals. The string literals appear nowhere else.
pub mod names {
    pub const MAP_TASKS: &str = "TASKS";
    pub const MAP_CONFINED_CHILDREN: &str = "CONFINED_CHILDREN";
    pub const MAP_LIVE: &str = "LIVE";
    pub const MAP_USAGE: &str = "USAGE";
    pub const MAP_PATHS: &str = "PATHS";
    pub const MAP_EVENTS: &str = "EVENTS";
    pub const MAP_STATS: &str = "STATS";
    pub const MAP_CGROUPS: &str = "CGROUPS";

    pub const MAP_CHECKS_PENDING: &str = "CHECKS_PENDING";
    pub const MAP_POLICIES: &str = "POLICIES";
    pub const MAP_ENFORCE_CGROUPS: &str = "ENFORCE_CGROUPS";
    pub const MAP_DENIALS: &str = "DENIALS";
    pub const MAP_ARG_NOTES: &str = "ARG_NOTES";
    pub const MAP_RUNTIME_EXES: &str = "RUNTIME_EXES";
    pub const MAP_RUNTIME_TASKS: &str = "RUNTIME_TASKS";
    pub const MAP_USAGE_CACHE: &str = "USAGE_CACHE";

    pub const PROG_CAP_CAPABLE_RAW_TP: &str = "cap_capable_raw_tp";
    pub const PROG_CAP_CAPABLE_TP_BTF: &str = "cap_capable_tp_btf";
    pub const PROG_CAP_CAPABLE_FEXIT: &str = "cap_capable_fexit";
    pub const PROG_CAP_CAPABLE_KPROBE: &str = "cap_capable_kprobe";
    pub const PROG_CAP_CAPABLE_KRETPROBE: &str = "cap_capable_kretprobe";
    pub const PROG_ENFORCE_CAPABLE: &str = "enforce_capable";
    pub const PROG_ENFORCE_URING_CREDS: &str = "enforce_uring_creds";
    pub const PROG_ENFORCE_TASK_ALLOC: &str = "enforce_task_alloc";
    pub const PROG_ENFORCE_TASK_FREE: &str = "enforce_task_free";
    pub const PROG_FORK: &str = "task_newtask";
    pub const PROG_EXIT: &str = "sched_process_exit";
    pub const PROG_EXEC: &str = "sched_process_exec";
    pub const PROG_SYS_EXIT: &str = "ns_sys_exit";
    pub const PROG_SYS_EXIT_TP_BTF: &str = "ns_sys_exit_tp_btf";
    /// The namespace-call program on the per-syscall exit tracepoints.
    pub const PROG_NS_SYSCALL_EXIT: &str = "ns_syscall_exit";
    /// The namespace-call programs on the syscalls' own functions (fexit).
    pub const PROG_NS_UNSHARE_FEXIT: &str = "ns_unshare_fexit";
    pub const PROG_NS_SETNS_FEXIT: &str = "ns_setns_fexit";
    pub const PROG_NS_CLONE_FEXIT: &str = "ns_clone_fexit";
    pub const PROG_NS_CLONE3_FEXIT: &str = "ns_clone3_fexit";

    /// The `Config` global.
    pub const GLOBAL_CONFIG: &str = "CONFIG";
    pub const GLOBAL_USAGE_CACHE_MASK: &str = "USAGE_CACHE_MASK";
}

/// Calls to kernel functions (kfuncs) that aya 0.14 and bpf-linker cannot emit: the programs
/// carry each as a call instruction with a placeholder id, which the loader replaces with the
/// function's id in the running kernel's BTF, or with a harmless `r0 = 0` where the kernel has
/// no such function (the programs then take the path `Config` tells them to).
pub mod kfunc {
    /// `void *bpf_rdonly_cast(const void *obj, u32 btf_id)` (kernels >= 6.2): the verifier
    /// replaces the call with a register move and treats the result as a read-only pointer to
    /// the BTF type `btf_id`, whose loads cannot fault.
    pub const RDONLY_CAST: &str = "bpf_rdonly_cast";
    /// The placeholder's immediate ("CAST" in ASCII).
    pub const RDONLY_CAST_PLACEHOLDER: u32 = 0x5453_4143;
    /// The instruction as the programs carry it: `call` (0x85) with src_reg 2
    /// (BPF_PSEUDO_KFUNC_CALL), off 0, imm the placeholder; little-endian.
    pub const fn call_insn(imm: u32) -> u64 {
        ((imm as u64) << 32) | 0x2085
    }
}

/// Load-time configuration of the kernel programs (one global, written by the loader from BTF
/// and the architecture, so one object runs on kernels whose layouts differ).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Offset of `pid` (the thread id) in `struct task_struct`.
    pub task_pid_off: u32,
    /// Offset of `level` in `struct user_namespace` (0 = the initial user namespace).
    pub userns_level_off: u32,
    /// Offset of `real_cred` in `struct task_struct` (the task's own credentials).
    pub task_real_cred_off: u32,
    /// Offset of `comm` (16 bytes) in `struct task_struct`.
    pub task_comm_off: u32,
    /// Offsets of `task_struct.thread_pid`, `pid.level` and `pid.numbers` (the pid in each
    /// namespace level; `struct upid` is { int nr; struct pid_namespace *ns; }, 16 bytes).
    pub task_thread_pid_off: u32,
    pub pid_level_off: u32,
    pub pid_numbers_off: u32,
    /// Offset in `struct pt_regs` of the syscall number (`orig_ax` on x86_64).
    pub regs_syscall_off: u32,
    /// Offsets in `struct pt_regs` of the first two syscall arguments.
    pub regs_arg0_off: u32,
    pub regs_arg1_off: u32,
    /// Syscall numbers of this architecture.
    pub nr_unshare: u32,
    pub nr_setns: u32,
    pub nr_clone: u32,
    pub nr_clone3: u32,
    /// The tgid of captrace itself: never traced, even in monitor mode.
    pub self_tgid: u32,
    /// Non-zero: trace every process on the host, attributed to its cgroup (monitor).
    pub trace_all: u32,
    /// Non-zero (with `trace_all`): only the cgroups listed in `CGROUPS`.
    pub filter_cgroups: u32,
    /// Non-zero: the enforcer also confines the cgroups listed in `ENFORCE_CGROUPS`.
    pub enforce_cgroups: u32,
    /// Non-zero (record of a container client): a thread outside `home_cgroup` is counted by
    /// its cgroup (`CGROUP_WORKLOAD | cgroup id`), so a container started by the recorded
    /// command is counted from its first instruction, whoever started it (dockerd, conmon).
    pub follow_cgroups: u32,
    /// Syscall number of `bind` on this architecture (`ArgNote`).
    pub nr_bind: u32,
    /// The cgroup v2 id captrace (and so the recorded command) started in.
    pub home_cgroup: u64,
    /// Offset in `struct pt_regs` of the third syscall argument.
    pub regs_arg2_off: u32,
    /// Syscall number of `socket` on this architecture (`ArgNote`).
    pub nr_socket: u32,
    /// Offsets along `task->mm->exe_file->f_inode` and of the inode fields that identify an
    /// executable (`RuntimeExe`): `task_struct.mm`, `mm_struct.exe_file`, `file.f_inode`,
    /// `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`, `inode.i_nlink` (0: unknown, an
    /// executable is then never taken for unlinked), `linux_binprm.file`.
    pub task_mm_off: u32,
    pub mm_exe_file_off: u32,
    pub file_inode_off: u32,
    pub inode_ino_off: u32,
    pub inode_sb_off: u32,
    pub sb_dev_off: u32,
    pub inode_nlink_off: u32,
    pub bprm_file_off: u32,
    /// Offset of `tgid` in `struct task_struct` (hooks with a BTF-typed task read the thread
    /// and process ids without the `bpf_get_current_pid_tgid` helper).
    pub task_tgid_off: u32,
    /// Offset of `stack` (the kernel stack's base) in `struct task_struct`.
    pub task_stack_off: u32,
    /// The kernel's BTF id of `struct pt_regs` when the loader made the `bpf_rdonly_cast`
    /// kfunc call of the programs real (`kfunc::RDONLY_CAST_PLACEHOLDER`); 0 when the kernel
    /// lacks the kfunc (before 6.2) and the saved registers are found with the helper.
    pub regs_btf_id: u32,
    pub _pad_end: u32,
}

/// Workload ids with this bit set are cgroup ids (`Config::follow_cgroups`); the others are
/// workloads registered by `record`/`run` (small numbers).
pub const CGROUP_WORKLOAD: u64 = 1 << 63;

/// Verdict of one capability check.
pub mod verdict {
    pub const GRANTED: u8 = 0;
    pub const DENIED: u8 = 1;
}

/// `UsageKey::scope`: in which user namespace the capability was checked.
pub mod scope {
    /// The host's (initial) user namespace: a real host capability.
    pub const INIT_USERNS: u8 = 0;
    /// A user namespace nested below the initial one (e.g. one the workload created).
    pub const NESTED_USERNS: u8 = 1;
    /// The namespace could not be read.
    pub const UNKNOWN: u8 = 2;
}

/// `UsageKey::origin`: who made a check inside a container's cgroup.
pub mod origin {
    /// The workload.
    pub const WORKLOAD: u8 = 0;
    /// The container runtime's own init (`runc:[2:INIT]`, `crun`) before it execs the
    /// workload: it holds the runtime's privileges, not the container's.
    pub const RUNTIME: u8 = 1;
    /// Checked against credentials the task borrowed (`cred != task->real_cred`), e.g.
    /// overlayfs acting with its mounter's credentials (ovl_override_creds): not the task's own
    /// capabilities.
    pub const BORROWED: u8 = 2;

    /// Command names (`comm`) of container runtimes' init processes, by prefix (`runc init`
    /// shows as `runc`, then `runc:[1:CHILD]`, `runc:[2:INIT]`).
    pub const RUNTIME_COMM_PREFIXES: &[&[u8]] = &[b"runc", b"crun"];
    /// Whole command names of runtime processes: runc re-executes itself through
    /// `/proc/self/exe`, so its init is named `exe` until it renames itself; runc may move it
    /// into the container's cgroup before that.
    pub const RUNTIME_COMMS: &[&[u8]] = &[b"exe"];

    fn starts_with(comm: &[u8], p: &[u8]) -> bool {
        if comm.len() < p.len() {
            return false;
        }
        let mut j = 0;
        while j < p.len() {
            if comm[j] != p[j] {
                return false;
            }
            j += 1;
        }
        true
    }

    /// Whether a check is the runtime's: its task is named like a runtime (the cheap first
    /// test, and the only one most checks reach) AND the kernel saw it come from a runtime's
    /// executable (`RUNTIME_TASKS`) or it runs one now (`RUNTIME_EXES`). A workload can rename
    /// itself (`prctl(PR_SET_NAME)`); it cannot make its executable a host runtime binary. The
    /// two later tests are closures so that the kernel reads nothing more for other names.
    #[inline(always)]
    pub fn is_runtime(
        comm: &[u8],
        flagged: impl FnOnce() -> bool,
        runs_runtime_exe: impl FnOnce() -> bool,
    ) -> bool {
        is_runtime_comm(comm) && (flagged() || runs_runtime_exe())
    }

    /// Whether a task name (NUL-padded or not) looks like a container runtime's.
    pub fn is_runtime_comm(comm: &[u8]) -> bool {
        let mut i = 0;
        while i < RUNTIME_COMM_PREFIXES.len() {
            if starts_with(comm, RUNTIME_COMM_PREFIXES[i]) {
                return true;
            }
            i += 1;
        }
        let mut i = 0;
        while i < RUNTIME_COMMS.len() {
            let name = RUNTIME_COMMS[i];
            if starts_with(comm, name) && (comm.len() == name.len() || comm[name.len()] == 0) {
                return true;
            }
            i += 1;
        }
        false
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn knows_runtime_names() {
            assert!(super::is_runtime_comm(b"runc:[2:INIT]\0\0\0"));
            assert!(super::is_runtime_comm(b"crun"));
            assert!(super::is_runtime_comm(b"exe\0\0\0\0\0\0\0\0\0\0\0\0\0"));
            assert!(super::is_runtime_comm(b"exe"));
            assert!(!super::is_runtime_comm(b"executor\0\0\0\0\0\0\0\0"));
            assert!(!super::is_runtime_comm(b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0"));
        }

        #[test]
        fn a_runtime_name_alone_is_not_the_runtime() {
            let runc = b"runc:[2:INIT]\0\0\0";
            // A workload that renamed itself: neither flagged at exec nor running a runtime.
            assert!(!super::is_runtime(runc, || false, || false));
            assert!(super::is_runtime(runc, || true, || false));
            assert!(super::is_runtime(runc, || false, || true));
            // Another name is never the runtime, and costs no further test.
            assert!(!super::is_runtime(
                b"sh",
                || panic!("flag read for a workload name"),
                || panic!("exe read for a workload name")
            ));
        }
    }
}

/// `UsageKey::opts`: the `opts` argument of `cap_capable` (include/linux/security.h), when the
/// hook can read it (fentry, kprobe; the tracepoint does not carry it).
pub mod opts {
    /// Set when the other bits are the kernel's own; clear when the hook could not read them.
    pub const KNOWN: u8 = 0x80;
    /// `CAP_OPT_NOAUDIT`: the caller asks without auditing (a probe, not a need).
    pub const NOAUDIT: u8 = 1 << 1;
    /// `CAP_OPT_INSETID`: the check is made on behalf of a set-id transition.
    pub const INSETID: u8 = 1 << 2;
    /// The bits of the kernel's `opts` kept in the key.
    pub const KERNEL_BITS: u8 = NOAUDIT | INSETID;
}

/// Aggregation key of capability checks: one counter per distinct key, in the kernel.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// Workload id (`record`, `run`) or cgroup id (`monitor`).
    pub workload: u64,
    /// Syscall number the check happened in, -1 outside a syscall.
    pub syscall: i16,
    pub cap: u8,
    pub verdict: u8,
    pub scope: u8,
    /// `origin::*`: the workload itself, or its container runtime setting it up.
    pub origin: u8,
    /// `opts::*`.
    pub opts: u8,
    pub _pad: u8,
}

/// A distinct call path seen for a usage key. Stacks are sampled when a key is new and each
/// time its count reaches a power of two, so a key whose checks come from several call paths
/// shows each of them while the stack walk stays off the hot path.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathKey {
    pub usage: UsageKey,
    /// FNV-1a hash of the call path's return addresses (`CapCheck::frames`), computed in the
    /// kernel; `STACK_LOST` when the walk failed.
    pub stack_hash: u64,
}

/// `PathKey::stack_hash` of a sample whose stack walk failed: the check is still reported, its
/// call path is unknown.
pub const STACK_LOST: u64 = 0;

/// Kernel return addresses kept per sampled call path, innermost first. `cap_capable`'s callers
/// are what the classifier reads; 48 frames hold the deepest paths seen (overlayfs over ext4
/// from a syscall: ~25 frames, with the BPF and tracepoint frames on top).
pub const MAX_FRAMES: usize = 48;

/// Event kinds carried in `EventHeader::kind`.
pub mod kind {
    /// A new (usage key, call path) pair: `Event<CapCheck>`.
    pub const CAP_CHECK: u32 = 1;
    /// A namespace syscall returned: `Event<NsCall>`.
    pub const NS_CALL: u32 = 2;
    /// The enforcer refused (or, in complain mode, reported) a capability: `Event<Denial>`.
    pub const DENIAL: u32 = 3;
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct EventHeader {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    /// The thread's id in its own (innermost) PID namespace: 1 for a container's init.
    pub ns_pid: u32,
    pub comm: [u8; 16],
}

/// Every ring-buffer record: a header and a typed payload.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct Event<T> {
    pub header: EventHeader,
    pub data: T,
}

/// A new (usage key, call path): the path travels with the event, so no stack map (whose hash
/// buckets refuse a second stack that collides with a stored one) can lose it.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct CapCheck {
    pub path: PathKey,
    /// Valid entries of `frames`.
    pub nr_frames: u32,
    pub _pad: u32,
    pub frames: [u64; MAX_FRAMES],
}

/// Arguments of a `cap_capable` call between the kprobe and the kretprobe, per thread.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct PendingCheck {
    pub workload: u64,
    pub cred: u64,
    pub target_ns: u64,
    pub cap: u32,
    pub opts: u32,
}

/// What the enforcer does with a capability outside the allowed set.
pub mod mode {
    /// Refuse it (-EPERM) and report it.
    pub const ENFORCE: u8 = 1;
    /// Allow it and report it.
    pub const COMPLAIN: u8 = 2;
}

/// The enforcer's policy for one workload.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Bit N set: capability N is allowed.
    pub allowed: u64,
    /// `mode::*`.
    pub mode: u8,
    /// Zero until the workload's first exec (`run` sets its workload up with captrace's own
    /// privileges first); non-zero from the start for `enforce`.
    pub armed: u8,
    pub _pad: [u8; 6],
}

impl Policy {
    pub const fn allows(&self, cap: u32) -> bool {
        cap < 64 && self.allowed & (1 << cap) != 0
    }
}

/// A capability the enforcer refused or reported.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct Denial {
    pub workload: u64,
    pub syscall: i32,
    pub cap: u8,
    /// `scope::*` of the user namespace the capability was asked in.
    pub scope: u8,
    /// `mode::*` in force.
    pub mode: u8,
    /// `opts::*` of the check.
    pub opts: u8,
    /// `refused::*`: what was refused.
    pub what: u8,
    pub _pad: [u8; 7],
}

/// `Denial::what`.
pub mod refused {
    /// A capability (`Denial::cap`).
    pub const CAPABILITY: u8 = 0;
    /// An io_uring personality: credentials registered with IORING_REGISTER_PERSONALITY, which
    /// a request would run with instead of the task's own (`Denial::cap` is meaningless).
    pub const URING_PERSONALITY: u8 = 1;
    /// A fork (or new thread) of a confined task, refused with EAGAIN because `TASKS` had no
    /// room for the child: untracked, it would have run unconfined (`Denial::cap` is
    /// meaningless).
    pub const UNTRACKABLE_TASK: u8 = 2;
}

/// Which namespace syscall an `NsCall` reports.
pub mod ns_syscall {
    pub const UNSHARE: u32 = 1;
    pub const SETNS: u32 = 2;
    pub const CLONE: u32 = 3;
    pub const CLONE3: u32 = 4;
}

/// Arguments of a namespace syscall, stored at entry and completed at exit.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct NsCall {
    pub workload: u64,
    pub syscall: u32,
    /// setns: the file descriptor.
    pub fd: i32,
    /// unshare/clone/clone3: CLONE_* flags; setns: the nstype argument.
    pub flags: u64,
    /// The syscall's return value.
    pub ret: i64,
    /// `origin::*` of the calling task (as for a capability check).
    pub origin: u8,
    pub _pad: [u8; 7],
}

/// An executable of a container runtime (runc, crun, conmon, containerd-shim...), as the
/// kernel identifies it: `inode->i_sb->s_dev` (the kernel's encoding, major << 20 | minor)
/// and `inode->i_ino`. User space fills `RUNTIME_EXES` with these before attaching.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeExe {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

impl RuntimeExe {
    /// From a user-space `st_dev` (glibc's encoding) and `st_ino`.
    pub const fn from_stat(major: u32, minor: u32, ino: u64) -> RuntimeExe {
        RuntimeExe {
            dev: (major << 20) | (minor & 0xf_ffff),
            _pad: 0,
            ino,
        }
    }
}

/// `RUNTIME_TASKS` values.
pub mod runtime_task {
    /// The thread runs a runtime's code: it exec'd a runtime executable, re-exec'd itself
    /// from an unlinked copy (runc's memfd, cloned_binary.c), or was created by such a thread.
    pub const RUNTIME: u8 = 1;
}

/// What the arguments of a check's syscall showed (`ArgNote::kind`), for the safer
/// alternatives to a capability (`tracer/src/alternatives.rs`).
pub mod arg_note {
    /// `bind` checked CAP_NET_BIND_SERVICE (a port below
    /// `net.ipv4.ip_unprivileged_port_start`); value: the port, host byte order.
    pub const BIND_PORT: u16 = 1;
    /// `socket(AF_INET|AF_INET6, SOCK_RAW, IPPROTO_ICMP|IPPROTO_ICMPV6)` checked CAP_NET_RAW;
    /// value: the address family.
    pub const RAW_ICMP: u16 = 2;
}

/// One distinct thing a workload's syscall arguments showed (`arg_note::*`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArgNote {
    pub workload: u64,
    pub kind: u16,
    pub value: u16,
    pub _pad: [u8; 4],
}

/// `STATS` array indexes.
pub mod stat {
    /// Ring-buffer reservations that failed (detail lost, counts still exact).
    pub const EVENTS_LOST: u32 = 0;
    /// Stack walks that failed (call path unknown for that sample; the check is still reported).
    pub const STACKS_LOST: u32 = 1;
    /// Inserts into `USAGE` or `TASKS` that failed because the map was full.
    pub const MAP_FULL: u32 = 2;
    /// Forks of confined tasks refused because `TASKS` was full (`refused::UNTRACKABLE_TASK`).
    pub const FORKS_REFUSED: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Capacity of the kernel maps.
pub mod capacity {
    pub const TASKS: u32 = 65_536;
    /// Tasks created by confined threads (`CONFINED_CHILDREN`): as many as `TASKS` holds.
    pub const CONFINED_CHILDREN: u32 = TASKS;
    /// Environment variable that overrides `TASKS` and `CONFINED_CHILDREN` at load time (tests
    /// fill the maps with it).
    pub const TASKS_ENV: &str = "CAPTRACE_TASKS_CAPACITY";
    pub const USAGE: u32 = 16_384;
    pub const PATHS: u32 = 16_384;
    pub const EVENTS_BYTES: u32 = 1 << 20;
    pub const LIVE: u32 = 1_024;
    pub const CGROUPS: u32 = 1_024;
    pub const CHECKS_PENDING: u32 = 4_096;
    pub const POLICIES: u32 = 64;
    pub const ENFORCE_CGROUPS: u32 = 1_024;
    pub const DENIALS: u32 = 4_096;
    pub const ARG_NOTES: u32 = 1_024;
    /// Runtime executables (a few per runtime installed).
    pub const RUNTIME_EXES: u32 = 64;
    /// Threads of runtime processes (dockerd and containerd have dozens each).
    pub const RUNTIME_TASKS: u32 = 16_384;
}

/// The namespace `CLONE_*` bits (include/uapi/linux/sched.h).
pub mod clone_flags {
    pub const NEWTIME: u64 = 0x0000_0080;
    pub const NEWNS: u64 = 0x0002_0000;
    pub const NEWCGROUP: u64 = 0x0200_0000;
    pub const NEWUTS: u64 = 0x0400_0000;
    pub const NEWIPC: u64 = 0x0800_0000;
    pub const NEWUSER: u64 = 0x1000_0000;
    pub const NEWPID: u64 = 0x2000_0000;
    pub const NEWNET: u64 = 0x4000_0000;
    pub const ALL_NS: u64 =
        NEWTIME | NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain `#[repr(C)]` data with no padding holes that matter and no pointers.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for UsageKey {}
    unsafe impl aya::Pod for PathKey {}
    unsafe impl aya::Pod for NsCall {}
    unsafe impl aya::Pod for Policy {}
    unsafe impl aya::Pod for ArgNote {}
    unsafe impl aya::Pod for RuntimeExe {}
    unsafe impl aya::Pod for crate::usage_cache::CountSlot {}
}
