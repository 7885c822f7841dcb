//! In-kernel enforcement (BPF LSM): `run --enforce`, `enforce --pid`, `enforce --cgroup`.
//!
//! BPF LSM does not run on every kernel (this project's CI host refuses lsm programs), so the
//! tests that need it run in the VM stage (`cargo xtask vm-test --suite`: there a missing BPF
//! LSM is a failure). On a kernel without it, those
//! tests fail (`needs_lsm_*`; `cargo xtask test` filters them out there, visibly, and runs
//! `without_lsm_*`, which asserts what the user gets instead; where BPF LSM works it is the other
//! way round).
#[path = "enforce/cgroup_restart.rs"]
mod cgroup_restart;
#[path = "enforce/double_fork.rs"]
mod double_fork;
mod support;
#[path = "enforce/task_map.rs"]
mod task_map;

use support::{captrace, cgroup2_root, text};

use std::{
    fs,
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// Whether BPF LSM enforcement works here, per `captrace doctor` (asked once: it loads every
/// program, which takes seconds in a VM).
fn lsm_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let out = captrace(&[]).args(["doctor", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["enforcement"].get("Ok").is_some()
    })
}

/// Panics unless this kernel runs BPF LSM. The tests that call it are named `needs_lsm_*` and
/// the one that needs its absence `without_lsm_*`: `cargo xtask test` filters out (`--skip`,
/// counted as "filtered out" in the summary) whichever group this kernel cannot run, and the VM
/// stage (`CAPTRACE_EXPECT_LSM=1`) runs the `needs_lsm_` ones on kernels that have it.
fn require_lsm() {
    support::require_root();
    let test = thread::current().name().unwrap_or("?").to_owned();
    assert!(
        lsm_available(),
        "{test}: this kernel has no BPF LSM (captrace doctor); skip it with `--skip needs_lsm_` \
         (cargo xtask test does) or run it in `cargo xtask vm-test --suite`"
    );
}

/// A file owned by root that the workload tries to give away.
fn target_file(dir: &Path) -> PathBuf {
    let f = dir.join("target");
    fs::write(&f, "x").unwrap();
    nix::unistd::chown(&f, Some(0.into()), Some(0.into())).unwrap();
    f
}

fn owner(f: &Path) -> u32 {
    fs::metadata(f).unwrap().uid()
}

/// A root shell that runs `chown UID FILE` each time the test asks (file `go-UID` appears),
/// and appends "UID ok" or "UID fail" to `log`.
struct ChownLoop {
    child: Child,
    dir: PathBuf,
    rounds: usize,
}

impl ChownLoop {
    fn start(dir: &Path, target: &Path) -> ChownLoop {
        let script = format!(
            "while :; do for g in {d}/go-*; do [ -e \"$g\" ] || continue; u=${{g##*-}}; rm -f \"$g\"; \
             if chown $u {t} 2>/dev/null; then echo \"$u ok\" >> {d}/log; else echo \"$u fail\" >> {d}/log; fi; \
             done; sleep 0.02; done",
            d = dir.display(),
            t = target.display()
        );
        let child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
        ChownLoop {
            child,
            dir: dir.to_path_buf(),
            rounds: 0,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks for one `chown UID` and returns whether it succeeded.
    fn chown(&mut self, uid: u32) -> bool {
        fs::write(self.dir.join(format!("go-{uid}")), "").unwrap();
        self.rounds += 1;
        let start = Instant::now();
        loop {
            let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            if lines.len() >= self.rounds {
                let last = lines[self.rounds - 1];
                assert!(last.starts_with(&format!("{uid} ")), "{log}");
                return last.ends_with(" ok");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the chown loop did not answer"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChownLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a child's stderr on a thread; lines come through the channel.
fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line containing {what:?}; saw {seen:?}");
}

/// `captrace enforce ARGS`, started and confirmed confining.
fn start_enforce(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = captrace(&[]);
    cmd.arg("enforce").args(args);
    start_enforce_with(cmd)
}

/// `cmd` (a `captrace enforce`), started and confirmed confining.
fn start_enforce_with(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(child.stderr.take().unwrap());
    let line = wait_for_line(&rx, "Ctrl-C releases it");
    assert!(
        line.contains("confining") || line.contains("complain"),
        "{line}"
    );
    (child, rx)
}

/// The child's output once it exits; killed and failed if it takes longer than `limit`.
fn wait_at_most(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("captrace did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Ctrl-C, then everything it printed.
fn interrupt(child: Child, rx: mpsc::Receiver<String>) -> (i32, String, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = wait_at_most(child, Duration::from_secs(60));
    let err: Vec<String> = rx.try_iter().collect();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        err.join("\n"),
    )
}

/// Waits for an enforce that ends by itself (its workload gone or replaced): its exit code,
/// stdout and every line of its stderr.
fn ended_by_itself(child: Child, rx: mpsc::Receiver<String>) -> (Option<i32>, String, String) {
    let out = wait_at_most(child, Duration::from_secs(20) * support::time_scale());
    // The process is gone, so its stderr is closed: this ends.
    let err: Vec<String> = rx.iter().collect();
    (out.status.code(), text(&out.stdout), err.join("\n"))
}

/// Asserts that an enforce on a cgroup ended in the replaced-cgroup error.
fn assert_replaced(code: Option<i32>, err: &str) {
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("was replaced by a new cgroup at the same path")
            && err.contains("NOT confined"),
        "{err}"
    );
}

/// A chown loop in a temporary directory (removed with the first value) and its target file.
fn chown_workload() -> (tempfile::TempDir, PathBuf, ChownLoop) {
    let tmp = support::tempdir();
    let target = target_file(tmp.path());
    let work = ChownLoop::start(tmp.path(), &target);
    (tmp, target, work)
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_enforce_pid_confines_a_running_process_and_releases_it_on_exit() {
    require_lsm();
    let (_tmp, target, mut work) = chown_workload();
    assert!(work.chown(1), "root's chown works before confinement");

    let pid = work.pid().to_string();
    let (enforcer, rx) = start_enforce(&["--pid", &pid, "--cap-drop", "ALL"]);
    assert!(!work.chown(2), "chown must fail once confined");
    assert_eq!(owner(&target), 1);
    // The same chown outside the workload still works.
    nix::unistd::chown(&target, Some(3.into()), None).unwrap();
    assert_eq!(owner(&target), 3);

    let (code, stdout, stderr) = interrupt(enforcer, rx);
    assert_eq!(code, 0, "{stderr}");
    let live = stdout
        .lines()
        .find(|l| l.contains("CHOWN denied"))
        .unwrap_or_else(|| panic!("no live denial line: {stdout}"));
    // process, syscall, capability, verdict
    assert!(live.starts_with("captrace: enforce: chown["), "{live}");
    assert!(
        live.contains(": fchownat: CHOWN denied") || live.contains(": chown: CHOWN denied"),
        "{live}"
    );
    assert!(stderr.contains("total: CHOWN in"), "{stderr}");
    assert!(stderr.contains("released process"), "{stderr}");

    assert!(work.chown(4), "chown works again once captrace exits");
    assert_eq!(owner(&target), 4);
}

/// Issue #14 item 3: work handed to io_uring is confined like the task's own. `async` runs the
/// openat on an io-wq worker thread, created after adoption without fork (followed by
/// `task_newtask`); `personality` runs it with root's credentials, registered and then dropped
/// by the process before it was confined (refused by `lsm/uring_override_creds`).
#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_io_uring_does_not_escape_enforce() {
    require_lsm();
    let tmp = support::tempdir();
    let bin = support::io_uring_openat(tmp.path());
    let secret = tmp.path().join("secret");
    fs::write(&secret, "secret\n").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    for (mode, says, errno) in [
        (
            "personality",
            "io_uring personality denied",
            "Operation not permitted",
        ),
        // The worker thread (`iou-wrk-PID`) is refused the DAC override: EACCES.
        ("async", "DAC_", "Permission denied"),
    ] {
        // Unconfined, the fixture opens the file: the attack works without captrace.
        let free = Command::new(&bin).arg(&secret).arg(mode).output().unwrap();
        assert!(free.status.success(), "{mode}: {}", text(&free.stderr));

        let go = tmp.path().join(format!("go-{mode}"));
        let mut work = Command::new(&bin)
            .arg(&secret)
            .arg(mode)
            .arg(&go)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(work.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "{mode}");
        let pid = work.id().to_string();
        let (enforcer, rx) = start_enforce(&["--pid", &pid, "--cap-drop", "ALL"]);
        fs::write(&go, "").unwrap();
        let out = wait_at_most(work, Duration::from_secs(60));
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{mode}: the open must fail: {err}");
        assert!(err.contains(errno), "{mode}: {err}");
        let (code, stdout, stderr) = interrupt(enforcer, rx);
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("captrace: enforce: ") && l.contains(says)),
            "{mode}: no denial reported: {stdout}"
        );
    }
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_complain_mode_allows_and_reports() {
    require_lsm();
    let (_tmp, target, mut work) = chown_workload();
    let pid = work.pid().to_string();
    let (enforcer, rx) = start_enforce(&[
        "--pid",
        &pid,
        "--cap-drop",
        "ALL",
        "--cap-add",
        "KILL",
        "--mode",
        "complain",
    ]);
    assert!(work.chown(5), "complain mode allows");
    assert_eq!(owner(&target), 5);
    let (code, stdout, stderr) = interrupt(enforcer, rx);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("CHOWN allowed (outside the allowed set; --enforce would deny it)"),
        "{stdout}"
    );
    assert!(stderr.contains("CHOWN in"), "{stderr}");
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_allowed_capabilities_are_not_touched() {
    require_lsm();
    let (_tmp, _target, mut work) = chown_workload();
    let pid = work.pid().to_string();
    let (enforcer, rx) = start_enforce(&["--pid", &pid, "--cap-drop", "ALL", "--cap-add", "CHOWN"]);
    assert!(work.chown(6));
    let (code, stdout, _) = interrupt(enforcer, rx);
    assert_eq!(code, 0);
    assert!(!stdout.contains("CHOWN"), "{stdout}");
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_enforce_ends_when_the_process_tree_is_gone() {
    require_lsm();
    // The sleeper may even be gone (a zombie) before the enforcer has started.
    let mut sleeper = Command::new("sleep").arg("1").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let (enforcer, rx) = start_enforce(&["--pid", &pid, "--cap-drop", "ALL"]);
    let _ = sleeper.wait();
    let (code, _, err) = ended_by_itself(enforcer, rx);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the workload is gone"), "{err}");
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_run_enforce_reports_denials_live_and_in_total() {
    require_lsm();
    let tmp = support::tempdir();
    let dir = tmp.path();
    let target = target_file(dir);
    // Complain mode: the workload keeps captrace's capabilities; what falls outside the set is
    // allowed and reported.
    let out: Output = captrace(&[])
        .args([
            "run",
            "--enforce=complain",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "KILL",
            "--",
            "chown",
            "7",
        ])
        .arg(&target)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(owner(&target), 7);
    assert!(
        err.contains("captrace: enforce: chown[") && err.contains("CHOWN allowed"),
        "{err}"
    );
    assert!(err.contains("total: CHOWN in"), "{err}");

    // Enforce mode: refused, EPERM to the command, reported.
    let out = captrace(&[])
        .args([
            "run",
            "--enforce",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "KILL",
            "--",
            "chown",
            "8",
        ])
        .arg(&target)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(owner(&target), 7);
    // The bounding set refuses it first here; the audit line names it and the fix.
    assert!(
        err.contains("CHOWN denied 1x; add --cap-add CHOWN"),
        "{err}"
    );
}

/// Issue #14 item 5: a process that moves into a child cgroup of a confined one is still
/// confined; a confined cgroup replaced by a new one at the same path (what `docker restart`
/// does) ends `enforce` with an error instead of a silent "confining".
#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_enforce_cgroup_covers_child_cgroups_and_refuses_a_replaced_one() {
    require_lsm();
    let root = cgroup2_root();
    let cg = root.join(format!("captrace-enforce-nested-{}", std::process::id()));
    let child = cg.join("escape");
    fs::create_dir(&cg).unwrap();
    fs::create_dir(&child).unwrap();
    let (_tmp, _target, mut work) = chown_workload();
    fs::write(cg.join("cgroup.procs"), work.pid().to_string()).unwrap();
    let cg_arg = cg.display().to_string();
    let (enforcer, rx) = start_enforce(&["--cgroup", &cg_arg, "--cap-drop", "ALL"]);
    assert!(!work.chown(12), "confined in the cgroup itself");
    fs::write(child.join("cgroup.procs"), work.pid().to_string()).unwrap();
    assert!(!work.chown(13), "a child cgroup must not be a way out");

    // Emptied (the loop's `sleep` children too), the cgroup is removed and made again at once.
    drop(work);
    support::wait_for("the child cgroup to empty", Duration::from_secs(30), || {
        fs::read_to_string(child.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
    });
    fs::remove_dir(&child).unwrap();
    fs::remove_dir(&cg).unwrap();
    fs::create_dir(&cg).unwrap();
    let (code, _, err) = ended_by_itself(enforcer, rx);
    let _ = fs::remove_dir(&cg);
    assert_replaced(code, &err);
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_enforce_cgroup_confines_every_process_of_the_cgroup() {
    require_lsm();
    let root = cgroup2_root();
    let cg = root.join(format!("captrace-enforce-test-{}", std::process::id()));
    fs::create_dir(&cg).unwrap();
    let (_tmp, target, mut work) = chown_workload();
    fs::write(cg.join("cgroup.procs"), work.pid().to_string()).unwrap();
    let cg_arg = cg.display().to_string();
    let (enforcer, rx) = start_enforce(&["--cgroup", &cg_arg, "--cap-drop", "ALL"]);
    assert!(!work.chown(9));
    nix::unistd::chown(&target, Some(10.into()), None).unwrap();
    let (code, stdout, _) = interrupt(enforcer, rx);
    assert_eq!(code, 0);
    assert!(stdout.contains("CHOWN denied"), "{stdout}");
    assert!(work.chown(11));
    drop(work);
    let _ = fs::remove_dir(&cg);
}

#[test]
#[ignore = "needs root and a kernel without BPF LSM (cargo xtask test runs it there)"]
fn without_lsm_enforcement_refuses_and_starts_nothing() {
    support::require_root();
    assert!(
        !lsm_available(),
        "BPF LSM works on this kernel, so the refusal cannot be tested here: skip it with \
         `--skip without_lsm_` (cargo xtask test and the VM stage do)"
    );
    let tmp = support::tempdir();
    let dir = tmp.path();
    let marker = dir.join("ran");
    let out = captrace(&[])
        .args(["run", "--enforce", "--cap-drop", "ALL", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(5),
        "the kernel lacks a feature: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("in-kernel enforcement needs BPF LSM") && err.contains("nothing was started"),
        "{err}"
    );
    assert!(!marker.exists(), "the workload must not run unconfined");

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = captrace(&[])
        .args(["enforce", "--pid", &sleeper.id().to_string()])
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stderr).contains("in-kernel enforcement needs BPF LSM"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn enforce_rejects_bad_targets_before_loading_anything() {
    support::require_root();
    let own = std::process::id().to_string();
    // Captrace runs in the root cgroup here or below it: confining the root confines all.
    let cgroup_root = cgroup2_root().display().to_string();
    for (args, says) in [
        (
            &["--pid", "999999999"][..],
            "--pid 999999999: no such process",
        ),
        (&["--cgroup", "/tmp"][..], "not a cgroup v2 directory"),
        (
            &["--pid", "1", "--cap-add", "CHWON"][..],
            "did you mean CHOWN",
        ),
        (&[][..], ""),
        // Issue #14 item 6: init, and captrace's own ancestors (this test is one), would put
        // the whole host or captrace itself under the policy.
        (&["--pid", "1"][..], "--pid 1: is init"),
        (&["--pid", &own][..], "is an ancestor of captrace"),
        (
            &["--cgroup", &cgroup_root][..],
            "captrace itself runs in it",
        ),
    ] {
        // Watched under ptrace: "before loading anything" means not one bpf() call.
        let mut cmd = captrace(&["enforce"]);
        cmd.args(args);
        let (out, calls) = support::bpf::output_watching_bpf(cmd);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(calls, Vec::<u64>::new(), "{args:?}: bpf() calls made");
    }
}
