//! `captrace monitor` under load: the agent as the bench drives it, and the rising-rate ladder
//! behind the `monitor_*` figures.
//!
//! The agent runs as `captrace monitor --json --metrics 127.0.0.1:PORT`; its exact per-cgroup
//! counts are read from the Prometheus text it serves (`--summary` prints per container only and
//! no counts, so it cannot be compared with what a plain cgroup made). The text is refreshed
//! about once a second, so a count is read until it stops lagging, within a deadline.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

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
/// What the Prometheus text always has once the agent has refreshed.
const READY_MARK: &str = "captrace_events_lost_total";
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

/// `captrace monitor` running in the background, attached and serving its counts.
pub struct Agent {
    child: Child,
    addr: SocketAddr,
    err_log: PathBuf,
}

impl Agent {
    /// Starts the agent and waits until it serves its first refresh (its programs are attached
    /// by then). It stops by itself after `max_seconds`.
    pub fn start(captrace: &Path, dir: &Path, max_seconds: f64) -> anyhow::Result<Agent> {
        // A free port on loopback; the agent binds it again right away.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port on 127.0.0.1")?;
        let err_log = dir.join("monitor.err");
        let child = Command::new(captrace)
            .args([
                "monitor",
                "--json",
                "--metrics",
                &addr.to_string(),
                "--duration",
            ])
            .arg(max_seconds.to_string())
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("monitor.out"))?)
            .stderr(fs::File::create(&err_log)?)
            .spawn()
            .context("starting captrace monitor")?;
        let mut agent = Agent {
            child,
            addr,
            err_log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "captrace monitor exited before serving its counts ({status}): {}",
                    agent.stderr()
                );
            }
            if agent.metrics().is_ok_and(|m| m.contains(READY_MARK)) {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!(
                    "captrace monitor served no counts within 30 s: {}",
                    agent.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err_log)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The Prometheus text the agent serves now.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.addr, "/metrics")
    }

    /// CPU time the agent has used so far (user + system, all threads), in seconds: the sum of
    /// its threads' run time in ns (`/proc/PID/task/*/schedstat`), which `/proc/PID/stat`'s
    /// utime+stime are scaled from (cputime_adjust()) but give only in 10 ms ticks, too coarse for
    /// an agent that runs a few ms per second; those ticks when schedstat is missing.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.pid();
        let run_ns: Option<u64> = fs::read_dir(format!("/proc/{pid}/task"))
            .ok()
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
                    .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .sum()
            })
            .filter(|ns| *ns > 0);
        if let Some(ns) = run_ns {
            return Ok(ns as f64 / 1e9);
        }
        let path = format!("/proc/{pid}/stat");
        let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let ticks = cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
        // SAFETY: plain libc call.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(ticks as f64 / per_second.max(1) as f64)
    }

    /// The agent's peak resident set (VmHWM), in MiB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kb = vm_hwm_kb(&status).with_context(|| format!("no VmHWM in {path}"))?;
        Ok(kb as f64 / 1024.0)
    }

    /// SIGINT, as a person would stop it; fails unless it then exits with 0 within 10 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("captrace monitor exited with {status}: {}", self.stderr());
                }
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        bail!("captrace monitor did not stop on SIGINT within 10 s (killed)")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The body of `GET path` from a plain HTTP server on loopback.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut sock = TcpStream::connect_timeout(&addr, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    sock.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers in the response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path}: {}",
            head.lines().next().unwrap_or("empty response")
        );
    }
    Ok(body.to_string())
}

/// utime + stime (in clock ticks) from `/proc/PID/stat`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain anything: count fields after the last
    // `)`, which starts at field 3 (state); utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmHWM in kB from `/proc/PID/status`.
fn vm_hwm_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix("VmHWM:")?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Where the whole cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo` (a mount of a
/// sub-tree would make the agent's cgroup paths relative to something else).
fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent dev root mount-point options [optional fields...] - fstype source options
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        (fs.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
            .then(|| fields.get(4).map(|p| PathBuf::from(unescape_octal(p))))?
    })
}

/// mountinfo's `\NNN` escapes (a space is `\040`).
fn unescape_octal(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The labels and value of one `captrace_capability_checks_total` sample.
fn check_sample(line: &str) -> Option<(Vec<(String, String)>, u64)> {
    let rest = line.strip_prefix("captrace_capability_checks_total{")?;
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((name, value));
        match chars.next()? {
            ',' => continue,
            '}' => break,
            _ => return None,
        }
    }
    let count = chars.as_str().trim().parse().ok()?;
    Some((labels, count))
}

/// The checks of capability `cap` the agent counted in the cgroup named by any of `labels` (its
/// path, or `cgroup-id:N` when the agent could not find it).
fn checks_in(metrics: &str, labels: &[String], cap: &str) -> u64 {
    metrics
        .lines()
        .filter_map(check_sample)
        .filter(|(l, _)| {
            let label = |name: &str| l.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            label("capability") == Some(cap)
                && label("cgroup").is_some_and(|c| labels.iter().any(|x| x == c))
        })
        .map(|(_, n)| n)
        .sum()
}

/// A cgroup v2 of the bench's own, removed on drop.
struct Cgroup {
    dir: PathBuf,
    /// How the agent names it: the path from the hierarchy's root, or its id.
    labels: Vec<String>,
}

impl Cgroup {
    fn create(root: &Path, name: &str) -> anyhow::Result<Cgroup> {
        let dir = root.join(name);
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        let id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&dir)?);
        Ok(Cgroup {
            dir,
            labels: vec![format!("/{name}"), format!("cgroup-id:{id}")],
        })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
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

    #[test]
    fn reads_cpu_ticks_and_peak_rss() {
        let stat = "4242 (capt race) S) S 1 4242 4242 0 -1 4194560 812 0 0 0 37 12 0 0 20 0 3 0 \
                    99 0 0";
        assert_eq!(cpu_ticks(stat), Some(49));
        assert_eq!(cpu_ticks("1 (x) S 1"), None);
        let status = "Name:\tcaptrace\nVmPeak:\t  99999 kB\nVmHWM:\t   18432 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_kb(status), Some(18432));
        assert_eq!(vm_hwm_kb("Name:\tx\n"), None);
    }

    #[test]
    fn finds_the_whole_cgroup2_hierarchy() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let escaped = "1 0 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(escaped), Some(PathBuf::from("/mnt/my cg")));
        // Only a sub-tree, or only v1.
        assert_eq!(
            cgroup2_root("1 0 0:38 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            None
        );
        assert_eq!(
            cgroup2_root("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }

    #[test]
    fn sums_one_cgroups_checks_of_one_capability() {
        let metrics = "\
# TYPE captrace_capability_checks_total counter
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 3000
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"noaudit\",origin=\"workload\"} 5
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SETUID\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 7
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"a\\\"b\",cgroup=\"/captrace-bench-10\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 11
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"cgroup-id:77\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 2
captrace_events_lost_total 0
";
        let ours = ["/captrace-bench-1".to_string(), "cgroup-id:77".to_string()];
        assert_eq!(checks_in(metrics, &ours, "SYS_ADMIN"), 3007);
        assert_eq!(checks_in(metrics, &ours, "SETUID"), 7);
        assert_eq!(
            checks_in(metrics, &["/captrace-bench-10".to_string()], "SYS_ADMIN"),
            11
        );
        assert_eq!(checks_in(metrics, &["/other".to_string()], "SYS_ADMIN"), 0);
        assert_eq!(
            check_sample("captrace_capability_checks_total{a=\"x} 1"),
            None
        );
    }

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
