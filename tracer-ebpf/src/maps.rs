//! Every map of the kernel side. User space finds them by the names in
//! `tracer_common::names`.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_task,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
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

/// Task (its `task_struct`'s kernel address) → workload: every task a confined thread creates
/// while enforcing. `lsm/task_alloc` enters it before the task exists, so the fork is refused
/// when there is no room, and `lsm/task_free` removes it when the task is freed: the entry
/// never moves between keys, so no other fork can take its slot while it does (`fork.rs`).
#[map]
pub(crate) static CONFINED_CHILDREN: HashMap<u64, u64> =
    HashMap::with_max_entries(capacity::CONFINED_CHILDREN, NO_PREALLOC);

/// Slot 0 is set once a confined task had no room in `TASKS`: only then do the enforcer's
/// hooks also look a thread up in `CONFINED_CHILDREN` (`lsm.rs`).
#[map]
pub(crate) static TASKS_OVERFLOWED: Array<u32> = Array::with_max_entries(1, 0);

/// Whether `TASKS_OVERFLOWED` is set.
#[inline(always)]
pub(crate) fn tasks_overflowed() -> bool {
    TASKS_OVERFLOWED.get(0).is_some_and(|v| *v != 0)
}

/// The workload of the current task from its `CONFINED_CHILDREN` entry (`fork.rs`), looked up
/// only once some confined task had no room in `TASKS`: until then every confined task is
/// found there.
#[inline(always)]
pub(crate) fn confined_child() -> Option<u64> {
    if !tasks_overflowed() {
        return None;
    }
    // SAFETY: helper without preconditions; the address is only a key.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: value copied out immediately.
    unsafe { CONFINED_CHILDREN.get(task) }.copied()
}

/// Sets `TASKS_OVERFLOWED`, before the task that did not fit runs.
#[inline(always)]
pub(crate) fn set_tasks_overflowed() {
    if let Some(p) = TASKS_OVERFLOWED.get_ptr_mut(0) {
        // SAFETY: a live array slot; every writer writes the same value.
        unsafe { *p = 1 };
    }
}

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
