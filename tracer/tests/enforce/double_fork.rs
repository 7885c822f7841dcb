//! Issue #14 item 6, double-forking around `enforce --pid`. A daemon leaves its process tree by
//! double-forking: its parent exits and the kernel reparents it to init (or a subreaper).
//! - After adoption, that changes nothing: the kernel gave the grandchild its creator's
//!   `TASKS` entry at `task_newtask`, and a new parent is not a new workload.
//! - Before `enforce` started, the grandchild is no longer P's descendant: `--pid` confines P
//!   and its current descendants, and says at start that a process which already left the tree
//!   is not adopted (`--cgroup`/`--container` confine a service as a whole).
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use super::{ended_by_itself, interrupt, owner, require_lsm, start_enforce, support, target_file};

/// Whether `ancestor` is among the ancestors of `pid` (false once `pid` is gone).
fn has_ancestor(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        let Ok(status) = fs::read_to_string(format!("/proc/{p}/status")) else {
            return false;
        };
        let Some(ppid) = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            return false;
        };
        if ppid == ancestor {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

/// Whether `pid` has ended (gone, or a zombie its new parent has not reaped yet).
fn ended(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| captrace::adopt::parse_start_time(&s).is_none())
}

/// The pid a script wrote to `file` (written to a temporary name and renamed: whole or absent).
fn pid_in(file: &Path) -> u32 {
    let limit = Duration::from_secs(20) * support::time_scale();
    assert!(
        support::wait_until(limit, || file.exists()),
        "{} never appeared",
        file.display()
    );
    fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

/// A shell command that double-forks `body`: the subshell starts it in the background and
/// exits, so `body`'s shell is reparented away. `body` first writes its pid to `pidfile`.
fn double_fork(pidfile: &Path, body: &str) -> String {
    let f = pidfile.display();
    format!("( sh -c 'echo $$ > {f}.tmp && mv {f}.tmp {f}; {body}' & )")
}

fn wait_file(d: &Path, name: &str) -> String {
    format!("while [ ! -e {}/{name} ]; do sleep 0.05; done", d.display())
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_grandchild_that_double_forks_after_adoption_stays_confined() {
    require_lsm();
    let tmp = support::tempdir();
    let d = tmp.path();
    let target = target_file(d);
    let grandchild = d.join("grandchild");
    let body = format!(
        "{}; exec chown 21 {}",
        wait_file(d, "go2"),
        target.display()
    );
    let script = format!(
        "{}; {}; {}",
        wait_file(d, "go"),
        double_fork(&grandchild, &body),
        wait_file(d, "go2")
    );
    let mut p = Command::new("sh")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (enforcer, rx) = start_enforce(&["--pid", &p.id().to_string(), "--cap-drop", "ALL"]);
    fs::write(d.join("go"), "").unwrap();
    let g = pid_in(&grandchild);
    let limit = Duration::from_secs(20) * support::time_scale();
    assert!(
        support::wait_until(limit, || !has_ancestor(g, p.id())),
        "the grandchild was not reparented away from {}",
        p.id()
    );
    assert!(!ended(g), "the grandchild must still be running");

    fs::write(d.join("go2"), "").unwrap();
    assert!(p.wait().unwrap().success());
    assert!(support::wait_until(limit, || ended(g)), "grandchild hung");
    let (code, stdout, stderr) = interrupt(enforcer, rx);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        owner(&target),
        0,
        "the reparented grandchild's chown worked"
    );
    assert!(
        stdout.lines().any(
            |l| l.starts_with(&format!("captrace: enforce: chown[{g}]: "))
                && l.contains("CHOWN denied")
        ),
        "the grandchild's refusal was not reported: {stdout}"
    );
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_enforce_pid_says_a_process_that_left_the_tree_before_is_not_adopted() {
    require_lsm();
    let tmp = support::tempdir();
    let d = tmp.path();
    let own = target_file(d);
    let strays = d.join("strays");
    fs::create_dir(&strays).unwrap();
    let stray_target = target_file(&strays);
    let stray = d.join("stray");
    let body = format!(
        "{}; exec chown 22 {}",
        wait_file(d, "go"),
        stray_target.display()
    );
    let script = format!(
        "{}; {}; exec chown 23 {}",
        double_fork(&stray, &body),
        wait_file(d, "go"),
        own.display()
    );
    let mut p = Command::new("sh")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The daemon has left P's tree before `enforce` starts.
    let s = pid_in(&stray);
    let limit = Duration::from_secs(20) * support::time_scale();
    assert!(
        support::wait_until(limit, || !has_ancestor(s, p.id())),
        "the stray was not reparented"
    );

    let (enforcer, rx) = start_enforce(&["--pid", &p.id().to_string(), "--cap-drop", "ALL"]);
    fs::write(d.join("go"), "").unwrap();
    assert!(
        !p.wait().unwrap().success(),
        "P's own chown must be refused"
    );
    assert!(support::wait_until(limit, || ended(s)), "stray hung");
    // Nothing confined is left: enforce ends by itself.
    let (code, stdout, stderr) = ended_by_itself(enforcer, rx);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(owner(&own), 0);
    // The documented limit: the process that left before is not confined, and the user was
    // told so when enforce started.
    assert_eq!(owner(&stray_target), 22, "the stray ran (unconfined)");
    assert!(
        stderr.lines().any(|l| l.contains("already left the tree")
            && l.contains("not adopted")
            && l.contains("--cgroup")),
        "{stderr}"
    );
    assert!(
        stdout.lines().any(
            |l| l.starts_with(&format!("captrace: enforce: chown[{}]: ", p.id()))
                && l.contains("CHOWN denied")
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(&format!("[{s}]")), "{stdout}");
}
