//! `cargo xtask bench`: what tracing costs, measured the same way every time (issue 6).
//!
//! Everything runs in one invocation; the variants of each comparison are interleaved
//! (A B C A B C ...) so a noisy machine affects them alike, and every figure is a median over
//! rounds. The bench reports; it never asserts: it exits 0 unless something could not run at
//! all, and a measurement that fails is reported as `null`.
//!
//! What each figure means is defined in [`bench/README.md`](bench/README.md); each measurement
//! lives in a file of its own under `bench/` (named after it), the report in `bench/report.rs`.
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
mod bpftrace;
mod foreign_tracers;
mod fork_storm;
mod hook_overhead;
pub mod load;
mod monitor_agent;
mod monitor_cgroup;
mod monitor_throughput;
mod profile_stats;
mod record_true;
mod report;
mod tar_workload;
mod util;
mod variant;

use bpftrace::Bpftrace;
use foreign_tracers::{Quiet, Series, spread};
use util::{
    fmt_opt, fresh_dir, median, read_json, run_stdout, sanitize, value_of, wall_and_cpu_ms, wall_ms,
};
use variant::{Clock, Loop, LoopTime, Variant};

/// bpftrace's probe, the anchor most users would pick.
const BPFTRACE_ANCHOR: &str = "tracepoint:capability:cap_capable { @[args->cap] = count(); }";
/// An empty bpftrace program on the tracepoint (reference only).
const BPFTRACE_EMPTY: &str = "tracepoint:capability:cap_capable { }";
/// An empty bpftrace program on one namespace syscall's exit tracepoint: the least a syscall
/// tracepoint adds to every other syscall (the syscall slow path and perf_syscall_exit's
/// bitmap test), whatever runs in it.
const BPFTRACE_SYSCALL_EMPTY: &str = "tracepoint:syscalls:sys_exit_unshare { }";
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
    /// Run only these sections (repeatable or comma-separated): hook, profile, startup,
    /// monitor, fork-storm, tar. Default: all of them.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTION")]
    only: Vec<Section>,
}

/// The sections of the bench, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Section {
    /// Hook overhead: ns per call of each loop under each variant.
    Hook,
    /// BPF run-time statistics of every program.
    Profile,
    /// `captrace record -- true` against `true`.
    Startup,
    /// Monitor throughput, CPU and memory.
    Monitor,
    /// The fork storm.
    ForkStorm,
    /// The real workload (tar).
    Tar,
}

impl BenchArgs {
    /// Whether `section` runs in this invocation.
    fn runs(&self, section: Section) -> bool {
        (self.only.is_empty() || self.only.contains(&section))
            && !(section == Section::Profile && self.no_profile)
    }
}

/// What is measured, and how much of it.
struct Plan {
    rounds: usize,
    calls: u64,
    startup_rounds: usize,
    /// Rounds of the tar workload: its runs vary by ±10 % here, so it takes more rounds than
    /// the loops to tell a 5 % target.
    tar_rounds: usize,
    files: u32,
    children: u32,
    monitor: monitor_throughput::MonitorPlan,
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
        tar_rounds: args
            .rounds
            .unwrap_or(if args.quick { 3 } else { 25 })
            .max(1),
        files: args.files.max(1),
        children: args.children.max(1),
        monitor: monitor_throughput::MonitorPlan {
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

    if args.runs(Section::Hook) {
        bench.hook_overhead();
    }
    if args.runs(Section::Profile) {
        bench.profile();
    }
    if args.runs(Section::Startup) {
        bench.startup();
    }
    if args.runs(Section::Monitor) {
        bench.monitor_throughput();
    }
    if args.runs(Section::ForkStorm) {
        bench.fork_storm();
    }
    if args.runs(Section::Tar) {
        bench.real_workload();
    }

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

    fn set(&mut self, key: impl Into<String>, value: Option<f64>) {
        self.report.insert(key.into(), value);
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.report.get(key).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fork_storm::sethostname_checks;
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
