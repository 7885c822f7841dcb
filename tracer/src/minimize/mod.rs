//! `record --minimize`: prove the recorded set by replaying the command, each replay traced by
//! the same programs of the same session as the recording.
//!
//! (a) Replay with captrace's own privileges. It must be faithful: the same exit status, the
//! `--check` passing, and the same audited checks (`compare`). Otherwise nothing a replay shows
//! says anything about the recording: the recorded set stays and the report names the checks
//! that differed. (b) Replay with exactly the set; if that fails, search for capabilities used
//! without any visible check, and add them only if the replay that passes with them is faithful
//! too. (c) Replay with each member removed in turn; drop it only if that replay ran the code
//! that checks it (the kernel refused it) and the outcome stayed the recording's. What the
//! kernel refused in the replay that proves the final set is listed as silent refusals.
mod alternatives;
mod compare;
pub mod container;
mod progress;
mod refusals;

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

pub use compare::{Difference, differences};
pub use refusals::{EFFECTS, line as refusal_line, silent_refusals};

use crate::{
    capability::Cap,
    capability_set,
    launch::{Privileges, Sandbox, Spec, User},
    profile::{Added, Check, Minimize, Profile},
    recommendation,
    recording::{Run, Session, Wait},
};

/// Outcome of one replay.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub exit_status: i32,
    /// `--check` exited 0 (true without a check).
    pub check_ok: bool,
    /// Capabilities of audited host checks that were denied (the kernel's fallbacks left out).
    pub denied: BTreeSet<Cap>,
    /// Every check of the run.
    pub checks: Vec<Check>,
    /// Namespace kinds it created.
    pub created: Vec<String>,
}

/// A replay passes when it ends like the recording (exit status, `--check`) and wants nothing
/// the baseline did not.
pub fn passes(replay: &Outcome, baseline: &Outcome) -> bool {
    ends_alike(replay, baseline) && replay.denied.is_subset(&baseline.denied)
}

/// Same exit status, and the check passed.
fn ends_alike(replay: &Outcome, baseline: &Outcome) -> bool {
    replay.exit_status == baseline.exit_status && replay.check_ok
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

/// Shell commands around each replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks<'a> {
    /// Run before each replay; must succeed.
    pub setup: Option<&'a str>,
    /// Run after the recording and after each replay; the replay passes only if it exits 0.
    pub check: Option<&'a str>,
    /// `--as-user NAME`: prove that the command started as this user needs no SETUID/SETGID.
    pub as_user: Option<&'a (String, User)>,
    /// Show which replay runs (a terminal, not `--json`).
    pub progress: bool,
}

/// Runs `sh -c CMD` with captrace's environment, output to /dev/null; true if it exited 0.
pub fn shell(cmd: &str, what: &str) -> anyhow::Result<bool> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {what} {cmd:?}"))?;
    Ok(status.success())
}

struct Replayer<'a> {
    session: &'a mut Session,
    argv: Vec<String>,
    hooks: Hooks<'a>,
    deadline: Duration,
    replays: u32,
    progress: progress::Progress,
}

impl Replay for Replayer<'_> {
    fn replays(&self) -> u32 {
        self.replays
    }

    fn replay(&mut self, caps: Option<&BTreeSet<Cap>>) -> anyhow::Result<Outcome> {
        let privileges = caps.map(|c| Privileges {
            caps: c.iter().copied().collect(),
            inherit_groups: true,
            ..Default::default()
        });
        self.run_with(privileges, None)
    }

    fn announce(&mut self, total: u32, what: &str) {
        self.progress
            .replay(self.replays + 1, total.max(self.replays + 1), what);
    }
}

impl Replayer<'_> {
    /// One traced replay with these credentials, in this sandbox.
    fn run_with(
        &mut self,
        privileges: Option<Privileges>,
        sandbox: Option<Sandbox>,
    ) -> anyhow::Result<Outcome> {
        if let Some(setup) = self.hooks.setup {
            anyhow::ensure!(
                shell(setup, "--setup")?,
                "--setup {setup:?} failed before a replay: it must exit 0"
            );
        }
        self.replays += 1;
        let caps = privileges.as_ref().map(|p| p.caps.clone());
        let spec = Spec {
            argv: self.argv.clone(),
            privileges,
            sandbox,
            quiet: true,
            privileges_first: true,
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
        let check_ok = match self.hooks.check {
            Some(check) => shell(check, "--check")?,
            None => true,
        };
        let profile = self.session.profile(&run, &self.argv)?;
        tracing::info!(caps = ?caps.map(|c| c.iter().map(|c| c.name()).collect::<Vec<_>>()), status = run.exit_status, check_ok, "replay");
        Ok(Outcome {
            exit_status: run.exit_status,
            check_ok,
            denied: profile.denied.iter().map(|c| c.cap).collect(),
            checks: profile.checks,
            created: profile.namespaces.created,
        })
    }
}

/// The report names the first few differences; the profile keeps them all.
fn first_few(lines: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = lines[..lines.len().min(SHOWN)].join("; ");
    if lines.len() > SHOWN {
        out += &format!("; and {} more in the profile", lines.len() - SHOWN);
    }
    out
}

fn names(caps: &[Cap]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// What a replay that was not faithful leaves: the recorded set, and why.
const NOT_FAITHFUL_ADVICE: &str = "The command changes what it finds the next time (files it created, owners it set): restore that state before each replay with --setup CMD, or record it in a fresh container";

pub fn minimize(
    session: &mut Session,
    spec: &Spec,
    recorded: &Run,
    hooks: Hooks<'_>,
    profile: &mut Profile,
) -> anyhow::Result<()> {
    let mut r = Replayer {
        session,
        argv: spec.argv.clone(),
        hooks,
        deadline: (recorded.duration * 3).max(Duration::from_secs(10)),
        replays: 0,
        progress: progress::Progress::new(hooks.progress),
    };
    prove(
        &mut r,
        recorded.exit_status,
        &capability_set::own(caps::CapSet::Effective),
        hooks.check,
        profile,
    )?;
    let seen = crate::alternatives::Seen::from_notes(&r.session.arg_notes(recorded.workload));
    alternatives::prove(&mut r, recorded.exit_status, &seen, profile)?;
    r.progress.done();
    Ok(())
}

/// How the command is replayed: a process under a bounding set (`Replayer`), or a container
/// started with `--cap-drop=ALL --cap-add=...` (`container.rs`).
pub trait Replay {
    /// Runs the command once, traced: with exactly `caps`, or as the recording ran (None).
    fn replay(&mut self, caps: Option<&BTreeSet<Cap>>) -> anyhow::Result<Outcome>;
    /// Replays so far.
    fn replays(&self) -> u32;
    /// Says what the next replay tries (a progress line on a terminal).
    fn announce(&mut self, _total: u32, _what: &str) {}
}

/// Steps (a), (b), (c) on `profile`, whose recording exited `recorded_status`; step (b) looks
/// for capabilities used without a check among `candidates_from` (what the recording held).
pub fn prove(
    r: &mut impl Replay,
    recorded_status: i32,
    candidates_from: &BTreeSet<Cap>,
    check: Option<&str>,
    profile: &mut Profile,
) -> anyhow::Result<()> {
    let mut report = Minimize::default();
    if let Some(check) = check
        && !shell(check, "--check")?
    {
        report.note = Some(format!(
            "--check {check:?} failed after the recording itself: it must pass on what the recording did; kept the recorded set"
        ));
        profile.minimize = Some(report);
        return Ok(());
    }
    let recorded_set: BTreeSet<Cap> = profile.cap_add.iter().copied().collect();
    let recorded_denied: BTreeSet<Cap> = profile.denied.iter().map(|c| c.cap).collect();
    let finish = |profile: &mut Profile, mut report: Minimize, replays: u32, note: String| {
        report.note = Some(note);
        report.replays = replays;
        profile.minimize = Some(report);
    };

    // (a) The recording's own privileges must reproduce it: outcome and audited checks.
    // Replays planned when nothing has to be added: (a), (b) and one per member in (c).
    let planned = 2 + recorded_set.len() as u32;
    r.announce(planned, "with captrace's own privileges");
    let baseline = r.replay(None)?;
    if baseline.exit_status != recorded_status {
        let note = format!(
            "not re-runnable: a replay exited {} where the recording exited {}; kept the recorded set. Use --setup CMD to restore what the command changes before each replay",
            baseline.exit_status, recorded_status
        );
        finish(profile, report, r.replays(), note);
        return Ok(());
    }
    report.rerunnable = true;
    if !baseline.check_ok {
        let check = check.unwrap_or_default();
        let note = format!(
            "not re-runnable: --check {check:?} failed after a replay with captrace's own privileges; kept the recorded set. Use --setup CMD to restore what the command changes before each replay"
        );
        finish(profile, report, r.replays(), note);
        return Ok(());
    }
    let diffs = differences(&profile.checks, &baseline.checks);
    if !diffs.is_empty() {
        report.differences = diffs.iter().map(ToString::to_string).collect();
        let note = format!(
            "replays were not faithful: with captrace's own privileges the replay made other capability checks than the recording ({}); kept the recorded set. {NOT_FAITHFUL_ADVICE}",
            first_few(&report.differences)
        );
        finish(profile, report, r.replays(), note);
        return Ok(());
    }
    report.faithful = true;

    // (b) Exactly the recorded set; if that fails, find what was used without a check.
    let mut set = recorded_set.clone();
    r.announce(planned, "with exactly the recorded set");
    let mut proving = r.replay(Some(&set))?;
    if !passes(&proving, &baseline) {
        let candidates: Vec<Cap> = candidates_from.difference(&recorded_set).copied().collect();
        let full: BTreeSet<Cap> = set
            .union(&candidates.iter().copied().collect())
            .copied()
            .collect();
        let searching = r.replays() + candidates.len() as u32 + 1 + recorded_set.len() as u32;
        let (kept, _) = reduce(&full, &candidates, |s| {
            let missing: Vec<Cap> = full.difference(s).copied().collect();
            r.announce(
                searching,
                &format!(
                    "looking for what is used unchecked, without {}",
                    names(&missing)
                ),
            );
            Ok(passes(&r.replay(Some(s))?, &baseline))
        })?;
        r.announce(searching, "with what the search kept");
        let with_added = r.replay(Some(&kept))?;
        if !passes(&with_added, &baseline) {
            // Nothing below this replay reproduces the recording: prove nothing.
            report.faithful = false;
            let note = "the command does not pass even with every capability captrace holds; kept the recorded set".to_string();
            finish(profile, report, r.replays(), note);
            return Ok(());
        }
        // A capability checked where the recording checked nothing is another code path, not
        // a need of the recording: the recording had every capability and would have shown it.
        let diffs = differences(&profile.checks, &with_added.checks);
        let added: Vec<Cap> = kept.difference(&recorded_set).copied().collect();
        if !diffs.is_empty() {
            report.faithful = false;
            report.differences = diffs.iter().map(ToString::to_string).collect();
            let note = format!(
                "replays were not faithful: exactly the recorded set failed, and the replay that passed with {} made other capability checks than the recording ({}); added nothing, kept the recorded set. {NOT_FAITHFUL_ADVICE}",
                names(&added),
                first_few(&report.differences)
            );
            finish(profile, report, r.replays(), note);
            return Ok(());
        }
        set = kept;
        report.added = added;
        proving = with_added;
    }

    // (c) Each member removed in turn. A member whose code the replay never reached proves
    // nothing by its absence: it stays.
    let mut dropped = Vec::new();
    let mut unproven = Vec::new();
    let members: Vec<Cap> = set.iter().copied().collect();
    let n = members.len();
    for (i, m) in members.into_iter().enumerate() {
        let mut without = set.clone();
        without.remove(&m);
        let left = (n - i) as u32;
        r.announce(r.replays() + left, &format!("trying without {}", m.name()));
        let replay = r.replay(Some(&without))?;
        match judge(&replay, &baseline, m, &dropped) {
            Removal::Drop => {
                set = without;
                dropped.push(m);
                proving = replay;
            }
            Removal::Needed => {}
            Removal::Unreached => unproven.push(format!(
                "kept {m}: the command succeeded without it, but no replay reached the code that checks it, so that proves nothing"
            )),
            Removal::Diverged(others) => unproven.push(format!(
                "kept {m}: without it the command succeeded, but the kernel also refused {}, which it did not in the recording: another code path",
                names(&others)
            )),
        }
    }
    if !unproven.is_empty() {
        report.note = Some(unproven.join("; "));
    }
    report.proven = set.iter().copied().collect();
    report.dropped = dropped;
    report.replays = r.replays();

    for c in &report.added {
        profile.never_checked.push(Added {
            cap: *c,
            reason: "replay: the command fails without it, although no check of it was seen".into(),
        });
    }
    profile.never_checked.retain(|a| set.contains(&a.cap));
    profile.silent_refusals = silent_refusals(&proving.checks, &set, &recorded_denied);
    profile.cap_add = report.proven.clone();
    profile.advice = recommendation::advice(&profile.cap_add, &profile.namespaces);
    profile.advice.extend(recommendation::user_change(
        &profile.checks,
        &profile.cap_add,
    ));
    profile.minimize = Some(report);
    Ok(())
}

/// What a replay without one member says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// The outcome changed (exit status or `--check`): the member is needed.
    Needed,
    /// The kernel refused it and nothing else changed: drop it (a silent refusal).
    Drop,
    /// The outcome stayed, but no check of it was made: the replay took another path.
    Unreached,
    /// The outcome stayed, but other capabilities were refused too: another path.
    Diverged(Vec<Cap>),
}

/// Judges the replay without `m`, after `dropped` were dropped.
pub fn judge(replay: &Outcome, baseline: &Outcome, m: Cap, dropped: &[Cap]) -> Removal {
    if !ends_alike(replay, baseline) {
        return Removal::Needed;
    }
    if !(compare::refused(&replay.checks, m) || namespace_rule_reached(m, &replay.created)) {
        return Removal::Unreached;
    }
    let others: Vec<Cap> = replay
        .denied
        .iter()
        .filter(|c| **c != m && !dropped.contains(c) && !baseline.denied.contains(c))
        .copied()
        .collect();
    if others.is_empty() {
        Removal::Drop
    } else {
        Removal::Diverged(others)
    }
}

/// Capabilities the kernel tests as bits (`recommendation::NAMESPACE_RULES`) never show a check:
/// the replay reached their code when it created that kind of namespace.
fn namespace_rule_reached(cap: Cap, created: &[String]) -> bool {
    recommendation::NAMESPACE_RULES
        .iter()
        .any(|(kind, c, _)| Cap(*c) == cap && created.iter().any(|k| k == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u8]) -> BTreeSet<Cap> {
        v.iter().map(|n| Cap(*n)).collect()
    }

    #[test]
    fn passes_needs_same_status_and_no_new_denial() {
        let outcome = |exit_status, check_ok, denied| Outcome {
            exit_status,
            check_ok,
            denied,
            ..Default::default()
        };
        let base = outcome(0, true, set(&[24]));
        assert!(passes(&outcome(0, true, set(&[24])), &base));
        assert!(!passes(&outcome(1, true, set(&[])), &base));
        assert!(!passes(&outcome(0, true, set(&[0])), &base));
        // --check failed.
        assert!(!passes(&outcome(0, false, set(&[24])), &base));
    }

    fn denied_check(cap: u8, audit: crate::profile::Audit) -> Check {
        Check {
            cap: Cap(cap),
            verdict: crate::profile::Verdict::Denied,
            audit,
            scope: crate::profile::Scope::Host,
            syscall: Some("setsockopt".into()),
            count: 1,
            pid: None,
            comm: None,
            call_paths: vec![],
            origin: crate::profile::Origin::Workload,
            first_seen_ms: None,
            last_seen_ms: None,
        }
    }

    #[test]
    fn a_member_is_dropped_only_when_the_replay_reached_its_check() {
        use crate::profile::Audit;
        let base = Outcome {
            check_ok: true,
            ..Default::default()
        };
        let refused = Outcome {
            check_ok: true,
            denied: set(&[12]),
            checks: vec![denied_check(12, Audit::Audited)],
            ..Default::default()
        };
        assert_eq!(judge(&refused, &base, Cap(12), &[]), Removal::Drop);
        // A noaudit denial is not the code that needs it.
        let noaudit = Outcome {
            check_ok: true,
            checks: vec![denied_check(12, Audit::Noaudit)],
            ..Default::default()
        };
        assert_eq!(judge(&noaudit, &base, Cap(12), &[]), Removal::Unreached);
        assert_eq!(
            judge(
                &Outcome {
                    check_ok: true,
                    ..Default::default()
                },
                &base,
                Cap(10),
                &[]
            ),
            Removal::Unreached
        );
        // The outcome changed.
        let failed = Outcome {
            exit_status: 1,
            ..refused
        };
        assert_eq!(judge(&failed, &base, Cap(12), &[]), Removal::Needed);
        let check_failed = Outcome {
            check_ok: false,
            checks: vec![denied_check(12, Audit::Audited)],
            ..Default::default()
        };
        assert_eq!(judge(&check_failed, &base, Cap(12), &[]), Removal::Needed);
        // Another capability refused as well, one not dropped before: another path.
        let more = Outcome {
            check_ok: true,
            denied: set(&[12, 1]),
            checks: vec![
                denied_check(12, Audit::Audited),
                denied_check(1, Audit::Audited),
            ],
            ..Default::default()
        };
        assert_eq!(
            judge(&more, &base, Cap(12), &[]),
            Removal::Diverged(vec![Cap(1)])
        );
        assert_eq!(judge(&more, &base, Cap(12), &[Cap(1)]), Removal::Drop);
    }

    #[test]
    fn the_setfcap_rule_is_reached_by_creating_a_user_namespace() {
        let base = Outcome {
            check_ok: true,
            ..Default::default()
        };
        let created = Outcome {
            check_ok: true,
            created: vec!["user".into()],
            ..Default::default()
        };
        assert_eq!(judge(&created, &base, Cap(31), &[]), Removal::Drop);
        assert_eq!(judge(&base, &base, Cap(31), &[]), Removal::Unreached);
    }

    #[test]
    fn the_note_names_five_differences_at_most() {
        let lines: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        assert_eq!(first_few(&lines[..2]), "0; 1");
        assert_eq!(
            first_few(&lines),
            "0; 1; 2; 3; 4; and 2 more in the profile"
        );
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
