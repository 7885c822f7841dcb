//! `record --minimize -- docker run ...` (the container side of `minimize`): each replay runs the same client command with the
//! candidate set injected right after `run` (`--cap-drop=ALL --cap-add=...`), so each replay
//! is a fresh container from the image and carries no state from the last one. The container
//! it starts is followed like the recording's, and only its own checks are compared.
use std::{
    collections::{BTreeSet, HashSet},
    path::Path,
    time::Duration,
};

use super::{Outcome, Replay, shell};
use crate::{
    capability::{self, Cap},
    container::sets,
    launch::Spec,
    profile::{Minimize, Profile},
    recording::{Session, Wait},
};

/// Clients whose `run` takes Docker's capability flags.
const RUN_CLIENTS: &[&str] = &["docker", "podman", "nerdctl"];

/// Where the flags go: right after `run` (`docker run`, `podman container run`), when `argv`
/// is such a client command. Global options of the client (`--log-level=debug`) may precede it.
pub fn run_position(argv: &[String]) -> Option<usize> {
    let name = Path::new(argv.first()?).file_name()?.to_str()?;
    if !RUN_CLIENTS.contains(&name) {
        return None;
    }
    let i = 1 + argv[1..].iter().take_while(|a| a.starts_with('-')).count();
    match (
        argv.get(i).map(String::as_str),
        argv.get(i + 1).map(String::as_str),
    ) {
        (Some("run"), _) => Some(i + 1),
        (Some("container"), Some("run")) => Some(i + 2),
        _ => None,
    }
}

/// `argv` with exactly `caps` for the container.
pub fn inject(argv: &[String], at: usize, caps: &BTreeSet<Cap>) -> Vec<String> {
    let mut out = argv[..at].to_vec();
    out.push("--cap-drop=ALL".into());
    out.extend(caps.iter().map(|c| format!("--cap-add={}", c.name())));
    out.extend_from_slice(&argv[at..]);
    out
}

pub struct ContainerReplayer<'a> {
    pub session: &'a mut Session,
    pub argv: Vec<String>,
    pub at: usize,
    pub setup: Option<&'a str>,
    pub check: Option<&'a str>,
    pub deadline: Duration,
    pub replays: u32,
}

impl Replay for ContainerReplayer<'_> {
    fn replays(&self) -> u32 {
        self.replays
    }

    fn replay(&mut self, caps: Option<&BTreeSet<Cap>>) -> anyhow::Result<Outcome> {
        if let Some(setup) = self.setup {
            anyhow::ensure!(
                shell(setup, "--setup")?,
                "--setup {setup:?} failed before a replay: it must exit 0"
            );
        }
        self.replays += 1;
        let argv = match caps {
            Some(c) => inject(&self.argv, self.at, c),
            None => self.argv.clone(),
        };
        let before: HashSet<String> = self
            .session
            .container_profiles()?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let run = self.session.run(
            &Spec {
                argv,
                quiet: true,
                ..Default::default()
            },
            Wait {
                follow_daemons: true,
                deadline: Some(self.deadline),
            },
            &mut |_| {},
        )?;
        let check_ok = match self.check {
            Some(check) => shell(check, "--check")?,
            None => true,
        };
        let new: Vec<_> = self
            .session
            .container_profiles()?
            .into_iter()
            .filter(|c| !before.contains(&c.id))
            .collect();
        // A replay that started no container (or several) made none of the recording's
        // checks: step (a) then finds it unfaithful, and nothing is concluded from it.
        let Some(c) = new.into_iter().next() else {
            return Ok(Outcome {
                exit_status: run.exit_status,
                check_ok,
                ..Default::default()
            });
        };
        Ok(Outcome {
            exit_status: run.exit_status,
            check_ok,
            denied: c.denied.iter().map(|d| d.cap).collect(),
            checks: c
                .checks
                .into_iter()
                .filter(|k| k.origin.is_workload())
                .collect(),
            created: Vec::new(),
        })
    }
}

/// `--minimize` of the one container the recording started: steps (a)-(c) of `minimize` on
/// its own checks, each replay a fresh container ([`ContainerReplayer`]). Step (b) looks
/// for capabilities used without a check among those the runtime granted it.
pub fn minimize(
    r: &mut impl Replay,
    recorded_status: i32,
    check: Option<&str>,
    profile: &mut Profile,
) -> anyhow::Result<()> {
    if profile.containers.len() != 1 {
        profile.minimize = Some(Minimize {
            note: Some(format!(
                "not minimized: the recording started {} containers, and --minimize replays exactly one",
                profile.containers.len()
            )),
            ..Default::default()
        });
        return Ok(());
    }
    let c = &profile.containers[0];
    let mut own = Profile::new();
    own.cap_add = c.cap_add.clone();
    own.checks = c
        .checks
        .iter()
        .filter(|k| k.origin.is_workload())
        .cloned()
        .collect();
    own.denied = c.denied.clone();
    own.never_checked = c.never_checked.clone();
    let held: BTreeSet<Cap> = match &c.granted {
        Some(g) => g.iter().copied().collect(),
        None => capability::docker_defaults().collect(),
    };
    super::prove(r, recorded_status, &held, check, &mut own)?;
    let mut containers = profile.containers.clone();
    let c = &mut containers[0];
    c.cap_add = own.cap_add;
    c.never_checked = own.never_checked;
    c.minimize = own.minimize.clone();
    c.silent_refusals = own.silent_refusals.clone();
    sets::apply(profile, containers);
    profile.minimize = own.minimize;
    profile.silent_refusals = own.silent_refusals;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_go_right_after_run() {
        let a = argv("docker run --rm bb sh -c true");
        assert_eq!(run_position(&a), Some(2));
        let set: BTreeSet<Cap> = [Cap(0), Cap(10)].into_iter().collect();
        assert_eq!(
            inject(&a, 2, &set),
            argv(
                "docker run --cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE --rm bb sh -c true"
            )
        );
        assert_eq!(
            run_position(&argv(
                "/usr/bin/podman --log-level=info container run bb true"
            )),
            Some(4)
        );
        assert_eq!(run_position(&argv("docker start -a web")), None);
        assert_eq!(run_position(&argv("docker-compose up")), None);
        assert_eq!(run_position(&argv("sh -c docker run bb")), None);
    }
}
