//! Kernel tier: `captrace run` really creates namespaces, applies capability sets and, with
//! --audit, really traces the workload (root). The parity test runs real dockerd.
mod support;

use support::{captrace_output, status_field, text};

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

/// The Cap* lines of a /proc/PID/status text, as numbers.
fn cap_sets(status: &str) -> BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()))
        })
        .collect()
}

const CHOWN_NBS: u64 = 1 | (1 << 10);

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_command_is_pid_1_inside_and_another_pid_outside() {
    support::require_root();
    let out = captrace_output(&[
        "run",
        "--cap-drop",
        "ALL",
        "--ns",
        "pid",
        "--show-pids",
        "--",
        "sh",
        "-c",
        "echo $$; sleep 0.3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
    let err = text(&out.stderr);
    let host: i32 = err
        .split("PID 1 in its PID namespace and PID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pid line: {err}"));
    assert!(host > 1, "{err}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn root_gets_exactly_the_set_asked_for() {
    support::require_root();
    let out = captrace_output(&[
        "run",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN,net_bind_service",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let sets = cap_sets(&status);
    assert_eq!(sets["CapEff"], CHOWN_NBS);
    assert_eq!(sets["CapPrm"], CHOWN_NBS);
    assert_eq!(sets["CapBnd"], CHOWN_NBS);
    assert_eq!(sets["CapInh"], 0);
    assert_eq!(sets["CapAmb"], 0);
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    assert_eq!(
        status_field(&status, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0"; 4]
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_non_root_user_gets_the_set_as_ambient_capabilities() {
    support::require_root();
    let out = captrace_output(&[
        "run",
        "--user",
        "1000",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN,NET_BIND_SERVICE",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let sets = cap_sets(&status);
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(sets[set], CHOWN_NBS, "{set} in {status}");
    }
    assert_eq!(
        status_field(&status, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(
        status_field(&status, "Gid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert!(
        !status_field(&status, "Groups:")
            .split_whitespace()
            .any(|g| g == "0"),
        "root's groups dropped"
    );
    // The default set (Docker's 14) for a non-root user, as the same numbers everywhere.
    let out = captrace_output(&["run", "--user", "1000", "--", "cat", "/proc/self/status"]);
    let sets = cap_sets(&text(&out.stdout));
    assert_eq!(sets["CapEff"].count_ones(), 14);
    assert_eq!(sets["CapEff"], sets["CapAmb"]);
}

const BIND_80: &str = "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 80)); print('bound')";

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_non_root_user_binds_port_80_with_only_net_bind_service() {
    support::require_root();
    let with = captrace_output(&[
        "run",
        "--user",
        "1000",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--",
        "/usr/bin/python3",
        "-c",
        BIND_80,
    ]);
    assert_eq!(with.status.code(), Some(0), "{}", text(&with.stderr));
    assert_eq!(text(&with.stdout), "bound\n");
    let without = captrace_output(&[
        "run",
        "--user",
        "1000",
        "--cap-drop",
        "ALL",
        "--audit",
        "--",
        "/usr/bin/python3",
        "-c",
        BIND_80,
    ]);
    assert_ne!(without.status.code(), Some(0));
    let err = text(&without.stderr);
    assert!(
        err.contains("bind: NET_BIND_SERVICE denied 1x; add --cap-add NET_BIND_SERVICE"),
        "{err}"
    );
    assert!(err.contains("python3["), "{err}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_init_reaps_zombies_and_a_pid_1_that_does_not_wait_leaves_them() {
    support::require_root();
    // An orphan is reparented to PID 1 of the namespace; only an init reaps it. Python as
    // PID 1 never waits for children it did not start.
    let script = r#"
import glob, os, time
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        time.sleep(0.1)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(0.6)
zombies = 0
for f in glob.glob("/proc/[0-9]*/status"):
    try:
        zombies += any(l.startswith("State:") and "Z" in l for l in open(f))
    except OSError:
        pass
print(zombies)
"#;
    let with_init = captrace_output(&["run", "--init", "--", "/usr/bin/python3", "-c", script]);
    assert_eq!(
        with_init.status.code(),
        Some(0),
        "{}",
        text(&with_init.stderr)
    );
    assert_eq!(text(&with_init.stdout).trim(), "0");
    let without = captrace_output(&["run", "--ns", "pid", "--", "/usr/bin/python3", "-c", script]);
    assert_eq!(
        text(&without.stdout).trim(),
        "1",
        "the test can tell a zombie"
    );
}

/// Starts `cmd` and sends it SIGTERM once `ready` exists (the workload creates it once its
/// trap is set).
fn terminate_when(mut cmd: Command, ready: &Path) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_for(
        "the workload to set its trap",
        Duration::from_secs(10),
        || ready.exists(),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn sigterm_to_captrace_reaches_the_workload_and_its_status_comes_back() {
    support::require_root();
    let dir = support::tempdir();
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo got TERM; exit 42' TERM; touch {}; sleep 5 & wait",
        ready.display()
    );
    for flags in [&["--init"][..], &["--ns", "uts"][..], &["--audit"][..]] {
        let _ = fs::remove_file(&ready);
        let mut cmd = Command::new(support::captrace_bin());
        cmd.arg("run").args(flags).args(["--", "sh", "-c", &script]);
        let out = terminate_when(cmd, &ready);
        assert_eq!(
            out.status.code(),
            Some(42),
            "{flags:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "got TERM\n", "{flags:?}");
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_busybox_rootfs_runs_in_all_namespaces() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    support::busybox_rootfs(dir.path());
    let root = dir.path().to_str().unwrap();
    let out = captrace_output(&[
        "run",
        "--rootfs",
        root,
        "--ns",
        "all",
        "--hostname",
        "box",
        "--cap-drop",
        "ALL",
        "--",
        "sh",
        "-c",
        "hostname; echo $$; id -u; ls /; ip link 2>/dev/null | grep -c LOOPBACK,UP || cat /sys/class/net/lo/operstate",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stdout}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "box");
    assert_eq!(lines[1], "1");
    assert_eq!(lines[2], "0");
    assert!(
        lines.contains(&"bin") && lines.contains(&"etc") && lines.contains(&"proc"),
        "{stdout}"
    );
    assert!(!lines.contains(&".captrace-oldroot"), "{stdout}");
    // Root inside a user namespace is an unprivileged id outside.
    let mut child = Command::new(support::captrace_bin())
        .args([
            "run",
            "--rootfs",
            root,
            "--ns",
            "user,pid",
            "--show-pids",
            "--",
            "sleep",
            "2",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let find_sleeper = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|p| {
                let s = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
                s.starts_with("Name:\tsleep")
                    && s.lines()
                        .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1"))
            })
    };
    let mut sleeper = None;
    support::wait_for("the sleep on the host", Duration::from_secs(10), || {
        sleeper = find_sleeper();
        sleeper.is_some()
    });
    let sleeper = sleeper.unwrap();
    let status = fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap();
    assert_eq!(
        status_field(&status, "Uid:").split_whitespace().next(),
        Some("100000"),
        "{status}"
    );
    child.kill().ok();
    child.wait().ok();
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_workload_gets_only_stdin_stdout_and_stderr() {
    support::require_root();
    let leak = fs::File::open("/etc/hostname").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leak);
    let mut cmd = Command::new(support::captrace_bin());
    cmd.args(["run", "--audit", "--", "sh", "-c", "ls /proc/$$/fd; env"]);
    // SAFETY: dup2 in the forked child before exec, so captrace itself inherits fd 7.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.env("CAPTRACE_LOG", "warn");
    let out = cmd.output().unwrap();
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let fds: Vec<&str> = lines.by_ref().take(3).collect();
    assert_eq!(fds, ["0", "1", "2"], "{stdout}");
    assert!(
        !stdout.contains("CAPTRACE_"),
        "captrace's own variables stay out: {stdout}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn an_unknown_capability_exits_2_with_a_suggestion_and_starts_nothing() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let out = captrace_output(&["run", "--cap-add", "CHWON", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "captrace: unknown capability \"CHWON\" (did you mean CHOWN?)\n"
    );
    let out = captrace_output(&["run", "--ns", "pid,time", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown namespace \"time\""));
    assert!(!marker.exists());
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_recorded_profile_runs_and_one_capability_less_is_named() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    let profile = dir.path().join("p.json");
    let script = format!(
        "rm -f {f}; touch {f} && chown 1000 {f} && mknod {n} c 1 3 && rm {n}",
        f = f.display(),
        n = dir.path().join("n").display()
    );
    let rec = Command::new(support::captrace_bin())
        .args([
            "record",
            "-o",
            profile.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let p = profile.to_str().unwrap();
    let ok = captrace_output(&["run", "--profile", p, "--audit", "--", "sh", "-c", &script]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stderr).contains("audit: no capability check was denied"),
        "{}",
        text(&ok.stderr)
    );
    let less = captrace_output(&[
        "run",
        "--profile",
        p,
        "--cap-drop",
        "MKNOD",
        "--audit",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_ne!(less.status.code(), Some(0));
    let err = text(&less.stderr);
    assert!(err.contains("mknod["), "{err}");
    assert!(
        err.contains("MKNOD denied 1x; add --cap-add MKNOD"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn capability_sets_match_a_real_docker_run() {
    support::require_root();
    let docker = support::Docker::start();
    let docker_out = docker.run(
        &["CHOWN", "NET_BIND_SERVICE"],
        None,
        "cat /proc/self/status",
    );
    assert!(docker_out.status.success(), "{}", text(&docker_out.stderr));
    let dir = tempfile::tempdir().unwrap();
    support::busybox_rootfs(dir.path());
    let ours = captrace_output(&[
        "run",
        "--rootfs",
        dir.path().to_str().unwrap(),
        "--ns",
        "pid,mnt,uts,ipc,net",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN,NET_BIND_SERVICE",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(ours.status.code(), Some(0), "{}", text(&ours.stderr));
    let (theirs, ours) = (
        cap_sets(&text(&docker_out.stdout)),
        cap_sets(&text(&ours.stdout)),
    );
    assert_eq!(ours, theirs);
    assert_eq!(ours["CapEff"], CHOWN_NBS);
    let _ = Path::new("/");
}
