//! `xtask bench-load`: the load generators `cargo xtask bench` runs (hidden; run directly for a
//! quick look). Each prints `key value` lines on stdout, which the bench parses; anything a
//! tracer wrapped around it prints goes to stderr.
use std::{fs, path::PathBuf, time::Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::bpf;

#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(subcommand)]
    kind: LoadKind,
}

#[derive(clap::Subcommand)]
enum LoadKind {
    /// Unshare a UTS namespace once, then call `sethostname("x")` N times (one audited
    /// CAP_SYS_ADMIN check each); prints `ns_per_call` (wall) and `cpu_ns_per_call`.
    Sethostname(LoopArgs),
    /// Call `setuid(0)` N times as root (one audited CAP_SETUID check each); prints the same.
    Setuid(LoopArgs),
    /// Unshare a UTS namespace, then fork N short-lived children in batches; each calls
    /// `sethostname("x")` once and exits. Prints `children`, `ok` and `ms`.
    ForkStorm(StormArgs),
}

#[derive(clap::Args)]
struct LoopArgs {
    /// Calls in the timed loop.
    #[arg(long, default_value_t = 1_000_000)]
    calls: u64,
    /// Also snapshot the run statistics of the BPF programs held by this process around the
    /// timed loop: a PID, or `ancestor` for the nearest ancestor holding any (captrace when run
    /// under `captrace record`, the bench itself for its floor program).
    #[arg(long, value_name = "PID|ancestor", requires = "stats_out")]
    stats_from: Option<String>,
    /// Where to write those statistics (JSON).
    #[arg(long, value_name = "FILE")]
    stats_out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StormArgs {
    /// Children to fork in all.
    #[arg(long, default_value_t = 10_000)]
    children: u32,
    /// Children alive at once.
    #[arg(long, default_value_t = 8)]
    batch: u32,
}

pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    match &args.kind {
        LoadKind::Sethostname(a) => {
            unshare_uts()?;
            timed_loop(a, || {
                // SAFETY: a valid 1-byte buffer.
                unsafe { libc::sethostname(c"x".as_ptr(), 1) }
            })
        }
        LoadKind::Setuid(a) => timed_loop(a, || {
            // SAFETY: plain syscall.
            unsafe { libc::setuid(0) }
        }),
        LoadKind::ForkStorm(a) => fork_storm(a),
    }
}

fn unshare_uts() -> anyhow::Result<()> {
    // SAFETY: plain syscall; only this process's UTS namespace changes.
    if unsafe { libc::unshare(libc::CLONE_NEWUTS) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWUTS) (run as root)");
    }
    Ok(())
}

/// Times `calls` calls of `call` with CLOCK_MONOTONIC (`Instant`) after a short warm-up.
fn timed_loop(args: &LoopArgs, mut call: impl FnMut() -> libc::c_int) -> anyhow::Result<()> {
    for _ in 0..1000 {
        if call() != 0 {
            return Err(std::io::Error::last_os_error()).context("the audited call failed");
        }
    }
    let stats_pid = args.stats_from.as_deref().map(stats_pid).transpose()?;
    let before = stats_pid.map(bpf::prog_stats_of).transpose()?;

    let mut failed = 0u64;
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..args.calls {
        failed += u64::from(call() != 0);
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu_ns() - cpu_start;

    let after = stats_pid.map(bpf::prog_stats_of).transpose()?;
    if failed > 0 {
        bail!("{failed} of {} calls failed", args.calls);
    }
    println!("calls {}", args.calls);
    println!(
        "ns_per_call {:.2}",
        elapsed.as_nanos() as f64 / args.calls as f64
    );
    println!("cpu_ns_per_call {:.2}", cpu as f64 / args.calls as f64);
    if let (Some(before), Some(after), Some(out)) = (before, after, &args.stats_out) {
        let programs: Vec<_> = after
            .iter()
            .filter_map(|(id, a)| {
                let b = before.get(id).copied().unwrap_or_default();
                let runs = a.run_cnt.saturating_sub(b.run_cnt);
                (runs > 0).then(|| {
                    json!({
                        "id": id,
                        "name": prog_name(*id),
                        "runs": runs,
                        "run_time_ns": a.run_time_ns.saturating_sub(b.run_time_ns),
                    })
                })
            })
            .collect();
        let report = json!({ "pid": stats_pid, "calls": args.calls, "programs": programs });
        fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// CPU time this thread has used (user + system, which includes BPF programs run in its
/// context), in ns: unlike wall time, not inflated when other processes preempt it.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The process whose BPF programs to watch.
fn stats_pid(from: &str) -> anyhow::Result<u32> {
    if from != "ancestor" {
        return from.parse().context("--stats-from: a PID or `ancestor`");
    }
    let mut pid = std::os::unix::process::parent_id();
    while pid > 1 {
        if !bpf::prog_stats_of(pid)?.is_empty() {
            return Ok(pid);
        }
        pid = parent_of(pid)?;
    }
    bail!("no ancestor holds a BPF program")
}

fn parent_of(pid: u32) -> anyhow::Result<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain anything; the fields after the last
    // `)` are: state ppid ...
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no parent in /proc/{pid}/stat"))
}

/// The program's name as bpftool shows it (the full name from BTF); `prog<ID>` without bpftool.
fn prog_name(id: u32) -> String {
    std::process::Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|v| v.get("name")?.as_str().map(String::from))
        .unwrap_or_else(|| format!("prog{id}"))
}

fn fork_storm(args: &StormArgs) -> anyhow::Result<()> {
    unshare_uts()?;
    let batch = args.batch.max(1);
    let mut ok = 0u32;
    let mut started = 0u32;
    let start = Instant::now();
    while started < args.children {
        let n = batch.min(args.children - started);
        for _ in 0..n {
            // SAFETY: this process is single-threaded; the child only makes async-signal-safe
            // calls before `_exit`.
            match unsafe { libc::fork() } {
                -1 => return Err(std::io::Error::last_os_error()).context("fork"),
                0 => unsafe {
                    let rc = libc::sethostname(c"x".as_ptr(), 1);
                    libc::_exit(i32::from(rc != 0));
                },
                _ => started += 1,
            }
        }
        for _ in 0..n {
            let mut status = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            if unsafe { libc::wait(&mut status) } < 0 {
                return Err(std::io::Error::last_os_error()).context("wait");
            }
            ok += u32::from(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
    }
    println!("children {started}");
    println!("ok {ok}");
    println!("ms {:.1}", start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
