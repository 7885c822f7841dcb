//! `cargo xtask bench`: what tracing costs, measured the same way every time (issue 6).
//!
//! Everything runs in one invocation; the variants of each comparison are interleaved
//! (A B C A B C ...) so a noisy machine affects them alike, and every figure is a median over
//! rounds. The bench reports; it never asserts: it exits 0 unless something could not run at
//! all, and a measurement that fails is reported as `null`.
//!
//! Definitions:
//! - **Loop**: `xtask bench-load sethostname` unshares a UTS namespace once, then calls
//!   `sethostname("x")` N times (each call makes one audited CAP_SYS_ADMIN check), timing itself
//!   with CLOCK_MONOTONIC and printing ns/call. `bench-load setuid` does the same with
//!   `setuid(0)` as root (one audited CAP_SETUID check per call).
//! - **ns/call** of a variant = wall time of the N-call loop / N, median of the rounds; each
//!   round runs, in turn: untraced; floor; floor_tp; record; monitor; bpftrace.
//! - **floor**: an empty program (`r0 = 0; exit`) on the tracepoint captrace uses,
//!   `raw_tracepoint/cap_capable` (captrace's tp_btf program is dispatched the same way,
//!   through bpf_trace_run), loaded and attached by the bench itself through bpf(2)
//!   (Debian's bpftrace 0.17 rejects `rawtracepoint:` probes). **floor_tp**: for reference, an
//!   empty bpftrace program on `tracepoint:capability:cap_capable`.
//! - **floor_filter**: the same raw tracepoint with a program that only looks the current
//!   thread id up in a hash map (`bpf_get_current_pid_tgid`, `bpf_map_lookup_elem`): the least
//!   a tracer that follows chosen processes must do per check (captrace's TASKS lookup alone).
//!   `overhead_ratio_filter` = added(floor_filter) / added(floor) shows whether "≤ 1.5x the
//!   floor" can be met at all; `overhead_ratio_record_vs_filter` = added(record) /
//!   added(floor_filter).
//! - **record**: `captrace record -- <loop>` (captrace's report goes to stderr).
//! - **monitor**: `captrace monitor --json --metrics 127.0.0.1:PORT` in the background (host-wide:
//!   every process's checks are counted per cgroup), started before the loop and ready once it
//!   serves its first counts, stopped with SIGINT after it.
//! - **bpftrace**: `bpftrace -e 'tracepoint:capability:cap_capable { @[args->cap] = count(); }'`
//!   in the background, attached (seen in `bpftool perf list`) before the loop starts,
//!   stopped with SIGINT after it.
//! - **added ns** of a variant = its ns/call − untraced ns/call.
//!   `overhead_ratio_record` = added(record) / added(floor);
//!   `overhead_ratio_monitor` = added(monitor) / added(floor);
//!   `overhead_ratio_bpftrace` = added(bpftrace) / added(floor);
//!   `overhead_ratio_floor` = floor / untraced. Targets: record ≤ 1.5 and below bpftrace.
//!   The same keys with a `_cpu` suffix use the loop thread's CPU time
//!   (CLOCK_THREAD_CPUTIME_ID) instead of wall time: a cross-check, not the definition.
//!   `setuid_`-prefixed ratios are the same for the setuid(0) loop.
//! - **syscall tax**: `bench-load getppid` makes no capability check; `getppid_record_added_ns`
//!   and `getppid_monitor_added_ns` are what captrace's program on every syscall's return
//!   costs every process of the host while it runs.
//! - **record_true_ms**: median wall time of `captrace record -- true` (stderr to /dev/null),
//!   interleaved with plain `true` (`true_ms`). Target ≤ 100 ms.
//! - **fork storm**: `captrace record -o P.json -- xtask bench-load fork-storm`: 10,000 children
//!   forked in batches of 8 from a process with a private UTS namespace, each calling
//!   `sethostname` once; `fork_storm_tracked` = the sum of `count` over the profile's SYS_ADMIN
//!   checks from syscall `sethostname`. Target: all counted.
//! - **real workload**: an archive of 100,000 small files owned by uid 1000 (built once in
//!   `target/bench/`) extracted as root with `tar --same-owner -xf` (a chown per file) into a
//!   fresh directory on tmpfs (`/dev/shm`, so disk writeback does not drown the difference),
//!   untraced vs `captrace record -- tar ...`, end-to-end wall time including captrace's start;
//!   `real_workload_ratio` = recorded / untraced. Target ≤ 1.03.
//!   `real_workload_ratio_filter`: plain tar with the floor_filter program on cap_capable (the
//!   least any tracer following chosen processes could add) ÷ untraced.
//!   `real_workload_ratio_after_start` (diagnostic) takes captrace's fixed start-up cost
//!   (record_true_ms − true_ms) out of the recorded time.
//! - **monitor throughput** (`monitor_*`; see `bench/monitor.rs`): per round, a fresh agent as
//!   above, idle for a while (`monitor_cpu_pct_idle`), then a short warm-up (its first sight
//!   of checks can cost it one-time work), then `xtask bench-load paced`: 4 processes in a private UTS namespace, moved into a
//!   cgroup v2 of their own (one per step, under the hierarchy found in `/proc/self/mountinfo`)
//!   before they start, calling `sethostname` together at a target rate for a few seconds, at
//!   rising rates (quick: 10k, 100k, 1M checks/s, then as fast as they can; full: 10k, 30k, 100k,
//!   300k, 1M, 3M, unpaced). The agent's count of the cgroup's SYS_ADMIN checks (from its
//!   `/metrics`) is compared with the calls the processes made. `monitor_max_checks_per_s` = the
//!   highest achieved rate (calls / wall time of the step) before the first step whose count
//!   differs; `monitor_cpu_pct_at_100k` = the agent's CPU time (user + system, all threads:
//!   the run time in `/proc/PID/task/*/schedstat`, which `/proc/PID/stat`'s utime+stime are
//!   scaled from but give only in 10 ms ticks) over the 100k step's wall time, in % of one CPU (its BPF programs run in the callers' context and
//!   are in the hook overhead, not here); `monitor_rss_mb` = the agent's VmHWM at the end of
//!   the round. Medians over rounds (quick 2, full 3).
//! - **profile**: one more pass of each traced variant with BPF run-time statistics on
//!   (`BPF_ENABLE_STATS`), reading `run_cnt`/`run_time_ns` of every program the tracer holds from
//!   `/proc/PID/fdinfo` just before and after the timed loop: ns per run and runs per loop call
//!   of each program (informational: statistics slow every program down a little).
//!
//! - **foreign tracers**: on a shared machine another test run may have tracing BPF programs
//!   loaded (captrace's global `sys_exit` program slows every process). Before each
//!   timed run the bench waits, within a budget (20 s quick, 120 s full), until `bpftool prog
//!   show` lists none; runs that still saw one are marked `*` and left out of a median when the
//!   same series has clean runs (`contaminated_runs`). `{loop}_untraced_spread_pct` shows how
//!   noisy the machine was.
//!
//! The figures go to `target/bench/report.json`, a flat object of named numbers.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cmd::{self, cargo, header, workspace_root};

mod bpf;
pub mod load;
mod monitor;

/// bpftrace's probe, the anchor most users would pick.
const BPFTRACE_ANCHOR: &str = "tracepoint:capability:cap_capable { @[args->cap] = count(); }";
/// An empty bpftrace program on the tracepoint (reference only).
const BPFTRACE_EMPTY: &str = "tracepoint:capability:cap_capable { }";
/// Why the monitor figures are null when they are.
const MONITOR_MISSING: &str = "n/a (this captrace has no monitor command)";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A short version (under 2 minutes) that prints the same keys: 3 rounds of 200,000 calls.
    #[arg(long)]
    quick: bool,
    /// Rounds of each interleaved comparison (default 9; --quick 3).
    #[arg(long)]
    rounds: Option<usize>,
    /// Calls per loop (default 1,000,000; --quick 200,000).
    #[arg(long)]
    calls: Option<u64>,
    /// Files in the real-workload archive (default: about a Linux source tree's 90,000).
    #[arg(long, default_value_t = 100_000)]
    files: u32,
    /// Children in the fork storm.
    #[arg(long, default_value_t = 10_000)]
    children: u32,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// The captrace binary [default: target/release/captrace].
    #[arg(long, value_name = "PATH")]
    captrace: Option<PathBuf>,
    /// Skip the pass with BPF run-time statistics.
    #[arg(long)]
    no_profile: bool,
}

/// What is measured, and how much of it.
struct Plan {
    rounds: usize,
    calls: u64,
    startup_rounds: usize,
    files: u32,
    children: u32,
    monitor: monitor::MonitorPlan,
}

/// The loops of the hook-overhead comparison.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Loop {
    Sethostname,
    Setuid,
    /// No capability check: what a tracer adds to every syscall of the host.
    Getppid,
}

impl Loop {
    const ALL: [Loop; 3] = [Loop::Sethostname, Loop::Setuid, Loop::Getppid];

    fn name(self) -> &'static str {
        match self {
            Loop::Sethostname => "sethostname",
            Loop::Setuid => "setuid",
            Loop::Getppid => "getppid",
        }
    }
}

/// What one loop reported, in ns per call.
#[derive(Clone, Copy)]
struct LoopTime {
    /// Wall time (CLOCK_MONOTONIC): the definition.
    wall: f64,
    /// CPU time of the loop's thread (CLOCK_THREAD_CPUTIME_ID): a cross-check that time spent
    /// preempted by other processes does not inflate.
    cpu: f64,
}

#[derive(Clone, Copy)]
enum Clock {
    Wall,
    Cpu,
}

impl LoopTime {
    fn get(self, clock: Clock) -> f64 {
        match clock {
            Clock::Wall => self.wall,
            Clock::Cpu => self.cpu,
        }
    }
}

/// What is attached while a loop runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Untraced,
    Floor,
    FloorTp,
    Record,
    Monitor,
    Bpftrace,
    FloorFilter,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::Untraced,
        Variant::Floor,
        Variant::FloorFilter,
        Variant::FloorTp,
        Variant::Record,
        Variant::Monitor,
        Variant::Bpftrace,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Untraced => "untraced",
            Variant::Floor => "floor",
            Variant::FloorTp => "floor_tp",
            Variant::Record => "record",
            Variant::Monitor => "monitor",
            Variant::Bpftrace => "bpftrace",
            Variant::FloorFilter => "floor_filter",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Variant::Untraced => "nothing attached",
            Variant::Floor => "empty raw_tracepoint/cap_capable program",
            Variant::FloorTp => "empty bpftrace tracepoint:capability:cap_capable",
            Variant::Record => "captrace record -- <loop>",
            Variant::Monitor => "captrace monitor (host-wide) running",
            Variant::Bpftrace => "bpftrace count map keyed by cap",
            Variant::FloorFilter => "raw_tp program doing only a thread-id hash lookup",
        }
    }
}

struct Bench {
    plan: Plan,
    captrace: PathBuf,
    /// A private copy of this binary, run as the load generator (a concurrent rebuild of xtask
    /// cannot swap it mid-run).
    load_exe: PathBuf,
    dir: PathBuf,
    bpftrace: bool,
    /// Why the monitor figures are null, when `captrace monitor` cannot be run.
    monitor_na: Option<&'static str>,
    /// Figures for report.json; None is written as null.
    report: BTreeMap<String, Option<f64>>,
    notes: Vec<String>,
    quiet: Quiet,
}

/// Guards against tracers someone else loaded: on a shared machine, another test run of
/// captrace attaches a `sys_exit` program that slows every syscall of every process,
/// the untraced runs included.
struct Quiet {
    /// How long, in all, the bench may still wait for foreign tracing programs to go away.
    budget: Duration,
    waited: Duration,
    runs: u32,
    contaminated: u32,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads BPF programs and unshares namespaces: run it as root");
    }
    let root = workspace_root();
    if !args.no_build {
        header("build");
        cmd::run(cargo().args(["build", "--release"]))?;
    }
    // bench_seconds counts the measurements, not the build.
    let started = Instant::now();
    let captrace = args
        .captrace
        .clone()
        .unwrap_or_else(|| root.join("target/release/captrace"));
    if !captrace.is_file() {
        bail!(
            "{} not found: run `cargo build --release`",
            captrace.display()
        );
    }
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let load_exe = dir.join("xtask-bench-load");
    let _ = fs::remove_file(&load_exe);
    fs::copy(std::env::current_exe()?, &load_exe)
        .context("copying the load generator to target/bench")?;

    let plan = Plan {
        rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 9 }).max(1),
        calls: args
            .calls
            .unwrap_or(if args.quick { 200_000 } else { 1_000_000 })
            .max(1),
        startup_rounds: if args.quick { 5 } else { 15 },
        files: args.files.max(1),
        children: args.children.max(1),
        monitor: monitor::MonitorPlan {
            rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 3 }).max(1),
            quick: args.quick,
        },
    };
    let bpftrace = cmd::succeeds(Command::new("bpftrace").arg("--version"));
    let has_monitor = cmd::succeeds(Command::new(&captrace).args(["monitor", "--help"]));
    let monitor_na = (!has_monitor).then_some(MONITOR_MISSING);
    let mut bench = Bench {
        plan,
        captrace,
        load_exe,
        dir,
        bpftrace,
        monitor_na,
        report: BTreeMap::new(),
        notes: Vec::new(),
        quiet: Quiet {
            budget: Duration::from_secs(if args.quick { 20 } else { 120 }),
            waited: Duration::ZERO,
            runs: 0,
            contaminated: 0,
        },
    };
    if !bench.bpftrace {
        bench.note("bpftrace not found: the floor_tp and bpftrace variants are null");
    }
    if !cmd::succeeds(Command::new("bpftool").arg("version")) {
        bench.note("bpftool not found: bpftrace attachment is judged from its \"Attaching\" line");
    }
    bench.print_definitions(args.quick);

    bench.hook_overhead();
    if !args.no_profile {
        bench.profile();
    }
    bench.startup();
    bench.monitor_throughput();
    bench.fork_storm();
    bench.real_workload();

    bench.set("quick", Some(f64::from(u8::from(args.quick))));
    bench.set("rounds", Some(bench.plan.rounds as f64));
    bench.set("calls_per_loop", Some(bench.plan.calls as f64));
    let q = &bench.quiet;
    let (runs, contaminated, waited) = (q.runs, q.contaminated, q.waited);
    if contaminated > 0 {
        bench.note(format!(
            "{contaminated} of {runs} timed runs had another process's tracing BPF programs \
             loaded (marked *; left out of the medians where clean runs of the same series exist)"
        ));
    }
    bench.set("measured_runs", Some(f64::from(runs)));
    bench.set("contaminated_runs", Some(f64::from(contaminated)));
    bench.set("foreign_tracer_wait_s", Some(waited.as_secs_f64()));
    bench.set("bench_seconds", Some(started.elapsed().as_secs_f64()));
    bench.print_table();
    bench.write_report()
}

impl Bench {
    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    /// Runs `f` as one timed run: first waits (within the budget) until no other process has
    /// tracing BPF programs loaded, then checks again afterwards. Returns the result and whether
    /// the run was clean.
    fn measure<T>(
        &mut self,
        f: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, bool)> {
        let mut clean_before = true;
        while foreign_tracers() > 0 {
            if self.quiet.budget.is_zero() {
                clean_before = false;
                break;
            }
            let step = Duration::from_millis(200).min(self.quiet.budget);
            thread::sleep(step);
            self.quiet.budget -= step;
            self.quiet.waited += step;
        }
        let result = f(self)?;
        // Our own programs may take a moment to disappear after their tracer exits.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut clean_after = foreign_tracers() == 0;
        while !clean_after && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            clean_after = foreign_tracers() == 0;
        }
        let clean = clean_before && clean_after;
        self.quiet.runs += 1;
        self.quiet.contaminated += u32::from(!clean);
        Ok((result, clean))
    }

    fn set(&mut self, key: impl Into<String>, value: Option<f64>) {
        self.report.insert(key.into(), value);
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.report.get(key).copied().flatten()
    }

    fn print_definitions(&self, quick: bool) {
        let p = &self.plan;
        header(if quick {
            "captrace bench (--quick)"
        } else {
            "captrace bench"
        });
        println!(
            "\
Definitions (all figures are medians over interleaved rounds; the bench never asserts):
- loop: unshare(CLONE_NEWUTS) once, then {calls} x sethostname(\"x\") (one audited CAP_SYS_ADMIN
  check each); also {calls} x setuid(0) as root (CAP_SETUID). ns/call = loop wall time (CLOCK_MONOTONIC)
  / calls; {rounds} rounds, each running in turn: untraced, floor, floor_tp, record, monitor, bpftrace.
- floor: empty program on raw_tracepoint/cap_capable (captrace's hook), attached via bpf(2);
  floor_tp: empty bpftrace program on tracepoint:capability:cap_capable (reference).
- bpftrace: bpftrace -e '{BPFTRACE_ANCHOR}'
- added = ns/call - untraced ns/call; overhead_ratio_record = added(record)/added(floor) (target <= 1.5
  and below overhead_ratio_bpftrace = added(bpftrace)/added(floor)); overhead_ratio_floor = floor/untraced.
  *_cpu keys: the same from the loop thread's CPU time (cross-check); setuid_* keys: the setuid(0) loop.
- monitor: `captrace monitor --json --metrics 127.0.0.1:PORT` (host-wide) running, ready (first counts
  served) before the loop starts; overhead_ratio_monitor = added(monitor)/added(floor).
- record_true_ms: wall time of `captrace record -- true` vs plain `true`, {startup} rounds (target <= 100 ms).
- fork storm: {children} short-lived children under `captrace record -o`, one sethostname each; counted
  = sum of the profile's SYS_ADMIN/sethostname counts (target: all).
- real workload: `tar --same-owner -xf` of {files} files owned by uid 1000 into tmpfs, as root (a chown
  per file), untraced vs `captrace record -- tar ...`, end to end, {rounds} rounds (target <= 1.03x);
  real_workload_ratio_after_start: the same minus captrace's start-up (record_true_ms - true_ms).
- profile: one more loop per tracer with BPF run-time stats on: ns/run and runs/call of each program.
- runs marked * had another process's tracing BPF programs loaded (waited for first, within a budget);
  they are left out of a median when the same series has clean runs.
- monitor throughput: {monitor_rounds} rounds of a fresh `captrace monitor` (idle, then warmed up) and {procs} processes
  in a cgroup v2 of their own (one per step) calling sethostname at rising rates ({ladder}); monitor_max_checks_per_s = highest
  achieved rate before the first step whose per-cgroup SYS_ADMIN count (its /metrics) differs from the calls
  made; monitor_cpu_pct_at_100k = its CPU time over the 100k/s step, % of one CPU; monitor_rss_mb = its VmHWM.{monitor}",
            calls = p.calls,
            rounds = p.rounds,
            startup = p.startup_rounds,
            children = p.children,
            files = p.files,
            monitor_rounds = p.monitor.rounds,
            procs = monitor::PROCS,
            ladder = p.monitor.describe_ladder(),
            monitor = self
                .monitor_na
                .map_or(String::new(), |why| format!("\n- monitor: {why}")),
        );
    }

    // ---- 1. hook overhead -------------------------------------------------------------------

    fn hook_overhead(&mut self) {
        header("1. hook overhead");
        let mut samples: BTreeMap<(Loop, Variant), Series<LoopTime>> = BTreeMap::new();
        // A series is given up after two failed runs; each distinct error is noted once.
        let mut failures: BTreeMap<(Loop, Variant), Vec<String>> = BTreeMap::new();
        for round in 1..=self.plan.rounds {
            for lp in Loop::ALL {
                let mut line = format!("round {round}/{} {:<12}", self.plan.rounds, lp.name());
                for variant in Variant::ALL {
                    let failed = failures.get(&(lp, variant)).map_or(0, Vec::len);
                    if failed >= 2 {
                        continue;
                    }
                    match self.measure(|b| b.hook_run(lp, variant, None)) {
                        Ok((t, clean)) => {
                            let mark = if clean { "" } else { "*" };
                            let _ = write!(line, " {}={:.0}{mark}", variant.name(), t.wall);
                            samples.entry((lp, variant)).or_default().push(t, clean);
                        }
                        Err(e) => {
                            let _ = write!(line, " {}=FAILED", variant.name());
                            let errors = failures.entry((lp, variant)).or_default();
                            let e = format!("{e:#}");
                            if !errors.contains(&e) {
                                eprintln!("{} {}: {e}", lp.name(), variant.name());
                            }
                            errors.push(e);
                        }
                    }
                }
                println!("{line}");
            }
        }
        for ((lp, variant), mut errors) in failures {
            let n = errors.len();
            errors.dedup();
            let runs = if n == 1 { "run" } else { "runs" };
            self.note(format!(
                "{} {}: {n} failed {runs}: {}",
                lp.name(),
                variant.name(),
                errors.join("; ")
            ));
        }
        for lp in Loop::ALL {
            for (clock, suffix) in [(Clock::Wall, ""), (Clock::Cpu, "_cpu")] {
                let ns = |v: Variant| {
                    let times = samples.get(&(lp, v))?.usable();
                    median(&times.iter().map(|t| t.get(clock)).collect::<Vec<_>>())
                };
                self.overhead_keys(lp, suffix, ns);
            }
            // Noise: how far apart the untraced rounds are, against what the floor adds.
            let untraced: Vec<f64> = samples
                .get(&(lp, Variant::Untraced))
                .map(|s| s.usable().iter().map(|t| t.wall).collect())
                .unwrap_or_default();
            let spread = spread(&untraced);
            self.set(
                format!("{}_untraced_spread_pct", lp.name()),
                spread.zip(median(&untraced)).map(|(s, m)| 100.0 * s / m),
            );
            if let (Some(spread), Some(floor)) =
                (spread, self.get(&format!("{}_floor_added_ns", lp.name())))
                && lp != Loop::Getppid
                && floor > 0.0
                && spread > floor
            {
                self.note(format!(
                    "{}: the untraced rounds spread over {spread:.0} ns/call, more than the \
                     floor adds ({floor:.0} ns): ratios to the floor are noise-dominated in this \
                     run; the profile's in-program times are the steadier figure",
                    lp.name()
                ));
            }
        }
    }

    /// The report keys of one loop from its medians: `{loop}_{variant}_ns{suffix}`,
    /// `..._added_ns{suffix}` and the ratios (headline names for sethostname, `setuid_` prefixed
    /// for setuid).
    fn overhead_keys(&mut self, lp: Loop, suffix: &str, ns: impl Fn(Variant) -> Option<f64>) {
        let prefix = match lp {
            Loop::Sethostname => "",
            Loop::Setuid => "setuid_",
            Loop::Getppid => "getppid_",
        };
        let untraced = ns(Variant::Untraced);
        let added = |v: Variant| ns(v).zip(untraced).map(|(a, b)| a - b);
        for v in Variant::ALL {
            self.set(format!("{}_{}_ns{suffix}", lp.name(), v.name()), ns(v));
            if v != Variant::Untraced {
                self.set(
                    format!("{}_{}_added_ns{suffix}", lp.name(), v.name()),
                    added(v),
                );
            }
        }
        // No check is made: there is no floor to compare with, only the added ns.
        if lp == Loop::Getppid {
            return;
        }
        // Undefined (null) when the floor added nothing measurable.
        if let Some(f) = added(Variant::Floor).filter(|f| *f <= 0.0) {
            self.note(format!(
                "{}{suffix}: the floor added {f:.1} ns/call (<= 0: below the noise), so ratios \
                 to it are null; see the profile",
                lp.name()
            ));
        }
        let ratio_to_floor = |v: Variant| {
            added(v)
                .zip(added(Variant::Floor))
                .and_then(|(a, f)| (f > 0.0).then_some(a / f))
        };
        for v in [
            Variant::Record,
            Variant::Monitor,
            Variant::Bpftrace,
            Variant::FloorTp,
            Variant::FloorFilter,
        ] {
            self.set(
                format!("{prefix}overhead_ratio_{}{suffix}", v.name()),
                ratio_to_floor(v),
            );
        }
        // Against the least any per-thread tracer must do.
        self.set(
            format!("{prefix}overhead_ratio_record_vs_filter{suffix}"),
            added(Variant::Record)
                .zip(added(Variant::FloorFilter))
                .and_then(|(r, f)| (f > 0.0).then_some(r / f)),
        );
        self.set(
            format!("{prefix}overhead_ratio_floor{suffix}"),
            ns(Variant::Floor).zip(untraced).map(|(f, u)| f / u),
        );
    }

    /// One run of `lp` under `variant`: its ns/call. With `stats`, the loop also writes the
    /// tracer's BPF run statistics there.
    fn hook_run(
        &self,
        lp: Loop,
        variant: Variant,
        stats: Option<&Path>,
    ) -> anyhow::Result<LoopTime> {
        let mut load = Command::new(&self.load_exe);
        load.args(["bench-load", lp.name(), "--calls"])
            .arg(self.plan.calls.to_string());
        let with_stats = |cmd: &mut Command, from: String| {
            if let Some(out) = stats {
                cmd.args(["--stats-from", &from, "--stats-out"]).arg(out);
            }
        };
        let stdout = match variant {
            Variant::Untraced => run_stdout(&mut load)?,
            Variant::Floor | Variant::FloorFilter => {
                let _floor = if variant == Variant::Floor {
                    bpf::attach_empty_raw_tp("cap_capable")?
                } else {
                    bpf::attach_filter_raw_tp("cap_capable")?
                };
                with_stats(&mut load, std::process::id().to_string());
                run_stdout(&mut load)?
            }
            Variant::Record => {
                with_stats(&mut load, "ancestor".into());
                let mut record = Command::new(&self.captrace);
                record
                    .args(["record", "--"])
                    .arg(load.get_program())
                    .args(load.get_args());
                run_stdout(&mut record)?
            }
            Variant::FloorTp | Variant::Bpftrace => {
                if !self.bpftrace {
                    bail!("bpftrace not installed");
                }
                let program = if variant == Variant::FloorTp {
                    BPFTRACE_EMPTY
                } else {
                    BPFTRACE_ANCHOR
                };
                let tracer = Bpftrace::start(program, &self.dir)?;
                with_stats(&mut load, tracer.pid().to_string());
                let out = run_stdout(&mut load);
                tracer.stop();
                out?
            }
            Variant::Monitor => {
                if let Some(why) = self.monitor_na {
                    bail!("{why}");
                }
                let agent = monitor::Agent::start(&self.captrace, &self.dir, 600.0)?;
                with_stats(&mut load, agent.pid().to_string());
                let out = run_stdout(&mut load);
                agent.stop()?;
                out?
            }
        };
        value_of(&stdout, "ns_per_call")
            .zip(value_of(&stdout, "cpu_ns_per_call"))
            .map(|(wall, cpu)| LoopTime { wall, cpu })
            .with_context(|| format!("no ns_per_call in the loop's output: {stdout:?}"))
    }

    // ---- profile ------------------------------------------------------------------------------

    fn profile(&mut self) {
        header("profile: BPF run-time statistics (one sethostname loop per tracer)");
        let _stats = match bpf::enable_stats() {
            Ok(fd) => fd,
            Err(e) => {
                self.note(format!("profile skipped: {e:#}"));
                return;
            }
        };
        let calls = self.plan.calls as f64;
        println!(
            "{:<10} {:<22} {:>10} {:>10} {:>12}",
            "tracer", "program", "ns/run", "runs/call", "ns/call"
        );
        for variant in [
            Variant::Floor,
            Variant::FloorFilter,
            Variant::FloorTp,
            Variant::Record,
            Variant::Monitor,
            Variant::Bpftrace,
        ] {
            let out = self.dir.join(format!("profile-{}.json", variant.name()));
            let _ = fs::remove_file(&out);
            let programs = self
                .hook_run(Loop::Sethostname, variant, Some(&out))
                .and_then(|_| read_json(&out))
                .map(|v| v["programs"].as_array().cloned().unwrap_or_default());
            let programs = match programs {
                Ok(p) => p,
                Err(e) => {
                    self.note(format!("profile of {}: {e:#}", variant.name()));
                    continue;
                }
            };
            let mut total_ns = 0.0;
            for p in &programs {
                let name = p["name"].as_str().unwrap_or("?");
                let runs = p["runs"].as_f64().unwrap_or(0.0);
                let ns = p["run_time_ns"].as_f64().unwrap_or(0.0);
                total_ns += ns;
                let key = format!("profile_{}_{}", variant.name(), sanitize(name));
                println!(
                    "{:<10} {:<22} {:>10.1} {:>10.3} {:>12.1}",
                    variant.name(),
                    name,
                    ns / runs,
                    runs / calls,
                    ns / calls
                );
                self.set(format!("{key}_ns_per_run"), Some(ns / runs));
                self.set(format!("{key}_runs_per_call"), Some(runs / calls));
            }
            println!(
                "{:<10} {:<22} {:>10} {:>10} {:>12.1}",
                variant.name(),
                "(all programs)",
                "",
                "",
                total_ns / calls
            );
            self.set(
                format!("profile_{}_prog_ns_per_call", variant.name()),
                Some(total_ns / calls),
            );
        }
        println!(
            "(ns/call = time inside the programs per loop call; runs can exceed one per call because \
             sys_exit program also runs for every other process's syscalls)"
        );
    }

    // ---- 2. start-up --------------------------------------------------------------------------

    fn startup(&mut self) {
        header("2. start-up: `captrace record -- true` vs `true`");
        let (mut plain, mut recorded) = (Series::default(), Series::default());
        for _ in 0..self.plan.startup_rounds {
            match self.measure(|_| wall_ms(Command::new("true"))) {
                Ok((ms, clean)) => plain.push(ms, clean),
                Err(e) => self.note(format!("true: {e:#}")),
            }
            let mut record = Command::new(&self.captrace);
            record.args(["record", "--", "true"]);
            match self.measure(|_| wall_ms(record)) {
                Ok((ms, clean)) => recorded.push(ms, clean),
                Err(e) => self.note(format!("captrace record -- true: {e:#}")),
            }
        }
        println!(
            "true: {} ms\ncaptrace record -- true: {} ms",
            plain.list(),
            recorded.list()
        );
        self.set("true_ms", median(&plain.usable()));
        self.set("record_true_ms", median(&recorded.usable()));
    }

    // ---- 4. fork storm ------------------------------------------------------------------------

    fn fork_storm(&mut self) {
        let children = self.plan.children;
        header(&format!("4. fork storm: {children} children under record"));
        self.set("fork_storm_total", Some(f64::from(children)));
        let mut storm = Command::new(&self.load_exe);
        storm
            .args(["bench-load", "fork-storm", "--children"])
            .arg(children.to_string());
        match run_stdout(&mut storm) {
            Ok(out) => {
                self.set("fork_storm_untraced_ms", value_of(&out, "ms"));
            }
            Err(e) => self.note(format!("fork storm untraced: {e:#}")),
        }
        let profile = self.dir.join("fork-storm.json");
        let _ = fs::remove_file(&profile);
        let mut record = Command::new(&self.captrace);
        record
            .args(["record", "-o"])
            .arg(&profile)
            .arg("--")
            .arg(storm.get_program())
            .args(storm.get_args());
        let tracked = run_stdout(&mut record).and_then(|out| {
            self.report
                .insert("fork_storm_record_ms".into(), value_of(&out, "ms"));
            if value_of(&out, "ok") != Some(f64::from(children)) {
                bail!("not every child succeeded: {out:?}");
            }
            let json = read_json(&profile)?;
            Ok(sethostname_checks(&json))
        });
        match tracked {
            Ok(n) => {
                println!(
                    "counted {n} of {children} (untraced {} ms, recorded {} ms)",
                    fmt_opt(self.get("fork_storm_untraced_ms"), 0),
                    fmt_opt(self.get("fork_storm_record_ms"), 0)
                );
                self.set("fork_storm_tracked", Some(n as f64));
            }
            Err(e) => {
                self.note(format!("fork storm under record: {e:#}"));
                self.set("fork_storm_tracked", None);
            }
        }
    }

    // ---- 5. real workload ---------------------------------------------------------------------

    fn real_workload(&mut self) {
        let files = self.plan.files;
        header(&format!(
            "5. real workload: tar --same-owner -xf ({files} files, uid 1000) as root"
        ));
        self.set("real_workload_files", Some(f64::from(files)));
        let archive = match self.archive(files) {
            Ok(a) => a,
            Err(e) => {
                self.note(format!("real workload: cannot build the archive: {e:#}"));
                for key in [
                    "real_workload_untraced_ms",
                    "real_workload_record_ms",
                    "real_workload_ratio",
                ] {
                    self.set(key, None);
                }
                return;
            }
        };
        // tmpfs when there is one: disk writeback would drown the difference in noise.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            self.dir.clone()
        };
        let dest = base.join(format!("captrace-bench-extract-{}", std::process::id()));
        let (mut plain, mut recorded) = (Series::default(), Series::default());
        let mut filtered = Series::default();
        for _ in 0..self.plan.rounds {
            // With the filter-only program on cap_capable while plain tar runs: the least any
            // tracer following chosen processes could add to this workload.
            for (traced, with_filter) in [(false, false), (false, true), (true, false)] {
                let mut tar = Command::new("tar");
                tar.arg("--same-owner")
                    .arg("-xf")
                    .arg(&archive)
                    .arg("-C")
                    .arg(&dest);
                let cmd = if traced {
                    let mut record = Command::new(&self.captrace);
                    record
                        .args(["record", "--"])
                        .arg(tar.get_program())
                        .args(tar.get_args());
                    record
                } else {
                    tar
                };
                let ms = fresh_dir(&dest).and_then(|()| {
                    // SAFETY: plain syscall; flushes what the previous round left dirty.
                    unsafe { libc::sync() };
                    // Attached inside the measurement, after its check for foreign tracers.
                    self.measure(|_| {
                        let _filter = with_filter
                            .then(|| bpf::attach_filter_raw_tp("cap_capable"))
                            .transpose()?;
                        wall_ms(cmd)
                    })
                });
                match (ms, traced, with_filter) {
                    (Ok((ms, clean)), false, false) => plain.push(ms, clean),
                    (Ok((ms, clean)), false, true) => filtered.push(ms, clean),
                    (Ok((ms, clean)), true, _) => recorded.push(ms, clean),
                    (Err(e), _, _) => self.note(format!("real workload (traced: {traced}): {e:#}")),
                }
            }
        }
        let _ = fs::remove_dir_all(&dest);
        println!(
            "untraced: {} ms\nfilter:   {} ms\nrecord:   {} ms",
            plain.list(),
            filtered.list(),
            recorded.list()
        );
        let (u, r) = (median(&plain.usable()), median(&recorded.usable()));
        let f = median(&filtered.usable());
        self.set("real_workload_filter_ms", f);
        self.set("real_workload_ratio_filter", f.zip(u).map(|(f, u)| f / u));
        self.set("real_workload_untraced_ms", u);
        self.set("real_workload_record_ms", r);
        self.set("real_workload_ratio", r.zip(u).map(|(r, u)| r / u));
        // Diagnostic: the same ratio with captrace's fixed start-up cost (record_true_ms -
        // true_ms) taken out, i.e. the per-file cost alone.
        let start = self
            .get("record_true_ms")
            .zip(self.get("true_ms"))
            .map(|(r, t)| r - t);
        self.set(
            "real_workload_ratio_after_start",
            r.zip(u).zip(start).map(|((r, u), s)| (r - s) / u),
        );
    }

    /// `target/bench/workload-N.tar`: N small files owned by uid 1000, built once.
    fn archive(&self, files: u32) -> anyhow::Result<PathBuf> {
        let archive = self.dir.join(format!("workload-{files}.tar"));
        if archive.is_file() {
            return Ok(archive);
        }
        println!("building {} (once)", archive.display());
        let src = self.dir.join(format!("workload-{files}"));
        fresh_dir(&src)?;
        for i in 0..files {
            let sub = src.join(format!("d{:03}", i / 500));
            if i % 500 == 0 {
                fs::create_dir(&sub)?;
                std::os::unix::fs::chown(&sub, Some(1000), Some(1000))?;
            }
            let file = sub.join(format!("f{i:07}"));
            fs::write(&file, format!("file {i}\n"))?;
            std::os::unix::fs::chown(&file, Some(1000), Some(1000))?;
        }
        let partial = archive.with_extension("tar.partial");
        cmd::run(
            Command::new("tar")
                .arg("-cf")
                .arg(&partial)
                .arg("-C")
                .arg(&src)
                .arg("."),
        )?;
        fs::rename(&partial, &archive)?;
        fs::remove_dir_all(&src)?;
        Ok(archive)
    }

    // ---- output -------------------------------------------------------------------------------

    fn print_table(&self) {
        header("hook overhead: ns per call (median)");
        println!(
            "{:<10} {:>12} {:>10} {:>9} {:>12} {:>10} {:>9} {:>10} {:>8}  what",
            "variant",
            "sethostname",
            "added",
            "x floor",
            "setuid(0)",
            "added",
            "x floor",
            "getppid",
            "added"
        );
        for v in Variant::ALL {
            let mut line = format!("{:<10}", v.name());
            for lp in Loop::ALL {
                let ns = self.get(&format!("{}_{}_ns", lp.name(), v.name()));
                let added = self.get(&format!("{}_{}_added_ns", lp.name(), v.name()));
                let floor = self.get(&format!("{}_floor_added_ns", lp.name()));
                let ratio = added
                    .zip(floor)
                    .and_then(|(a, f)| (v != Variant::Untraced && f > 0.0).then_some(a / f));
                if lp == Loop::Getppid {
                    let _ = write!(line, " {:>10} {:>8}", fmt_opt(ns, 1), fmt_opt(added, 1));
                    continue;
                }
                let _ = write!(
                    line,
                    " {:>12} {:>10} {:>9}",
                    fmt_opt(ns, 1),
                    fmt_opt(added, 1),
                    fmt_opt(ratio, 2)
                );
            }
            println!("{line}  {}", v.describe());
        }

        header("results");
        let rows = self.rows();
        println!("{:<36} {:>12} {:<34} met", "metric", "value", "target");
        let (mut met, mut missed) = (0, 0);
        for row in &rows {
            let verdict = match row.met {
                Some(true) => {
                    met += 1;
                    "yes"
                }
                Some(false) => {
                    missed += 1;
                    "NO"
                }
                None => "-",
            };
            println!(
                "{:<36} {:>12} {:<34} {verdict}",
                row.metric, row.value, row.target
            );
        }
        println!("targets: {met} met, {missed} missed");
        if !self.notes.is_empty() {
            println!("notes:");
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }

    fn rows(&self) -> Vec<Row> {
        let v = |k: &str| self.get(k);
        let mut rows = vec![
            Row::plain("untraced ns/call", v("sethostname_untraced_ns"), 1),
            Row::plain("floor ns/call", v("sethostname_floor_ns"), 1),
            Row::plain("record ns/call", v("sethostname_record_ns"), 1),
            Row::plain("bpftrace ns/call", v("sethostname_bpftrace_ns"), 1),
            Row::plain("overhead_ratio_floor", v("overhead_ratio_floor"), 3),
            Row::plain(
                "overhead_ratio_floor_filter",
                v("overhead_ratio_floor_filter"),
                2,
            ),
            Row::plain(
                "overhead_ratio_record_vs_filter",
                v("overhead_ratio_record_vs_filter"),
                2,
            ),
            Row::plain(
                "in-program ns/run: empty program",
                v("profile_floor_bench_floor_ns_per_run"),
                1,
            ),
            Row::plain(
                "in-program ns/run: thread lookup only",
                v("profile_floor_filter_bench_filter_ns_per_run"),
                1,
            ),
            Row::plain(
                "in-program ns/run: record's cap_capable",
                v("profile_record_cap_capable_tp_btf_ns_per_run"),
                1,
            ),
            Row::plain("getppid_record_added_ns", v("getppid_record_added_ns"), 1),
            Row::plain("getppid_monitor_added_ns", v("getppid_monitor_added_ns"), 1),
        ];
        for (prefix, lp) in [("", Loop::Sethostname), ("setuid_", Loop::Setuid)] {
            let record = v(&format!("{prefix}overhead_ratio_record"));
            let bpftrace = v(&format!("{prefix}overhead_ratio_bpftrace"));
            // Judged on the added ns, which stay defined when the floor's do not.
            let below_bpftrace = v(&format!("{}_record_added_ns", lp.name()))
                .zip(v(&format!("{}_bpftrace_added_ns", lp.name())))
                .map(|(r, b)| r < b);
            rows.push(Row::target(
                format!("{prefix}overhead_ratio_record"),
                record,
                2,
                "<= 1.5",
                record.map(|r| r <= 1.5),
            ));
            rows.push(Row::target(
                format!("{prefix}overhead_ratio_bpftrace"),
                bpftrace,
                2,
                "record below it (added ns)",
                below_bpftrace,
            ));
            for v in ["record", "bpftrace"] {
                let key = format!("{prefix}overhead_ratio_{v}_cpu");
                rows.push(Row::plain(&key, self.get(&key), 2));
            }
        }
        rows.push(self.monitor_row("overhead_ratio_monitor", 2));
        rows.push(self.monitor_row("overhead_ratio_monitor_cpu", 2));
        rows.push(Row::plain("true_ms", v("true_ms"), 1));
        rows.push(Row::target(
            "record_true_ms".into(),
            v("record_true_ms"),
            1,
            "<= 100",
            v("record_true_ms").map(|ms| ms <= 100.0),
        ));
        for (key, decimals) in [
            ("monitor_max_checks_per_s", 0),
            ("monitor_cpu_pct_at_100k", 1),
            ("monitor_cpu_pct_idle", 1),
            ("monitor_rss_mb", 1),
        ] {
            rows.push(self.monitor_row(key, decimals));
        }
        if self.monitor_na.is_none() {
            let (exact, steps) = (v("monitor_steps_exact"), v("monitor_steps"));
            rows.push(Row {
                metric: "monitor_steps_exact".into(),
                value: match (exact, steps) {
                    (Some(e), Some(n)) => format!("{e:.0}/{n:.0}"),
                    _ => "null".into(),
                },
                target: "all counted exactly".into(),
                met: exact.zip(steps).map(|(e, n)| e == n && n > 0.0),
            });
        }
        let (tracked, total) = (v("fork_storm_tracked"), v("fork_storm_total"));
        rows.push(Row {
            metric: "fork_storm_tracked".into(),
            value: match (tracked, total) {
                (Some(t), Some(n)) => format!("{t:.0}/{n:.0}"),
                _ => "null".into(),
            },
            target: "all counted".into(),
            met: tracked.zip(total).map(|(t, n)| t == n),
        });
        rows.push(Row::plain(
            "real_workload_untraced_ms",
            v("real_workload_untraced_ms"),
            1,
        ));
        rows.push(Row::plain(
            "real_workload_record_ms",
            v("real_workload_record_ms"),
            1,
        ));
        rows.push(Row::target(
            "real_workload_ratio".into(),
            v("real_workload_ratio"),
            3,
            "<= 1.03",
            v("real_workload_ratio").map(|r| r <= 1.03),
        ));
        rows.push(Row::plain(
            "real_workload_ratio_filter",
            v("real_workload_ratio_filter"),
            3,
        ));
        rows.push(Row::plain(
            "real_workload_ratio_after_start",
            v("real_workload_ratio_after_start"),
            3,
        ));
        rows
    }

    fn write_report(&self) -> anyhow::Result<()> {
        let path = self.dir.join("report.json");
        let object: serde_json::Map<String, Value> = self
            .report
            .iter()
            .map(|(k, v)| {
                let value = v
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number);
                (k.clone(), value)
            })
            .collect();
        fs::write(&path, serde_json::to_vec_pretty(&Value::Object(object))?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
        Ok(())
    }
}

/// A line of the results table.
struct Row {
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn plain(metric: &str, value: Option<f64>, decimals: usize) -> Row {
        Row::target(metric.into(), value, decimals, "", None)
    }

    fn target(
        metric: String,
        value: Option<f64>,
        decimals: usize,
        target: &str,
        met: Option<bool>,
    ) -> Row {
        Row {
            metric,
            value: fmt_opt(value, decimals),
            target: target.into(),
            met,
        }
    }

    fn monitor(metric: &str, why: &str) -> Row {
        Row {
            metric: metric.into(),
            value: "n/a".into(),
            target: why.trim_start_matches("n/a ").into(),
            met: None,
        }
    }
}

impl Bench {
    /// A row of a monitor figure, or why there is none.
    fn monitor_row(&self, key: &str, decimals: usize) -> Row {
        match self.monitor_na {
            Some(why) => Row::monitor(key, why),
            None => Row::plain(key, self.get(key), decimals),
        }
    }
}

/// bpftrace running in the background with its probe attached.
struct Bpftrace {
    child: Child,
}

impl Bpftrace {
    /// Starts `bpftrace -e program` and waits until its program is attached to cap_capable.
    fn start(program: &str, dir: &Path) -> anyhow::Result<Bpftrace> {
        let log = dir.join("bpftrace.out");
        let child = Command::new("bpftrace")
            .args(["-e", program])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(dir.join("bpftrace.err"))?)
            .spawn()
            .context("starting bpftrace")?;
        let mut tracer = Bpftrace { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = tracer.child.try_wait()? {
                let err = fs::read_to_string(dir.join("bpftrace.err")).unwrap_or_default();
                bail!(
                    "bpftrace exited before attaching ({status}): {}",
                    err.trim()
                );
            }
            let attached = match perf_attached(tracer.pid()) {
                Some(attached) => attached,
                // No bpftool: its banner is printed just before attaching.
                None => fs::read_to_string(&log)
                    .is_ok_and(|s| s.contains("Attaching"))
                    .then(|| thread::sleep(Duration::from_millis(200)))
                    .is_some(),
            };
            if attached {
                return Ok(tracer);
            }
            if Instant::now() > deadline {
                tracer.stop();
                bail!("bpftrace did not attach within 30 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (bpftrace prints its maps and detaches) and waits, once more after 5 s, then
    /// SIGKILL. The run it traced stays valid either way: only a warning is printed.
    fn stop(mut self) {
        for _ in 0..2 {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        eprintln!("warning: bpftrace did not stop on SIGINT within 10 s; killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` has a BPF program attached to the cap_capable tracepoint through perf, per
/// `bpftool perf list`; None without bpftool.
fn perf_attached(pid: u32) -> Option<bool> {
    let out = cmd::stdout_of(Command::new("bpftool").args(["perf", "list", "--json"]))?;
    let list: Value = serde_json::from_str(&out).ok()?;
    Some(list.as_array()?.iter().any(|e| {
        e["pid"].as_u64() == Some(u64::from(pid)) && e["tracepoint"].as_str() == Some("cap_capable")
    }))
}

/// Runs `cmd` with stderr discarded; its stdout if it exits with 0.
fn run_stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = cmd::display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("`{shown}` failed ({}); stdout: {stdout:?}", out.status);
    }
    Ok(stdout)
}

/// Wall time of `cmd` (stdout and stderr discarded) in ms; fails unless it exits with 0.
fn wall_ms(mut cmd: Command) -> anyhow::Result<f64> {
    let shown = cmd::display(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(ms)
}

/// The number after `key ` on a line of the load generator's output.
fn value_of(stdout: &str, key: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The audited SYS_ADMIN checks a profile counted in `sethostname`.
fn sethostname_checks(profile: &Value) -> u64 {
    profile["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["cap"] == "SYS_ADMIN" && c["syscall"] == "sethostname")
        .filter_map(|c| c["count"].as_u64())
        .sum()
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// An empty directory at `path`.
fn fresh_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

fn median(samples: &[f64]) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:.decimals$}"))
}

/// Samples of one series, split by whether a foreign tracer was loaded during the run.
struct Series<T> {
    all: Vec<(T, bool)>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series { all: Vec::new() }
    }
}

impl<T: Copy> Series<T> {
    fn push(&mut self, value: T, clean: bool) {
        self.all.push((value, clean));
    }

    /// The clean samples, or every sample when none is clean.
    fn usable(&self) -> Vec<T> {
        let clean: Vec<T> = self.all.iter().filter(|s| s.1).map(|s| s.0).collect();
        if clean.is_empty() {
            self.all.iter().map(|s| s.0).collect()
        } else {
            clean
        }
    }
}

impl Series<f64> {
    /// The samples in run order, contaminated ones marked `*`.
    fn list(&self) -> String {
        self.all
            .iter()
            .map(|(v, clean)| format!("{v:.1}{}", if *clean { "" } else { "*" }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// max − min.
fn spread(samples: &[f64]) -> Option<f64> {
    let max = samples.iter().copied().reduce(f64::max)?;
    let min = samples.iter().copied().reduce(f64::min)?;
    Some(max - min)
}

/// Tracing BPF programs loaded now (0 without bpftool: then nothing can be told).
fn foreign_tracers() -> usize {
    const TRACING: [&str; 7] = [
        "raw_tracepoint",
        "raw_tracepoint_writable",
        "tracepoint",
        "kprobe",
        "perf_event",
        "tracing",
        "lsm",
    ];
    cmd::stdout_of(Command::new("bpftool").args(["prog", "show", "--json"]))
        .and_then(|out| serde_json::from_str::<Value>(&out).ok())
        .and_then(|v| {
            v.as_array().map(|progs| {
                progs
                    .iter()
                    .filter(|p| p["type"].as_str().is_some_and(|t| TRACING.contains(&t)))
                    .count()
            })
        })
        .unwrap_or(0)
}

/// A program name as a report key fragment.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn contaminated_samples_count_only_when_nothing_else_is_left() {
        let mut s = Series::default();
        s.push(1.0, true);
        s.push(9.0, false);
        s.push(3.0, true);
        assert_eq!(s.usable(), [1.0, 3.0]);
        assert_eq!(s.list(), "1.0 9.0* 3.0");
        let mut dirty = Series::default();
        dirty.push(5.0, false);
        assert_eq!(dirty.usable(), [5.0]);
        assert_eq!(spread(&[3.0, 1.0, 2.5]), Some(2.0));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn reads_the_load_generators_output() {
        let out = "calls 1000000\nns_per_call 268.41\n";
        assert_eq!(value_of(out, "ns_per_call"), Some(268.41));
        assert_eq!(value_of(out, "calls"), Some(1e6));
        assert_eq!(value_of(out, "ms"), None);
    }

    #[test]
    fn counts_only_sethostname_sys_admin_checks() {
        let profile = json!({"checks": [
            {"cap": "SYS_ADMIN", "verdict": "granted", "audit": "audited",
             "syscall": "sethostname", "count": 9000},
            {"cap": "SYS_ADMIN", "verdict": "granted", "audit": "audited",
             "syscall": "sethostname", "count": 1000, "pid": 7},
            {"cap": "SYS_ADMIN", "verdict": "granted", "audit": "noaudit",
             "syscall": "mmap", "count": 50},
            {"cap": "SETUID", "syscall": "sethostname", "count": 3},
        ]});
        assert_eq!(sethostname_checks(&profile), 10_000);
        assert_eq!(sethostname_checks(&json!({})), 0);
    }

    #[test]
    fn program_names_become_keys() {
        assert_eq!(sanitize("cap_capable_raw_tp"), "cap_capable_raw_tp");
        assert_eq!(sanitize("tracepoint:cap-capable"), "tracepoint_cap_capable");
    }
}
