//! `captrace record -- CMD...` and `captrace record --container X`.
use std::{io::IsTerminal as _, path::Path, time::Duration};

use crate::{
    alternatives,
    cli::RecordArgs,
    container::{
        container_cgroup,
        follow::{self, Follower},
        sets,
    },
    error::UsageError,
    html,
    launch::{self, Spec, User, privileges},
    loader::Options,
    minimize::{
        self,
        container::{self as replay, ContainerReplayer},
    },
    monitor::{Filter, Monitor},
    output,
    profile::{self, Profile},
    recording::{Session, Wait, observed_profile},
    report,
    stop::{self, Stop},
};

pub fn run(args: RecordArgs) -> anyhow::Result<u8> {
    if let Some(container) = &args.container {
        return record_container(&args, container);
    }
    // Everything that can be checked is checked before anything starts.
    launch::resolve(&args.command[0])?;
    profile::check_output_dir(args.output.as_deref())?;
    args.html.as_deref().map(html::check_output).transpose()?;

    let as_user = args.as_user.as_deref().map(as_user).transpose()?;
    let follows = args.containers || follow::is_client(&args.command[0]);
    let replay_at = replay::run_position(&args.command);
    if follows && as_user.is_some() {
        return Err(UsageError(
            "--as-user replays a command started as that user; for a container, record it with `docker run --user NAME` instead".into(),
        )
        .into());
    }
    if follows && args.minimize && replay_at.is_none() {
        return Err(UsageError(
            "--minimize replays one container started by `docker run`, `podman run` or `nerdctl run` (the flags are injected after `run`); record other container commands without it".into(),
        )
        .into());
    }
    let follower = if follows {
        match Follower::start() {
            Ok(f) => Some(f),
            // Minimizing the client instead of its container would be a wrong answer.
            Err(e) if args.minimize => return Err(e.context("cannot follow containers")),
            Err(e) => {
                output::note(format_args!(
                    "containers it starts cannot be followed: {e:#}"
                ));
                None
            }
        }
    } else {
        None
    };
    let mut session = Session::new(Options {
        hook: Some(args.hook.hook),
        follow_cgroups_outside: follower.as_ref().map(|f| f.1),
        ..Options::default()
    })?;
    let follows = follower.is_some();
    if let Some((f, _)) = follower {
        session.follow_containers(f);
    }
    let spec = Spec {
        argv: args.command.clone(),
        ..Default::default()
    };
    let run = session.run(
        &spec,
        Wait {
            follow_daemons: !args.no_follow_daemons,
            deadline: None,
        },
        &mut |_| {},
    )?;
    let mut profile = session.profile(&run, &args.command)?;
    let seen = alternatives::Seen::from_notes(&session.arg_notes(run.workload));
    profile.alternatives = alternatives::find(&profile.cap_add, &seen);
    if follows {
        sets::apply(&mut profile, session.container_profiles()?);
        if let (true, Some(at)) = (args.minimize, replay_at) {
            let mut r = ContainerReplayer {
                session: &mut session,
                argv: args.command.clone(),
                at,
                setup: args.setup.as_deref(),
                check: args.check.as_deref(),
                deadline: (run.duration * 3).max(Duration::from_secs(30)),
                replays: 0,
            };
            replay::minimize(&mut r, run.exit_status, args.check.as_deref(), &mut profile)?;
        }
    } else if args.minimize {
        minimize::minimize(
            &mut session,
            &spec,
            &run,
            minimize::Hooks {
                setup: args.setup.as_deref(),
                check: args.check.as_deref(),
                as_user: as_user.as_ref(),
                progress: !args.json && std::io::stderr().is_terminal(),
            },
            &mut profile,
        )?;
    }

    finish(&args, &profile)?;
    Ok((run.exit_status & 0xff) as u8)
}

/// `--as-user NAME` against the host's passwd and group files, before anything starts.
fn as_user(name: &str) -> anyhow::Result<(String, User)> {
    let read = |f: &str| std::fs::read_to_string(Path::new("/etc").join(f)).unwrap_or_default();
    let user = privileges::parse_user(name, &read("passwd"), &read("group"))
        .map_err(|e| UsageError(format!("--as-user {name}: {e}")))?;
    if user.uid == 0 {
        return Err(UsageError(format!(
            "--as-user {name}: that is root; give the user the command switches to (e.g. www-data)"
        ))
        .into());
    }
    Ok((name.to_string(), user))
}

fn finish(args: &RecordArgs, profile: &Profile) -> anyhow::Result<()> {
    if args.json {
        eprintln!("{}", profile.to_json());
    } else {
        eprint!(
            "{}",
            crate::color::report(&report::render(profile), crate::color::stderr())
        );
    }
    if let Some(out) = &args.output {
        profile.write(out)?;
    }
    if let Some(out) = &args.html {
        html::write(profile, out)?;
    }
    Ok(())
}

/// `record --container X`: from now until the container's init exits, or a signal.
fn record_container(args: &RecordArgs, name: &str) -> anyhow::Result<u8> {
    profile::check_output_dir(args.output.as_deref())?;
    args.html.as_deref().map(html::check_output).transpose()?;
    let (cgroup, found) = container_cgroup(name)?;
    let mut mon = Monitor::start(vec![cgroup], Filter::default(), args.hook.hook)?;
    let short = &found.id[..12.min(found.id.len())];
    output::note(format_args!(
        "recording container {} ({}) until it exits or Ctrl-C",
        crate::escape::printable(&found.name),
        crate::escape::printable(short)
    ));
    stop::block_on(async {
        let mut stop = Stop::new(Duration::from_millis(100))?;
        loop {
            let stops = stop.next().await.stops();
            let _ = mon.poll();
            if stops || !Path::new(&format!("/proc/{}", found.pid)).exists() {
                return anyhow::Ok(());
            }
        }
    })??;
    let _ = mon.poll();
    mon.refresh()?;
    let stats = mon.stats.get(&cgroup).cloned().unwrap_or_default();
    let command = vec![format!("container:{}", found.name)];
    let mut profile = observed_profile(
        stats.checks,
        stats.ns_calls,
        &command,
        None,
        mon.losses(),
        mon.hook_point(),
    );
    // Start-up is where most capabilities are used (binding ports, chown of data directories,
    // dropping to a service user): say that it was not seen, and how to see it.
    profile.advice.insert(
        0,
        format!(
            "start-up was not observed (the container was already running): record it from its first instruction with `captrace record -- docker run ...`, or run `docker restart {}` while this records",
            found.name
        ),
    );
    finish(args, &profile)?;
    Ok(0)
}
