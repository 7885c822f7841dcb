//! Tracers someone else loaded: waiting for them, and samples marked when they were there.
use super::*;

/// Guards against tracers someone else loaded: on a shared machine, another test run of
/// captrace attaches syscall tracepoints that slow every syscall of every process,
/// the untraced runs included.
pub(super) struct Quiet {
    /// How long, in all, the bench may still wait for foreign tracing programs to go away.
    pub(super) budget: Duration,
    pub(super) waited: Duration,
    pub(super) runs: u32,
    pub(super) contaminated: u32,
}

impl Bench {
    /// Runs `f` as one timed run: first waits (within the budget) until no other process has
    /// tracing BPF programs loaded, then checks again afterwards. Returns the result and whether
    /// the run was clean.
    pub(super) fn measure<T>(
        &mut self,
        f: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, bool)> {
        // The captrace under test's own leftovers (the orphan detaching the last run's syscall
        // tracepoints) end within a second: waited for outside the budget, which is for
        // other people's tracers.
        let own = Instant::now() + Duration::from_secs(10);
        while still_detaching(&self.captrace) > 0 && Instant::now() < own {
            thread::sleep(Duration::from_millis(20));
        }
        let mut clean_before = true;
        while foreign_tracers() > 0 || still_detaching(&self.captrace) > 0 {
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
        // Our own programs may take a moment to disappear after their tracer exits (captrace
        // leaves the detach of its syscall tracepoints, an RCU grace period each, to an orphan).
        let deadline = Instant::now() + Duration::from_secs(2);
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
}

/// Samples of one series, split by whether a foreign tracer was loaded during the run.
pub(super) struct Series<T> {
    all: Vec<(T, bool)>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series { all: Vec::new() }
    }
}

impl<T: Copy> Series<T> {
    pub(super) fn push(&mut self, value: T, clean: bool) {
        self.all.push((value, clean));
    }

    /// The clean samples, or every sample when none is clean.
    pub(super) fn usable(&self) -> Vec<T> {
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
    pub(super) fn list(&self) -> String {
        self.all
            .iter()
            .map(|(v, clean)| format!("{v:.1}{}", if *clean { "" } else { "*" }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// max − min.
pub(super) fn spread(samples: &[f64]) -> Option<f64> {
    let max = samples.iter().copied().reduce(f64::max)?;
    let min = samples.iter().copied().reduce(f64::min)?;
    Some(max - min)
}

/// Processes of the captrace under test still running, such as the orphan that detaches the
/// syscall tracepoints of the run before (`tracer/src/loader/detach.rs`): its programs are gone
/// from `bpftool prog show` while it still waits in the kernel for the detach's RCU grace
/// periods, holding `event_mutex`, which the next run's tracepoint attach then waits for
/// (20-60 ms measured here).
fn still_detaching(captrace: &std::path::Path) -> usize {
    // /proc/PID/comm: the executable's name, cut to 15 bytes.
    let name = captrace
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    let comm = &name[..name.len().min(15)];
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| {
                    std::fs::read(e.path().join("comm"))
                        .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == comm)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Tracing BPF programs loaded now (0 without bpftool: then nothing can be told).
pub(super) fn foreign_tracers() -> usize {
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
