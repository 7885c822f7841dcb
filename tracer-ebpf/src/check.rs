//! What every capability-check hook shares: whose check it is, its key, its exact count and
//! the sampling of its call path.
use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::bpf_get_stack,
    },
    maps::PerCpuHashMap,
    programs::tracing::StackIdContext,
};
use tracer_common::{
    CGROUP_WORKLOAD, CapCheck, Config, Event, EventHeader, MAX_FRAMES, PathKey, STACK_LOST,
    UsageKey, kind, opts, origin, stat, verdict,
};

use crate::{
    kmem::{Kmem, borrowed_by, config, current_ns_pid, syscall_of, userns_scope},
    maps::{CGROUPS, EVENTS, PATHS, TASKS, USAGE, USAGE_CACHE, bump},
};

/// The workload the current thread belongs to, or None when it is not traced.
#[inline(always)]
pub(crate) fn current_workload(cfg: &Config, pid_tgid: u64) -> Option<u64> {
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

/// `current_workload` for a hook that holds the current task (`M::current_task`): with a
/// BTF-typed task the ids are loads from it, not a helper call.
#[inline(always)]
pub(crate) fn current_workload_in<M: Kmem>(cfg: &Config, task: *const u8) -> Option<u64> {
    current_workload(cfg, M::current_pid_tgid(cfg, task))
}

#[inline(always)]
pub(crate) fn header(kind: u32, pid_tgid: u64) -> EventHeader {
    EventHeader {
        kind,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ns_pid: current_ns_pid(&config()),
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// Sends one event of `kind` carrying `data`; a full ring counts it as lost
/// (`stat::EVENTS_LOST`).
#[inline(always)]
pub(crate) fn send_event<T: 'static>(kind: u32, pid_tgid: u64, data: T) {
    match EVENTS.reserve::<Event<T>>(0) {
        Some(mut entry) => {
            entry.write(Event {
                header: header(kind, pid_tgid),
                data,
            });
            entry.submit(0);
        }
        None => bump(stat::EVENTS_LOST),
    }
}

/// One `cap_capable` call as a hook saw it.
pub(crate) struct CheckArgs {
    pub(crate) cred: u64,
    pub(crate) target_ns: u64,
    pub(crate) cap: u64,
    /// `opts::*` (KNOWN set when the hook read the kernel's `opts`).
    pub(crate) opts: u8,
    pub(crate) ret: i32,
}

/// Counts one capability check of a traced thread (`task` as `M::current_task` gave it), and
/// samples its call path when the key is new or its count reached a power of two. Every hook
/// ends here.
#[inline(always)]
pub(crate) fn on_check<M: Kmem, C: StackIdContext>(
    ctx: &C,
    cfg: &Config,
    workload: u64,
    task: *const u8,
    c: CheckArgs,
) {
    let key = UsageKey {
        workload,
        syscall: syscall_of::<M>(cfg, task) as i16,
        cap: c.cap as u8,
        verdict: if c.ret == 0 {
            verdict::GRANTED
        } else {
            verdict::DENIED
        },
        scope: userns_scope::<M>(cfg, c.target_ns),
        origin: if borrowed_by::<M>(cfg, task, c.cred) {
            origin::BORROWED
        } else {
            origin_of::<M>(cfg, task, workload)
        },
        opts: c.opts,
        _pad: 0,
    };
    crate::args::note_args::<M>(cfg, &key);
    if count_usage(&key) {
        sample_path(ctx, key, bpf_get_current_pid_tgid());
    }
}

/// The kernel's `opts` as kept in a key.
#[inline(always)]
pub(crate) fn known_opts(raw: u64) -> u8 {
    opts::KNOWN | (raw as u8 & opts::KERNEL_BITS)
}

/// In monitor mode, checks made by a container runtime's init (before it execs the workload,
/// with the runtime's privileges) are kept apart from the workload's. The name is read from
/// `task->comm` (a direct load with BTF pointers, cheaper than `bpf_get_current_comm`) and is
/// only the first filter: a workload can take a runtime's name, so a task so named is the
/// runtime's only if `runtime.rs` says its code is (`origin::is_runtime`).
#[inline(always)]
pub(crate) fn origin_of<M: Kmem>(cfg: &Config, task: *const u8, workload: u64) -> u8 {
    if cfg.trace_all == 0 && workload & CGROUP_WORKLOAD == 0 {
        return origin::WORKLOAD;
    }
    match M::read::<[u8; 16]>(task, cfg.task_comm_off) {
        Some(comm)
            if origin::is_runtime(&comm, crate::runtime::current_flagged, || {
                crate::runtime::current_runs_runtime_exe(cfg)
            }) =>
        {
            origin::RUNTIME
        }
        _ => origin::WORKLOAD,
    }
}

/// `usage_cache::SLOTS - 1`, or less when a test asks for fewer slots; written by the loader.
#[unsafe(no_mangle)]
static USAGE_CACHE_MASK: u32 = 0;

/// Adds one to the key's exact count: in this CPU's cache slot of the key when the key owns it
/// or the slot is free, in `USAGE` otherwise. True when a call path should be sampled: the key
/// is new on this CPU or its count on this CPU reached a power of two (as `count_check`).
#[inline(always)]
pub(crate) fn count_usage(key: &UsageKey) -> bool {
    let [workload, rest] = key.words();
    // Workload 0 is never cached: user space reads a zero workload as a slot being claimed.
    if workload != 0
        // SAFETY: a .rodata global the loader fills before load; read volatile so the compiler
        // does not fold its zero initialiser.
        && let Some(slot) = USAGE_CACHE.get_ptr_mut(
            key.cache_slot() & unsafe { core::ptr::read_volatile(&USAGE_CACHE_MASK) },
        )
    {
        let words = slot as *mut u64;
        // SAFETY: this CPU's slot of a live array value (`CountSlot`: the key's two words,
        // then the count); nothing else writes it while we run.
        unsafe {
            let count = core::ptr::addr_of_mut!((*slot).count);
            if *count == 0 {
                // Claimed in the order user space relies on (`usage_cache::held`).
                words.add(1).write_volatile(rest);
                words.write_volatile(workload);
                count.write_volatile(1);
                return true;
            }
            if *words == workload && *words.add(1) == rest {
                let n = *count + 1;
                *count = n;
                return n & (n - 1) == 0;
            }
        }
    }
    count_check(&USAGE, key)
}

/// Adds one to the key's exact count in a per-CPU hash map. True when a call path should be
/// sampled: the key is new or its count reached a power of two.
#[inline(always)]
pub(crate) fn count_check(map: &PerCpuHashMap<UsageKey, u64>, key: &UsageKey) -> bool {
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
pub(crate) fn sample_path<C: StackIdContext>(ctx: &C, usage: UsageKey, pid_tgid: u64) {
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
