//! Merging the profiles of several runs into one: the union of what the runs showed, with the
//! recommendation recomputed from the merged checks by the rules `record` uses. Pure logic.
//!
//! The merge is commutative and associative (the tests prove it), so neither the order of the
//! profiles nor how they are grouped (`merge a b` then with `c`, or all three at once) changes
//! the result. Each field is merged by a rule with that property:
//! - checks with the same identity (capability, verdict, audit, scope, syscall, origin) are
//!   one check: counts summed, call paths united, the earliest first sighting (and its
//!   process) and the latest last sighting kept;
//! - namespace kinds are united, namespace calls kept (sorted);
//! - command, exit status, kernel and hook are kept when every profile agrees, else cleared;
//! - capabilities that no check showed (`never_checked`, e.g. proved by a replay) stay needed;
//! - the `--minimize` proofs of single runs do not carry over: the merge is not minimized.
use std::{
    cmp::Ordering,
    collections::{BTreeMap, btree_map::Entry},
};

use crate::{
    capability::Cap,
    profile::{
        Added, Audit, CallPath, Check, Namespaces, NsCallRecord, Origin, Profile, Scope, Verdict,
    },
    recommendation,
};

/// What makes two checks the same check: all but what is counted or observed about it.
type Identity = (Origin, Cap, Verdict, Audit, Scope, Option<String>);

fn identity(c: &Check) -> Identity {
    (
        c.origin,
        c.cap,
        c.verdict,
        c.audit,
        c.scope,
        c.syscall.clone(),
    )
}

/// The merge of `profiles`; `None` when there are none.
pub fn merge(profiles: &[Profile]) -> Option<Profile> {
    profiles.first()?;
    let checks = merge_checks(profiles.iter().flat_map(|p| &p.checks));
    let namespaces = merge_namespaces(profiles.iter().map(|p| &p.namespaces));
    // Capabilities a run needed without a visible check, each with its reason (the least
    // one when runs differ, so that the choice does not depend on their order).
    let mut known: BTreeMap<Cap, String> = BTreeMap::new();
    for added in profiles.iter().flat_map(|p| &p.never_checked) {
        match known.entry(added.cap) {
            Entry::Vacant(e) => {
                e.insert(added.reason.clone());
            }
            Entry::Occupied(mut e) => {
                if added.reason < *e.get() {
                    e.insert(added.reason.clone());
                }
            }
        }
    }
    let known: Vec<_> = known
        .into_iter()
        .map(|(cap, reason)| Added { cap, reason })
        .collect();
    let rec = recommendation::recommend_with(&checks, &namespaces, &known);

    let mut p = Profile::new();
    p.cap_add = rec.cap_add;
    p.command = agreed(profiles, |p| &p.command)
        .cloned()
        .unwrap_or_default();
    p.exit_status = agreed(profiles, |p| &p.exit_status).copied().flatten();
    p.kernel = agreed(profiles, |p| &p.kernel).cloned().unwrap_or_default();
    p.hook = agreed(profiles, |p| &p.hook).cloned().unwrap_or_default();
    p.checks = checks;
    p.denied = rec.denied;
    p.nested_userns = rec.nested_userns;
    p.never_checked = rec.never_checked;
    p.namespaces = namespaces;
    p.lost_events = profiles
        .iter()
        .fold(0u64, |n, p| n.saturating_add(p.lost_events));
    p.minimize = None;
    p.advice = rec.advice;
    Some(p)
}

/// The value every profile has, if they all agree.
fn agreed<T: PartialEq>(profiles: &[Profile], field: impl Fn(&Profile) -> &T) -> Option<&T> {
    let first = field(profiles.first()?);
    profiles.iter().all(|p| field(p) == first).then_some(first)
}

fn merge_checks<'a>(checks: impl Iterator<Item = &'a Check>) -> Vec<Check> {
    let mut merged: BTreeMap<Identity, Check> = BTreeMap::new();
    for c in checks {
        match merged.entry(identity(c)) {
            Entry::Vacant(e) => {
                let mut c = c.clone();
                normalize_paths(&mut c.call_paths);
                e.insert(c);
            }
            Entry::Occupied(mut e) => absorb(e.get_mut(), c),
        }
    }
    merged.into_values().collect()
}

/// Orders sightings: the earliest first (a check never timed comes last), then by process.
fn sighting(c: &Check) -> (bool, Option<u64>, bool, Option<u32>, Option<&str>) {
    (
        c.first_seen_ms.is_none(),
        c.first_seen_ms,
        c.pid.is_none(),
        c.pid,
        c.comm.as_deref(),
    )
}

/// Adds `other` (same identity) into `into`.
fn absorb(into: &mut Check, other: &Check) {
    into.count = into.count.saturating_add(other.count);
    if sighting(other).cmp(&sighting(into)) == Ordering::Less {
        into.pid = other.pid;
        into.comm = other.comm.clone();
        into.first_seen_ms = other.first_seen_ms;
    }
    into.last_seen_ms = into.last_seen_ms.max(other.last_seen_ms);
    into.call_paths.extend(other.call_paths.iter().cloned());
    normalize_paths(&mut into.call_paths);
}

fn normalize_paths(paths: &mut Vec<CallPath>) {
    paths.sort_by(|a, b| (&a.frames, a.audit, &a.rule).cmp(&(&b.frames, b.audit, &b.rule)));
    paths.dedup();
}

fn merge_namespaces<'a>(all: impl Iterator<Item = &'a Namespaces>) -> Namespaces {
    let mut out = Namespaces::default();
    for ns in all {
        out.created.extend(ns.created.iter().cloned());
        out.joined.extend(ns.joined.iter().cloned());
        out.calls.extend(ns.calls.iter().cloned());
    }
    for kinds in [&mut out.created, &mut out.joined] {
        kinds.sort();
        kinds.dedup();
    }
    out.calls.sort_by(|a, b| call_key(a).cmp(&call_key(b)));
    out
}

fn call_key(c: &NsCallRecord) -> (&str, &[String], i64, u32, &str) {
    (&c.syscall, &c.namespaces, c.ret, c.pid, &c.comm)
}

#[cfg(test)]
mod tests {
    use proptest::{collection::vec, option, prelude::*, sample::select};

    use super::*;

    fn check(cap: u8, syscall: &str, count: u64) -> Check {
        Check {
            count,
            pid: Some(10),
            ..Check::granted(cap, syscall)
        }
    }

    fn profile(command: &str, checks: Vec<Check>) -> Profile {
        let mut p = Profile::new();
        p.command = vec![command.into()];
        p.exit_status = Some(0);
        p.checks = checks;
        p
    }

    #[test]
    fn the_same_check_is_counted_once_with_the_counts_summed() {
        let mut late = check(0, "fchownat", 2);
        (late.pid, late.comm, late.first_seen_ms, late.last_seen_ms) =
            (Some(7), Some("late".into()), Some(30), Some(90));
        let mut early = check(0, "fchownat", 3);
        (
            early.pid,
            early.comm,
            early.first_seen_ms,
            early.last_seen_ms,
        ) = (Some(9), Some("early".into()), Some(5), Some(40));
        let merged = merge(&[
            profile("a", vec![late, check(10, "bind", 1)]),
            profile("a", vec![early]),
        ])
        .unwrap();
        assert_eq!(merged.checks.len(), 2);
        let chown = &merged.checks[0];
        assert_eq!((chown.cap, chown.count), (Cap(0), 5));
        assert_eq!((chown.pid, chown.comm.as_deref()), (Some(9), Some("early")));
        assert_eq!(
            (chown.first_seen_ms, chown.last_seen_ms),
            (Some(5), Some(90))
        );
        assert_eq!(merged.cap_add, vec![Cap(0), Cap(10)]);
        assert_eq!(merged.command, ["a"]);
        assert_eq!(merged.exit_status, Some(0));
    }

    #[test]
    fn checks_of_another_origin_stay_apart_and_do_not_count() {
        let mut runtime = check(21, "mount", 1);
        runtime.origin = Origin::Runtime;
        let merged = merge(&[
            profile("a", vec![runtime.clone()]),
            profile("b", vec![check(21, "mount", 1)]),
        ])
        .unwrap();
        assert_eq!(merged.checks.len(), 2);
        assert!(merged.checks.contains(&runtime));
        assert_eq!(merged.cap_add, vec![Cap(21)]);
        let alone = merge(&[profile("a", vec![runtime])]).unwrap();
        assert!(alone.cap_add.is_empty());
    }

    #[test]
    fn the_recommendation_is_recomputed_not_copied() {
        // A stale cap_add and a denial that another run's granted DAC_OVERRIDE explains.
        let mut stale = profile("a", vec![]);
        stale.cap_add = vec![Cap(21)];
        let mut read = check(2, "openat", 1);
        read.verdict = Verdict::Denied;
        let denying = profile("b", vec![read]);
        assert_eq!(
            merge(std::slice::from_ref(&denying)).unwrap().denied.len(),
            1
        );
        let merged = merge(&[stale, denying, profile("c", vec![check(1, "openat", 1)])]).unwrap();
        assert_eq!(merged.cap_add, vec![Cap(1)]);
        assert!(merged.denied.is_empty(), "{:?}", merged.denied);
        assert!(merged.command.is_empty(), "the commands differ");
        assert!(
            merged
                .advice
                .iter()
                .any(|a| a.contains("needs 1 of Docker's")),
            "{:?}",
            merged.advice
        );
    }

    #[test]
    fn capabilities_proved_without_a_check_stay_needed() {
        let mut replayed = profile("a", vec![]);
        replayed.never_checked = vec![Added {
            cap: Cap(12),
            reason: "replay".into(),
        }];
        replayed.cap_add = vec![Cap(12)];
        replayed.minimize = Some(Default::default());
        let merged = merge(&[replayed, profile("a", vec![check(0, "fchownat", 1)])]).unwrap();
        assert_eq!(merged.cap_add, vec![Cap(0), Cap(12)]);
        assert_eq!(merged.never_checked.len(), 1);
        assert_eq!(merged.minimize, None);
        // Once a check shows it, it is no longer "never checked".
        let again = merge(&[merged, profile("a", vec![check(12, "ioctl", 1)])]).unwrap();
        assert_eq!(again.cap_add, vec![Cap(0), Cap(12)]);
        assert!(again.never_checked.is_empty());
    }

    /// Found by `merging_is_associative`: whether a replay's proof of DAC_READ_SEARCH is
    /// covered by DAC_OVERRIDE must not depend on which runs were merged first.
    #[test]
    fn grouping_does_not_change_what_dac_override_covers() {
        let mut read = check(2, "openat", 1);
        read.audit = Audit::Unknown;
        let a = profile("a", vec![read.clone()]);
        let mut b = profile("a", vec![]);
        b.never_checked = vec![Added {
            cap: Cap(2),
            reason: "replay".into(),
        }];
        read.call_paths = vec![CallPath {
            frames: vec!["generic_permission".into()],
            audit: Audit::Audited,
            rule: String::new(),
        }];
        let c = profile("a", vec![read, check(1, "openat", 1)]);
        let all = merge(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let ab = merge(&[a, b]).unwrap();
        assert_eq!(merge(&[ab, c]).unwrap(), all);
        assert_eq!(all.cap_add, vec![Cap(1)]);
    }

    #[test]
    fn a_merged_profile_is_a_valid_profile() {
        let merged = merge(&[profile("a", vec![check(0, "fchownat", 1)])]).unwrap();
        assert_eq!(
            Profile::from_json(&merged.to_json(), "m.json").unwrap(),
            merged
        );
        assert_eq!(merge(&[]), None);
    }

    fn arb_call_path() -> impl Strategy<Value = CallPath> {
        (
            select(vec!["generic_permission", "chown_common", "do_mmap"]),
            select(vec![Audit::Audited, Audit::Noaudit, Audit::Probe]),
        )
            .prop_map(|(frame, audit)| CallPath {
                frames: vec![frame.into(), "x64_sys_call".into()],
                audit,
                rule: format!("rule {frame}"),
            })
    }

    /// Few identities, so that the runs of a test share checks (that is where merging works),
    /// covering what the recommendation treats apart: use, noaudit, probes, denials and the
    /// DAC_READ_SEARCH fallback, nested scope, runtime and borrowed origins, no syscall.
    fn arb_identity() -> impl Strategy<Value = Identity> {
        use Audit::{Audited, Noaudit, Probe};
        use Origin::{Borrowed, Runtime, Workload};
        use Scope::{Host, Nested};
        use Verdict::{Denied, Granted};
        let sys = |s: &str| Some(s.to_string());
        select(vec![
            (Workload, Cap(0), Granted, Audited, Host, sys("fchownat")),
            (Workload, Cap(1), Granted, Audited, Host, sys("openat")),
            (Workload, Cap(2), Denied, Audited, Host, sys("openat")),
            (
                Workload,
                Cap(2),
                Granted,
                Audit::Unknown,
                Host,
                sys("openat"),
            ),
            (Workload, Cap(21), Granted, Noaudit, Host, sys("mmap")),
            (Workload, Cap(21), Granted, Audited, Nested, sys("mount")),
            (Runtime, Cap(21), Granted, Audited, Host, sys("mount")),
            (Borrowed, Cap(1), Granted, Audited, Host, None),
            (Workload, Cap(8), Denied, Probe, Host, sys("capset")),
            (Workload, Cap(12), Granted, Audited, Scope::Unknown, None),
        ])
    }

    fn arb_check() -> impl Strategy<Value = Check> {
        let key = arb_identity();
        let seen = (
            prop_oneof![0u64..1000, Just(u64::MAX - 1)],
            option::of(1u32..4),
            option::of(select(vec!["sh", "chown"])),
            vec(arb_call_path(), 0..3),
            option::of(0u64..50),
            option::of(0u64..50),
        );
        (key, seen).prop_map(
            |(
                (origin, cap, verdict, audit, scope, syscall),
                (count, pid, comm, call_paths, first, last),
            )| Check {
                cap,
                verdict,
                audit,
                scope,
                syscall,
                count,
                pid,
                comm: comm.map(str::to_string),
                call_paths,
                origin,
                first_seen_ms: first,
                last_seen_ms: last,
            },
        )
    }

    fn arb_ns_call() -> impl Strategy<Value = NsCallRecord> {
        (
            select(vec!["unshare", "setns", "clone3"]),
            select(vec!["user", "mnt", "uts"]),
            select(vec![0i64, -1]),
            1u32..3,
        )
            .prop_map(|(syscall, kind, ret, pid)| NsCallRecord {
                syscall: syscall.into(),
                namespaces: vec![kind.into()],
                ret,
                pid,
                comm: "sh".into(),
                origin: Origin::Workload,
            })
    }

    fn arb_profile() -> impl Strategy<Value = Profile> {
        (
            select(vec![
                vec![],
                vec!["true".to_string()],
                vec!["sh".into(), "-c".into()],
            ]),
            option::of(0i32..2),
            select(vec!["6.1", "6.18"]),
            vec(arb_check(), 0..6),
            vec(arb_ns_call(), 0..3),
            vec(
                (select(vec![12u8, 31, 2]), select(vec!["replay", "rule"])),
                0..2,
            ),
            prop_oneof![0u64..5, Just(u64::MAX)],
            vec(select(vec![0u8, 7, 21]), 0..3),
        )
            .prop_map(
                |(command, exit_status, kernel, checks, calls, added, lost, stale)| {
                    let mut p = Profile::new();
                    p.command = command;
                    p.exit_status = exit_status;
                    p.kernel = kernel.into();
                    p.hook = "tp_btf/cap_capable".into();
                    p.checks = checks;
                    p.namespaces = crate::namespaces::summarize(calls);
                    p.never_checked = added
                        .into_iter()
                        .map(|(cap, reason)| Added {
                            cap: Cap(cap),
                            reason: reason.into(),
                        })
                        .collect();
                    p.lost_events = lost;
                    // Whatever a profile recommends is recomputed.
                    p.cap_add = stale.into_iter().map(Cap).collect();
                    p
                },
            )
    }

    fn m(profiles: &[Profile]) -> Profile {
        merge(profiles).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merging_is_commutative(a in arb_profile(), b in arb_profile()) {
            prop_assert_eq!(m(&[a.clone(), b.clone()]), m(&[b, a]));
        }

        #[test]
        fn merging_is_associative(a in arb_profile(), b in arb_profile(), c in arb_profile()) {
            let all = m(&[a.clone(), b.clone(), c.clone()]);
            let left = m(&[m(&[a.clone(), b.clone()]), c.clone()]);
            let right = m(&[a, m(&[b, c])]);
            prop_assert_eq!(&left, &all);
            prop_assert_eq!(&right, &all);
        }

        #[test]
        fn merging_does_not_depend_on_the_order(
            (profiles, shuffled) in vec(arb_profile(), 1..5)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            prop_assert_eq!(m(&profiles), m(&shuffled));
        }

        #[test]
        fn merging_keeps_every_check_and_sums_counts(a in arb_profile(), b in arb_profile()) {
            let merged = m(&[a.clone(), b.clone()]);
            let total = |checks: &[Check]| -> u128 {
                checks.iter().map(|c| u128::from(c.count)).sum()
            };
            let inputs = total(&a.checks) + total(&b.checks);
            let saturated = merged.checks.iter().any(|c| c.count == u64::MAX);
            prop_assert!(saturated || total(&merged.checks) == inputs);
            for c in a.checks.iter().chain(&b.checks) {
                prop_assert!(merged.checks.iter().any(|x| identity(x) == identity(c)));
            }
            // A merge is itself a profile, and merging one profile changes nothing more.
            prop_assert_eq!(m(std::slice::from_ref(&merged)), merged.clone());
            let parsed = Profile::from_json(&merged.to_json(), "m.json");
            prop_assert_eq!(parsed.ok(), Some(merged));
        }
    }
}
