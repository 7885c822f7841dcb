//! `monitor --metrics` cannot be tied up by whoever reaches its port (#14 item 7): with only 128
//! fds, 200 idle connections neither keep a real scraper out nor make the monitor spin.
mod support;

use std::{
    net::TcpStream,
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is f[0], so fields 14 and 15 are f[11] and f[12].
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn scrape(addr: &str) -> (bool, String, Duration) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sf", "-m", "10", &format!("http://{addr}/metrics")])
        .output()
        .expect("running curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        t.elapsed(),
    )
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn idle_connections_under_a_low_fd_limit_neither_block_metrics_nor_spin_the_monitor() {
    if !support::require_root() {
        return;
    }
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(support::captrace_bin());
    cmd.args(["monitor", "--json", "--duration", "120", "--metrics", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 128,
                rlim_max: 128,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mon = Killed(cmd.spawn().expect("starting captrace monitor"));
    let pid = mon.0.id();
    support::wait_for(
        "monitor to serve /metrics",
        Duration::from_secs(60) * support::time_scale(),
        || scrape(&addr).0,
    );

    // The attack: 200 connections that never send a byte (more than the fds monitor has).
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).expect("connecting"))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    let t = Instant::now();
    thread::sleep(Duration::from_secs(3));
    let used = (cpu_ticks(pid) - before) as f64 / 100.0 / t.elapsed().as_secs_f64();
    eprintln!(
        "monitor CPU with 200 idle connections: {:.1}%",
        used * 100.0
    );
    assert!(
        used < 0.15,
        "monitor used {:.0}% of a CPU while 200 idle connections were held (it spins)",
        used * 100.0
    );

    // A real scraper still gets its answer, promptly, while the idle ones are still open.
    let (ok, body, took) = scrape(&addr);
    assert!(ok, "curl got no /metrics with 200 idle connections open");
    assert!(
        took < Duration::from_secs(3),
        "/metrics took {took:?} with 200 idle connections open"
    );
    // The whole exposition arrived (OpenMetrics ends with `# EOF`). The checks family is
    // only there once the host made a capability check during the run, which a quiet machine
    // may not have: its lines prove nothing about the server.
    assert!(body.contains("captrace_events_lost_total "), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    drop(idle);
    drop(mon);
}
