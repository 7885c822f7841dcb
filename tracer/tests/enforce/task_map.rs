//! Issue #14 item 4: a full `TASKS` map fails closed under enforcement. A child that captrace
//! cannot track would run unconfined, so the fork is refused (EAGAIN) and reported.
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
    // trap). Two confined threads forking at once into a full map can still
    // lose a child in a window of a few instructions (README, Guarantees); this test shows
    // the refusal itself, and must not depend on a scheduler never hitting that window.
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
    let limit = Duration::from_secs(60) * support::time_scale();
    assert!(
        support::wait_until(limit, || shell.try_wait().unwrap().is_some()),
        "the forking shell did not end"
    );
    // Each child has had its try once it sleeps (or is gone): only then may captrace let go.
    let pids = fs::read_to_string(d.join("pids")).unwrap_or_default();
    let pids: Vec<i32> = pids.lines().filter_map(|p| p.trim().parse().ok()).collect();
    assert!(
        support::wait_until(limit, || pids.iter().all(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).map_or(true, |c| c.trim() == "sleep")
        })),
        "the children did not all try"
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
