//! Helpers shared by the integration tests: each test file does `mod support;`.
#![allow(dead_code)] // every test binary uses a different subset

pub mod bpf;
mod docker;
mod podman;
pub mod workload;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use captrace::profile::Profile;

#[allow(unused_imports)] // test binaries without containers
pub use docker::{Docker, docker};
#[allow(unused_imports)] // test binaries without podman
pub use podman::Podman;

/// Panics unless the process is root; returns true, so the older
/// `if !support::require_root() { return; }` still compiles (and no longer skips).
///
/// Every test that calls it is marked `#[ignore = "needs root (cargo xtask test runs it)"]`, so
/// a plain `cargo test` off root reports it as ignored instead of passing without running;
/// `cargo xtask test` runs them with `--include-ignored` and fails if any was ignored or skipped.
pub fn require_root() -> bool {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test}: loads BPF programs, makes namespaces or runs containers, so it needs root \
         (it is #[ignore]d for a plain `cargo test`; `cargo xtask test` runs it as root)"
    );
    true
}

/// Holds the tests of one binary to one at a time while the guard lives, whatever
/// `--test-threads` says. The container tiers take it: they share one dockerd (and podman's
/// storage), and `monitor` watches the whole host, so a test running beside another would see
/// its containers. Everything else runs with cargo's default parallelism.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it must not fail the others.
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `captrace` binary cargo built for these tests.
pub fn captrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_captrace"))
}

/// Builds a busybox root file system in `dir` (needs root and Debian's `busybox-static`):
/// /bin with busybox and its applet links, /etc/passwd and /etc/group with root and `user`
/// (uid/gid 1000), /tmp with mode 1777, and empty /proc, /dev, /sys, /root, /home/user.
pub fn busybox_rootfs(dir: &Path) {
    for sub in [
        "bin",
        "etc",
        "tmp",
        "proc",
        "dev",
        "sys",
        "root",
        "home/user",
    ] {
        fs::create_dir_all(dir.join(sub)).expect("creating the rootfs directories");
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("copying /bin/busybox: install busybox-static (`cargo xtask setup`)");
    // A child another test thread forks while the copy is open holds the copy's write end until
    // it execs, and exec of the copy fails with ETXTBSY (chroot exits 126) until then.
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        let s = Command::new("chroot")
            .arg(dir)
            .args(["/bin/busybox", "--install", "-s", "/bin"])
            .status()
            .expect("running chroot");
        status = Some(s);
        s.code() != Some(126)
    });
    let status = status.expect("chroot ran");
    assert!(status.success(), "busybox --install in {dir:?}: {status}");
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("writing /etc/passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("writing /etc/group");
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777 /tmp");
}

/// A shell command that proves it ran by creating `dir/ran`, and that path. `dir` is made
/// world-writable so the proof works for an unprivileged uid too.
pub fn marker(dir: &Path) -> (PathBuf, String) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).expect("chmod 777");
    let ran = dir.join("ran");
    (ran.clone(), format!("touch {}", ran.display()))
}

/// `captrace ARGS...` run by `wrapper` (e.g. `setpriv ... --`), which execs into it.
pub fn wrapped(wrapper: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..]).arg(captrace_bin()).args(args);
    c
}

/// `captrace ARGS...` in a private mount namespace after `setup` (shell commands that mount
/// or unmount there without touching the host's mounts), exec'd by the same process.
pub fn in_private_mounts(setup: &str, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("set -e; {setup}; exec \"$0\" \"$@\""))
        .arg(captrace_bin())
        .args(args);
    c
}

/// `captrace ARGS...`, not started.
/// Compiles the C fixture `tests/fixtures/{fixture}` with `cc` (gcc, installed by `cargo xtask
/// setup`) and `flags` into `dir/{name}`, and returns the program's path.
pub fn build_c(fixture: &str, flags: &[&str], dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let bin = dir.join(name);
    let out = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("running cc (`cargo xtask setup` installs gcc)");
    assert!(
        out.status.success(),
        "cc {}: {}",
        src.display(),
        text(&out.stderr)
    );
    bin
}

pub fn captrace(args: &[&str]) -> Command {
    let mut c = Command::new(captrace_bin());
    c.args(args);
    c
}

/// `captrace ARGS...` run to its end, its output collected.
pub fn captrace_output(args: &[&str]) -> Output {
    captrace(args).output().expect("running captrace")
}

/// Bytes a command printed, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temporary directory, removed when the value is dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("making a temporary directory")
}

/// Writes `path` owned by root:root (the tests run as root) and returns it.
pub fn root_file(path: &Path) -> PathBuf {
    fs::write(path, "x").unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(0)).unwrap();
    path.to_owned()
}

/// The value of `key` (`Uid:`) in a `/proc/PID/status` text, trimmed; panics if it is not there.
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in {status}"))
        .trim()
        .to_string()
}

/// Where this host mounts the cgroup v2 hierarchy (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts), from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> PathBuf {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    captrace::container::cgroup2_mount(&mountinfo).expect("a cgroup2 mount on this host")
}

/// Polls `done` every 20 ms until it is true (returns true) or `limit` has passed (false).
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process below `ancestor` (its child, grandchild, ...) whose `comm` is `comm`, if one runs.
pub fn descendant_named(ancestor: u32, comm: &str) -> Option<u32> {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse().ok()
    };
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .find(|&pid| {
            let mut p = pid;
            while let Some(parent) = parent_of(p).filter(|&q| q > 1) {
                if parent == ancestor {
                    return true;
                }
                p = parent;
            }
            false
        })
}

/// Polls `ok` every 50 ms; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `captrace record -o P -- ARGS...` and the profile it wrote (read without the size limit:
/// a flood of namespace calls makes a large one).
pub fn record(args: &[&str]) -> (Output, Profile) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let out = Command::new(captrace_bin())
        .args(["record", "-o", p.to_str().unwrap(), "--"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let profile = Profile::from_json(&text, "p.json").unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out, profile)
}

/// The exact number of checks of `cap` in `syscall`.
pub fn count(p: &Profile, cap: &str, syscall: &str) -> u64 {
    p.checks
        .iter()
        .filter(|c| c.cap.name() == cap && c.syscall.as_deref() == Some(syscall))
        .map(|c| c.count)
        .sum()
}

/// How much longer than on the host a test may wait before it calls something hung: 1, or 20
/// when `CAPTRACE_TEST_SLOW` is set (not empty, not `0`), as `cargo xtask vm-test --suite`
/// does: under qemu's TCG, `captrace record -- true` took 4-6 s against 0.3 s on the host.
/// Only limits that detect a hang scale; a bound that is the assertion itself must not.
/// Keep a scaled limit at most 20 s × this: the guests kill a test binary after 600 s, and a
/// test that fails by itself before then says why.
pub fn time_scale() -> u32 {
    let slow = std::env::var("CAPTRACE_TEST_SLOW").is_ok_and(|v| !v.is_empty() && v != "0");
    if slow { 20 } else { 1 }
}

/// Runs `cmd`, killing it after `limit` (a hang is a failure, not a stuck test run).
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting captrace");
    output_within_of(child, limit)
}

/// The output of `child` once it exits, killing it after `limit`.
pub fn output_within_of(child: std::process::Child, limit: Duration) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit * time_scale()) {
        Ok(out) => out.expect("waiting for captrace"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("captrace still running after {limit:?}: it hung");
        }
    }
}

/// Builds `fixtures/io_uring/openat.c` into `dir` (gcc, installed by `cargo xtask setup`): it
/// opens a file through io_uring, on a worker thread (`async`) or under an io_uring personality.
pub fn io_uring_openat(dir: &Path) -> PathBuf {
    build_c("io_uring/openat.c", &["-O2"], dir, "openat")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, read, released): for servers the
/// tests start (`monitor --metrics`, Prometheus).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .expect("the bound address")
        .port()
}

/// A container test's hold on the shared dockerd: root checked, the binary's tests serialized
/// ([`serial`]) and the daemon up, for as long as it lives. The daemon is let go before the
/// next test may start (fields drop in order).
pub struct DockerSession {
    pub docker: Docker,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Starts a container test: see [`DockerSession`].
pub fn docker_session() -> DockerSession {
    require_root();
    let serial = serial();
    DockerSession {
        docker: Docker::start(),
        _serial: serial,
    }
}

/// Asserts that captrace exited with `code` and wrote exactly one line to stderr, starting with
/// `starts` (`what` names the case in failures); returns that line.
pub fn one_line(what: &str, out: &Output, code: i32, starts: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line, no panic: {err}");
    assert!(err.starts_with(starts), "{what}: {err}");
    err
}

/// A temporary directory (removed when the first value is dropped) holding a busybox root file
/// system at the second value.
pub fn busybox_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let root = dir.path().join("root");
    busybox_rootfs(&root);
    (dir, root)
}

/// The `docker` arguments that run a container named `name`, allowed CHOWN only, that chowns
/// a file and then runs `then` (a shell command; empty: nothing):
/// `run --rm --network none --name NAME --cap-drop ALL --cap-add CHOWN IMAGE sh -c ...`.
pub fn chown_container(name: &str, then: &str) -> Vec<String> {
    let mut script = "touch /tmp/f && chown 1000 /tmp/f".to_owned();
    if !then.is_empty() {
        script = format!("{script} && {then}");
    }
    [
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        name,
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        Docker::IMAGE,
        "sh",
        "-c",
        &script,
    ]
    .map(String::from)
    .to_vec()
}
