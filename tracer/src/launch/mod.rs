//! Starting the workload: resolved before anything is loaded, forked suspended so it can be
//! registered with the kernel programs before its first instruction, then released to exec.
//! The child gets only stdin/stdout/stderr (every other fd captrace holds is close-on-exec),
//! an empty signal mask and exactly the credentials, capability sets and namespaces asked for.
use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::{Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::PermissionsExt},
    },
    path::{Path, PathBuf},
};

use nix::{
    sys::{
        signal::{SigSet, SigmaskHow, sigprocmask},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{ForkResult, Pid, fork, pipe2},
};

mod harden;
mod init;
pub mod privileges;
pub mod sandbox;
pub mod seccomp;
pub mod subid;

pub use privileges::{Privileges, User};
pub use sandbox::{NsSet, Sandbox, Stage};

/// The command cannot be started. Exit codes follow the shell: 127 not found, 126 not
/// executable (`error::Class` has them all).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No such command on PATH or at the given path.
    #[error("{0}: command not found")]
    NotFound(String),
    /// The file exists but cannot be executed.
    #[error("{0}: cannot execute: {1}")]
    NotExecutable(String, String),
    /// The namespaces or credentials could not be set up.
    #[error("cannot start the workload: {0} failed: {1}")]
    Setup(&'static str, String),
    /// An empty command line.
    #[error("no command given: put it after --, e.g. captrace record -- chown 1000 FILE")]
    Empty,
    /// The kernel refused to set up the namespaces or credentials: captrace lacks privileges.
    #[error(
        "{0} failed: Operation not permitted; setting a workload's capabilities and namespaces needs root: run captrace with sudo"
    )]
    NotPermitted(&'static str),
}

/// Finds the program as execvp would, so a missing command fails before anything starts.
pub fn resolve(program: &str) -> Result<PathBuf, ExecError> {
    if program.is_empty() {
        return Err(ExecError::Empty);
    }
    let check = |p: &Path| -> Result<PathBuf, ExecError> {
        let meta = p
            .metadata()
            .map_err(|_| ExecError::NotFound(program.to_string()))?;
        if meta.is_dir() {
            return Err(ExecError::NotExecutable(
                program.to_string(),
                "is a directory".into(),
            ));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(ExecError::NotExecutable(
                program.to_string(),
                "permission denied".into(),
            ));
        }
        Ok(p.to_path_buf())
    };
    if program.contains('/') {
        return check(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut last = ExecError::NotFound(program.to_string());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match check(&candidate) {
            Ok(p) => return Ok(p),
            Err(e @ ExecError::NotExecutable(..)) => last = e,
            Err(_) => {}
        }
    }
    Err(last)
}

/// How to start the child.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub argv: Vec<String>,
    /// The environment; `None` passes captrace's own on.
    pub env: Option<Vec<String>>,
    /// User and capability sets; `None` keeps captrace's own.
    pub privileges: Option<Privileges>,
    /// Namespaces and file system view; `None` stays in captrace's.
    pub sandbox: Option<Sandbox>,
    /// With a PID namespace: captrace's minimal init is PID 1 and the command PID 2.
    pub init: bool,
    /// Replays: stdin, stdout and stderr to /dev/null.
    pub quiet: bool,
    /// Apply `privileges` before waiting to be released, so before the tracer follows the
    /// child: the capability checks of dropping them (PR_CAPBSET_DROP, capset) are the
    /// launcher's, not the command's, and a replay must show only what the recording could.
    /// Only without a sandbox, whose setup needs the privileges first.
    pub privileges_first: bool,
    /// A session of its own (`run`): without a controlling terminal the workload cannot push
    /// input into captrace's terminal with TIOCSTI (the kernel allows it only on the caller's
    /// own controlling tty, `tiocsti`) nor take the terminal over (TIOCSCTTY needs SYS_ADMIN
    /// while captrace's session holds it). Signals from the terminal still reach it: they go
    /// to captrace, which forwards them.
    pub new_session: bool,
    /// seccomp programs (`seccomp::compile`) installed last before exec, after no_new_privs.
    pub seccomp: Vec<seccompiler::BpfProgram>,
}

/// A forked child waiting to exec.
pub struct Suspended {
    pub pid: Pid,
    go: OwnedFd,
    exec_err: OwnedFd,
    /// With a user namespace: the child says it unshared, the parent writes the id maps.
    userns: Option<(OwnedFd, OwnedFd, Sandbox)>,
    program: String,
}

/// A pipe the kernel may refuse (EMFILE, ENFILE): an error like a refused fork, not a panic.
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), ExecError> {
    pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ExecError::Setup("pipe", e.desc().to_string()))
}

fn cstrings(v: &[String], program: &str) -> Result<Vec<CString>, ExecError> {
    v.iter()
        .map(|a| CString::new(OsStr::new(a).as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ExecError::NotExecutable(program.to_string(), "argument contains a NUL byte".into())
        })
}

fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Where to look for the program: inside the root file system the workload will see.
fn resolve_for(spec: &Spec, program: &str) -> Result<PathBuf, ExecError> {
    let Some(root) = spec.sandbox.as_ref().and_then(|s| s.rootfs.as_ref()) else {
        return resolve(program);
    };
    let path_var = spec
        .env
        .as_ref()
        .and_then(|e| {
            e.iter()
                .find_map(|kv| kv.strip_prefix("PATH="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::split_paths(&path_var)
            .map(|d| d.join(program))
            .collect()
    };
    for inside in candidates {
        let outside = root.join(inside.strip_prefix("/").unwrap_or(&inside));
        // Absolute symlinks (busybox applets) point inside the root: check the link itself.
        if outside.symlink_metadata().is_ok() {
            return Ok(inside);
        }
    }
    Err(ExecError::NotFound(program.to_string()))
}

/// The PATH a workload in its own root file system gets, as docker sets it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Forks the child, stopped before exec until `resume`. Must be called while captrace is
/// single-threaded (before the async runtime starts, before the kallsyms reader): the child
/// allocates before exec. A fork the kernel refuses (EAGAIN: a pids cgroup or the process
/// limit is full) is an error, not a panic.
pub fn spawn_suspended(spec: &Spec) -> Result<Suspended, ExecError> {
    let program = spec.argv.first().ok_or(ExecError::Empty)?.clone();
    let path = resolve_for(spec, &program)?;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ExecError::NotFound(program.clone()))?;
    let argv = cstrings(&spec.argv, &program)?;
    let env = match &spec.env {
        Some(e) => cstrings(e, &program)?,
        None => std::env::vars_os()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"CAPTRACE_"))
            .filter_map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok())
            .collect(),
    };
    // Built before fork so the child only passes pointers to execve.
    let argv_ptrs = pointers(&argv);
    let env_ptrs = pointers(&env);
    let (go_r, go_w) = cloexec_pipe()?;
    let (err_r, err_w) = cloexec_pipe()?;
    // With `privileges_first`, the child says when they are applied: it must not be followed
    // (registered) before, or their checks would count as the command's.
    let ready = if spec.privileges_first && spec.sandbox.is_none() && spec.privileges.is_some() {
        Some(cloexec_pipe()?)
    } else {
        None
    };
    let userns = match spec.sandbox.as_ref().filter(|s| s.ns.user) {
        Some(s) => Some((cloexec_pipe()?, cloexec_pipe()?, s.clone())),
        None => None,
    };

    // SAFETY: captrace is single-threaded here (documented precondition), so the child may
    // run ordinary code until exec.
    let forked = unsafe { fork() }.map_err(|e| ExecError::Setup("fork", e.desc().to_string()))?;
    match forked {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            let sync = userns.map(|((_, unshared_w), (mapped_r, _), _)| (unshared_w, mapped_r));
            let ready_w = ready.map(|(_, w)| w);
            let (stage, errno) = child(
                go_r, ready_w, sync, &err_w, &cpath, &argv_ptrs, &env_ptrs, spec,
            );
            let mut msg = errno.to_ne_bytes().to_vec();
            msg.push(stage as u8);
            let _ = File::from(err_w).write_all(&msg);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            if let Some((ready_r, ready_w)) = ready {
                drop(ready_w);
                // One byte once applied, or end of file if the child died first: either way
                // nothing of the child's setup is left to run.
                let _ = File::from(ready_r).read(&mut [0u8; 1]);
            }
            let userns =
                userns.map(|((unshared_r, _), (_, mapped_w), sb)| (unshared_r, mapped_w, sb));
            Ok(Suspended {
                pid: child,
                go: go_w,
                exec_err: err_r,
                userns,
                program,
            })
        }
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: plain exit in the child.
    unsafe { libc::_exit(code) }
}

/// Forks once more; the parent stays behind as the supervisor of the new child and exits
/// with its status. Returns in the new child.
fn fork_supervised(err_w: &OwnedFd) -> Result<(), (Stage, i32)> {
    init::block();
    // SAFETY: single-threaded child process.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => Ok(()),
        Ok(ForkResult::Parent { child }) => {
            // Only the process that execs may hold the error pipe, so its exec closes it.
            // SAFETY: closing our copy of a descriptor we own; never used again here.
            unsafe { libc::close(err_w.as_raw_fd()) };
            init::harden();
            exit_now(init::supervise(child))
        }
        Err(e) => Err((Stage::Fork, e as i32)),
    }
}

/// In the child: wait for the go byte, set up, exec. Returns where and why it failed.
#[allow(clippy::too_many_arguments)]
fn child(
    go: OwnedFd,
    ready: Option<OwnedFd>,
    userns_sync: Option<(OwnedFd, OwnedFd)>,
    err_w: &OwnedFd,
    path: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    spec: &Spec,
) -> (Stage, i32) {
    let first = ready.is_some();
    let early = match &spec.privileges {
        Some(p) if first => p.apply(),
        _ => Ok(()),
    };
    if let Some(ready) = ready {
        let _ = File::from(ready).write_all(&[1]);
    }
    let mut byte = [0u8; 1];
    if File::from(go).read_exact(&mut byte).is_err() {
        // captrace went away before releasing us: never run untraced or unconfined.
        exit_now(125);
    }
    // Reported once released, as every other failure, so the parent's protocol is the same.
    if let Err(e) = early {
        return (Stage::Privileges, e);
    }
    if spec.new_session && nix::unistd::setsid().is_err() {
        return (Stage::Session, nix::errno::Errno::last_raw());
    }
    if let Err(e) = enter_sandbox(spec, userns_sync, err_w) {
        return e;
    }
    default_signals();
    if spec.quiet {
        quiet_stdio();
    }
    if let Some(p) = &spec.privileges
        && !first
        && let Err(e) = p.apply()
    {
        return (Stage::Privileges, e);
    }
    if let Err(e) = seccomp::install(&spec.seccomp) {
        return (Stage::Seccomp, e);
    }
    // Nothing captrace holds reaches the workload: every fd above stderr closes at exec.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: NUL-terminated strings and null-terminated pointer arrays that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    (Stage::Exec, nix::errno::Errno::last_raw())
}

fn enter_sandbox(
    spec: &Spec,
    userns_sync: Option<(OwnedFd, OwnedFd)>,
    err_w: &OwnedFd,
) -> Result<(), (Stage, i32)> {
    let Some(sb) = &spec.sandbox else {
        return Ok(());
    };
    nix::sched::unshare(sb.ns.clone_flags()).map_err(|e| (Stage::Unshare, e as i32))?;
    if let Some((unshared_w, mapped_r)) = userns_sync {
        let mut byte = [0u8; 1];
        let told = File::from(unshared_w).write_all(&[1]).is_ok();
        if !told || File::from(mapped_r).read_exact(&mut byte).is_err() || byte[0] != 1 {
            return Err((Stage::UserMap, libc::EPERM));
        }
        let root = nix::unistd::Uid::from_raw(0);
        let rootg = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(rootg, rootg, rootg).map_err(|e| (Stage::UserMap, e as i32))?;
        nix::unistd::setresuid(root, root, root).map_err(|e| (Stage::UserMap, e as i32))?;
    }
    if sb.ns.pid {
        // unshare(CLONE_NEWPID) puts the next child in the namespace, as its PID 1.
        fork_supervised(err_w)?;
    }
    sb.setup_inside()?;
    if spec.init && sb.ns.pid {
        fork_supervised(err_w)?;
    }
    Ok(())
}

/// The workload starts as a shell would start it: no signal blocked, every disposition the
/// default. An ignored disposition survives exec (Rust ignores SIGPIPE in captrace), and
/// `yes | head -1` would then end in "Broken pipe" instead of a quiet SIGPIPE.
fn default_signals() {
    // rt_sigaction itself: glibc's signal() refuses the real-time signals it reserves (32,
    // 33), which a parent may have left ignored too. Every field is zero (SIG_DFL, no flags,
    // no mask), so the struct's layout, which differs between architectures, does not matter.
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct and no old action; SIG_DFL needs no
        // restorer.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn quiet_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

impl Suspended {
    /// Lets the child exec. Fails with the exec or set-up error when exec did not happen.
    pub fn resume(self) -> Result<Pid, ExecError> {
        let Suspended {
            pid,
            go,
            exec_err,
            userns,
            program,
        } = self;
        let mut go = File::from(go);
        let _ = go.write_all(&[1]);
        drop(go);
        if let Some((unshared_r, mapped_w, sb)) = userns {
            let mut byte = [0u8; 1];
            if File::from(unshared_r).read_exact(&mut byte).is_ok() {
                let ok = sb.write_id_maps(pid.as_raw()).is_ok();
                let _ = File::from(mapped_w).write_all(&[u8::from(ok)]);
            }
        }
        let mut buf = Vec::new();
        let _ = File::from(exec_err).read_to_end(&mut buf);
        if buf.len() < 5 {
            return Ok(pid);
        }
        let _ = waitpid(pid, None);
        let errno = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let stage = Stage::from_u8(buf[4]);
        let reason = nix::errno::Errno::from_raw(errno).desc().to_string();
        Err(match (stage, errno) {
            (Stage::Exec, libc::ENOENT) => ExecError::NotFound(program),
            (Stage::Exec, _) => ExecError::NotExecutable(program, reason),
            (stage, libc::EPERM) => ExecError::NotPermitted(stage.describe()),
            (stage, _) => ExecError::Setup(stage.describe(), reason),
        })
    }

    /// Ends the suspended child (it never ran).
    pub fn abort(self) {
        drop(self.go);
        let _ = waitpid(self.pid, None);
    }
}

/// Blocks the signals `supervise` forwards, before the child is forked so none is lost.
pub fn block_supervised_signals() {
    init::block();
}

/// Waits for `child` (forwarding signals, reaping others) and returns its exit status.
pub fn supervise(child: Pid) -> i32 {
    init::supervise(child)
}

/// How many supervising processes stand between the forked child and the command: one for a
/// PID namespace (the child waits outside it), one more for `--init`.
pub fn supervisors(spec: &Spec) -> usize {
    let pid_ns = spec.sandbox.as_ref().is_some_and(|s| s.ns.pid);
    usize::from(pid_ns) + usize::from(pid_ns && spec.init)
}

/// The process that runs the command: `levels` generations below `pid` (each supervisor has
/// exactly one child), waiting briefly for them to be forked.
pub fn workload_pid(pid: Pid, levels: usize) -> Pid {
    let mut current = pid;
    for _ in 0..levels {
        let path = format!("/proc/{0}/task/{0}/children", current.as_raw());
        let mut child = None;
        for _ in 0..100 {
            child = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .split_whitespace()
                .find_map(|k| k.parse().ok());
            if child.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        match child {
            Some(c) => current = Pid::from_raw(c),
            None => break,
        }
    }
    current
}

/// Exit status as a shell reports it: the code, or 128+N when killed by signal N.
pub fn exit_status(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Non-blocking reap of `pid`; `Some(status)` once it has exited.
pub fn try_wait(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(s) => exit_status(s),
        Err(_) => Some(125),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        assert!(resolve("sh").unwrap().is_absolute());
        assert!(matches!(
            resolve("no-such-command-xyz"),
            Err(ExecError::NotFound(_))
        ));
        assert!(matches!(
            resolve("/etc/passwd"),
            Err(ExecError::NotExecutable(..))
        ));
        assert!(matches!(resolve("/tmp"), Err(ExecError::NotExecutable(..))));
        assert!(matches!(resolve(""), Err(ExecError::Empty)));
    }

    #[test]
    fn a_child_that_is_never_released_never_runs() {
        // What captrace's death before `resume` looks like to the child: the go pipe closes.
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let spec = Spec {
            argv: vec!["touch".into(), ran.display().to_string()],
            ..Default::default()
        };
        let child = spawn_suspended(&spec).unwrap();
        let pid = child.pid;
        drop(child);
        assert_eq!(exit_status(waitpid(pid, None).unwrap()), Some(125));
        assert!(!ran.exists());
    }

    #[test]
    fn runs_and_reports_exit_codes() {
        let spec = Spec {
            argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
            ..Default::default()
        };
        let pid = spawn_suspended(&spec).unwrap().resume().unwrap();
        assert_eq!(exit_status(waitpid(pid, None).unwrap()), Some(3));
    }
}
