//! The record/replay engine: one tracer shared by consecutive traced runs of commands (the recording and its replays),
//! each run a workload of its own.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use nix::{sys::signal::Signal, unistd::Pid};
use tracer_common::Policy;

use crate::{
    capability,
    container::follow::Follower,
    enforce,
    events::{self, Collector, Decoded},
    launch::{self, Spec},
    loader::{Options, Tracer},
    namespaces,
    output::To,
    profile::{Check, ContainerProfile, Losses, NsCallRecord, Profile},
    recommendation,
    stop::{self, Stop, Wake},
    symbolizer::Symbolizer,
};

/// How often a recording polls the counts for the times checks were last seen: reading the
/// counters costs two bpf() calls per distinct check, so not on every 20 ms tick.
const COUNT_POLL: Duration = Duration::from_millis(100);

pub struct Session {
    tracer: Tracer,
    ring: RingBuf<MapData>,
    collector: Collector,
    symbolizer: Symbolizer,
    next_workload: u64,
    /// The enforcer's policy for every run of this session (needs `Options::enforce`).
    policy: Option<Policy>,
    /// Containers the runs start (needs `Options::follow_cgroups_outside`).
    follower: Option<Follower>,
    /// The denials printed live.
    live: enforce::LiveDenials,
}

/// How one run ended.
#[derive(Clone, Debug)]
pub struct Run {
    pub workload: u64,
    /// The command's exit status (128+N when killed by signal N).
    pub exit_status: i32,
    /// Recording stopped by a signal while descendants were still running.
    pub interrupted: bool,
    pub duration: Duration,
}

/// When a run is over.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    /// Wait for descendants that outlive the command.
    pub follow_daemons: bool,
    /// Kill what is left of the workload after this long (replays).
    pub deadline: Option<Duration>,
}

impl Session {
    pub fn new(options: Options) -> anyhow::Result<Session> {
        let mut tracer = Tracer::load(options)?;
        let ring = tracer.take_events()?;
        let symbolizer = Symbolizer::from_kallsyms().context("reading /proc/kallsyms")?;
        Ok(Session {
            tracer,
            ring,
            collector: Collector::default(),
            symbolizer,
            next_workload: 1,
            policy: None,
            follower: None,
            live: enforce::LiveDenials::default(),
        })
    }

    /// Follows the containers every following run starts, and waits for them as for daemons.
    pub fn follow_containers(&mut self, follower: Follower) {
        self.follower = Some(follower);
    }

    /// Confines every following run with `policy` from its first exec, reporting each denial
    /// live on stderr.
    pub fn enforce(&mut self, policy: Policy) {
        self.policy = Some(policy);
    }

    /// The program watching capability checks.
    pub fn hook_point(&self) -> Option<&'static str> {
        self.tracer.hook_point()
    }

    /// Runs the command traced from its first instruction, until it and (if asked) every
    /// descendant exited, or a signal stops the recording.
    pub fn run(
        &mut self,
        spec: &Spec,
        wait: Wait,
        on_start: &mut dyn FnMut(Pid),
    ) -> anyhow::Result<Run> {
        let workload = self.next_workload;
        self.next_workload += 1;
        let child = launch::spawn_suspended(spec)?;
        let registered = self
            .tracer
            .register(child.pid.as_raw() as u32, workload)
            .and_then(|()| match self.policy {
                Some(p) => self.tracer.set_policy(workload, p),
                None => Ok(()),
            });
        if let Err(e) = registered {
            child.abort();
            return Err(e.into());
        }
        // Only now: the fork above had to happen while captrace had no other thread.
        if let Err(e) = self.symbolizer.start() {
            child.abort();
            return Err(anyhow::Error::from(e).context("reading /proc/kallsyms"));
        }
        // Stop signals are caught from before the command runs, so a Ctrl-C the moment it starts
        // is forwarded to it, never the end of captrace. The command's exit wakes the loop at
        // once; the tick drains events and notices daemons that are not our children.
        let stop =
            stop::block_on(async { Stop::new(Duration::from_millis(20))?.waking_on_children() })
                .and_then(|made| made);
        let stop = match stop {
            Ok(s) => s,
            Err(e) => {
                child.abort();
                return Err(e.into());
            }
        };
        let started = Instant::now();
        self.collector.timeline.begin(workload, started);
        let pid = child.resume()?;
        on_start(pid);
        let (exit_status, interrupted) = stop::block_on(self.wait(stop, pid, workload, wait))??;
        self.drain();
        self.poll_counts();
        Ok(Run {
            workload,
            exit_status,
            interrupted,
            duration: started.elapsed(),
        })
    }

    async fn wait(
        &mut self,
        mut stop: Stop,
        pid: Pid,
        workload: u64,
        wait: Wait,
    ) -> anyhow::Result<(i32, bool)> {
        let started = Instant::now();
        let mut polled = started;
        let mut status = None;
        loop {
            let forwarded = match stop.next().await {
                Wake::Signal(sig) => Some(sig),
                Wake::Tick | Wake::Deadline => None,
            };
            self.drain();
            if polled.elapsed() >= COUNT_POLL {
                self.poll_counts();
                polled = Instant::now();
            }
            if status.is_none() {
                status = launch::try_wait(pid);
            }
            if let Some(sig) = forwarded {
                match status {
                    // The command is still running: it decides what the signal means.
                    None => {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                    // Only daemons are left: stop recording, leave them running.
                    Some(s) => return Ok((s, true)),
                }
            }
            if let Some(limit) = wait.deadline
                && started.elapsed() > limit
            {
                self.kill_workload(workload);
                if status.is_none() {
                    let _ = nix::sys::wait::waitpid(pid, None);
                    status = Some(128 + Signal::SIGKILL as i32);
                }
                return Ok((status.unwrap_or(125), true));
            }
            if let Some(s) = status
                && (!wait.follow_daemons
                    || (self.tracer.live(workload) <= 0 && !self.containers_running()))
            {
                return Ok((s, false));
            }
        }
    }

    /// Reads the events; denials are reported as they come, followed containers are named
    /// while they run.
    fn drain(&mut self) {
        for fresh in self.collector.drain(&mut self.ring) {
            match fresh {
                Decoded::Denial { record, .. } => {
                    self.live.print([record], To::Stderr);
                }
                Decoded::Check { path, tgid, .. } => {
                    if let Some(f) = &mut self.follower {
                        f.observe(path.usage.workload, tgid);
                    }
                }
                Decoded::Ns {
                    workload, record, ..
                } => {
                    if let Some(f) = &mut self.follower {
                        f.observe(workload, record.pid);
                    }
                }
            }
        }
        let tracer = &self.tracer;
        if let Some(f) = &mut self.follower {
            f.refresh(|pid, name| tracer.is_runtime_task(pid, name));
        }
    }

    fn containers_running(&self) -> bool {
        self.follower
            .as_ref()
            .is_some_and(|f| !f.running().is_empty())
    }

    /// Each container the runs started, with its own checks and set.
    pub fn container_profiles(&self) -> anyhow::Result<Vec<ContainerProfile>> {
        let Some(follower) = &self.follower else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in follower.containers() {
            let checks = self.checks(c.workload)?;
            // The runtime's init creating the container's namespaces is not the container.
            let calls = self
                .ns_calls(c.workload)
                .into_iter()
                .filter(|r| r.origin != crate::profile::Origin::Runtime)
                .collect();
            let rec = recommendation::recommend(&checks, &namespaces::summarize(calls));
            out.push(ContainerProfile {
                runtime: c.attribution.container.runtime.as_str().to_string(),
                id: c.attribution.container.id.clone().unwrap_or_default(),
                name: c.attribution.name.clone(),
                image: c.image,
                service: c.service,
                cap_add: rec.cap_add,
                checks,
                denied: rec.denied,
                never_checked: rec.never_checked,
                granted: c.granted.map(capability::from_mask),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Notes which checks' counts grew since the last poll (their last sighting).
    fn poll_counts(&mut self) {
        if let Ok(usage) = self.tracer.check_counts() {
            self.collector.timeline.counts(&usage, Instant::now());
        }
    }

    /// Exact totals of what the enforcer refused or reported in `workload`.
    /// Forks the enforcer refused for want of room in `TASKS`.
    /// The denials printed live (for `enforce::exit_lines`).
    pub fn live_denials(&self) -> &enforce::LiveDenials {
        &self.live
    }

    pub fn forks_refused(&self) -> u64 {
        self.tracer.forks_refused()
    }

    pub fn denial_summary(&self, workload: u64) -> anyhow::Result<Vec<String>> {
        Ok(enforce::summary(&self.tracer.denials()?, workload))
    }

    fn kill_workload(&self, workload: u64) {
        for tid in self.tracer.tasks_of(workload) {
            let _ = nix::sys::signal::kill(Pid::from_raw(tid as i32), Signal::SIGKILL);
        }
    }

    pub fn checks(&self, workload: u64) -> anyhow::Result<Vec<Check>> {
        Ok(events::checks(
            &self.tracer,
            &self.collector,
            &self.symbolizer,
            workload,
        )?)
    }

    pub fn ns_calls(&self, workload: u64) -> Vec<NsCallRecord> {
        self.collector.ns_calls(workload)
    }

    /// What the arguments of the run's checked syscalls showed (`tracer_common::arg_note`).
    pub fn arg_notes(&self, workload: u64) -> Vec<(u16, u16)> {
        self.tracer.arg_notes(workload)
    }

    pub fn losses(&self) -> Losses {
        self.tracer.losses()
    }
}

impl Session {
    /// The profile of one run: checks, namespaces and the static recommendation.
    pub fn profile(&self, run: &Run, argv: &[String]) -> anyhow::Result<Profile> {
        let checks = self.checks(run.workload)?;
        Ok(observed_profile(
            checks,
            self.ns_calls(run.workload),
            argv,
            Some(run.exit_status),
            self.losses(),
            self.hook_point(),
        ))
    }
}

/// A profile from observed checks and namespace calls, with the static recommendation.
pub fn observed_profile(
    checks: Vec<Check>,
    ns_calls: Vec<NsCallRecord>,
    command: &[String],
    exit_status: Option<i32>,
    losses: Losses,
    hook: Option<&str>,
) -> Profile {
    let namespaces = namespaces::summarize(ns_calls);
    let rec = recommendation::recommend(&checks, &namespaces);
    let mut p = Profile::new();
    p.cap_add = rec.cap_add;
    p.command = command.to_vec();
    p.exit_status = exit_status;
    p.kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    p.hook = hook.unwrap_or_default().to_string();
    p.denied = rec.denied;
    p.nested_userns = rec.nested_userns;
    p.never_checked = rec.never_checked;
    p.namespaces = namespaces;
    p.set_losses(losses);
    p.advice = rec.advice;
    p.checks = checks;
    p
}
