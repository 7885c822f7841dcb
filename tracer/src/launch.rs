//! Starting the workload: resolved before anything is loaded, forked suspended so it can be
//! registered with the kernel programs before its first instruction, then released to exec.
//! The child gets only stdin/stdout/stderr (every other fd captrace holds is close-on-exec),
//! an empty signal mask and, for replays, exactly the capability set under test.
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

use crate::capability::Cap;

/// The command cannot be started. Exit codes follow the shell: 127 not found, 126 not
/// executable.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No such command on PATH or at the given path.
    #[error("{0}: command not found")]
    NotFound(String),
    /// The file exists but cannot be executed.
    #[error("{0}: cannot execute: {1}")]
    NotExecutable(String, String),
    /// An empty command line.
    #[error("no command given: put it after --, e.g. captrace record -- chown 1000 FILE")]
    Empty,
}

impl ExecError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::NotFound(_) => 127,
            ExecError::NotExecutable(..) | ExecError::Empty => 126,
        }
    }
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
    /// Replays: exactly these capabilities (bounding set; inheritable and ambient empty).
    pub caps: Option<Vec<Cap>>,
    /// Replays: stdin, stdout and stderr to /dev/null.
    pub quiet: bool,
}

/// A forked child waiting to exec.
pub struct Suspended {
    pub pid: Pid,
    go: OwnedFd,
    exec_err: OwnedFd,
    program: String,
}

/// Forks the child, stopped before exec until `resume`. Must be called while captrace is
/// single-threaded (before the async runtime starts): the child allocates before exec.
pub fn spawn_suspended(spec: &Spec) -> Result<Suspended, ExecError> {
    let program = spec.argv.first().ok_or(ExecError::Empty)?.clone();
    let path = resolve(&program)?;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ExecError::NotFound(program.clone()))?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| CString::new(OsStr::new(a).as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ExecError::NotExecutable(program.clone(), "argument contains a NUL byte".into())
        })?;
    // Built before fork so the child only passes pointers to execv.
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");

    // SAFETY: captrace is single-threaded here (documented precondition), so the child may
    // run ordinary code until exec.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            let errno = child(go_r, &cpath, &argv_ptrs, spec);
            let _ = File::from(err_w).write_all(&errno.to_ne_bytes());
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => Ok(Suspended {
            pid: child,
            go: go_w,
            exec_err: err_r,
            program,
        }),
    }
}

/// In the child: wait for the go byte, set up, exec. Returns the errno when exec failed.
fn child(go: OwnedFd, path: &CString, argv: &[*const libc::c_char], spec: &Spec) -> i32 {
    let mut byte = [0u8; 1];
    if File::from(go).read_exact(&mut byte).is_err() {
        // captrace went away before releasing us: never run untraced.
        // SAFETY: plain exit in the child.
        unsafe { libc::_exit(125) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    if spec.quiet {
        quiet_stdio();
    }
    if let Some(caps) = &spec.caps
        && let Err(e) = apply_exact_caps(caps)
    {
        return e;
    }
    // SAFETY: NUL-terminated strings and a null-terminated pointer array that outlive the call.
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    nix::errno::Errno::last_raw()
}

fn quiet_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Bounding set = `caps`; inheritable and ambient empty. A root exec then gets exactly `caps`
/// as permitted and effective set (security/commoncap.c: cap_bprm_creds_from_file).
fn apply_exact_caps(keep: &[Cap]) -> Result<(), i32> {
    let last = crate::capability::kernel_last_cap().unwrap_or(40);
    for n in 0..=last {
        if !keep.contains(&Cap(n)) {
            // SAFETY: prctl with integer arguments.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
            if rc != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
                return Err(nix::errno::Errno::last_raw());
            }
        }
    }
    caps::clear(None, caps::CapSet::Inheritable).map_err(|_| libc::EPERM)?;
    caps::clear(None, caps::CapSet::Ambient).map_err(|_| libc::EPERM)?;
    Ok(())
}

impl Suspended {
    /// Lets the child exec. Fails with the exec error when exec did not happen.
    pub fn resume(self) -> Result<Pid, ExecError> {
        let Suspended {
            pid,
            go,
            exec_err,
            program,
        } = self;
        let mut go = File::from(go);
        let _ = go.write_all(&[1]);
        drop(go);
        let mut buf = Vec::new();
        let _ = File::from(exec_err).read_to_end(&mut buf);
        if buf.len() < 4 {
            return Ok(pid);
        }
        let _ = waitpid(pid, None);
        let errno = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let reason = nix::errno::Errno::from_raw(errno).desc().to_string();
        Err(match errno {
            libc::ENOENT => ExecError::NotFound(program),
            _ => ExecError::NotExecutable(program, reason),
        })
    }

    /// Kills the suspended child (it never ran).
    pub fn abort(self) {
        drop(self.go);
        let _ = waitpid(self.pid, None);
    }
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
        assert_eq!(ExecError::NotFound("x".into()).exit_code(), 127);
        assert_eq!(
            ExecError::NotExecutable("x".into(), "y".into()).exit_code(),
            126
        );
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
