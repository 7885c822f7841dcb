//! `captrace monitor` as the bench drives it: started, read through its `/metrics`, measured
//! (CPU time, peak RSS) and stopped.
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

/// What the Prometheus text always has once the agent has refreshed.
pub(super) const READY_MARK: &str = "captrace_events_lost_total";

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
}
