//! When each check of a recording was first and last seen, measured in user space: the event
//! of a new check (or call path) when it is read from the ring buffer, and a count found grown
//! when the counts are polled. The kernel keeps no time: a clock read on every check would
//! cost every check, for a detail. So the times are as fine as the polling: a sighting is
//! stamped when captrace reads it, at most one interval after it happened.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tracer_common::UsageKey;

/// First and last sightings of each key of the workloads that were begun.
#[derive(Debug, Default)]
pub struct Timeline {
    starts: HashMap<u64, Instant>,
    seen: HashMap<UsageKey, Seen>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    first: Instant,
    last: Instant,
    /// The count at the last poll (0 before the first).
    count: u64,
}

impl Timeline {
    /// Times of `workload`'s checks are counted from `at`; other workloads are not timed.
    pub fn begin(&mut self, workload: u64, at: Instant) {
        self.starts.insert(workload, at);
    }

    fn sighting(&mut self, key: UsageKey, at: Instant) -> Option<&mut Seen> {
        if !self.starts.contains_key(&key.workload) {
            return None;
        }
        let seen = self.seen.entry(key).or_insert(Seen {
            first: at,
            last: at,
            count: 0,
        });
        seen.first = seen.first.min(at);
        Some(seen)
    }

    /// An event showed a check of `key` (a new key, or a new call path of it). That check is
    /// in the count too: the next poll must not take it for another, later one.
    pub fn event(&mut self, key: UsageKey, at: Instant) {
        if let Some(seen) = self.sighting(key, at) {
            seen.last = seen.last.max(at);
            seen.count = seen.count.max(1);
        }
    }

    /// The counts read from the kernel at `at`: each that grew was seen again.
    pub fn counts(&mut self, usage: &[(UsageKey, u64)], at: Instant) {
        for &(key, count) in usage {
            if count == 0 {
                continue;
            }
            if let Some(seen) = self.sighting(key, at)
                && count > seen.count
            {
                seen.count = count;
                seen.last = seen.last.max(at);
            }
        }
    }

    /// Milliseconds from the start of `key`'s workload to its first and its last sighting;
    /// `None` for a workload that was not begun or a key never seen.
    pub fn stamp(&self, key: &UsageKey) -> (Option<u64>, Option<u64>) {
        let (Some(start), Some(seen)) = (self.starts.get(&key.workload), self.seen.get(key)) else {
            return (None, None);
        };
        let ms = |t: Instant| Some(millis(t.saturating_duration_since(*start)));
        (ms(seen.first), ms(seen.last))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(workload: u64, cap: u8) -> UsageKey {
        UsageKey {
            workload,
            cap,
            ..Default::default()
        }
    }

    #[test]
    fn first_is_the_earliest_sighting_and_last_the_latest_growth() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut t = Timeline::default();
        t.begin(1, t0);
        t.event(key(1, 0), at(20));
        t.counts(&[(key(1, 0), 3), (key(1, 10), 1)], at(100));
        // Unchanged counts are not a sighting; grown ones are.
        t.counts(&[(key(1, 0), 3), (key(1, 10), 5)], at(200));
        t.counts(&[(key(1, 0), 3), (key(1, 10), 5)], at(300));
        assert_eq!(t.stamp(&key(1, 0)), (Some(20), Some(100)));
        assert_eq!(t.stamp(&key(1, 10)), (Some(100), Some(200)));
        // A later event of a new call path is a sighting too.
        t.event(key(1, 0), at(250));
        assert_eq!(t.stamp(&key(1, 0)), (Some(20), Some(250)));
    }

    #[test]
    fn a_check_made_once_is_first_and_last_seen_at_its_event() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut t = Timeline::default();
        t.begin(1, t0);
        t.event(key(1, 0), at(20));
        // The poll finds the count of that one check: not a later sighting.
        t.counts(&[(key(1, 0), 1)], at(100));
        assert_eq!(t.stamp(&key(1, 0)), (Some(20), Some(20)));
        // A second check, found by the next poll, is.
        t.counts(&[(key(1, 0), 2)], at(200));
        assert_eq!(t.stamp(&key(1, 0)), (Some(20), Some(200)));
    }

    #[test]
    fn workloads_not_begun_and_keys_never_seen_have_no_times() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.begin(1, t0);
        t.event(key(2, 0), t0);
        t.counts(&[(key(2, 0), 1), (key(1, 5), 0)], t0);
        assert_eq!(t.stamp(&key(2, 0)), (None, None));
        assert_eq!(t.stamp(&key(1, 5)), (None, None));
        assert!(t.seen.is_empty(), "nothing kept for untimed workloads");
    }
}
