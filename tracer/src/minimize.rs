//! `record --minimize`: prove the recorded set by replaying the command.
//! (a) replay with the recorded privileges: must reproduce the exit status, else the command is
//! not re-runnable and the recorded set stays; (b) replay with exactly the set: if it fails,
//! find capabilities used without a visible check; (c) replay with each member removed in
//! turn, keeping only those whose removal makes it fail.
use std::{collections::BTreeSet, process::Command, time::Duration};

use anyhow::Context as _;

use crate::{
    capability::Cap,
    launch::{Privileges, Spec},
    profile::{Added, Minimize, Profile},
    recommend,
    session::{Run, Session, Wait},
};

/// Outcome of one replay.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit_status: i32,
    /// Capabilities of audited host checks that were denied.
    pub denied: BTreeSet<Cap>,
}

/// A replay passes when it ends like the recording and wants nothing the baseline did not.
pub fn passes(replay: &Outcome, baseline: &Outcome) -> bool {
    replay.exit_status == baseline.exit_status && replay.denied.is_subset(&baseline.denied)
}

/// Greedy reduction: drops each member of `candidates` from `set` whose removal still passes.
/// Returns (kept, dropped).
pub fn reduce(
    set: &BTreeSet<Cap>,
    candidates: &[Cap],
    mut try_set: impl FnMut(&BTreeSet<Cap>) -> anyhow::Result<bool>,
) -> anyhow::Result<(BTreeSet<Cap>, Vec<Cap>)> {
    let mut current = set.clone();
    let mut dropped = Vec::new();
    for c in candidates {
        let mut without = current.clone();
        without.remove(c);
        if try_set(&without)? {
            current = without;
            dropped.push(*c);
        }
    }
    Ok((current, dropped))
}

/// Capabilities captrace itself holds: what the recording ran with.
fn own_caps() -> BTreeSet<Cap> {
    caps::read(None, caps::CapSet::Effective)
        .map(|s| s.iter().map(|c| Cap(c.index())).collect())
        .unwrap_or_default()
}

struct Replayer<'a> {
    session: &'a mut Session,
    argv: Vec<String>,
    setup: Option<&'a str>,
    deadline: Duration,
    replays: u32,
}

impl Replayer<'_> {
    fn replay(&mut self, caps: Option<&BTreeSet<Cap>>) -> anyhow::Result<Outcome> {
        if let Some(setup) = self.setup {
            let status = Command::new("sh")
                .arg("-c")
                .arg(setup)
                .status()
                .context("running --setup")?;
            anyhow::ensure!(status.success(), "--setup {setup:?} failed with {status}");
        }
        self.replays += 1;
        let privileges = caps.map(|c| Privileges {
            caps: c.iter().copied().collect(),
            inherit_groups: true,
            ..Default::default()
        });
        let spec = Spec {
            argv: self.argv.clone(),
            privileges,
            quiet: true,
            ..Default::default()
        };
        let run = self.session.run(
            &spec,
            Wait {
                follow_daemons: true,
                deadline: Some(self.deadline),
            },
            &mut |_| {},
        )?;
        let profile = self.session.profile(&run, &self.argv)?;
        tracing::info!(caps = ?caps.map(|c| c.iter().map(|c| c.name()).collect::<Vec<_>>()), status = run.exit_status, "replay");
        Ok(Outcome {
            exit_status: run.exit_status,
            denied: profile.denied.iter().map(|c| c.cap).collect(),
        })
    }
}

pub fn minimize(
    session: &mut Session,
    spec: &Spec,
    recorded: &Run,
    setup: Option<&str>,
    profile: &mut Profile,
) -> anyhow::Result<()> {
    let deadline = (recorded.duration * 3).max(Duration::from_secs(10));
    let mut r = Replayer {
        session,
        argv: spec.argv.clone(),
        setup,
        deadline,
        replays: 0,
    };
    let recorded_set: BTreeSet<Cap> = profile.cap_add.iter().copied().collect();
    let mut report = Minimize::default();

    // (a) The recording's own privileges must reproduce its exit status.
    let baseline = r.replay(None)?;
    if baseline.exit_status != recorded.exit_status {
        report.note = Some(format!(
            "not re-runnable: a replay exited {} where the recording exited {}; kept the recorded set. Use --setup CMD to restore what the command changes before each replay",
            baseline.exit_status, recorded.exit_status
        ));
        report.replays = r.replays;
        profile.minimize = Some(report);
        return Ok(());
    }
    report.rerunnable = true;

    // (b) Exactly the recorded set; if that fails, find what was used without a check.
    let mut set = recorded_set.clone();
    let exact = r.replay(Some(&set))?;
    if !passes(&exact, &baseline) {
        let candidates: Vec<Cap> = own_caps().difference(&recorded_set).copied().collect();
        let full: BTreeSet<Cap> = set
            .union(&candidates.iter().copied().collect())
            .copied()
            .collect();
        let (kept, _) = reduce(&full, &candidates, |s| {
            Ok(passes(&r.replay(Some(s))?, &baseline))
        })?;
        set = kept;
        report.added = set.difference(&recorded_set).copied().collect();
        if !passes(&r.replay(Some(&set))?, &baseline) {
            report.note = Some("the command does not pass even with every capability captrace holds; kept the recorded set".into());
            set = recorded_set.clone();
            report.added.clear();
        }
    }

    // (c) Each member removed in turn.
    let members: Vec<Cap> = set.iter().copied().collect();
    let (kept, dropped) = reduce(&set, &members, |s| {
        Ok(passes(&r.replay(Some(s))?, &baseline))
    })?;
    report.proven = kept.iter().copied().collect();
    report.dropped = dropped;
    report.replays = r.replays;

    for c in &report.added {
        profile.never_checked.push(Added {
            cap: *c,
            reason: "replay: the command fails without it, although no check of it was seen".into(),
        });
    }
    profile.never_checked.retain(|a| kept.contains(&a.cap));
    profile.cap_add = report.proven.clone();
    profile.advice = recommend::advice(&profile.cap_add, &profile.namespaces);
    profile.minimize = Some(report);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u8]) -> BTreeSet<Cap> {
        v.iter().map(|n| Cap(*n)).collect()
    }

    #[test]
    fn passes_needs_same_status_and_no_new_denial() {
        let base = Outcome {
            exit_status: 0,
            denied: set(&[24]),
        };
        assert!(passes(
            &Outcome {
                exit_status: 0,
                denied: set(&[24])
            },
            &base
        ));
        assert!(!passes(
            &Outcome {
                exit_status: 1,
                denied: set(&[])
            },
            &base
        ));
        assert!(!passes(
            &Outcome {
                exit_status: 0,
                denied: set(&[0])
            },
            &base
        ));
    }

    #[test]
    fn reduce_keeps_only_what_is_needed() {
        // The "workload" needs CHOWN (0) and NET_RAW (13).
        let needs = set(&[0, 13]);
        let mut calls = 0;
        let (kept, dropped) = reduce(&set(&[0, 5, 13, 21]), &[0, 5, 13, 21].map(Cap), |s| {
            calls += 1;
            Ok(needs.is_subset(s))
        })
        .unwrap();
        assert_eq!(kept, needs);
        assert_eq!(dropped, vec![Cap(5), Cap(21)]);
        assert_eq!(calls, 4);
    }
}
