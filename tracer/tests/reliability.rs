//! Kernel tier: faults and hostile workloads never cost counts or confinement, and captrace
//! never leaves a program attached (root).
mod support;

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use support::{bpf, count, record, wait_for};

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

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn sigkill_leaves_no_program_attached_in_record_run_and_monitor() {
    support::require_root();
    for args in [
        &["record", "--", "sleep", "3"][..],
        &["run", "--audit", "--", "sleep", "3"][..],
        &["monitor", "--json", "--duration", "30"][..],
    ] {
        let mut c = spawn(args);
        let links = bpf::links_once_attached(c.id());
        sigkill(&mut c);
        // The kernel drops the links with the last fd: nothing of this captrace stays.
        bpf::wait_until_gone(&links);
        let mut pinned = fs::read_dir("/sys/fs/bpf").into_iter().flatten().flatten();
        assert!(
            !pinned.any(|e| e.file_name().to_string_lossy().contains("captrace")),
            "nothing pinned"
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_run_workload_stays_confined_when_captrace_is_killed() {
    support::require_root();
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
#[ignore = "needs root (cargo xtask test runs it)"]
fn record_and_monitor_at_once_and_two_records_do_not_interfere() {
    support::require_root();
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
    // Watching once the kernel lists its programs attached (a fixed sleep was too short on a
    // loaded CI machine, and the chown happened unwatched).
    support::bpf::links_once_attached(mon.id());
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
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_flood_of_checks_is_counted_exactly() {
    support::require_root();
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
#[ignore = "needs root (cargo xtask test runs it)"]
fn checks_are_counted_exactly_in_cache_slots_and_when_their_slot_is_taken() {
    support::require_root();
    // One process per CPU makes four keys of checks, in opposite orders. With the cache's
    // 256 slots per CPU, each key is counted in its slot on each CPU (user space sums them);
    // with one slot per CPU, the first key a CPU sees (a check of the process start) owns it
    // and these four are counted in USAGE. Every count must be exact either way.
    let cpus: Vec<usize> = {
        let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .take(2)
            .collect()
    };
    let calls = [
        (libc::SYS_sethostname, "SYS_ADMIN", "sethostname", 3_000),
        (libc::SYS_setdomainname, "SYS_ADMIN", "setdomainname", 2_000),
        (libc::SYS_setuid, "SETUID", "setuid", 1_000),
        (libc::SYS_setgid, "SETGID", "setgid", 500),
    ];
    let perl = r#"
        my $name = "slot";
        while (my ($nr, $n, $args) = splice(@ARGV, 0, 3)) {
            for (1 .. $n) {
                my $r = $args eq "name" ? syscall($nr, $name, 4) : syscall($nr, 0);
                $r == 0 or die "syscall $nr: $!";
            }
        }
    "#;
    let mut script = String::new();
    for (i, cpu) in cpus.iter().enumerate() {
        let mut order: Vec<_> = calls.iter().collect();
        if i % 2 == 1 {
            order.reverse();
        }
        let args: Vec<String> = order
            .iter()
            .map(|(nr, cap, _, n)| {
                let kind = if *cap == "SYS_ADMIN" { "name" } else { "id" };
                format!("{nr} {n} {kind}")
            })
            .collect();
        script.push_str(&format!(
            "taskset -c {cpu} perl -e '{perl}' {} || exit 1\n",
            args.join(" ")
        ));
    }
    for slots in [None, Some("1")] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        let mut record = Command::new(support::captrace_bin());
        if let Some(n) = slots {
            record.env(tracer_common::usage_cache::SLOTS_ENV, n);
        }
        let out = record
            .args(["record", "-o", p.to_str().unwrap(), "--"])
            .args(["unshare", "--uts", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::text(&out.stderr));
        let text = fs::read_to_string(&p).unwrap();
        let profile = captrace::profile::Profile::from_json(&text, "p.json").unwrap();
        for (_, cap, syscall, n) in calls {
            assert_eq!(
                count(&profile, cap, syscall),
                n * cpus.len() as u64,
                "{cap} in {syscall}, cache slots: {slots:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_fork_storm_is_counted_exactly() {
    support::require_root();
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
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_full_ring_buffer_loses_detail_but_never_counts() {
    support::require_root();
    // Every setns() is one event (this one fails with EBADF before any capability check), far
    // more than the ring buffer holds between two reads; sethostname() checks SYS_ADMIN, before
    // and during the flood.
    let n: u64 = 200_000;
    let script = r#"
        my ($setns, $sethostname, $n) = @ARGV;
        my $name = "flood";
        sub host { syscall($sethostname, $name, 5) == 0 or die "sethostname: $!" }
        host() for 1 .. 1000;
        for my $i (1 .. $n) { syscall($setns, -1, 0); host() if $i % 200 == 0 }
    "#;
    let (setns, sethostname) = (
        libc::SYS_setns.to_string(),
        libc::SYS_sethostname.to_string(),
    );
    let args = [
        "unshare",
        "--uts",
        "perl",
        "-e",
        script,
        &setns,
        &sethostname,
        &n.to_string(),
    ];
    let (out, p) = record(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(count(&p, "SYS_ADMIN", "sethostname"), 1000 + n / 200);
    let lost = p.lost_events;
    assert!(lost > 0, "the flood must overflow the ring buffer");
    assert!(
        err.contains(&format!(
            "lost {lost} detail events (ring buffer full); counts are still exact"
        )),
        "{err}"
    );
    // Each setns() is either in the profile or counted as lost; the only other events that
    // can be lost are the few new call paths of the checks.
    let seen = p
        .namespaces
        .calls
        .iter()
        .filter(|c| c.syscall == "setns")
        .count() as u64;
    let paths: u64 = p.checks.iter().map(|c| c.call_paths.len() as u64).sum();
    assert!(
        seen + lost >= n && seen + lost <= n + paths,
        "{seen} seen + {lost} lost for {n} calls ({paths} paths)"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn neither_tracefs_nor_securityfs_is_needed_and_doctor_says_so() {
    support::require_root();
    // With them mounted (cargo xtask setup mounts both), doctor shows where.
    let doctor = |cmd: &mut Command| -> serde_json::Value {
        let out = cmd.output().unwrap();
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
    };
    let here = doctor(Command::new(support::captrace_bin()).args(["doctor", "--json"]));
    assert_eq!(here["tracefs"], "/sys/kernel/tracing", "{here}");
    assert!(here["lsm"].is_string(), "{here}");
    // Hidden under tmpfs mounts in a private mount namespace (mountinfo still lists them).
    let hide = "mount -t tmpfs none /sys/kernel/tracing; mount -t tmpfs none /sys/kernel/debug; mount -t tmpfs none /sys/kernel/security";
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, "x").unwrap();
    let p = dir.path().join("p.json");
    let args = [
        "record",
        "-o",
        p.to_str().unwrap(),
        "--",
        "chown",
        "1000",
        f.to_str().unwrap(),
    ];
    let out = support::in_private_mounts(hide, &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = captrace::profile::Profile::read(&p).unwrap();
    assert_eq!(
        p.cap_add.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["CHOWN"]
    );
    assert_eq!(fs::metadata(&f).unwrap().uid(), 1000);
    let hidden = doctor(&mut support::in_private_mounts(hide, &["doctor", "--json"]));
    assert_eq!(hidden["tracefs"], serde_json::Value::Null, "{hidden}");
    assert_eq!(hidden["lsm"], serde_json::Value::Null, "{hidden}");
    assert_eq!(hidden["hook"]["Ok"], "tp_btf/cap_capable", "{hidden}");
    let enforcement = hidden["enforcement"]["Err"].as_str().unwrap_or_default();
    assert!(
        enforcement.contains("securityfs is not mounted"),
        "{hidden}"
    );
    let text = support::in_private_mounts(hide, &["doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "tracefs: not mounted ({})",
            captrace::commands::doctor::TRACEFS_MISSING
        )),
        "{text}"
    );
    assert!(text.contains("mount -t tracefs"), "{text}");
}
