//! Proving the safer alternatives (`crate::alternatives`) by replay: the command with the
//! alternative in place of the capability must end as the recording did (exit status and
//! `--check`).
//!
//! Sysctls are set in a network namespace of the replay's own, as a container runtime sets
//! them (`docker run --sysctl`): captrace creates it as root, writes the sysctl there, then the
//! command starts without the capabilities the sysctls replace; when no capability is left it
//! starts as the non-root `nobody`, as `docker run --user` would. `--as-user NAME` starts the
//! command as NAME with the rest of the set as ambient capabilities, and without SETUID and
//! SETGID.
use crate::{
    alternatives::{self, NONROOT_UID, Seen},
    launch::{NsSet, Privileges, Sandbox, User},
    profile::{Alternative, Profile},
};

use super::{Replay as _, Replayer};

/// Finds the alternatives of the proven set and proves each kind by one replay. Only after a
/// faithful minimization: otherwise replays say nothing about the recording.
pub(super) fn prove(
    r: &mut Replayer<'_>,
    recorded_status: i32,
    seen: &Seen,
    profile: &mut Profile,
) -> anyhow::Result<()> {
    let set = profile.cap_add.clone();
    let mut sysctl_alts = alternatives::find(&set, seen);
    let mut user_alts = match r.hooks.as_user {
        Some((name, _)) => alternatives::as_user(&set, name),
        None => Vec::new(),
    };
    let faithful = profile.minimize.as_ref().is_some_and(|m| m.faithful);
    let mut notes = Vec::new();
    if !faithful && !sysctl_alts.is_empty() {
        notes.push(
            "the sysctl alternative was not tried: the replays were not faithful".to_string(),
        );
    }
    if faithful && !sysctl_alts.is_empty() {
        let rest = alternatives::remaining(&set, &sysctl_alts);
        let user = rest.is_empty().then(|| User {
            uid: NONROOT_UID,
            gid: NONROOT_UID,
            groups: vec![NONROOT_UID],
        });
        let sandbox = Sandbox {
            ns: NsSet {
                net: true,
                ..Default::default()
            },
            sysctls: alternatives::sysctls(&sysctl_alts),
            ..Default::default()
        };
        let what = match &user {
            Some(u) => format!("as uid {} with the sysctls instead", u.uid),
            None => "with the sysctls instead".to_string(),
        };
        r.announce(r.replays() + 1, &what);
        let privileges = Privileges {
            caps: rest,
            inherit_groups: user.is_none(),
            user,
            ..Default::default()
        };
        let ok = ends_like_recording(
            r.run_with(Some(privileges), Some(sandbox))?,
            recorded_status,
        );
        mark(&mut sysctl_alts, ok);
        if !ok {
            notes.push(not_proven(
                "the sysctl alternative",
                r.hooks.check.is_some(),
            ));
        }
    }
    if let (true, false, Some((name, user))) = (faithful, user_alts.is_empty(), r.hooks.as_user) {
        let rest = alternatives::remaining(&set, &user_alts);
        r.announce(r.replays() + 1, &format!("started as {name}"));
        let privileges = Privileges {
            caps: rest,
            user: Some(user.clone()),
            ..Default::default()
        };
        let ok = ends_like_recording(r.run_with(Some(privileges), None)?, recorded_status);
        mark(&mut user_alts, ok);
        if !ok {
            notes.push(format!(
                "started as {name} without SETUID and SETGID, the command did not end as the recording did: keep them, or check that it supports starting as that user"
            ));
        }
    } else if r.hooks.as_user.is_some() && !faithful {
        notes.push("--as-user was not tried: the replays were not faithful".to_string());
    } else if let Some((name, _)) = r.hooks.as_user
        && user_alts.is_empty()
    {
        notes.push(format!(
            "--as-user {name}: the set has neither SETUID nor SETGID, nothing to replace"
        ));
    }
    if !notes.is_empty()
        && let Some(m) = profile.minimize.as_mut()
    {
        let mut all: Vec<String> = m.note.take().into_iter().collect();
        all.extend(notes);
        m.note = Some(all.join("; "));
    }
    if let Some(m) = profile.minimize.as_mut() {
        m.replays = r.replays();
    }
    profile.alternatives = sysctl_alts.into_iter().chain(user_alts).collect();
    Ok(())
}

fn ends_like_recording(o: super::Outcome, recorded_status: i32) -> bool {
    o.exit_status == recorded_status && o.check_ok
}

fn mark(alts: &mut [Alternative], proven: bool) {
    for a in alts {
        a.proven = proven;
    }
}

fn not_proven(what: &str, with_check: bool) -> String {
    let why = if with_check {
        " (the replay has a network namespace of its own: a --check run on the host's network cannot reach it)"
    } else {
        ""
    };
    format!("{what} was not proven: the replay with it did not end as the recording did{why}")
}
