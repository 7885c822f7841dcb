//! Kernel tier: faults and hostile workloads never cost counts or confinement, and captrace
//! never leaves a program attached (root).
mod support;

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use captrace::profile::Profile;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Names of captrace's programs as `bpftool prog show` prints them.
const OUR_PROGRAMS: &[&str] = &[
    "cap_capable_raw_tp",
    "ns_sys_enter",
    "ns_sys_exit",
    "sched_process_fork",
    "sched_process_exit",
    "sched_process_exec",
];

fn attached_programs() -> usize {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("running bpftool (cargo xtask setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| {
            OUR_PROGRAMS
                .iter()
                .any(|p| l.contains(&format!("name {p} ")))
        })
        .count()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(support::captrace_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigkill(child: &mut Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn status_hex(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix(key)).unwrap().trim();
    u64::from_str_radix(v, 16).unwrap()
}

fn record(args: &[&str]) -> (Output, Profile) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let out = Command::new(support::captrace_bin())
        .args(["record", "-o", p.to_str().unwrap(), "--"])
        .args(args)
        .output()
        .unwrap();
    let profile = Profile::read(&p)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out, profile)
}

fn count(p: &Profile, cap: &str, syscall: &str) -> u64 {
    p.checks
        .iter()
        .filter(|c| c.cap.name() == cap && c.syscall.as_deref() == Some(syscall))
        .map(|c| c.count)
        .sum()
}

#[test]
fn sigkill_leaves_no_program_attached_in_record_run_and_monitor() {
    if !support::require_root() {
        return;
    }
    wait_for(
        "no captrace programs at start",
        Duration::from_secs(5),
        || attached_programs() == 0,
    );
    for args in [
        &["record", "--", "sleep", "3"][..],
        &["run", "--audit", "--", "sleep", "3"][..],
        &["monitor", "--json", "--duration", "30"][..],
    ] {
        let mut c = spawn(args);
        wait_for("the programs to attach", Duration::from_secs(10), || {
            attached_programs() == OUR_PROGRAMS.len()
        });
        sigkill(&mut c);
        // The kernel drops the links with the last fd: nothing of captrace stays attached.
        wait_for("the programs to go", Duration::from_secs(5), || {
            attached_programs() == 0
        });
        let mut pinned = fs::read_dir("/sys/fs/bpf").into_iter().flatten().flatten();
        assert!(
            !pinned.any(|e| e.file_name().to_string_lossy().contains("captrace")),
            "nothing pinned"
        );
    }
}

#[test]
fn a_run_workload_stays_confined_when_captrace_is_killed() {
    if !support::require_root() {
        return;
    }
    let mut c = spawn(&[
        "run",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--",
        "sleep",
        "5",
    ]);
    let mut workload = 0;
    wait_for("the workload", Duration::from_secs(5), || {
        workload = children(c.id()).first().copied().unwrap_or(0);
        workload != 0
            && fs::read_to_string(format!("/proc/{workload}/comm"))
                .is_ok_and(|n| n.trim() == "sleep")
    });
    sigkill(&mut c);
    // Its capabilities were dropped in the workload itself: they stay dropped.
    assert_eq!(status_hex(workload, "CapEff:"), 1);
    assert_eq!(status_hex(workload, "CapBnd:"), 1);
    assert_eq!(status_hex(workload, "NoNewPrivs:"), 1);
    let _ = kill(Pid::from_raw(workload as i32), Signal::SIGKILL);
}

#[test]
fn record_and_monitor_at_once_and_two_records_do_not_interfere() {
    if !support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, "x").unwrap();
    let mon = Command::new(support::captrace_bin())
        .args([
            "monitor",
            "--json",
            "--duration",
            "4",
            "--cap",
            "CHOWN,MKNOD",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(800));
    let n = dir.path().join("n");
    let (f2, n2) = (f.clone(), n.clone());
    let a = thread::spawn(move || record(&["chown", "1000", f2.to_str().unwrap()]));
    let b = thread::spawn(move || record(&["mknod", n2.to_str().unwrap(), "c", "1", "3"]));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(
        a.1.cap_add.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["CHOWN"]
    );
    assert_eq!(
        b.1.cap_add.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["MKNOD"]
    );
    let out = mon.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (cap, comm) in [("CHOWN", "chown"), ("MKNOD", "mknod")] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("\"cap\":\"{cap}\""))
                    && l.contains(&format!("\"comm\":\"{comm}\""))),
            "monitor saw {cap}: {text}"
        );
    }
    assert_eq!(fs::metadata(&f).unwrap().uid(), 1000);
}

#[test]
fn a_flood_of_checks_is_counted_exactly() {
    if !support::require_root() {
        return;
    }
    let n = 200_000;
    let script = format!("import socket\nfor _ in range({n}): socket.sethostname('flood')");
    let (out, p) = record(&["unshare", "--uts", "/usr/bin/python3", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&p, "SYS_ADMIN", "sethostname"), n);
}

#[test]
fn a_fork_storm_is_counted_exactly() {
    if !support::require_root() {
        return;
    }
    // 2,000 short-lived processes, each making one audited check (sethostname in the UTS
    // namespace they inherit), eight at a time.
    let n = 2_000;
    let script = format!(
        r#"
import os, socket
for batch in range({n} // 8):
    pids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            socket.sethostname("storm")
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
"#
    );
    let (out, p) = record(&["unshare", "--uts", "/usr/bin/python3", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&p, "SYS_ADMIN", "sethostname"), n);
}

#[test]
fn hostile_workloads_are_still_traced() {
    if !support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    // Closes every fd it has, then uses a capability.
    fs::write(&f, "x").unwrap();
    let script = format!("exec 0<&- 1>&- 2>&-; chown 1000 {}", f.display());
    let (_, p) = record(&["sh", "-c", &script]);
    assert_eq!(
        p.cap_add.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["CHOWN"]
    );
    // Moves itself to another cgroup first: tracking is by process, not by cgroup.
    let cg = "/sys/fs/cgroup/unified/captrace-hostile";
    let _ = fs::create_dir(cg);
    fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
    let script = format!("echo $$ > {cg}/cgroup.procs && chown 1000 {}", f.display());
    let (out, p) = record(&["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        p.cap_add.iter().any(|c| c.name() == "CHOWN"),
        "{:?}",
        p.cap_add
    );
    let _ = fs::remove_dir(cg);
    // Calls unshare and setns itself: followed into its namespaces, and the calls reported.
    let mut host = Command::new("sleep").arg("5").spawn().unwrap();
    let join = format!("hostname x; nsenter -t {} -u true", host.id());
    let (_, p) = record(&["unshare", "--uts", "--net", "sh", "-c", &join]);
    host.kill().ok();
    host.wait().ok();
    assert_eq!(p.namespaces.created, ["uts", "net"]);
    assert_eq!(p.namespaces.joined, ["uts"]);
}
