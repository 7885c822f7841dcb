//! Typed access to the maps of a loaded `Tracer`.
use aya::maps::{
    HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
};
use tracer_common::{
    ArgNote, PathKey, Policy, UsageKey, names, stat,
    usage_cache::{self, CountSlot},
};

use super::{LoadError, Tracer, map_err};
use crate::profile::Losses;

impl Tracer {
    /// Sets the enforcer's policy of `workload` (its threads are registered separately).
    pub fn set_policy(&mut self, workload: u64, policy: Policy) -> Result<(), LoadError> {
        let mut map: BpfHashMap<_, u64, Policy> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(names::MAP_POLICIES)
                .expect("POLICIES map"),
        )
        .map_err(map_err("POLICIES"))?;
        map.insert(workload, policy, 0).map_err(map_err("POLICIES"))
    }

    /// Adds running threads to `workload` (no live count: `enforce` polls `tasks_of`).
    pub fn adopt(&mut self, tids: &[u32], workload: u64) -> Result<(), LoadError> {
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        for tid in tids {
            tasks.insert(tid, workload, 0).map_err(map_err("TASKS"))?;
        }
        Ok(())
    }

    /// Stops following these threads.
    pub fn forget(&mut self, tids: &[u32]) -> Result<(), LoadError> {
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        for tid in tids {
            let _ = tasks.remove(tid);
        }
        Ok(())
    }

    /// What the arguments of `workload`'s checked syscalls showed: `(arg_note::*, value)`.
    pub fn arg_notes(&self, workload: u64) -> Vec<(u16, u16)> {
        let Ok(map) = BpfHashMap::<_, ArgNote, u8>::try_from(
            self.ebpf.map(names::MAP_ARG_NOTES).expect("ARG_NOTES map"),
        ) else {
            return Vec::new();
        };
        let mut notes: Vec<(u16, u16)> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.workload == workload)
            .map(|k| (k.kind, k.value))
            .collect();
        notes.sort_unstable();
        notes
    }

    /// Exact counts of what the enforcer refused (verdict denied) or only reported (granted).
    pub fn denials(&self) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        self.per_cpu_counts(names::MAP_DENIALS, "DENIALS")
    }

    /// Starts tracing thread `tid` (and everything it forks) as part of `workload`.
    pub fn register(&mut self, tid: u32, workload: u64) -> Result<(), LoadError> {
        let mut live: PerCpuHashMap<_, u64, i64> =
            PerCpuHashMap::try_from(self.ebpf.map_mut(names::MAP_LIVE).expect("LIVE map"))
                .map_err(map_err("LIVE"))?;
        let mut counts = vec![0i64; self.nr_cpus];
        counts[0] = 1;
        let values = PerCpuValues::try_from(counts).expect("one value per CPU");
        live.insert(workload, values, 0).map_err(map_err("LIVE"))?;
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        tasks.insert(tid, workload, 0).map_err(map_err("TASKS"))
    }

    /// Threads of `workload` still alive (forks minus exits seen by the kernel).
    pub fn live(&self, workload: u64) -> i64 {
        let Ok(live) = PerCpuHashMap::<_, u64, i64>::try_from(
            self.ebpf.map(names::MAP_LIVE).expect("LIVE map"),
        ) else {
            return 0;
        };
        live.get(&workload, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Threads of `workload` still tracked.
    pub fn tasks_of(&self, workload: u64) -> Vec<u32> {
        let Ok(tasks) = BpfHashMap::<_, u32, u64>::try_from(
            self.ebpf.map(names::MAP_TASKS).expect("TASKS map"),
        ) else {
            return Vec::new();
        };
        tasks
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, w)| *w == workload)
            .map(|(t, _)| t)
            .collect()
    }

    /// Tasks that confined threads of `workload` created and the kernel has not freed yet
    /// (`CONFINED_CHILDREN`: only while enforcing). Some may have no `TASKS` entry.
    pub fn confined_children(&self, workload: u64) -> usize {
        let Ok(map) = BpfHashMap::<_, u64, u64>::try_from(
            self.ebpf
                .map(names::MAP_CONFINED_CHILDREN)
                .expect("CONFINED_CHILDREN map"),
        ) else {
            return 0;
        };
        map.iter()
            .filter_map(Result::ok)
            .filter(|(_, w)| *w == workload)
            .count()
    }

    /// The ring buffer of detail events. Call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map(names::MAP_EVENTS).expect("EVENTS map");
        RingBuf::try_from(map).map_err(map_err("EVENTS"))
    }

    /// Exact counts per key, summed over CPUs: `USAGE` plus the per-CPU cache in front of it.
    pub fn check_counts(&self) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        let usage = self.per_cpu_counts(names::MAP_USAGE, "USAGE")?;
        let cache: PerCpuArray<_, CountSlot> = PerCpuArray::try_from(
            self.ebpf
                .map(names::MAP_USAGE_CACHE)
                .expect("USAGE_CACHE map"),
        )
        .map_err(map_err("USAGE_CACHE"))?;
        let mut slots = Vec::new();
        for values in cache.iter() {
            slots.extend(values.map_err(map_err("USAGE_CACHE"))?.iter().copied());
        }
        Ok(merge_counts(usage, &slots))
    }

    fn per_cpu_counts(
        &self,
        map: &str,
        label: &'static str,
    ) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        let map: PerCpuHashMap<_, UsageKey, u64> =
            PerCpuHashMap::try_from(self.ebpf.map(map).expect("counter map"))
                .map_err(map_err(label))?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, v) = item.map_err(map_err(label))?;
            out.push((k, v.iter().sum()));
        }
        Ok(out)
    }

    /// Every sampled call path.
    pub fn paths(&self) -> Result<Vec<PathKey>, LoadError> {
        let map: BpfHashMap<_, PathKey, u64> =
            BpfHashMap::try_from(self.ebpf.map(names::MAP_PATHS).expect("PATHS map"))
                .map_err(map_err("PATHS"))?;
        map.keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("PATHS"))
    }

    /// What the kernel side could not record.
    pub fn losses(&self) -> Losses {
        let s = self.stats();
        Losses {
            events: s[stat::EVENTS_LOST as usize],
            stacks: s[stat::STACKS_LOST as usize],
            map_full: s[stat::MAP_FULL as usize],
        }
    }

    /// Forks of confined tasks the enforcer refused because `TASKS` was full.
    pub fn forks_refused(&self) -> u64 {
        self.stats()[stat::FORKS_REFUSED as usize]
    }

    /// The `stat::*` counters summed over CPUs.
    pub fn stats(&self) -> [u64; stat::COUNT as usize] {
        let mut out = [0; stat::COUNT as usize];
        if let Some(map) = self.ebpf.map(names::MAP_STATS)
            && let Ok(arr) = PerCpuArray::<_, u64>::try_from(map)
        {
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = arr.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
            }
        }
        out
    }
}

/// One count per key: its `USAGE` count (already summed over CPUs) plus every cache slot it
/// holds (one per CPU at most), in key order.
fn merge_counts(usage: Vec<(UsageKey, u64)>, slots: &[CountSlot]) -> Vec<(UsageKey, u64)> {
    let mut counts: std::collections::BTreeMap<UsageKey, u64> = usage.into_iter().collect();
    for (key, n) in slots.iter().filter_map(usage_cache::held) {
        *counts.entry(key).or_default() += n;
    }
    counts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(workload: u64, cap: u8) -> UsageKey {
        UsageKey {
            workload,
            syscall: 170,
            cap,
            ..Default::default()
        }
    }

    fn slot(key: UsageKey, count: u64) -> CountSlot {
        CountSlot { key, count }
    }

    #[test]
    fn a_key_counts_its_hash_entry_and_its_slot_on_every_cpu() {
        let (a, b, c) = (key(1, 21), key(1, 7), key(2, 21));
        // a: in the hash (from CPUs whose slot another key owns) and in two CPUs' slots;
        // b: only in the hash; c: only in a slot.
        let usage = vec![(a, 10), (b, 4)];
        let slots = [slot(a, 100), CountSlot::default(), slot(c, 3), slot(a, 1)];
        assert_eq!(merge_counts(usage, &slots), vec![(b, 4), (a, 111), (c, 3)]);
    }

    #[test]
    fn free_and_half_claimed_slots_add_nothing() {
        let a = key(1, 21);
        let half = slot(key(0, 21), 1);
        assert_eq!(
            merge_counts(vec![(a, 2)], &[CountSlot::default(), half, slot(a, 0)]),
            vec![(a, 2)]
        );
        assert_eq!(merge_counts(Vec::new(), &[]), Vec::new());
    }
}
