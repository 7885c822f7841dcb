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

/// Room for the adopted process and a few of its children only.
const SMALL_TASKS: &str = "8";

/// A confined root process that starts up to 30 children, one at a time, each trying `chown`
/// and then staying (blocked on a pipe) to hold its slot: more than the map holds. Each
/// child reports `ok` or `fail` (its chown worked / was refused) on a pipe before the next
/// fork; a refused fork (EAGAIN) ends the loop. `DIR/log` gets the reports, one per line,
/// and `refused` if a fork was refused.
const ONE_AT_A_TIME: &str = r#"
import os, sys, time
target, d = sys.argv[1], sys.argv[2]
while not os.path.exists(d + "/go"):
    time.sleep(0.05)
hold_r, hold_w = os.pipe()
kids = []
with open(d + "/log", "w") as log:
    for i in range(30):
        r, w = os.pipe()
        try:
            pid = os.fork()
        except BlockingIOError:
            log.write("refused\n")
            break
        if pid == 0:
            os.close(r)
            os.close(hold_w)
            try:
                os.chown(target, 9, -1)
                os.write(w, b"ok\n")
            except PermissionError:
                os.write(w, b"fail\n")
            os.read(hold_r, 1)
            os._exit(0)
        os.close(w)
        kids.append(pid)
        log.write(os.read(r, 16).decode() or "silent\n")
        log.flush()
        os.close(r)
os.close(hold_w)
for pid in kids:
    os.waitpid(pid, 0)
"#;

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_full_task_map_refuses_forks_instead_of_leaving_children_unconfined() {
    require_lsm();
    let tmp = support::tempdir();
    let d = tmp.path();
    let target = target_file(d);
    // Every child either runs tracked (its chown is refused: "fail") or is never created
    // (its fork fails with EAGAIN). An untracked child would be root unconfined: its chown
    // would work ("ok"). The forks happen one at a time, each once the last child has had its
    // try, so the test shows the refusal itself; forks racing into a full map are the next
    // test's.
    let (stdout, stderr) = confine(
        ONE_AT_A_TIME,
        &[&target.display().to_string(), &d.display().to_string()],
        SMALL_TASKS,
    );

    let log = fs::read_to_string(d.join("log")).unwrap_or_default();
    assert_eq!(owner(&target), 0, "a child escaped confinement: {log}");
    assert!(!log.contains("ok"), "{log}");
    assert!(
        !log.contains("silent"),
        "a child died before its try: {log}"
    );
    // The children that fit were tracked, and so confined.
    assert!(log.contains("fail"), "no child ran: {log}");
    // The map did fill up: a fork was refused before the 30th.
    assert!(log.contains("refused"), "{log}");
    let live = stdout
        .lines()
        .find(|l| l.contains("fork refused"))
        .unwrap_or_else(|| panic!("no live line for the refused fork: {stdout}"));
    assert!(live.starts_with("captrace: enforce: "), "{live}");
    assert!(live.contains("captrace's task map is full"), "{live}");
    assert!(stderr.contains("forks refused (EAGAIN)"), "{stderr}");
}

/// Runs `python3 -c SCRIPT ARGS...` (ARGS[1] is its directory, where `go` lets it start)
/// under `enforce --pid --cap-drop ALL` with a task map of `tasks` entries; asserts that it
/// ended within the limit and that enforce exited 0; returns enforce's stdout and stderr.
fn confine(script: &str, args: &[&str], tasks: &str) -> (String, String) {
    let mut driver = python(script, args);
    let mut enforce = support::captrace(&[]);
    enforce.env(capacity::TASKS_ENV, tasks).args([
        "enforce",
        "--pid",
        &driver.id().to_string(),
        "--cap-drop",
        "ALL",
    ]);
    let (enforcer, rx) = start_enforce_with(enforce);
    fs::write(std::path::Path::new(args[1]).join("go"), "").unwrap();
    let (ended, driver_err, states) = wait_for(&mut driver);
    let (code, stdout, stderr) = interrupt(enforcer, rx);
    assert!(
        ended,
        "the forking process failed or did not end: {driver_err}\n{states}"
    );
    assert_eq!(code, 0, "{stderr}");
    (stdout, stderr)
}

/// `python3 -c SCRIPT ARGS...`, its stderr piped.
fn python(script: &str, args: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` below the guests' limit per test binary (600 s), so that a hang fails
/// in the test, with the processes' states: whether it ended with status 0, its stderr, and
/// `processes()` taken when the wait ended. A child that did not end is killed.
fn wait_for(child: &mut std::process::Child) -> (bool, String, String) {
    let limit = Duration::from_secs(20) * support::time_scale();
    let ended = support::wait_until(limit, || child.try_wait().unwrap().is_some());
    let states = processes();
    if !ended {
        let _ = child.kill();
    }
    let ok = child.wait().is_ok_and(|s| s.success()) && ended;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (ok, err, states)
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
    let (_stdout, stderr) = confine(
        RACE,
        &[&target.display().to_string(), &d.display().to_string(), "3"],
        "16",
    );

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
