//! `captrace enforce --pid PID | --container ID | --cgroup DIR`: confine what is already running,
//! in the kernel, until Ctrl-C or until it is gone. Dropping the tracer removes the confinement.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use nix::sys::signal::Signal;

use crate::{
    capability::{self, Cap},
    capability_set::requested_set,
    cli::EnforceArgs,
    container::{alive, cgroup_dir, comm, container_cgroup, tree_threads},
    enforce,
    error::UsageError,
    events::{Collector, Decoded},
    loader::{Options, Tracer},
    output::{self, To},
    stop::{self, Stop, Wake},
};

/// The single workload id of an `enforce` instance.
const WORKLOAD: u64 = 1;

/// What is confined.
enum Target {
    /// A process tree, followed in the kernel as `record` follows its command.
    Tree(u32),
    /// Every process of a cgroup, present and future.
    Cgroup {
        id: u64,
        dir: PathBuf,
        label: String,
    },
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

fn target(args: &EnforceArgs) -> anyhow::Result<Target> {
    if let Some(pid) = args.pid {
        if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(usage(format!("--pid {pid}: no such process")));
        }
        return Ok(Target::Tree(pid as u32));
    }
    if let Some(name) = &args.container {
        let (id, found) = container_cgroup(name)?;
        let dir = crate::container::resolve::pid_cgroup_path(found.pid).unwrap_or_default();
        return Ok(Target::Cgroup {
            id,
            dir: cgroup_dir(&dir),
            label: format!(
                "container {} ({})",
                found.name,
                &found.id[..12.min(found.id.len())]
            ),
        });
    }
    let dir = args.cgroup.clone().unwrap_or_default();
    let on_cgroup2 = nix::sys::statfs::statfs(&dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !dir.is_dir() || !on_cgroup2 {
        return Err(usage(format!(
            "--cgroup {}: not a cgroup v2 directory",
            dir.display()
        )));
    }
    let id = fs::metadata(&dir)?.ino();
    Ok(Target::Cgroup {
        id,
        label: format!("cgroup {}", dir.display()),
        dir,
    })
}

/// Adopts the threads of the tree rooted at `pid`. A thread that exited before it was adopted
/// never reaches the exit hook again, so its entry is removed here: a stale entry would outlive
/// the tree and could confine whoever gets the thread id next.
fn adopt_tree(tracer: &mut Tracer, pid: u32) -> anyhow::Result<()> {
    // Twice: a child forked while the first walk ran is in the second (a fork after its parent
    // was adopted is followed by the kernel).
    for _ in 0..2 {
        let tids: Vec<u32> = tree_threads(pid)
            .into_iter()
            .filter(|t| alive(*t))
            .collect();
        tracer.adopt(&tids, WORKLOAD)?;
        let dead: Vec<u32> = tids.into_iter().filter(|t| !alive(*t)).collect();
        tracer.forget(&dead)?;
    }
    Ok(())
}

/// Prints each denial the kernel reported since the last call, on stdout (`enforce`'s output is
/// its denials).
fn report_denials(collector: &mut Collector, ring: &mut RingBuf<MapData>) {
    let denials = collector
        .drain(ring)
        .into_iter()
        .filter_map(Decoded::into_denial);
    enforce::print_denials(denials, To::Stdout);
}

pub fn run(args: EnforceArgs) -> anyhow::Result<u8> {
    let every: BTreeSet<Cap> = capability::all().collect();
    let allowed = requested_set(
        args.profile.as_deref(),
        &args.cap_drop,
        &args.cap_add,
        &every,
    )?;
    let target = target(&args)?;
    let mut tracer = Tracer::load(Options {
        hook: None,
        enforce: true,
        enforce_cgroups: match &target {
            Target::Cgroup { id, .. } => vec![(*id, WORKLOAD)],
            Target::Tree(_) => Vec::new(),
        },
        ..Options::default()
    })?;
    tracer.set_policy(WORKLOAD, enforce::policy(&allowed, args.mode, true))?;
    let label = match &target {
        Target::Tree(pid) => {
            adopt_tree(&mut tracer, *pid)?;
            format!(
                "process {pid} ({}) and its descendants",
                crate::escape::printable(&comm(*pid))
            )
        }
        Target::Cgroup { label, .. } => crate::escape::printable(label).into_owned(),
    };
    let names: Vec<String> = allowed.iter().map(|c| c.name()).collect();
    output::note(format_args!(
        "{} {label} to {}; Ctrl-C releases it",
        match args.mode {
            enforce::Mode::Enforce => "confining",
            enforce::Mode::Complain => "watching (complain mode)",
        },
        if names.is_empty() {
            "no capabilities".to_string()
        } else {
            names.join(",")
        }
    ));
    let mut ring = tracer.take_events()?;
    let mut collector = Collector::default();
    let why = stop::block_on(async {
        let mut wake = Stop::new(Duration::from_millis(100))?;
        loop {
            let stop = match wake.next().await {
                Wake::Signal(Signal::SIGINT) => Some("interrupted"),
                Wake::Signal(Signal::SIGTERM) => Some("terminated"),
                Wake::Signal(_) => Some("hung up"),
                Wake::Tick | Wake::Deadline => None,
            };
            report_denials(&mut collector, &mut ring);
            if let Some(why) = stop {
                return anyhow::Ok(why);
            }
            let gone = match &target {
                Target::Tree(_) => !tracer.tasks_of(WORKLOAD).into_iter().any(alive),
                Target::Cgroup { dir, .. } => !dir.is_dir(),
            };
            if gone {
                return Ok("the workload is gone");
            }
        }
    })??;
    report_denials(&mut collector, &mut ring);
    for line in enforce::summary(&tracer.denials()?, WORKLOAD) {
        output::note(format_args!("enforce: total: {line}"));
    }
    drop(tracer);
    output::note(format_args!("released {label} ({why})"));
    Ok(0)
}
