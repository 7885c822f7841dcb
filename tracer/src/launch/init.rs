//! The minimal init of a PID namespace (and the forwarder outside it): waits for one child,
//! forwards signals to it, reaps every other child it inherits, and returns the child's exit
//! status. Signals are blocked and taken with sigwait, so PID 1's default-ignore rule for
//! unhandled signals does not apply (kernel/signal.c: sig_ignored skips blocked signals).
use nix::{
    errno::Errno,
    sys::{
        signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

/// Signals passed on to the workload.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The forwarded signals and SIGCHLD. Block them before forking the child, so none is lost.
pub fn supervised_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

pub fn block() {
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&supervised_set()), None);
}

/// Makes a supervisor (the `--init` PID 1 and the forwarder outside a PID namespace) worth
/// nothing to the workload beside it: it waits and forwards signals, so it keeps only KILL
/// (to signal a workload that changed its uid, `kill_ok_by_cred`), no fd but 0-2 (it was
/// forked from captrace, so it held the BPF maps of `--audit`/`--enforce`), and is not
/// dumpable, so the workload cannot read its memory or fds through /proc (`ptrace_may_access`
/// then needs SYS_PTRACE) even when it holds KILL too and so every capability the supervisor
/// kept. Best effort: each step only takes privileges away.
pub fn harden() {
    // SAFETY: closing the descriptors this process holds above stderr; none is used again.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: PR_SET_DUMPABLE takes an integer and changes only this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    use caps::{CapSet, Capability};
    let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let keep: caps::CapsHashSet = held
        .into_iter()
        .filter(|c| *c == Capability::CAP_KILL)
        .collect();
    // The bounding set first, while SETPCAP is still effective.
    for c in caps::all() {
        if c != Capability::CAP_KILL {
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    let _ = caps::clear(None, CapSet::Ambient);
    let _ = caps::clear(None, CapSet::Inheritable);
    let _ = caps::set(None, CapSet::Effective, &keep);
    let _ = caps::set(None, CapSet::Permitted, &keep);
}

/// Runs until `child` exits; returns its status as a shell reports it.
pub fn supervise(child: Pid) -> i32 {
    let set = supervised_set();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(status) if status.pid() == Some(child) => {
                        return super::exit_status(status).unwrap_or(125);
                    }
                    Ok(_) => continue,
                    Err(Errno::ECHILD) => return 125,
                    Err(_) => break,
                }
            },
            Ok(sig) => {
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
}
