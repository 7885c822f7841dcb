//! `captrace record -- CMD...` and `captrace record --container X`.
use std::{path::Path, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    app::UsageError,
    cli::RecordArgs,
    commands::monitor,
    container::{
        follow::{self, Follower},
        sets,
    },
    launch::{self, Spec},
    loader::Options,
    minimize,
    monitor::{Filter, Monitor},
    profile::Profile,
    report,
    session::{Session, Wait, observed_profile},
};

pub fn run(args: RecordArgs) -> anyhow::Result<u8> {
    if let Some(container) = &args.container {
        return record_container(&args, container);
    }
    // Everything that can be checked is checked before anything starts.
    launch::resolve(&args.command[0])?;
    check_output_dir(args.output.as_deref())?;
    args.html
        .as_deref()
        .map(super::report::check_dir)
        .transpose()?;

    let follows = args.containers || follow::is_client(&args.command[0]);
    if follows && args.minimize {
        return Err(UsageError(
            "--minimize cannot replay containers yet: record without it, then check the set with `docker run --cap-drop=ALL --cap-add=...`".into(),
        )
        .into());
    }
    let follower = if follows {
        match Follower::start() {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("captrace: containers it starts cannot be followed: {e:#}");
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
    if follows {
        sets::apply(&mut profile, session.container_profiles()?);
    }
    if args.minimize {
        minimize::minimize(
            &mut session,
            &spec,
            &run,
            minimize::Hooks {
                setup: args.setup.as_deref(),
                check: args.check.as_deref(),
            },
            &mut profile,
        )?;
    }

    finish(&args, &profile)?;
    Ok((run.exit_status & 0xff) as u8)
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
        super::report::write_html(profile, out)?;
    }
    Ok(())
}

/// `record --container X`: from now until the container's init exits, or a signal.
fn record_container(args: &RecordArgs, name: &str) -> anyhow::Result<u8> {
    check_output_dir(args.output.as_deref())?;
    args.html
        .as_deref()
        .map(super::report::check_dir)
        .transpose()?;
    let (cgroup, found) = monitor::container_cgroup(name)?;
    let mut mon = Monitor::start(vec![cgroup], Filter::default(), args.hook.hook)?;
    let short = &found.id[..12.min(found.id.len())];
    eprintln!(
        "captrace: recording container {} ({}) until it exits or Ctrl-C",
        crate::escape::printable(&found.name),
        crate::escape::printable(short)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = sigint.recv() => true,
                _ = sigterm.recv() => true,
            };
            let _ = mon.poll();
            if stop || !Path::new(&format!("/proc/{}", found.pid)).exists() {
                return anyhow::Ok(());
            }
        }
    })?;
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

/// `-o FILE` into a directory that does not exist is bad usage, found before anything starts.
pub fn check_output_dir(output: Option<&Path>) -> anyhow::Result<()> {
    if let Some(out) = output {
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "cannot write profile {}: directory {} does not exist",
                out.display(),
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}
