//! Is a replay faithful to the recording? Pure logic on the checks of two runs.
//!
//! A replay with the recording's own privileges is faithful when it makes the same audited
//! checks: every recorded capability is checked (and granted) again, and no audited check
//! appears that the recording lacked. A command that changes its own inputs (creates what it
//! then finds existing, chowns what it then finds owned) takes another path the second time;
//! nothing learnt from such replays says anything about the recording.
use std::{collections::BTreeMap, fmt};

use crate::{
    capability::Cap,
    profile::{Audit, Check, Scope, Verdict},
};

/// The audited checks of the workload against the host (or an unknown) user namespace: the
/// checks that decide a recommendation. Unknown call paths count, as everywhere.
pub fn audited(c: &Check) -> bool {
    c.origin.is_workload()
        && c.scope != Scope::Nested
        && matches!(c.audit, Audit::Audited | Audit::Unknown)
}

/// What is compared: one capability, verdict and syscall.
type Key = (Cap, Verdict, Option<String>);

/// All audited checks of one key in one run.
#[derive(Clone, Debug, Default)]
struct Tally {
    count: u64,
    comm: Option<String>,
}

fn tally(checks: &[Check]) -> BTreeMap<Key, Tally> {
    let mut out: BTreeMap<Key, Tally> = BTreeMap::new();
    for c in checks.iter().filter(|c| audited(c)) {
        let t = out
            .entry((c.cap, c.verdict, c.syscall.clone()))
            .or_default();
        t.count += c.count;
        if t.comm.is_none() {
            t.comm.clone_from(&c.comm);
        }
    }
    out
}

/// One audited check that the recording and a replay made a different number of times, one
/// of them never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub cap: Cap,
    pub verdict: Verdict,
    pub syscall: Option<String>,
    pub comm: Option<String>,
    pub recorded: u64,
    pub replayed: u64,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cap)?;
        if self.verdict == Verdict::Denied {
            write!(f, " denied")?;
        }
        write!(f, " in {}", self.syscall.as_deref().unwrap_or("-"))?;
        if let Some(comm) = &self.comm {
            write!(f, " by {comm}")?;
        }
        write!(
            f,
            ": recorded {}x, replayed {}x",
            self.recorded, self.replayed
        )
    }
}

/// How a replay with the recording's own privileges differs from the recording: each audited
/// granted check of a recorded capability that is not checked again, and each audited check the
/// recording did not make. Empty when the replay is faithful. Counts alone may differ (a loop
/// that ran once more): the same checks in the same syscalls are the same code paths.
pub fn differences(recorded: &[Check], replayed: &[Check]) -> Vec<Difference> {
    let rec = tally(recorded);
    let rep = tally(replayed);
    let mut out = Vec::new();
    let regranted = |cap: Cap| {
        rep.keys()
            .any(|(c, v, _)| *c == cap && *v == Verdict::Granted)
    };
    for ((cap, verdict, syscall), t) in &rec {
        if *verdict == Verdict::Granted && !regranted(*cap) {
            out.push(Difference {
                cap: *cap,
                verdict: *verdict,
                syscall: syscall.clone(),
                comm: t.comm.clone(),
                recorded: t.count,
                replayed: 0,
            });
        }
    }
    for (key, t) in &rep {
        if !rec.contains_key(key) {
            out.push(Difference {
                cap: key.0,
                verdict: key.1,
                syscall: key.2.clone(),
                comm: t.comm.clone(),
                recorded: 0,
                replayed: t.count,
            });
        }
    }
    out
}

/// The replay ran the code that checks `cap` and the kernel refused it: an audited check of it
/// was denied. Only then does a successful replay without `cap` prove it is not needed.
pub fn refused(replayed: &[Check], cap: Cap) -> bool {
    replayed
        .iter()
        .any(|c| c.cap == cap && c.verdict == Verdict::Denied && audited(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Origin;

    fn check(cap: u8, verdict: Verdict, audit: Audit, syscall: &str, count: u64) -> Check {
        Check {
            cap: Cap(cap),
            verdict,
            audit,
            scope: Scope::Host,
            syscall: Some(syscall.into()),
            count,
            pid: Some(1),
            comm: Some("chown".into()),
            call_paths: vec![],
            origin: Origin::Workload,
            first_seen_ms: None,
            last_seen_ms: None,
        }
    }

    use Audit::{Audited, Noaudit, Probe};
    use Verdict::{Denied, Granted};

    #[test]
    fn the_same_checks_are_faithful_whatever_the_counts_and_noise() {
        let rec = [
            check(0, Granted, Audited, "fchownat", 1),
            check(21, Granted, Noaudit, "mmap", 12),
        ];
        let rep = [
            check(0, Granted, Audited, "fchownat", 3),
            check(21, Granted, Noaudit, "brk", 2),
            check(4, Granted, Probe, "fchmodat", 1),
        ];
        assert!(differences(&rec, &rep).is_empty());
    }

    #[test]
    fn a_recorded_capability_not_checked_again_is_named_with_where() {
        let rec = [check(0, Granted, Audited, "fchownat", 1)];
        let d = differences(&rec, &[]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "CHOWN in fchownat by chown: recorded 1x, replayed 0x"
        );
    }

    #[test]
    fn a_new_audited_check_is_a_difference() {
        let rec = [check(0, Granted, Audited, "fchownat", 2)];
        let rep = [
            check(0, Granted, Audited, "fchownat", 2),
            check(1, Granted, Audited, "openat", 3),
            check(24, Denied, Audited, "setrlimit", 1),
        ];
        let d: Vec<String> = differences(&rec, &rep)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            [
                "DAC_OVERRIDE in openat by chown: recorded 0x, replayed 3x",
                "SYS_RESOURCE denied in setrlimit by chown: recorded 0x, replayed 1x"
            ]
        );
    }

    #[test]
    fn the_same_capability_in_another_syscall_is_a_new_path() {
        let rec = [check(0, Granted, Audited, "fchownat", 1)];
        let rep = [check(0, Granted, Audited, "fchown", 1)];
        let d = differences(&rec, &rep);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].syscall.as_deref(), Some("fchown"));
    }

    #[test]
    fn refused_needs_an_audited_denial() {
        let rep = [
            check(12, Denied, Audited, "setsockopt", 1),
            check(21, Denied, Noaudit, "mmap", 1),
        ];
        assert!(refused(&rep, Cap(12)));
        assert!(!refused(&rep, Cap(21)));
        assert!(!refused(&rep, Cap(0)));
    }
}
