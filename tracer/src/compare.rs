//! Comparing capability sets: what one profile's recommended set (`cap_add`) adds to another's
//! or to an allowed set, and which process and syscall first used each capability it adds.
//! Pure logic; `diff` and `check` print it.
use std::collections::BTreeSet;

use serde::Serialize;

use crate::{capability::Cap, profile::Profile, recommendation};

/// A capability of a profile's set and the check that first showed it was needed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirstUse {
    pub cap: Cap,
    /// The process that first made the check.
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// Its syscall (`null` outside a syscall).
    pub syscall: Option<String>,
    /// When, in milliseconds from the start of the recording (newer profiles only).
    pub first_seen_ms: Option<u64>,
    /// Why the set holds it when no check of it counts as use: a kernel rule or a replay.
    pub never_checked: Option<String>,
}

impl FirstUse {
    /// The earliest check of `cap` in `profile` that counts as use (as `record` counts it);
    /// when the times are unknown, the first such check in the profile.
    pub fn of(profile: &Profile, cap: Cap) -> FirstUse {
        let first = profile
            .checks
            .iter()
            .filter(|c| c.cap == cap && c.origin.is_workload() && recommendation::is_use(c))
            .min_by_key(|c| (c.first_seen_ms.is_none(), c.first_seen_ms));
        let never_checked = match first {
            Some(_) => None,
            None => profile
                .never_checked
                .iter()
                .find(|a| a.cap == cap)
                .map(|a| a.reason.clone()),
        };
        FirstUse {
            cap,
            pid: first.and_then(|c| c.pid),
            comm: first.and_then(|c| c.comm.clone()),
            syscall: first.and_then(|c| c.syscall.clone()),
            first_seen_ms: first.and_then(|c| c.first_seen_ms),
            never_checked,
        }
    }

    /// Where it came from, for a person: `first used by chown[42] in fchownat at 12 ms`.
    pub fn describe(&self) -> String {
        if let Some(reason) = &self.never_checked {
            return format!("no check shows it: {reason}");
        }
        if self.pid.is_none() && self.comm.is_none() && self.syscall.is_none() {
            return "no check of it in the profile".to_string();
        }
        let who = match (&self.comm, self.pid) {
            (Some(comm), Some(pid)) => format!("{comm}[{pid}]"),
            (Some(comm), None) => comm.clone(),
            (None, Some(pid)) => format!("[{pid}]"),
            (None, None) => "an unknown process".to_string(),
        };
        let call = match &self.syscall {
            Some(s) => format!("in {s}"),
            None => "outside a syscall".to_string(),
        };
        let when = match self.first_seen_ms {
            Some(ms) => format!(" at {ms} ms"),
            None => String::new(),
        };
        format!("first used by {who} {call}{when}")
    }
}

/// How a profile's set differs from a base profile's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    pub equal: bool,
    /// In the new set only, each with its first use in the new profile.
    pub added: Vec<FirstUse>,
    /// In the base set only.
    pub removed: Vec<Cap>,
}

fn set(profile: &Profile) -> BTreeSet<Cap> {
    profile.cap_add.iter().copied().collect()
}

pub fn diff(base: &Profile, new: &Profile) -> Diff {
    let added = beyond(new, &set(base));
    let removed: Vec<Cap> = set(base).difference(&set(new)).copied().collect();
    Diff {
        equal: added.is_empty() && removed.is_empty(),
        added,
        removed,
    }
}

/// The members of `profile`'s set that `allowed` lacks, in capability order.
pub fn beyond(profile: &Profile, allowed: &BTreeSet<Cap>) -> Vec<FirstUse> {
    set(profile)
        .difference(allowed)
        .map(|&cap| FirstUse::of(profile, cap))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Added, Audit, Check};

    fn check(cap: u8, comm: &str, syscall: &str, first_seen_ms: Option<u64>) -> Check {
        Check {
            pid: Some(42),
            comm: Some(comm.into()),
            first_seen_ms,
            last_seen_ms: first_seen_ms,
            ..Check::granted(cap, syscall)
        }
    }

    fn profile(caps: &[u8], checks: Vec<Check>) -> Profile {
        let mut p = Profile::new();
        p.cap_add = caps.iter().copied().map(Cap).collect();
        p.checks = checks;
        p
    }

    #[test]
    fn equal_sets_are_equal_whatever_else_differs() {
        let a = profile(&[0, 10], vec![]);
        let b = profile(&[10, 0], vec![check(0, "chown", "fchownat", None)]);
        let d = diff(&a, &b);
        assert!(d.equal);
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn added_capabilities_name_their_first_use() {
        let mut noaudit = check(0, "ld.so", "mmap", Some(1));
        noaudit.audit = Audit::Noaudit;
        let base = profile(&[13], vec![]);
        let new = profile(
            &[0],
            vec![
                noaudit,
                check(0, "late", "chown", Some(50)),
                check(0, "chown", "fchownat", Some(7)),
            ],
        );
        let d = diff(&base, &new);
        assert!(!d.equal);
        assert_eq!(d.removed, vec![Cap(13)]);
        assert_eq!(d.added.len(), 1);
        assert_eq!(
            d.added[0].describe(),
            "first used by chown[42] in fchownat at 7 ms"
        );
    }

    #[test]
    fn without_times_the_first_check_in_the_profile_is_the_first_use() {
        let new = profile(
            &[0],
            vec![
                check(0, "chown", "fchownat", None),
                check(0, "other", "chown", None),
            ],
        );
        let added = beyond(&new, &BTreeSet::new());
        assert_eq!(added[0].describe(), "first used by chown[42] in fchownat");
    }

    #[test]
    fn capabilities_without_a_check_say_why_they_are_there() {
        let mut new = profile(&[31, 12], vec![]);
        new.never_checked = vec![Added {
            cap: Cap(31),
            reason: "created a user namespace".into(),
        }];
        let added = beyond(&new, &BTreeSet::from([Cap(0)]));
        let lines: Vec<String> = added
            .iter()
            .map(|a| format!("{}: {}", a.cap, a.describe()))
            .collect();
        assert_eq!(
            lines,
            [
                "NET_ADMIN: no check of it in the profile",
                "SETFCAP: no check shows it: created a user namespace"
            ]
        );
    }

    #[test]
    fn only_what_the_allowed_set_lacks_is_beyond_it() {
        let p = profile(&[0, 10], vec![check(10, "nc", "bind", None)]);
        assert!(beyond(&p, &BTreeSet::from([Cap(0), Cap(10), Cap(21)])).is_empty());
        let over = beyond(&p, &BTreeSet::from([Cap(0)]));
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].cap, Cap(10));
        assert_eq!(over[0].syscall.as_deref(), Some("bind"));
        let json = serde_json::to_value(&over[0]).unwrap();
        assert_eq!(json["cap"], "NET_BIND_SERVICE");
        assert_eq!(json["comm"], "nc");
    }
}
