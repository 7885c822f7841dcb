//! A docker daemon for the tests, shared by the tests of one binary and, through file locks,
//! by test binaries running at the same time.
use std::{
    fs::{File, OpenOptions},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, PoisonError, Weak},
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};

/// Held (exclusive) while a daemon is being started or stopped.
const START_LOCK: &str = "/tmp/captrace-docker.lock";
/// Held (shared) by every process using the daemon, so its owner stops it only when unused.
const USERS_LOCK: &str = "/tmp/captrace-docker.users";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `docker ARGS...` with stdin closed, waiting for it to finish.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running docker")
}

/// The daemon this process uses; it lives as long as some [`Docker`] handle does.
static CURRENT: Mutex<Weak<Daemon>> = Mutex::new(Weak::new());

/// A handle on a running docker daemon. If none answered, [`Docker::start`] started `dockerd`,
/// and the last handle of this process stops it when dropped.
pub struct Docker {
    _daemon: Arc<Daemon>,
}

struct Daemon {
    /// The `dockerd` we started; `None` when we reuse one that was already running.
    child: Option<Child>,
    /// Our shared hold on [`USERS_LOCK`].
    users: Option<File>,
    /// [`START_LOCK`], while starting.
    starting: Option<File>,
    /// Holds `dockerd.log`.
    log_dir: tempfile::TempDir,
}

impl Docker {
    /// The busybox image the tests run, imported from [`super::busybox_rootfs`].
    pub const IMAGE: &str = "captrace-bb:latest";

    /// Reuses the daemon that answers `docker version`, or starts `dockerd` and waits (up to
    /// 60 s) until it answers; then makes sure [`Self::IMAGE`] exists.
    pub fn start() -> Docker {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(daemon) = current.upgrade() {
            return Docker { _daemon: daemon };
        }
        let mut daemon = Daemon {
            child: None,
            users: None,
            starting: Some(lock(START_LOCK, false)),
            log_dir: tempfile::tempdir().expect("creating a temporary directory"),
        };
        if !answers() {
            daemon.spawn();
        }
        ensure_image();
        daemon.users = Some(lock(USERS_LOCK, true));
        daemon.starting = None;
        let daemon = Arc::new(daemon);
        *current = Arc::downgrade(&daemon);
        Docker { _daemon: daemon }
    }

    /// `docker run --rm --network none --cap-drop ALL --cap-add CAP... [--user USER] IMAGE
    /// sh -c SHELL_CMD`, waiting for it to finish.
    pub fn run(&self, cap_add: &[&str], user: Option<&str>, shell_cmd: &str) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--network", "none", "--cap-drop", "ALL"]);
        for cap in cap_add {
            cmd.args(["--cap-add", cap]);
        }
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        cmd.args([Self::IMAGE, "sh", "-c", shell_cmd]);
        cmd.stdin(Stdio::null()).output().expect("running docker")
    }
}

impl Daemon {
    fn spawn(&mut self) {
        let log_path = self.log_dir.path().join("dockerd.log");
        let log = File::create(&log_path).expect("creating dockerd.log");
        let started = Instant::now();
        let child = Command::new("dockerd")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup of the log file"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd: install docker.io (`cargo xtask setup`)");
        let pid = child.id();
        let child = self.child.insert(child);
        while !answers() {
            let exited = child.try_wait().expect("waiting for dockerd");
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let state = exited.map_or("still running".to_owned(), |s| s.to_string());
                panic!(
                    "dockerd (pid {pid}) not ready after {:.1?} ({state}); its log:\n{}",
                    started.elapsed(),
                    log_tail(&log_path)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "started dockerd (pid {pid}, log {}) in {:.1?}",
            log_path.display(),
            started.elapsed()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.users = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        // No new users while we stop it, and wait for the other processes using it.
        let _start = self
            .starting
            .take()
            .unwrap_or_else(|| lock(START_LOCK, false));
        let _users = lock(USERS_LOCK, false);
        let pid = child.id();
        if let Err(e) = signal::kill(Pid::from_raw(pid as i32), signal::SIGTERM) {
            eprintln!("SIGTERM to dockerd (pid {pid}): {e}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("dockerd (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}: killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True if a daemon answers `docker version`.
fn answers() -> bool {
    Command::new("docker")
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Imports [`Docker::IMAGE`] from a fresh busybox root file system unless it exists.
fn ensure_image() {
    let quiet = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    };
    if quiet(Command::new("docker").args(["image", "inspect", Docker::IMAGE])) {
        return;
    }
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let rootfs = dir.path().join("rootfs");
    super::busybox_rootfs(&rootfs);
    let tar = dir.path().join("bb.tar");
    let tarred = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(tarred.success(), "tar of the busybox rootfs: {tarred}");
    let import = Command::new("docker")
        .arg("import")
        .arg(&tar)
        .arg(Docker::IMAGE)
        .output()
        .expect("running docker import");
    assert!(import.status.success(), "docker import: {import:?}");
    eprintln!("imported {}", Docker::IMAGE);
}

/// Opens `path` and locks it, shared or exclusive, waiting as long as it takes.
fn lock(path: &str, shared: bool) -> File {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    let locked = if shared {
        file.lock_shared()
    } else {
        file.lock()
    };
    locked.unwrap_or_else(|e| panic!("locking {path}: {e}"));
    file
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
