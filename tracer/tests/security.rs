//! Kernel tier (root): `captrace run` is a boundary. Each test performs the attack a hostile
//! workload would make and shows it fails: terminal injection, inherited signal dispositions
//! and groups, a full pids cgroup, a root file system that points its mount points at the
//! host, device nodes it makes, host-wide /proc files. Planted files and what captrace
//! prints: `security_files.rs`.
mod support;

use support::{captrace, text};

use std::{
    fs,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::{
            fs::{PermissionsExt as _, symlink},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::pty::OpenptyResult;

/// Reads what is available on a non-blocking fd.
fn drain(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return out,
        }
    }
}

fn nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
}

/// The workload pushes a command into its terminal's input queue with TIOCSTI, as if typed,
/// after trying to make the terminal its own with TIOCSCTTY; prints what the kernel said.
const TIOCSTI: &str = r#"
import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSCTTY, 1)
    print("stole the terminal")
except OSError as e:
    print("TIOCSCTTY errno", e.errno)
try:
    for c in b"id > INJ" + b"ECTED\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))
    print("pushed input")
except OSError as e:
    print("TIOCSTI errno", e.errno)
"#;

/// `captrace ARGS` with a new pty as its controlling terminal, stdin, stdout and stderr,
/// started as a shell starts a foreground job: session leader, the terminal's foreground
/// process group.
fn on_a_terminal(args: &[&str]) -> (Child, OpenptyResult) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = pty.slave.as_raw_fd();
    let end = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut cmd = captrace(args);
    cmd.stdin(end()).stdout(end()).stderr(end());
    // SAFETY: setsid and ioctl in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("starting captrace");
    nonblocking(&pty.master);
    (child, pty)
}

/// Reads the terminal until captrace exits; `type_when` sees the text so far and may give
/// bytes to type once. Returns the exit code and the text shown.
fn wait_on_terminal(
    mut child: Child,
    master: &OwnedFd,
    mut type_when: impl FnMut(&str) -> Option<&'static [u8]>,
) -> (Option<i32>, String) {
    let mut shown = Vec::new();
    let mut typed = false;
    let t = Instant::now();
    loop {
        shown.extend(drain(master));
        if !typed && let Some(keys) = type_when(&text(&shown)) {
            nix::unistd::write(master, keys).expect("typing on the terminal");
            typed = true;
        }
        if let Some(s) = child.try_wait().unwrap() {
            shown.extend(drain(master));
            return (s.code(), text(&shown));
        }
        if t.elapsed() > Duration::from_secs(20) * support::time_scale() {
            let _ = child.kill();
            panic!("hung: {}", text(&shown));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether TIOCSTI works for callers without CAP_SYS_ADMIN (`dev.tty.legacy_tiocsti`; before
/// 6.2 the knob does not exist and it always does).
fn legacy_tiocsti() -> bool {
    fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").map_or(true, |v| v.trim() != "0")
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn tiocsti_from_a_run_workload_never_reaches_captraces_terminal() {
    support::require_root();
    for extra in [
        &[][..],
        &["--ns", "pid"][..],
        &["--init"][..],
        &["--audit"][..],
    ] {
        let mut args = vec!["run"];
        args.extend(extra);
        args.extend(["--", "/usr/bin/python3", "-c", TIOCSTI]);
        let (child, pty) = on_a_terminal(&args);
        let (code, shown) = wait_on_terminal(child, &pty.master, |_| None);
        assert_eq!(code, Some(0), "{extra:?}: {shown}");
        // EPERM: the workload's session has no controlling terminal (`tiocsti`,
        // `tiocsctty` in drivers/tty/tty_io.c). Where the kernel refuses TIOCSTI to all but
        // CAP_SYS_ADMIN (`dev.tty.legacy_tiocsti = 0`, 6.2 and later, as Debian's 6.12),
        // tiocsti() says EIO before it looks at the session.
        assert!(shown.contains("TIOCSCTTY errno 1"), "{extra:?}: {shown}");
        let errno = if legacy_tiocsti() { 1 } else { libc::EIO };
        assert!(
            shown.contains(&format!("TIOCSTI errno {errno}")),
            "{extra:?}: {shown}"
        );
        // Nothing was queued as input for the next reader of the terminal (the shell).
        nonblocking(&pty.slave);
        let queued = text(&drain(&pty.slave));
        assert!(!queued.contains("INJECTED"), "{extra:?}: queued {queued:?}");
        assert!(!shown.contains("INJECTED"), "{extra:?}: echoed: {shown}");
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn ctrl_c_on_captraces_terminal_still_reaches_the_workload_in_its_own_session() {
    support::require_root();
    // The terminal sends SIGINT to its foreground group, captrace's: the workload, in a
    // session of its own, gets it only because captrace forwards it.
    let script = "trap 'echo got INT; kill $!; exit 42' INT; echo ready; sleep 10 & wait";
    for extra in [&[][..], &["--init"][..], &["--audit"][..]] {
        let mut args = vec!["run"];
        args.extend(extra);
        args.extend(["--", "sh", "-c", script]);
        let (child, pty) = on_a_terminal(&args);
        let (code, shown) = wait_on_terminal(child, &pty.master, |shown| {
            shown.contains("ready").then_some(&b"\x03"[..])
        });
        assert_eq!(code, Some(42), "{extra:?}: {shown}");
        assert!(shown.contains("got INT"), "{extra:?}: {shown}");
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_run_workload_starts_with_default_signal_dispositions_and_an_empty_mask() {
    support::require_root();
    for extra in [&[][..], &["--init"][..], &["--audit"][..]] {
        let mut cmd = captrace(&["run"]);
        cmd.args(extra).args([
            "--",
            "sh",
            "-c",
            "yes | head -1; grep -E '^Sig(Ign|Blk)' /proc/self/status",
        ]);
        let out = support::output_within(cmd, Duration::from_secs(30));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {err}");
        // An ignored SIGPIPE inherited from captrace makes `yes` fail with EPIPE and say so.
        assert!(!err.contains("Broken pipe"), "{extra:?}: {err}");
        assert_eq!(
            text(&out.stdout),
            "y\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "{extra:?}: {err}"
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn captraces_supplementary_groups_do_not_reach_the_workload() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("group-0-only");
    fs::write(&secret, "secret\n").unwrap();
    // Only group 0 may read it: the workload's root is mapped to another uid in its user
    // namespace, so only a group it kept from captrace could open it.
    nix::unistd::chown(&secret, Some(0.into()), Some(0.into())).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o060)).unwrap();
    let s = secret.to_str().unwrap();
    let wrapper = ["setpriv", "--groups", "0,4", "--"];
    let out = support::wrapped(
        &wrapper,
        &[
            "run",
            "--cap-drop",
            "ALL",
            "--ns",
            "user,pid,mnt",
            "--",
            "cat",
            s,
        ],
    )
    .output()
    .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "read {s}: {}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("secret"));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // Root without --user gets no supplementary group at all; --user gets its own.
    for (extra, groups) in [(&[][..], ""), (&["--user", "0"][..], "0")] {
        let mut args = vec!["run", "--cap-drop", "ALL"];
        args.extend(extra);
        args.extend(["--", "grep", "^Groups:", "/proc/self/status"]);
        let out = support::wrapped(&wrapper, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).trim_end(),
            format!("Groups:\t{groups}").trim_end(),
            "{extra:?}"
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_fork_the_kernel_refuses_is_a_clean_error() {
    support::require_root();
    let out = with_room_for_one_task(&["run", "--", "true"]);
    let err = support::one_line(
        "run",
        &out,
        125,
        "captrace: cannot start the workload: fork failed: ",
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Where a pids cgroup can be made: the v1 pids hierarchy where there is one (this host), else
/// the v2 root with the pids controller enabled for its children (the VM guests).
fn pids_hierarchy() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.is_dir() {
        return v1.to_path_buf();
    }
    let root = support::cgroup2_root();
    fs::write(root.join("cgroup.subtree_control"), "+pids").expect("enabling pids in cgroup v2");
    root
}

/// captrace `args`, started in a pids cgroup (v1 or v2: `pids.max` is the same) with room for
/// captrace's main thread alone.
fn with_room_for_one_task(args: &[&str]) -> std::process::Output {
    let cg = pids_hierarchy().join(format!(
        "captrace-security-{}-{}",
        std::process::id(),
        args[0]
    ));
    fs::create_dir(&cg).expect("creating a pids cgroup");
    fs::write(cg.join("pids.max"), "1").unwrap();
    let procs = cg.join("cgroup.procs");
    let script = format!("echo $$ > {}; exec \"$0\" \"$@\"", procs.display());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .arg(support::captrace_bin())
        .args(args);
    let out = support::output_within(cmd, Duration::from_secs(30));
    let _ = fs::remove_dir(&cg);
    out
}

/// Issue #14 (remaining item 7): the loader's helper threads are asked of the kernel with
/// `thread::Builder`, so EAGAIN is a clean error with nothing attached (it was a panic).
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_thread_the_kernel_refuses_the_loader_is_a_clean_error() {
    support::require_root();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    for args in [&["monitor"][..], &["enforce", "--pid", &pid][..]] {
        let out = with_room_for_one_task(args);
        let what = format!("{args:?}");
        let starts = "captrace: the kernel refused captrace a thread (";
        let err = support::one_line(&what, &out, 125, starts);
        assert!(err.contains("nothing was attached"), "{what}: {err}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_root_file_system_cannot_point_its_mount_points_at_the_host() {
    support::require_root();
    let (dir, root) = support::busybox_root();
    let host = dir.path().join("host-side");
    for (name, ns) in [("proc", "pid,mnt"), ("proc", "mnt"), ("dev", "mnt")] {
        let _ = fs::remove_dir_all(&host);
        let target = root.join(name);
        fs::remove_dir_all(&target).unwrap();
        // Resolved before pivot_root, this absolute link names a host path.
        symlink(&host, &target).unwrap();
        let out = captrace(&[
            "run",
            "--rootfs",
            root.to_str().unwrap(),
            "--ns",
            ns,
            "--",
            "true",
        ])
        .output()
        .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{name} {ns}: {err}");
        assert!(err.contains("setting up mounts"), "{err}");
        assert!(!host.exists(), "{name} {ns}: captrace created {host:?}");
        fs::remove_file(&target).unwrap();
        fs::create_dir(&target).unwrap();
    }
    // Its /proc is the kernel's: the bounding set is empty with --cap-drop ALL.
    let out = captrace(&[
        "run",
        "--rootfs",
        root.to_str().unwrap(),
        "--ns",
        "pid,mnt",
        "--cap-drop",
        "ALL",
        "--",
        "grep",
        "^CapBnd",
        "/proc/self/status",
    ])
    .output()
    .unwrap();
    assert_eq!(
        text(&out.stdout),
        "CapBnd:\t0000000000000000\n",
        "{}",
        text(&out.stderr)
    );
}

/// Issue #14 item 11: a symlinked mount point is resolved inside the root file system
/// (`openat2(RESOLVE_IN_ROOT)`): `proc -> /srv` gets the kernel's /proc at the root's own
/// `/srv`, and the workload reads its real status through the link.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_symlinked_mount_point_in_a_rootfs_resolves_inside_it() {
    support::require_root();
    let (_dir, root) = support::busybox_root();
    fs::remove_dir_all(root.join("proc")).unwrap();
    fs::create_dir(root.join("srv")).unwrap();
    symlink("/srv", root.join("proc")).unwrap();
    for ns in ["pid,mnt", "mnt"] {
        let out = captrace(&[
            "run",
            "--rootfs",
            root.to_str().unwrap(),
            "--ns",
            ns,
            "--cap-drop",
            "ALL",
            "--",
            "sh",
            "-c",
            "grep ^CapBnd /proc/self/status; grep -c ' /srv proc ' /proc/self/mounts",
        ])
        .output()
        .unwrap();
        assert_eq!(
            text(&out.stdout),
            "CapBnd:\t0000000000000000\n1\n",
            "{ns}: {}",
            text(&out.stderr)
        );
    }
    // A link that leaves nothing to mount on inside the root is still refused.
    fs::remove_dir(root.join("srv")).unwrap();
    let out = captrace(&[
        "run",
        "--rootfs",
        root.to_str().unwrap(),
        "--ns",
        "mnt",
        "--",
        "true",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_rootfs_workload_cannot_open_a_host_device_it_makes() {
    support::require_root();
    let (_dir, root) = support::busybox_root();
    // The host's root disk: MKNOD is one of Docker's defaults, and reading the node needs
    // no capability at all when the mount allows devices.
    use std::os::unix::fs::MetadataExt as _;
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let script = format!(
        "for node in /dev/x /tmp/x; do mknod $node b {major} {minor} || echo \"mknod $node failed\"; \
         if dd if=$node of=/dev/null bs=512 count=1 2>/tmp/err; then echo \"READ $node\"; \
         else echo \"refused $node: $(cat /tmp/err)\"; fi; done; \
         echo allowlist > /dev/null && head -c 4 /dev/zero | wc -c"
    );
    let out = captrace(&[
        "run",
        "--rootfs",
        root.to_str().unwrap(),
        "--ns",
        "pid,mnt,uts,ipc,net",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!stdout.contains("READ"), "{stdout}");
    assert!(!stdout.contains("mknod"), "made with MKNOD: {stdout}");
    for node in ["/dev/x", "/tmp/x"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("refused {node}")))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.contains("Permission denied"), "{line}");
    }
    // The allowlisted devices still work.
    assert!(stdout.ends_with("4\n"), "{stdout}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_capability_less_root_cannot_write_host_wide_proc_files() {
    support::require_root();
    let (_dir, root) = support::busybox_root();
    let r = root.to_str().unwrap();
    // Writing the value it already has: the attack, without changing the host if it worked.
    let script = "v=$(cat /proc/sys/kernel/core_uses_pid); \
        if echo $v > /proc/sys/kernel/core_uses_pid; then echo WROTE; fi; \
        awk '$5 ~ /^\\/proc\\// { print $5, substr($6, 1, 2) }' /proc/self/mountinfo";
    for args in [
        vec!["--rootfs", r, "--ns", "pid,mnt"],
        vec!["--rootfs", r, "--ns", "mnt"],
        vec!["--ns", "pid"],
    ] {
        let mut all = vec!["run", "--cap-drop", "ALL"];
        all.extend(&args);
        all.extend(["--", "sh", "-c", script]);
        let out = captrace(&all).output().unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stdout.contains("WROTE"), "{args:?}: {stdout}");
        assert!(
            stderr.contains("Read-only file system"),
            "{args:?}: {stderr}"
        );
        // Docker's lists, as far as this kernel has the files (its config may lack kcore
        // and sysrq-trigger): masked ones have something mounted over them, the others are
        // read-only.
        for (name, ro) in [
            ("keys", false),
            ("timer_list", false),
            ("kcore", false),
            ("sys", true),
            ("sysrq-trigger", true),
        ] {
            if !Path::new("/proc").join(name).exists() {
                continue;
            }
            let want = format!("/proc/{name} {}", if ro { "ro" } else { "" });
            assert!(
                stdout.lines().any(|l| l.starts_with(want.trim_end())),
                "{args:?}: {want:?} in {stdout}"
            );
        }
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn root_equivalent_capabilities_are_warned_about_outside_a_user_namespace() {
    support::require_root();
    let out = captrace(&["run", "--cap-add", "SYS_ADMIN,SYS_PTRACE", "--", "true"])
        .output()
        .unwrap();
    support::one_line(
        "SYS_ADMIN,SYS_PTRACE",
        &out,
        0,
        "captrace: warning: SYS_PTRACE, SYS_ADMIN each give the workload root",
    );
    for args in [
        &["run", "--", "true"][..],
        &[
            "run",
            "--cap-add",
            "SYS_ADMIN",
            "--ns",
            "user",
            "--",
            "true",
        ][..],
    ] {
        let out = captrace(args).output().unwrap();
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}
