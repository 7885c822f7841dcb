//! `xtask bench-load`: the load generators `cargo xtask bench` runs (hidden; run directly for a
//! quick look). Each prints `key value` lines on stdout, which the bench parses; anything a
//! tracer wrapped around it prints goes to stderr.
use std::{
    fs,
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

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
    /// Call `getppid()` N times: no capability check, so what it measures is what a tracer
    /// adds to every syscall of the host. Prints the same.
    Getppid(LoopArgs),
    /// Unshare a UTS namespace, then fork N short-lived children in batches; each calls
    /// `sethostname("x")` once and exits. Prints `children`, `ok` and `ms`.
    ForkStorm(StormArgs),
    /// Unshare a UTS namespace, fork N processes (moved into a cgroup v2 first, if given) that
    /// call `sethostname("x")` together at a target rate for a fixed time. Prints `procs`,
    /// `calls` (all made), `failed`, `ms` (from their release to the last one's exit) and
    /// `checks_per_s`.
    Paced(PacedArgs),
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

#[derive(clap::Args)]
struct PacedArgs {
    /// Processes making the calls.
    #[arg(long, default_value_t = 4)]
    procs: u32,
    /// Calls per second, all processes together; 0: as fast as they can.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// How long they call.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// A cgroup v2 directory to put the processes in before they start.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
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
        LoadKind::Getppid(a) => timed_loop(a, || {
            // SAFETY: plain syscall; it cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
            0
        }),
        LoadKind::ForkStorm(a) => fork_storm(a),
        LoadKind::Paced(a) => paced(a),
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

/// A pipe's (read, write) ends.
fn pipe() -> anyhow::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    Ok((fds[0], fds[1]))
}

fn paced(args: &PacedArgs) -> anyhow::Result<()> {
    let procs = args.procs.max(1);
    let per_proc = (args.rate > 0).then(|| args.rate as f64 / f64::from(procs));
    let duration = Duration::from_secs_f64(args.seconds.max(0.0));
    // Opened before forking: the children must make no call but their sethostname, so that the
    // cgroup's count is exactly what they report.
    let mut cgroup_procs = args
        .cgroup
        .as_ref()
        .map(|dir| {
            let path = dir.join("cgroup.procs");
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        })
        .transpose()?;
    unshare_uts()?;
    // The children wait on `release` until it is closed, and report their counts on `results`.
    let (release_r, release_w) = pipe()?;
    let (results_r, results_w) = pipe()?;
    let mut pids = Vec::new();
    for _ in 0..procs {
        // SAFETY: this process is single-threaded; the child makes only raw syscalls and reads
        // the clock until `_exit` (no allocation, no locks).
        match unsafe { libc::fork() } {
            -1 => {
                let e = std::io::Error::last_os_error();
                kill_all(&pids);
                return Err(e).context("fork");
            }
            0 => unsafe {
                libc::close(release_w);
                libc::close(results_r);
                let mut byte = 0u8;
                // Returns 0 (end of file) once the parent closes its end.
                while libc::read(release_r, (&raw mut byte).cast(), 1) < 0 {}
                let (made, failed) = paced_calls(per_proc, duration);
                let report = [made, failed];
                let len = size_of_val(&report);
                // One write under PIPE_BUF: never interleaved with another child's.
                let written = libc::write(results_w, report.as_ptr().cast(), len);
                libc::_exit(i32::from(written != len as isize));
            },
            pid => pids.push(pid),
        }
    }
    // SAFETY: the parent's copies of the children's ends.
    unsafe {
        libc::close(release_r);
        libc::close(results_w);
    }
    if let Some(file) = &mut cgroup_procs {
        for &pid in &pids {
            // One PID per write(2): cgroup.procs takes one at a time.
            if let Err(e) = file.write_all(pid.to_string().as_bytes()) {
                kill_all(&pids);
                return Err(e).context("moving the callers into the cgroup");
            }
        }
    }
    let start = Instant::now();
    // SAFETY: our own descriptor; closing it releases every child at once.
    unsafe { libc::close(release_w) };
    let mut ok_exits = 0;
    for _ in &pids {
        let mut status = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        if unsafe { libc::wait(&mut status) } < 0 {
            return Err(std::io::Error::last_os_error()).context("wait");
        }
        ok_exits += u32::from(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    let elapsed = start.elapsed();
    let (mut calls, mut failed, mut reports) = (0u64, 0u64, 0u32);
    let mut report = [0u64; 2];
    // SAFETY: reading whole reports into a buffer of their size; the write ends are all closed.
    while unsafe { libc::read(results_r, report.as_mut_ptr().cast(), size_of_val(&report)) }
        == size_of_val(&report) as isize
    {
        calls += report[0];
        failed += report[1];
        reports += 1;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(results_r) };
    if ok_exits != procs || reports != procs {
        bail!("of {procs} callers, {ok_exits} exited cleanly and {reports} reported");
    }
    println!("procs {procs}");
    println!("calls {calls}");
    println!("failed {failed}");
    println!("ms {:.1}", elapsed.as_secs_f64() * 1e3);
    println!("checks_per_s {:.0}", calls as f64 / elapsed.as_secs_f64());
    Ok(())
}

/// Calls `sethostname` at `rate` per second (None: back to back) for `duration`, in bursts that
/// catch up with the schedule every millisecond or so. Returns (calls made, calls failed).
fn paced_calls(rate: Option<f64>, duration: Duration) -> (u64, u64) {
    // A burst is capped so that a process that cannot keep up still stops near the deadline.
    const BURST: u64 = 4096;
    let start = Instant::now();
    let (mut made, mut failed) = (0u64, 0u64);
    loop {
        let now = start.elapsed();
        if now >= duration {
            return (made, failed);
        }
        let due = rate.map_or(u64::MAX, |r| (now.as_secs_f64() * r) as u64);
        let burst = due.saturating_sub(made).min(BURST);
        for _ in 0..burst {
            // SAFETY: a valid 1-byte buffer.
            failed += u64::from(unsafe { libc::sethostname(c"x".as_ptr(), 1) } != 0);
        }
        made += burst;
        if let Some(r) = rate
            && made >= due
        {
            // Sleeping at least a millisecond keeps the sleeps themselves from setting the pace.
            let now = start.elapsed();
            let next = Duration::from_secs_f64((made + 1) as f64 / r);
            let wait = next.saturating_sub(now).max(Duration::from_millis(1));
            std::thread::sleep(wait.min(duration.saturating_sub(now)));
        }
    }
}

fn kill_all(pids: &[libc::pid_t]) {
    for &pid in pids {
        // SAFETY: our own unreaped children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}
