//! `captrace enforce --pid PID | --container ID | --cgroup DIR`: confine what is already running,
//! in the kernel, until Ctrl-C or until it is gone. Dropping the tracer removes the confinement.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use nix::sys::signal::Signal;

use crate::{
    adopt,
    capability::{self, Cap},
    capability_set::requested_set,
    cli::EnforceArgs,
    container::{alive, cgroup_dir, comm, container_cgroup},
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
        if let Some(why) = adopt::refusal(pid as u32) {
            return Err(usage(format!("--pid {pid}: {why}")));
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
    if holds_captrace(id) {
        return Err(usage(format!(
            "--cgroup {}: captrace itself runs in it or below it, and would be confined too; give \
             the workload's own cgroup",
            dir.display()
        )));
    }
    Ok(Target::Cgroup {
        id,
        label: format!("cgroup {}", dir.display()),
        dir,
    })
}

/// Whether cgroup `id` is captrace's own cgroup v2 or one of its ancestors (the enforcer
/// confines every cgroup below a confined one).
fn holds_captrace(id: u64) -> bool {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let dir = cgroup_dir(path);
    dir.ancestors()
        .take(path.split('/').filter(|c| !c.is_empty()).count() + 1)
        .any(|d| fs::metadata(d).is_ok_and(|m| m.ino() == id))
}

/// How long a confined cgroup's path may be missing before `enforce` takes the workload for
/// gone. `docker restart` removes the container's cgroup and makes a new one at the same path
/// a moment later: seen within this window, the new cgroup is an error (it is NOT confined),
/// not a quiet "gone".
const CGROUP_GRACE: Duration = Duration::from_secs(5);

/// What a look at the confined cgroup's path found.
#[derive(Debug, PartialEq, Eq)]
enum Cgroup {
    /// The confined cgroup is still there.
    Same,
    /// The path is missing, for less than `CGROUP_GRACE` (`first`: seen so for the first time).
    Missing { first: bool },
    /// The path has been missing for `CGROUP_GRACE`.
    Gone,
    /// The path names another cgroup.
    Replaced,
}

/// Since when the confined cgroup's path has been missing.
#[derive(Debug, Default)]
struct CgroupWatch {
    missing_since: Option<Instant>,
}

impl CgroupWatch {
    /// `now_id`: the id (inode) at the path now, `None` when it is missing.
    fn look(&mut self, id: u64, now_id: Option<u64>, now: Instant) -> Cgroup {
        match now_id {
            Some(found) if found == id => {
                self.missing_since = None;
                Cgroup::Same
            }
            Some(_) => Cgroup::Replaced,
            None => match self.missing_since {
                None => {
                    self.missing_since = Some(now);
                    Cgroup::Missing { first: true }
                }
                Some(since) if now.duration_since(since) >= CGROUP_GRACE => Cgroup::Gone,
                Some(_) => Cgroup::Missing { first: false },
            },
        }
    }
}

/// The kernel's `TASKS` as `adopt` registers threads in it, all under `enforce`'s workload.
struct Tasks<'a>(&'a mut Tracer);

impl adopt::Registry for Tasks<'_> {
    fn register(&mut self, tids: &[u32]) -> anyhow::Result<()> {
        Ok(self.0.adopt(tids, WORKLOAD)?)
    }
    fn unregister(&mut self, tids: &[u32]) -> anyhow::Result<()> {
        Ok(self.0.forget(tids)?)
    }
}

/// Prints each denial the kernel reported since the last call, on stdout (`enforce`'s output is
/// its denials).
fn report_denials(
    collector: &mut Collector,
    ring: &mut RingBuf<MapData>,
    live: &mut enforce::LiveDenials,
) {
    let denials = collector
        .drain(ring)
        .into_iter()
        .filter_map(Decoded::into_denial);
    live.print(denials, To::Stdout);
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
            adopt::adopt_tree(&mut Tasks(&mut tracer), *pid)?;
            format!(
                "process {pid} ({}) and its descendants",
                crate::escape::printable(&comm(*pid))
            )
        }
        Target::Cgroup { label, .. } => crate::escape::printable(label).into_owned(),
    };
    let mut ring = tracer.take_events()?;
    let mut collector = Collector::default();
    let mut live = enforce::LiveDenials::default();
    // The handlers are in place before the line that tells the user Ctrl-C releases it: a
    // Ctrl-C right after it must release, not kill captrace before its summary.
    let mut wake = stop::block_on(async { Stop::new(Duration::from_millis(100)) })??;
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
    let mut watch = CgroupWatch::default();
    if let Target::Tree(pid) = &target {
        // Adoption walks the tree as it is now; the kernel follows what it starts from here.
        output::note(format_args!(
            "enforce: --pid confines {pid}, its current descendants and what they start; a \
             process that already left the tree (a daemon that double-forked) is not adopted: \
             confine a service with --cgroup or --container"
        ));
    }
    let why = stop::block_on(async {
        loop {
            let stop = match wake.next().await {
                Wake::Signal(Signal::SIGINT) => Some("interrupted"),
                Wake::Signal(Signal::SIGTERM) => Some("terminated"),
                Wake::Signal(_) => Some("hung up"),
                Wake::Tick | Wake::Deadline => None,
            };
            report_denials(&mut collector, &mut ring, &mut live);
            if let Some(why) = stop {
                return anyhow::Ok(why);
            }
            let gone = match &target {
                // A task with no room in `TASKS` is only in `CONFINED_CHILDREN`, until the
                // kernel frees it.
                Target::Tree(_) => {
                    !tracer.tasks_of(WORKLOAD).into_iter().any(alive)
                        && tracer.confined_children(WORKLOAD) == 0
                }
                Target::Cgroup { id, dir, .. } => {
                    let now = fs::metadata(dir).ok().map(|m| m.ino());
                    match watch.look(*id, now, Instant::now()) {
                        Cgroup::Same => false,
                        Cgroup::Missing { first: true } => {
                            output::note(format_args!(
                                "enforce: {} is gone; waiting {} s in case it is made again \
                                 (a container restart)",
                                crate::escape::printable(&dir.display().to_string()),
                                CGROUP_GRACE.as_secs()
                            ));
                            false
                        }
                        Cgroup::Missing { first: false } => false,
                        Cgroup::Gone => true,
                        // The same path with a new cgroup (`docker restart` makes one): the
                        // processes in it are not the ones confined, and saying "confining"
                        // would be a lie.
                        Cgroup::Replaced => {
                            return Err(anyhow::anyhow!(
                                "{} was replaced by a new cgroup at the same path (a container \
                                 restart?): the new one is NOT confined; run captrace enforce \
                                 again",
                                crate::escape::printable(&dir.display().to_string())
                            ));
                        }
                    }
                }
            };
            if gone {
                return Ok("the workload is gone");
            }
        }
    })??;
    report_denials(&mut collector, &mut ring, &mut live);
    for line in enforce::summary(&tracer.denials()?, WORKLOAD) {
        output::note(format_args!("enforce: total: {line}"));
    }
    for line in enforce::exit_lines(&tracer.losses(), tracer.forks_refused(), &live) {
        output::note(format_args!("enforce: {line}"));
    }
    drop(tracer);
    output::note(format_args!("released {label} ({why})"));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_path_that_comes_back_within_the_grace_is_replaced_and_one_that_stays_away_is_gone()
    {
        let t0 = Instant::now();
        let mut w = CgroupWatch::default();
        assert_eq!(w.look(7, Some(7), t0), Cgroup::Same);
        assert_eq!(w.look(7, None, t0), Cgroup::Missing { first: true });
        assert_eq!(
            w.look(7, None, t0 + CGROUP_GRACE / 2),
            Cgroup::Missing { first: false }
        );
        assert_eq!(w.look(7, Some(8), t0 + CGROUP_GRACE / 2), Cgroup::Replaced);

        let mut w = CgroupWatch::default();
        assert_eq!(w.look(7, None, t0), Cgroup::Missing { first: true });
        assert_eq!(w.look(7, None, t0 + CGROUP_GRACE), Cgroup::Gone);
        // Seen again in between, the window starts over.
        let mut w = CgroupWatch::default();
        w.look(7, None, t0);
        assert_eq!(w.look(7, Some(7), t0 + CGROUP_GRACE / 2), Cgroup::Same);
        assert_eq!(
            w.look(7, None, t0 + CGROUP_GRACE),
            Cgroup::Missing { first: true }
        );
    }
}
