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
