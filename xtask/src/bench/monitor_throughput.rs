//! `captrace monitor` under load: the agent as the bench drives it, and the rising-rate ladder
//! behind the `monitor_*` figures.
//!
//! The agent runs as `captrace monitor --json --metrics 127.0.0.1:PORT`; its exact per-cgroup
//! counts are read from the Prometheus text it serves (`--summary` prints per container only and
//! no counts, so it cannot be compared with what a plain cgroup made). The text is refreshed
//! about once a second, so a count is read until it stops lagging, within a deadline.
use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::monitor_agent::{Agent, READY_MARK};
use super::monitor_cgroup::{Cgroup, cgroup2_root, checks_in};
use super::{Bench, median, run_stdout, value_of};
use crate::cmd::header;

/// Callers in the load generator: more than the machine's two cores, so the checks come from
/// several CPUs and processes at once.
pub const PROCS: u32 = 4;
/// The rate `monitor_cpu_pct_at_100k` is measured at.
const CPU_RATE: u64 = 100_000;
/// Target rates of one round (checks/s, all callers together), rising; 0: as fast as they can.
const LADDER: [u64; 7] = [10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 0];
const LADDER_QUICK: [u64; 4] = [10_000, 100_000, 1_000_000, 0];
/// How long after the last step the agent's counts may take to catch up (it refreshes the
/// text it serves every second).
const SETTLE: Duration = Duration::from_secs(4);
/// After the warm-up: more than a refresh of the agent, so its one-time work is done.
const WARMUP_SETTLE: Duration = Duration::from_millis(1200);

/// The monitor part of the plan.
pub struct MonitorPlan {
    pub rounds: usize,
    pub quick: bool,
}

impl MonitorPlan {
    fn ladder(&self) -> &'static [u64] {
        if self.quick { &LADDER_QUICK } else { &LADDER }
    }

    /// Seconds of calling at `rate`: longer at the rate whose CPU use is reported.
    fn seconds(&self, rate: u64) -> f64 {
        match (self.quick, rate == CPU_RATE) {
            (true, false) => 1.0,
            (true, true) => 3.0,
            (false, false) => 3.0,
            (false, true) => 10.0,
        }
    }

    /// `10k/s 1s, 100k/s 3s, ...` for the definitions.
    pub fn describe_ladder(&self) -> String {
        self.ladder()
            .iter()
            .map(|r| format!("{} {}s", rate_label(*r), self.seconds(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn idle_seconds(&self) -> f64 {
        if self.quick { 1.0 } else { 3.0 }
    }

    /// The longest a round may take, for the agent's own `--duration` (a safety net should
    /// the bench die without stopping it).
    fn round_seconds(&self) -> f64 {
        let calling: f64 = self.ladder().iter().map(|r| self.seconds(*r)).sum();
        calling + self.idle_seconds() + 120.0
    }
}

/// One step of a round: callers at one target rate, in a cgroup of their own.
struct Step {
    target: u64,
    /// How the agent names the step's cgroup.
    labels: Vec<String>,
    /// Calls the generator made (each one audited CAP_SYS_ADMIN check).
    made: u64,
    achieved: f64,
    /// The agent's CPU use while the callers ran, in % of one CPU.
    cpu_pct: f64,
    counted: Option<u64>,
}

/// One round: a fresh agent, then the ladder.
struct Round {
    idle_cpu_pct: f64,
    steps: Vec<Step>,
    rss_mb: f64,
}

impl Round {
    /// The highest achieved rate before the first step whose count differed; 0 when the first
    /// already did; None when no count could be read.
    fn max_exact_rate(&self) -> Option<f64> {
        let mut max = None;
        for s in &self.steps {
            match s.counted {
                Some(n) if n == s.made => {
                    max = Some(max.unwrap_or(0.0f64).max(s.achieved));
                }
                Some(_) => return Some(max.unwrap_or(0.0)),
                None => return max,
            }
        }
        max
    }
}

fn rate_label(rate: u64) -> String {
    match rate {
        0 => "unpaced".into(),
        r if r % 1_000_000 == 0 => format!("{}M/s", r / 1_000_000),
        r if r % 1_000 == 0 => format!("{}k/s", r / 1_000),
        r => format!("{r}/s"),
    }
}

impl Bench {
    // ---- 3. monitor throughput ----------------------------------------------------------------

    pub(super) fn monitor_throughput(&mut self) {
        header("3. monitor throughput: rising rates of checks from several processes");
        const KEYS: [&str; 3] = [
            "monitor_max_checks_per_s",
            "monitor_cpu_pct_at_100k",
            "monitor_rss_mb",
        ];
        if let Some(why) = self.monitor_na {
            println!("{why}");
            for key in KEYS {
                self.set(key, None);
            }
            return;
        }
        let root = match fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .as_deref()
            .and_then(cgroup2_root)
        {
            Some(root) => root,
            None => {
                self.note("monitor throughput: no cgroup v2 hierarchy mounted");
                for key in KEYS {
                    self.set(key, None);
                }
                return;
            }
        };
        let plan = &self.plan.monitor;
        let rounds = plan.rounds;
        let mut done = Vec::new();
        for round in 1..=rounds {
            println!("round {round}/{rounds}");
            match self.measure(|b| b.monitor_round(&root, round)) {
                Ok((r, clean)) => done.push((r, clean)),
                Err(e) => self.note(format!("monitor round {round}: {e:#}")),
            }
        }
        // Rounds with a foreign tracer loaded count only when there is nothing else.
        let usable: Vec<&Round> = if done.iter().any(|(_, clean)| *clean) {
            done.iter().filter(|(_, c)| *c).map(|(r, _)| r).collect()
        } else {
            done.iter().map(|(r, _)| r).collect()
        };
        let steps: Vec<&Step> = usable.iter().flat_map(|r| &r.steps).collect();
        let exact = steps.iter().filter(|s| s.counted == Some(s.made)).count();
        for s in steps.iter().filter(|s| s.counted != Some(s.made)) {
            self.note(format!(
                "monitor at {}: the agent counted {} of the {} checks made",
                rate_label(s.target),
                s.counted.map_or("none".into(), |n| n.to_string()),
                s.made
            ));
        }
        if exact > 0 && exact == steps.len() {
            self.note(
                "monitor: every step was counted exactly, so monitor_max_checks_per_s is the \
                 highest rate the callers reached on this machine, not a limit of the monitor",
            );
        }
        let at = |rate: u64| -> Vec<&Step> {
            steps.iter().copied().filter(|s| s.target == rate).collect()
        };
        let at_cpu_rate = at(CPU_RATE);
        if let Some(slow) = at_cpu_rate
            .iter()
            .find(|s| s.achieved < 0.95 * CPU_RATE as f64)
        {
            self.note(format!(
                "monitor: the callers reached only {:.0} checks/s when asked for {CPU_RATE}",
                slow.achieved
            ));
        }
        let figures = [
            (
                "monitor_max_checks_per_s",
                median(
                    &usable
                        .iter()
                        .filter_map(|r| r.max_exact_rate())
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "monitor_cpu_pct_at_100k",
                median(&at_cpu_rate.iter().map(|s| s.cpu_pct).collect::<Vec<_>>()),
            ),
            (
                "monitor_rss_mb",
                median(&usable.iter().map(|r| r.rss_mb).collect::<Vec<_>>()),
            ),
            (
                "monitor_cpu_pct_idle",
                median(&usable.iter().map(|r| r.idle_cpu_pct).collect::<Vec<_>>()),
            ),
            (
                "monitor_unpaced_checks_per_s",
                median(&at(0).iter().map(|s| s.achieved).collect::<Vec<_>>()),
            ),
            ("monitor_procs", Some(f64::from(PROCS))),
            ("monitor_rounds", Some(usable.len() as f64)),
            ("monitor_steps", Some(steps.len() as f64)),
            ("monitor_steps_exact", Some(exact as f64)),
        ];
        for (key, value) in figures {
            self.set(key, value);
        }
    }

    /// `PROCS` processes in `cgroup` calling sethostname at `rate` for `seconds`: the generator's
    /// output.
    fn callers(&self, cgroup: &Cgroup, rate: u64, seconds: f64) -> anyhow::Result<String> {
        let mut load = Command::new(&self.load_exe);
        load.args(["bench-load", "paced", "--procs"])
            .arg(PROCS.to_string())
            .arg("--rate")
            .arg(rate.to_string())
            .arg("--seconds")
            .arg(seconds.to_string())
            .arg("--cgroup")
            .arg(&cgroup.dir);
        let out = run_stdout(&mut load)?;
        if value_of(&out, "failed") != Some(0.0) {
            bail!("some sethostname calls failed: {out:?}");
        }
        Ok(out)
    }

    /// A fresh agent; its idle CPU use; a warm-up; then each rate of the ladder in a cgroup of
    /// its own; then the counts, once the agent has caught up.
    fn monitor_round(&self, root: &Path, round: usize) -> anyhow::Result<Round> {
        let plan = &self.plan.monitor;
        let agent = Agent::start(&self.captrace, &self.dir, plan.round_seconds())?;
        let (cpu0, t0) = (agent.cpu_seconds()?, Instant::now());
        thread::sleep(Duration::from_secs_f64(plan.idle_seconds()));
        let idle_cpu_pct = 100.0 * (agent.cpu_seconds()? - cpu0) / t0.elapsed().as_secs_f64();
        // The agent's first sight of checks can cost it one-time work (0.1 s of CPU was seen in
        // one run): made here, so that each step shows the steady state.
        let warmup = Cgroup::create(
            root,
            &format!("captrace-bench-{}-{round}-warmup", std::process::id()),
        )?;
        let cpu0 = agent.cpu_seconds()?;
        self.callers(&warmup, 1_000, 0.2)?;
        thread::sleep(WARMUP_SETTLE);
        let warmup_cpu_ms = 1e3 * (agent.cpu_seconds()? - cpu0);
        let (mut steps, mut cgroups) = (Vec::new(), vec![warmup]);
        for &target in plan.ladder() {
            let name = format!(
                "captrace-bench-{}-{round}-{}",
                std::process::id(),
                rate_label(target).replace("/s", "")
            );
            let cgroup = Cgroup::create(root, &name)?;
            let (cpu0, t0) = (agent.cpu_seconds()?, Instant::now());
            let out = self.callers(&cgroup, target, plan.seconds(target))?;
            let cpu_pct = 100.0 * (agent.cpu_seconds()? - cpu0) / t0.elapsed().as_secs_f64();
            let number = |key: &str| {
                value_of(&out, key)
                    .with_context(|| format!("no {key} in the generator's output: {out:?}"))
            };
            steps.push(Step {
                target,
                labels: cgroup.labels.clone(),
                made: number("calls")? as u64,
                achieved: number("checks_per_s")?,
                cpu_pct,
                counted: None,
            });
            cgroups.push(cgroup);
        }
        // The counts lag by up to a refresh: read until every one has caught up or the deadline
        // passes (a count never runs ahead of what was made unless something else was counted).
        let deadline = Instant::now() + SETTLE;
        loop {
            let metrics = agent.metrics()?;
            if !metrics.contains(READY_MARK) {
                bail!("the agent served no counts");
            }
            for s in &mut steps {
                s.counted = Some(checks_in(&metrics, &s.labels, "SYS_ADMIN"));
            }
            if steps.iter().all(|s| s.counted == Some(s.made)) || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
        let rss_mb = agent.peak_rss_mb()?;
        agent.stop()?;
        drop(cgroups);
        for s in &steps {
            println!(
                "  {:<8} made {:>9} in {:>5.0} ms = {:>9.0}/s; counted {:>9} ({}); agent CPU {:>5.1}%",
                rate_label(s.target),
                s.made,
                1e3 * s.made as f64 / s.achieved.max(1.0),
                s.achieved,
                s.counted.map_or("-".into(), |n| n.to_string()),
                if s.counted == Some(s.made) {
                    "exact"
                } else {
                    "DIFFERS"
                },
                s.cpu_pct
            );
        }
        println!(
            "  agent: idle CPU {idle_cpu_pct:.1}%, first checks {warmup_cpu_ms:.0} ms CPU, peak RSS {rss_mb:.1} MiB"
        );
        Ok(Round {
            idle_cpu_pct,
            steps,
            rss_mb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: u64, made: u64, achieved: f64, counted: Option<u64>) -> Step {
        Step {
            target,
            labels: vec![],
            made,
            achieved,
            cpu_pct: 0.0,
            counted,
        }
    }

    #[test]
    fn the_highest_exact_rate_stops_at_the_first_difference() {
        let round = |steps| Round {
            idle_cpu_pct: 0.0,
            steps,
            rss_mb: 0.0,
        };
        let all_exact = round(vec![
            step(10_000, 10_000, 9_990.0, Some(10_000)),
            step(0, 900_000, 890_000.0, Some(900_000)),
            step(1_000_000, 800_000, 790_000.0, Some(800_000)),
        ]);
        assert_eq!(all_exact.max_exact_rate(), Some(890_000.0));
        let differs = round(vec![
            step(10_000, 10_000, 9_990.0, Some(10_000)),
            step(100_000, 100_000, 99_000.0, Some(99_999)),
            step(0, 900_000, 890_000.0, Some(900_000)),
        ]);
        assert_eq!(differs.max_exact_rate(), Some(9_990.0));
        let first_differs = round(vec![step(10_000, 10_000, 9_990.0, Some(3))]);
        assert_eq!(first_differs.max_exact_rate(), Some(0.0));
        assert_eq!(
            round(vec![step(10_000, 1, 1.0, None)]).max_exact_rate(),
            None
        );
        assert_eq!(rate_label(0), "unpaced");
        assert_eq!(rate_label(3_000_000), "3M/s");
        assert_eq!(rate_label(30_000), "30k/s");
    }
}
