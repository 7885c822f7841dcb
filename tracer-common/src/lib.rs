//! Types, names and flag bits shared by the kernel programs (`tracer-ebpf`) and user space
//! (`tracer`). This crate is the only place where the two sides agree on a layout: every
//! `#[repr(C)]` struct here is read by both.
#![no_std]

/// Names of the maps, programs and globals. The string literals appear nowhere else.
pub mod names {
    pub const MAP_TASKS: &str = "TASKS";
    pub const MAP_LIVE: &str = "LIVE";
    pub const MAP_USAGE: &str = "USAGE";
    pub const MAP_PATHS: &str = "PATHS";
    pub const MAP_STACKS: &str = "STACKS";
    pub const MAP_EVENTS: &str = "EVENTS";
    pub const MAP_NS_PENDING: &str = "NS_PENDING";
    pub const MAP_STATS: &str = "STATS";
    pub const MAP_CGROUPS: &str = "CGROUPS";

    pub const PROG_CAP_CAPABLE_RAW_TP: &str = "cap_capable_raw_tp";
    pub const PROG_FORK: &str = "sched_process_fork";
    pub const PROG_EXIT: &str = "sched_process_exit";
    pub const PROG_EXEC: &str = "sched_process_exec";
    pub const PROG_SYS_ENTER: &str = "ns_sys_enter";
    pub const PROG_SYS_EXIT: &str = "ns_sys_exit";

    /// The `Config` global.
    pub const GLOBAL_CONFIG: &str = "CONFIG";
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
}

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

    /// Whether a task name is a container runtime's init.
    pub fn is_runtime_comm(comm: &[u8]) -> bool {
        let mut i = 0;
        while i < RUNTIME_COMM_PREFIXES.len() {
            let p = RUNTIME_COMM_PREFIXES[i];
            if comm.len() >= p.len() {
                let mut j = 0;
                let mut same = true;
                while j < p.len() {
                    if comm[j] != p[j] {
                        same = false;
                    }
                    j += 1;
                }
                if same {
                    return true;
                }
            }
            i += 1;
        }
        false
    }
}

/// Aggregation key of capability checks: one counter per distinct key, in the kernel.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// Workload id (`record`, `run`) or cgroup id (`monitor`).
    pub workload: u64,
    /// Syscall number the check happened in, -1 outside a syscall.
    pub syscall: i32,
    pub cap: u8,
    pub verdict: u8,
    pub scope: u8,
    /// `origin::*`: the workload itself, or its container runtime setting it up.
    pub origin: u8,
}

/// A distinct call path seen for a usage key. Stacks are sampled when a key is new and each
/// time its count reaches a power of two, so a key whose checks come from several call paths
/// shows each of them while the stack walk stays off the hot path.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathKey {
    pub usage: UsageKey,
    /// Id in the stack-trace map.
    pub stack_id: i64,
}

/// Event kinds carried in `EventHeader::kind`.
pub mod kind {
    /// A new (usage key, call path) pair: `Event<CapCheck>`.
    pub const CAP_CHECK: u32 = 1;
    /// A namespace syscall returned: `Event<NsCall>`.
    pub const NS_CALL: u32 = 2;
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

#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct CapCheck {
    pub path: PathKey,
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
}

/// `STATS` array indexes.
pub mod stat {
    /// Ring-buffer reservations that failed (detail lost, counts still exact).
    pub const EVENTS_LOST: u32 = 0;
    /// Stack walks that failed (call path unknown for that sample).
    pub const STACKS_LOST: u32 = 1;
    /// Inserts into `USAGE` or `TASKS` that failed because the map was full.
    pub const MAP_FULL: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Capacity of the kernel maps.
pub mod capacity {
    pub const TASKS: u32 = 65_536;
    pub const USAGE: u32 = 16_384;
    pub const PATHS: u32 = 16_384;
    pub const STACKS: u32 = 4_096;
    pub const EVENTS_BYTES: u32 = 1 << 20;
    pub const NS_PENDING: u32 = 4_096;
    pub const LIVE: u32 = 1_024;
    pub const CGROUPS: u32 = 1_024;
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
}
