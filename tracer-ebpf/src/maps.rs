//! Every map of the kernel side. User space finds them by the names in
//! `tracer_common::names`.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    ArgNote, PathKey, PendingCheck, Policy, RuntimeExe, UsageKey, capacity, stat,
    usage_cache::{self, CountSlot},
};

// Hash maps are allocated on insert: preallocating them costs tens of milliseconds at start.
const NO_PREALLOC: u32 = BPF_F_NO_PREALLOC;

/// Thread id → workload id. Children inherit their parent's entry at fork.
#[map]
pub(crate) static TASKS: HashMap<u32, u64> =
    HashMap::with_max_entries(capacity::TASKS, NO_PREALLOC);

// Counters are per-CPU maps: BPF has no portable atomic add from Rust, and per-CPU slots are
// exact without one. User space sums the slots.

/// Workload id → threads started minus threads exited, per CPU (the sum is the live count).
#[map]
pub(crate) static LIVE: PerCpuHashMap<u64, i64> =
    PerCpuHashMap::with_max_entries(capacity::LIVE, NO_PREALLOC);

/// Exact count of capability checks per key, per CPU.
#[map]
pub(crate) static USAGE: PerCpuHashMap<UsageKey, u64> =
    PerCpuHashMap::with_max_entries(capacity::USAGE, NO_PREALLOC);

/// Sampled call paths per key (value: number of samples that hit this path).
#[map]
pub(crate) static PATHS: HashMap<PathKey, u64> =
    HashMap::with_max_entries(capacity::PATHS, NO_PREALLOC);

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(capacity::EVENTS_BYTES, 0);

/// Cgroup ids to trace when `Config::filter_cgroups` is set (monitor --container).
#[map]
pub(crate) static CGROUPS: HashMap<u64, u8> =
    HashMap::with_max_entries(capacity::CGROUPS, NO_PREALLOC);

/// `cap_capable` arguments between its kprobe and its kretprobe, per thread.
#[map]
pub(crate) static CHECKS_PENDING: HashMap<u32, PendingCheck> =
    HashMap::with_max_entries(capacity::CHECKS_PENDING, NO_PREALLOC);

/// Workload id → the enforcer's policy.
#[map]
pub(crate) static POLICIES: HashMap<u64, Policy> =
    HashMap::with_max_entries(capacity::POLICIES, NO_PREALLOC);

/// Cgroup id → workload id, for cgroups the enforcer confines (`enforce --container`).
#[map]
pub(crate) static ENFORCE_CGROUPS: HashMap<u64, u64> =
    HashMap::with_max_entries(capacity::ENFORCE_CGROUPS, NO_PREALLOC);

/// Exact counts of what the enforcer refused or reported, per CPU (verdict: denied when
/// refused, granted when only reported).
#[map]
pub(crate) static DENIALS: PerCpuHashMap<UsageKey, u64> =
    PerCpuHashMap::with_max_entries(capacity::DENIALS, NO_PREALLOC);

/// What the arguments of a workload's checked syscalls showed (`args.rs`).
#[map]
pub(crate) static ARG_NOTES: HashMap<ArgNote, u8> =
    HashMap::with_max_entries(capacity::ARG_NOTES, NO_PREALLOC);

#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// The executables of container runtimes (`runtime.rs`), written by user space before attach.
#[map]
pub(crate) static RUNTIME_EXES: HashMap<RuntimeExe, u8> =
    HashMap::with_max_entries(capacity::RUNTIME_EXES, 0);

/// Thread id → `runtime_task::RUNTIME`: threads running a runtime's code (`runtime.rs`).
#[map]
pub(crate) static RUNTIME_TASKS: HashMap<u32, u8> =
    HashMap::with_max_entries(capacity::RUNTIME_TASKS, NO_PREALLOC);
/// The per-CPU cache of check counts in front of `USAGE` (`tracer_common::usage_cache`).
#[map]
pub(crate) static USAGE_CACHE: PerCpuArray<CountSlot> =
    PerCpuArray::with_max_entries(usage_cache::SLOTS, 0);
