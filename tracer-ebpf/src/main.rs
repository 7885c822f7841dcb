//! Kernel side of captrace. Thin programs: filter first, aggregate in maps, send only what is
//! new. No policy lives here.
// Built for the host too (workspace clippy and tests unify features), where it is an empty
// program.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user,
        bpf_task_pt_regs, generated::bpf_get_stack,
    },
    macros::{btf_tracepoint, fexit, kprobe, kretprobe, lsm, map, raw_tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        BtfTracePointContext, FExitContext, LsmContext, ProbeContext, RawTracePointContext,
        RetProbeContext, tracing::StackIdContext,
    },
};
use tracer_common::{
    CGROUP_WORKLOAD, CapCheck, Config, Denial, Event, EventHeader, MAX_FRAMES, NsCall, PathKey,
    PendingCheck, Policy, STACK_LOST, UsageKey, capacity, clone_flags, kind, mode, ns_syscall,
    opts, origin, scope, stat, verdict,
};

/// Written by the loader before the programs are loaded.
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    task_pid_off: 0,
    userns_level_off: 0,
    task_real_cred_off: 0,
    task_comm_off: 0,
    task_thread_pid_off: 0,
    pid_level_off: 0,
    pid_numbers_off: 0,
    regs_syscall_off: 0,
    regs_arg0_off: 0,
    regs_arg1_off: 0,
    nr_unshare: 0,
    nr_setns: 0,
    nr_clone: 0,
    nr_clone3: 0,
    self_tgid: 0,
    trace_all: 0,
    filter_cgroups: 0,
    enforce_cgroups: 0,
    follow_cgroups: 0,
    _pad: 0,
    home_cgroup: 0,
};

// Hash maps are allocated on insert: preallocating them costs tens of milliseconds at start.
const NO_PREALLOC: u32 = BPF_F_NO_PREALLOC;

/// Thread id → workload id. Children inherit their parent's entry at fork.
#[map]
static TASKS: HashMap<u32, u64> = HashMap::with_max_entries(capacity::TASKS, NO_PREALLOC);

// Counters are per-CPU maps: BPF has no portable atomic add from Rust, and per-CPU slots are
// exact without one. User space sums the slots.

/// Workload id → threads started minus threads exited, per CPU (the sum is the live count).
#[map]
static LIVE: PerCpuHashMap<u64, i64> = PerCpuHashMap::with_max_entries(capacity::LIVE, NO_PREALLOC);

/// Exact count of capability checks per key, per CPU.
#[map]
static USAGE: PerCpuHashMap<UsageKey, u64> =
    PerCpuHashMap::with_max_entries(capacity::USAGE, NO_PREALLOC);

/// Sampled call paths per key (value: number of samples that hit this path).
#[map]
static PATHS: HashMap<PathKey, u64> = HashMap::with_max_entries(capacity::PATHS, NO_PREALLOC);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(capacity::EVENTS_BYTES, 0);

/// Cgroup ids to trace when `Config::filter_cgroups` is set (monitor --container).
#[map]
static CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(capacity::CGROUPS, NO_PREALLOC);

/// `cap_capable` arguments between its kprobe and its kretprobe, per thread.
#[map]
static CHECKS_PENDING: HashMap<u32, PendingCheck> =
    HashMap::with_max_entries(capacity::CHECKS_PENDING, NO_PREALLOC);

/// Workload id → the enforcer's policy.
#[map]
static POLICIES: HashMap<u64, Policy> = HashMap::with_max_entries(capacity::POLICIES, NO_PREALLOC);

/// Cgroup id → workload id, for cgroups the enforcer confines (`enforce --container`).
#[map]
static ENFORCE_CGROUPS: HashMap<u64, u64> =
    HashMap::with_max_entries(capacity::ENFORCE_CGROUPS, NO_PREALLOC);

/// Exact counts of what the enforcer refused or reported, per CPU (verdict: denied when
/// refused, granted when only reported).
#[map]
static DENIALS: PerCpuHashMap<UsageKey, u64> =
    PerCpuHashMap::with_max_entries(capacity::DENIALS, NO_PREALLOC);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[inline(always)]
fn config() -> Config {
    // SAFETY: CONFIG lives in .rodata, which the loader fills before load; a volatile read keeps
    // the compiler from folding the zero initialiser.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// The workload the current thread belongs to, or None when it is not traced.
#[inline(always)]
fn current_workload(cfg: &Config, pid_tgid: u64) -> Option<u64> {
    if cfg.trace_all != 0 {
        if (pid_tgid >> 32) as u32 == cfg.self_tgid {
            return None;
        }
        // SAFETY: helper without preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        // SAFETY: presence test only.
        if cfg.filter_cgroups != 0 && unsafe { CGROUPS.get(cgroup) }.is_none() {
            return None;
        }
        return Some(cgroup);
    }
    if cfg.follow_cgroups != 0 {
        if (pid_tgid >> 32) as u32 == cfg.self_tgid {
            return None;
        }
        // SAFETY: helper without preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        if cgroup != cfg.home_cgroup {
            return Some(CGROUP_WORKLOAD | cgroup);
        }
    }
    // SAFETY: the value is a plain u64 copied out immediately.
    unsafe { TASKS.get(pid_tgid as u32) }.copied()
}

#[inline(always)]
fn header(kind: u32, pid_tgid: u64) -> EventHeader {
    EventHeader {
        kind,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ns_pid: current_ns_pid(&config()),
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// `task->thread_pid->numbers[task->thread_pid->level].nr`: the thread's id as its own PID
/// namespace sees it (include/linux/pid.h). Only read for events, never per check.
#[inline(always)]
fn current_ns_pid(cfg: &Config) -> u32 {
    // SAFETY: probe reads along BTF offsets; a failed read gives 0.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(pid) =
            bpf_probe_read_kernel(task.add(cfg.task_thread_pid_off as usize) as *const u64)
        else {
            return 0;
        };
        let pid = pid as *const u8;
        let level =
            bpf_probe_read_kernel(pid.add(cfg.pid_level_off as usize) as *const u32).unwrap_or(0);
        let upid = pid.add(cfg.pid_numbers_off as usize + (level.min(31) as usize) * 16);
        bpf_probe_read_kernel(upid as *const i32)
            .map(|n| n as u32)
            .unwrap_or(0)
    }
}

/// How a program reads kernel memory. Programs whose arguments are BTF-typed pointers (tp_btf,
/// fexit, lsm) load fields directly: the verifier makes each load fault-safe inline. Raw
/// tracepoints and kprobes see plain numbers and must call the probe-read helper, which costs
/// tens of nanoseconds per read (measured: the raw sys_exit program added ~170 ns to every
/// syscall of the host, its tp_btf twin ~80).
trait Kmem {
    /// The current task.
    fn current_task() -> *const u8;
    /// The `T` at `base + off`, or None when it cannot be read.
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T>;
}

/// Direct loads through BTF-typed pointers.
struct Typed;

/// `bpf_probe_read_kernel`, for pointers the verifier knows only as numbers.
struct Probed;

impl Kmem for Typed {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: helper without preconditions; the result is a trusted task pointer.
        unsafe { bpf_get_current_task_btf() as *const u8 }
    }

    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` is a BTF-typed kernel pointer and `off` a constant from CONFIG (a
        // frozen map): the verifier checks the field against BTF and turns the load into one
        // that cannot fault.
        Some(unsafe { core::ptr::read(base.add(off as usize) as *const T) })
    }
}

impl Kmem for Probed {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: helper without preconditions.
        unsafe { bpf_get_current_task() as *const u8 }
    }

    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        // SAFETY: a probe read cannot fault; a bad address gives an error.
        unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.ok()
    }
}

/// Whether the checked credentials are not the task's own (overlayfs and other kernel code
/// act with borrowed credentials through override_creds).
#[inline(always)]
fn borrowed<M: Kmem>(cfg: &Config, cred: u64) -> bool {
    let real = M::read::<u64>(M::current_task(), cfg.task_real_cred_off).unwrap_or(cred);
    real != cred
}

/// The syscall the current task is in, read from its saved user registers.
#[inline(always)]
fn current_syscall<M: Kmem>(cfg: &Config) -> i32 {
    // SAFETY: helpers on the current task; pt_regs sits at a fixed place on its kernel stack
    // (task_pt_regs) and the result is a BTF-typed pointer.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    M::read::<i64>(regs, cfg.regs_syscall_off)
        .map(|nr| nr as i32)
        .unwrap_or(-1)
}

#[inline(always)]
fn userns_scope<M: Kmem>(cfg: &Config, ns: u64) -> u8 {
    if ns == 0 {
        return scope::UNKNOWN;
    }
    match M::read::<i32>(ns as *const u8, cfg.userns_level_off) {
        Some(0) => scope::INIT_USERNS,
        Some(_) => scope::NESTED_USERNS,
        None => scope::UNKNOWN,
    }
}

/// One `cap_capable` call as a hook saw it.
struct CheckArgs {
    cred: u64,
    target_ns: u64,
    cap: u64,
    /// `opts::*` (KNOWN set when the hook read the kernel's `opts`).
    opts: u8,
    ret: i32,
}

/// Counts one capability check of a traced thread, and samples its call path when the key is
/// new or its count reached a power of two. Every hook ends here.
#[inline(always)]
fn on_check<M: Kmem, C: StackIdContext>(
    ctx: &C,
    cfg: &Config,
    workload: u64,
    pid_tgid: u64,
    c: CheckArgs,
) {
    let key = UsageKey {
        workload,
        syscall: current_syscall::<M>(cfg) as i16,
        cap: c.cap as u8,
        verdict: if c.ret == 0 {
            verdict::GRANTED
        } else {
            verdict::DENIED
        },
        scope: userns_scope::<M>(cfg, c.target_ns),
        origin: if borrowed::<M>(cfg, c.cred) {
            origin::BORROWED
        } else {
            origin_of::<M>(cfg, workload)
        },
        opts: c.opts,
        _pad: 0,
    };
    if count_check(&USAGE, &key) {
        sample_path(ctx, key, pid_tgid);
    }
}

/// `capability:cap_capable`: TP_PROTO(cred, target_ns, capable_ns, cap, ret)
/// (include/trace/events/capability.h, kernels >= 6.14). It does not carry `opts`.
#[inline(always)]
fn on_tracepoint<M: Kmem, C: StackIdContext>(ctx: &C, arg: impl Fn(usize) -> u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    let Some(workload) = current_workload(&cfg, pid_tgid) else {
        return;
    };
    let args = CheckArgs {
        cred: arg(0),
        target_ns: arg(1),
        cap: arg(3),
        opts: 0,
        ret: arg(4) as i32,
    };
    on_check::<M, C>(ctx, &cfg, workload, pid_tgid, args);
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

/// The kernel's `opts` as kept in a key.
#[inline(always)]
fn known_opts(raw: u64) -> u8 {
    opts::KNOWN | (raw as u8 & opts::KERNEL_BITS)
}

/// fexit on `int cap_capable(const struct cred *cred, struct user_namespace *ns, int cap,
/// unsigned int opts)` (security/commoncap.c, every kernel since 5.1): the arguments, `opts`
/// included, and the return value in one program.
#[fexit(function = "cap_capable")]
pub fn cap_capable_fexit(ctx: FExitContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cfg = config();
    let Some(workload) = current_workload(&cfg, pid_tgid) else {
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
    on_check::<Typed, _>(&ctx, &cfg, workload, pid_tgid, args);
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
    on_check::<Probed, _>(&ctx, &cfg, p.workload, pid_tgid, args);
    0
}

/// The workload whose policy applies to the current thread: its own when `run` or `enforce
/// --pid` registered it, else its cgroup's (`enforce --container`).
#[inline(always)]
fn enforced_workload(cfg: &Config, pid_tgid: u64) -> Option<u64> {
    // SAFETY: values copied out immediately.
    if let Some(w) = unsafe { TASKS.get(pid_tgid as u32) } {
        return Some(*w);
    }
    if cfg.enforce_cgroups == 0 {
        return None;
    }
    // SAFETY: helper without preconditions; value copied out.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    unsafe { ENFORCE_CGROUPS.get(cgroup) }.copied()
}

const EPERM: i32 = 1;

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
    let Some(workload) = enforced_workload(&cfg, pid_tgid) else {
        return 0;
    };
    // SAFETY: value copied out immediately.
    let Some(policy) = (unsafe { POLICIES.get(workload) }).copied() else {
        return 0;
    };
    let cap: u64 = ctx.arg(2);
    let cap = (cap & 0xff) as u32;
    if policy.armed == 0 || policy.allows(cap) {
        return 0;
    }
    // Kernel code acting with credentials it borrowed (overlayfs reading its own xattrs as
    // its mounter) is not the workload using a capability: refusing it would break the file
    // system under the workload.
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
        match EVENTS.reserve::<Event<Denial>>(0) {
            Some(mut entry) => {
                entry.write(Event {
                    header: header(kind::DENIAL, pid_tgid),
                    data: denial,
                });
                entry.submit(0);
            }
            None => bump(stat::EVENTS_LOST),
        }
    }
    if refuse { -EPERM } else { 0 }
}

/// In monitor mode, checks made by a container runtime's init (before it execs the workload,
/// with the runtime's privileges) are kept apart from the workload's. The name is read from
/// `task->comm` (a direct load with BTF pointers, cheaper than `bpf_get_current_comm`).
#[inline(always)]
fn origin_of<M: Kmem>(cfg: &Config, workload: u64) -> u8 {
    if cfg.trace_all == 0 && workload & CGROUP_WORKLOAD == 0 {
        return origin::WORKLOAD;
    }
    match M::read::<[u8; 16]>(M::current_task(), cfg.task_comm_off) {
        Some(comm) if origin::is_runtime_comm(&comm) => origin::RUNTIME,
        _ => origin::WORKLOAD,
    }
}

/// Adds one to the key's exact count. True when a call path should be sampled: the key is new
/// or its count reached a power of two.
#[inline(always)]
fn count_check(map: &PerCpuHashMap<UsageKey, u64>, key: &UsageKey) -> bool {
    if let Some(p) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live map value; nothing else writes it while we run.
        let n = unsafe {
            *p += 1;
            *p
        };
        return n & (n - 1) == 0;
    }
    match map.insert(key, 1u64, BPF_NOEXIST as u64) {
        Ok(()) => true,
        Err(_) => {
            // Another CPU inserted it first, or the map is full.
            match map.get_ptr_mut(key) {
                // SAFETY: as above.
                Some(p) => unsafe { *p += 1 },
                None => bump(stat::MAP_FULL),
            }
            false
        }
    }
}

/// Sends the current call path of a key, once per distinct path. The frames are walked straight
/// into the ring-buffer record (`bpf_get_stack`) and identified by their hash: a stack-trace map
/// would refuse a path whose bucket another path holds (a hash collision, EEXIST), and the check
/// would never be shown. A failed walk still sends the check, with its path marked lost.
#[inline(always)]
fn sample_path<C: StackIdContext>(ctx: &C, usage: UsageKey, pid_tgid: u64) {
    let Some(mut entry) = EVENTS.reserve::<Event<CapCheck>>(0) else {
        bump(stat::EVENTS_LOST);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved record of the right size; `frames` is a field of it,
    // and the helper writes at most its size in bytes.
    let walked = unsafe {
        let frames = core::ptr::addr_of_mut!((*event).data.frames) as *mut u64;
        let bytes = bpf_get_stack(ctx.as_ptr(), frames as *mut _, (MAX_FRAMES * 8) as u32, 0);
        if bytes < 0 {
            None
        } else {
            Some((frames, (bytes as usize / 8).min(MAX_FRAMES)))
        }
    };
    let (stack_hash, nr_frames) = match walked {
        // FNV-1a over the addresses; never STACK_LOST.
        Some((frames, n)) => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let mut i = 0;
            while i < MAX_FRAMES {
                if i >= n {
                    break;
                }
                // SAFETY: i < n <= MAX_FRAMES, written by the helper above.
                h = (h ^ unsafe { *frames.add(i) }).wrapping_mul(0x0000_0100_0000_01b3);
                i += 1;
            }
            (if h == STACK_LOST { 1 } else { h }, n as u32)
        }
        None => {
            bump(stat::STACKS_LOST);
            (STACK_LOST, 0)
        }
    };
    let path = PathKey { usage, stack_hash };
    if let Some(p) = PATHS.get_ptr_mut(path) {
        // SAFETY: live map value; a lost increment here only affects a sample count.
        unsafe { *p += 1 };
        entry.discard(0);
        return;
    }
    if PATHS.insert(path, 1u64, BPF_NOEXIST as u64).is_err() {
        // Another CPU sent this path first, or the map is full.
        if PATHS.get_ptr_mut(path).is_none() {
            bump(stat::MAP_FULL);
        }
        entry.discard(0);
        return;
    }
    // SAFETY: every field but `frames` is written here; the helper wrote `nr_frames` of those.
    unsafe {
        core::ptr::addr_of_mut!((*event).header).write(header(kind::CAP_CHECK, pid_tgid));
        core::ptr::addr_of_mut!((*event).data.path).write(path);
        core::ptr::addr_of_mut!((*event).data.nr_frames).write(nr_frames);
        core::ptr::addr_of_mut!((*event).data._pad).write(0);
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

#[inline(always)]
fn live_add(workload: u64, delta: i64) {
    match LIVE.get_ptr_mut(workload) {
        // SAFETY: this CPU's slot of a live map value.
        Some(p) => unsafe { *p += delta },
        None => {
            if LIVE.insert(workload, delta, BPF_NOEXIST as u64).is_err()
                && let Some(p) = LIVE.get_ptr_mut(workload)
            {
                // SAFETY: as above.
                unsafe { *p += delta };
            }
        }
    }
}

/// `task->pid` (the thread id) of a task pointer a raw tracepoint handed us.
#[inline(always)]
fn task_pid(cfg: &Config, task: u64) -> Option<u32> {
    // SAFETY: probe read at the BTF offset of `pid`; cannot fault.
    unsafe {
        bpf_probe_read_kernel((task as *const u8).add(cfg.task_pid_off as usize) as *const i32)
    }
    .ok()
    .map(|p| p as u32)
}

/// `task_newtask`, raw: TP_PROTO(task, clone_flags), fired by copy_process() for every new
/// task, before it first runs: a child (process or thread) inherits the workload of the thread
/// that created it. `sched_process_fork` would miss the io_uring worker and SQPOLL threads,
/// which create_io_thread() makes without kernel_clone(): work a workload hands to io_uring
/// (an openat forced async with IOSQE_ASYNC) would then be nobody's.
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn task_newtask(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    if cfg.trace_all != 0 {
        return 0;
    }
    let parent = bpf_get_current_pid_tgid() as u32;
    let Some(child) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(parent) }).copied() else {
        return 0;
    };
    if TASKS.insert(child, workload, 0).is_ok() {
        live_add(workload, 1);
    } else {
        bump(stat::MAP_FULL);
    }
    0
}

/// `sched_process_exit`, raw: TP_PROTO(p, ...). Fires for every exiting thread, before it
/// becomes a zombie.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    if cfg.trace_all != 0 {
        return 0;
    }
    let Some(pid) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(pid) }).copied() else {
        return 0;
    };
    if TASKS.remove(pid).is_ok() {
        live_add(workload, -1);
    }
    0
}

/// `sched_process_exec`, raw: TP_PROTO(p, old_pid, bprm). A non-leader thread that execs takes
/// over the leader's id (de_thread), so its entry moves to the new id.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    if cfg.trace_all != 0 {
        return 0;
    }
    let old: u64 = ctx.arg(1);
    let old = old as u32;
    let Some(pid) = task_pid(&cfg, ctx.arg(0)) else {
        return 0;
    };
    arm_policy(old);
    if pid == old {
        return 0;
    }
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(old) }).copied() else {
        return 0;
    };
    let _ = TASKS.remove(old);
    if TASKS.insert(pid, workload, 0).is_err() {
        bump(stat::MAP_FULL);
        live_add(workload, -1);
    }
    0
}

/// A workload's policy takes effect at its first exec: until then the process is captrace
/// setting the workload up.
#[inline(always)]
fn arm_policy(tid: u32) {
    // SAFETY: value copied out immediately.
    let Some(workload) = (unsafe { TASKS.get(tid) }).copied() else {
        return;
    };
    if let Some(p) = POLICIES.get_ptr_mut(workload) {
        // SAFETY: a live map value; a racing exec writes the same byte.
        unsafe { (*p).armed = 1 };
    }
}

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

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
