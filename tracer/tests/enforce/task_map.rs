//! Issue #14 item 4: a full task map fails closed under enforcement. A child that captrace
//! cannot track would run unconfined, so the fork is refused (EAGAIN) and reported, also when
//! confined processes fork into a full map at the same time.
use std::{
    fs,
    process::{Command, Stdio},
    time::Duration,
};

use tracer_common::capacity;

use super::{interrupt, owner, require_lsm, start_enforce_with, support, target_file};

/// Room for the adopted shell and a few of its children only.
const SMALL_TASKS: &str = "8";

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_full_task_map_refuses_forks_instead_of_leaving_children_unconfined() {
    require_lsm();
    let tmp = support::tempdir();
    let d = tmp.path();
    let target = target_file(d);
    // A root shell that, once confined, starts 30 children that each try `chown` and then
    // stay: more than the task map holds. Every child either runs tracked (its chown is
    // refused: "fail") or is never created (its fork fails; dash gives up with "Cannot
    // fork"). An untracked child would be root unconfined: its chown would work ("ok").
    // The forks happen one at a time: the shell starts the next child only once the last one
    // has had its try (it reads a line from a FIFO the child writes to, a builtin `read`
    // that forks nothing; a child that dies first, its own fork refused, writes it from its EXIT
    // trap). Forks racing into a full map are the next test's.
    let sync = d.join("sync");
    nix::unistd::mkfifo(&sync, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!(
        "while [ ! -e {d}/go ]; do sleep 0.05; done; i=0; while [ $i -lt 30 ]; do \
         ( trap 'echo done > {s}' EXIT; \
         if chown 9 {t} 2>/dev/null; then echo ok >> {d}/log; else echo fail >> {d}/log; fi; \
         trap - EXIT; echo done > {s}; exec sleep 60 ) & echo $! >> {d}/pids; read x < {s}; \
         i=$((i+1)); done",
        d = d.display(),
        t = target.display(),
        s = sync.display()
    );
    let mut shell = Command::new("sh")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut enforce = support::captrace(&[]);
    enforce.env(capacity::TASKS_ENV, SMALL_TASKS).args([
        "enforce",
        "--pid",
        &shell.id().to_string(),
        "--cap-drop",
        "ALL",
    ]);
    let (enforcer, rx) = start_enforce_with(enforce);
    fs::write(d.join("go"), "").unwrap();
    // Below the guests' limit per test binary (600 s), so that a hang fails here, with the
    // processes' states.
    let limit = Duration::from_secs(20) * support::time_scale();
    let ended = support::wait_until(limit, || shell.try_wait().unwrap().is_some());
    assert!(ended, "the forking shell did not end:\n{}", processes());
    // Each child has had its try once it sleeps or has exited (gone, or a zombie: the
    // guests' init does not reap orphans): only then may captrace let go.
    let pids = fs::read_to_string(d.join("pids")).unwrap_or_default();
    let pids: Vec<i32> = pids.lines().filter_map(|p| p.trim().parse().ok()).collect();
    let tried = |p: &i32| match fs::read_to_string(format!("/proc/{p}/stat")) {
        // `PID (COMM) STATE ...`; COMM is `sh` or `sleep` here.
        Ok(stat) => stat.contains("(sleep) ") || stat.contains(") Z "),
        Err(_) => true,
    };
    assert!(
        support::wait_until(limit, || pids.iter().all(tried)),
        "the children did not all try ({pids:?}):\n{}",
        processes()
    );
    let (code, stdout, stderr) = interrupt(enforcer, rx);
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(code, 0, "{stderr}");

    let log = fs::read_to_string(d.join("log")).unwrap_or_default();
    assert_eq!(owner(&target), 0, "a child escaped confinement: {log}");
    assert!(!log.contains("ok"), "{log}");
    // The children that fit were tracked, and so confined.
    assert!(log.contains("fail"), "no child ran: {log}");
    // Fewer children than asked for ran: the map did fill up.
    assert!(pids.len() < 30, "{pids:?}");
    let live = stdout
        .lines()
        .find(|l| l.contains("fork refused"))
        .unwrap_or_else(|| panic!("no live line for the refused fork: {stdout}"));
    assert!(live.starts_with("captrace: enforce: "), "{live}");
    assert!(live.contains("captrace's task map is full"), "{live}");
    assert!(stderr.contains("forks refused (EAGAIN)"), "{stderr}");
}

/// Every process's id, parent, state, wait channel and command, for a failure message.
fn processes() -> String {
    let out = Command::new("ps")
        .args(["-eo", "pid,ppid,stat,wchan:24,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    out.unwrap_or_else(|e| format!("ps: {e}"))
}

/// A confined root process whose two children fork as fast as they can into a full map at
/// once, each child trying `chown`, while the others fill the map. Per child: `ok`/`fail`
/// (its chown worked / was refused) and `refused` (the fork itself got EAGAIN), one line per
/// forker in `DIR/forkerN`.
const RACE: &str = r#"
import os, sys, time
target, d, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
while not os.path.exists(d + "/go"):
    time.sleep(0.05)
r, w = os.pipe()
forkers = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        ok = fail = refused = 0
        end = time.monotonic() + secs
        while time.monotonic() < end:
            try:
                c = os.fork()
            except BlockingIOError:
                refused += 1
                continue
            if c == 0:
                try:
                    os.chown(target, 9, -1)
                    os._exit(0)
                except PermissionError:
                    os._exit(1)
            _, st = os.waitpid(c, 0)
            if os.waitstatus_to_exitcode(st) == 0:
                ok += 1
            else:
                fail += 1
        with open(f"{d}/forker{i}", "w") as f:
            f.write(f"{ok} {fail} {refused}\n")
        os._exit(0)
    forkers.append(pid)
# The fillers stay until the forkers are done (a pipe of their own).
r2, w2 = os.pipe()
sleepers = []
while True:
    try:
        pid = os.fork()
    except BlockingIOError:
        break
    if pid == 0:
        os.close(w)
        os.close(w2)
        os.read(r2, 1)
        os._exit(0)
    sleepers.append(pid)
with open(f"{d}/sleepers", "w") as f:
    f.write(f"{len(sleepers)}\n")
# Two slots come free (once the kernel frees the tasks), and the forkers start together.
for pid in sleepers[:2]:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
os.close(w)
for pid in forkers:
    os.waitpid(pid, 0)
os.close(w2)
for pid in sleepers[2:]:
    os.waitpid(pid, 0)
"#;

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_two_confined_processes_racing_forks_into_a_full_map_leave_no_child_unconfined() {
    require_lsm();
    let tmp = support::tempdir();
    let d = tmp.path();
    let target = target_file(d);
    let mut driver = Command::new("python3")
        .args([
            "-c",
            RACE,
            &target.display().to_string(),
            &d.display().to_string(),
            "3",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut enforce = support::captrace(&[]);
    enforce.env(capacity::TASKS_ENV, "16").args([
        "enforce",
        "--pid",
        &driver.id().to_string(),
        "--cap-drop",
        "ALL",
    ]);
    let (enforcer, rx) = start_enforce_with(enforce);
    fs::write(d.join("go"), "").unwrap();
    let limit = Duration::from_secs(20) * support::time_scale();
    let ended = support::wait_until(limit, || driver.try_wait().unwrap().is_some());
    let states = processes();
    if !ended {
        let _ = driver.kill();
    }
    let driver_out = driver.wait_with_output().unwrap();
    let (code, _stdout, stderr) = interrupt(enforcer, rx);
    assert!(ended, "the forking processes did not end:\n{states}");
    assert!(
        driver_out.status.success(),
        "{}",
        String::from_utf8_lossy(&driver_out.stderr)
    );
    assert_eq!(code, 0, "{stderr}");

    let sleepers = fs::read_to_string(d.join("sleepers")).unwrap();
    let (mut ok, mut fail, mut refused) = (0u64, 0u64, 0u64);
    for i in 0..2 {
        let line = fs::read_to_string(d.join(format!("forker{i}"))).unwrap();
        let n: Vec<u64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        ok += n[0];
        fail += n[1];
        refused += n[2];
    }
    let counts =
        format!("{ok} ok, {fail} refused chown, {refused} forks refused; {sleepers} fillers");
    eprintln!("racing forks: {counts}");
    assert_eq!(owner(&target), 0, "a child escaped confinement: {counts}");
    assert_eq!(ok, 0, "{counts}");
    // Children were created while the map was full, and each was confined.
    assert!(fail > 0, "no child ran: {counts}");
    assert!(refused > 0, "the map was never full: {counts}");
    assert!(stderr.contains("forks refused (EAGAIN)"), "{stderr}");
}
