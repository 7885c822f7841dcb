//! bpftrace as a reference tracer, running in the background.
use super::*;

/// bpftrace running in the background with its probe attached.
pub(super) struct Bpftrace {
    child: Child,
}

impl Bpftrace {
    /// Starts `bpftrace -e program` and waits until its program is attached to tracepoint `point`.
    pub(super) fn start(program: &str, point: &str, dir: &Path) -> anyhow::Result<Bpftrace> {
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
            let attached = match perf_attached(tracer.pid(), point) {
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

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (bpftrace prints its maps and detaches) and waits, once more after 5 s, then
    /// SIGKILL. The run it traced stays valid either way: only a warning is printed.
    pub(super) fn stop(mut self) {
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

/// Whether `pid` has a BPF program attached to tracepoint `point` through perf, per
/// `bpftool perf list`; None without bpftool.
pub(super) fn perf_attached(pid: u32, point: &str) -> Option<bool> {
    let out = cmd::stdout_of(Command::new("bpftool").args(["perf", "list", "--json"]))?;
    let list: Value = serde_json::from_str(&out).ok()?;
    Some(list.as_array()?.iter().any(|e| {
        e["pid"].as_u64() == Some(u64::from(pid)) && e["tracepoint"].as_str() == Some(point)
    }))
}
