//! The one async runtime of the process and the one wait loop that every long-running command
//! (`record`, `record --container`, `enforce`, `monitor`) ticks: wake on an interval, on a
//! stop signal, optionally on SIGCHLD or a deadline, and say which.
use std::{
    future::Future,
    io,
    sync::OnceLock,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tokio::{
    runtime::Runtime,
    signal::unix::{SignalKind, signal},
    time::Interval,
};

/// Runs `fut` to completion on the process's runtime, built on first use. It is a
/// current-thread runtime: it starts no thread, so a workload may still be forked afterwards
/// from a process with a single thread (see `launch`).
pub fn block_on<F: Future>(fut: F) -> io::Result<F::Output> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    let runtime = match RUNTIME.get() {
        Some(r) => r,
        None => {
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            RUNTIME.get_or_init(|| built)
        }
    };
    Ok(runtime.block_on(fut))
}

/// Why the loop woke up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The interval elapsed (or, with [`Stop::waking_on_children`], a child changed state).
    Tick,
    /// SIGINT, SIGTERM or SIGHUP arrived.
    Signal(Signal),
    /// The deadline of [`Stop::until`] passed.
    Deadline,
}

impl Wake {
    /// Any wake-up other than a tick ends a loop that only stops.
    pub fn stops(self) -> bool {
        self != Wake::Tick
    }
}

/// The stop signals, a tick, and the optional extra wake-ups. Create it inside the runtime.
pub struct Stop {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
    sigchld: Option<tokio::signal::unix::Signal>,
    tick: Interval,
    deadline: Option<tokio::time::Instant>,
}

impl Stop {
    /// Wakes every `every`, and on SIGINT, SIGTERM or SIGHUP, which from now on no longer end
    /// the process: the loop decides what they mean.
    pub fn new(every: Duration) -> io::Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            sighup: signal(SignalKind::hangup())?,
            sigchld: None,
            tick: tokio::time::interval(every),
            deadline: None,
        })
    }

    /// Also wakes (as a tick) when a child changes state, so a command's exit is seen at once.
    pub fn waking_on_children(mut self) -> io::Result<Self> {
        self.sigchld = Some(signal(SignalKind::child())?);
        Ok(self)
    }

    /// Also wakes, once, `after` from now (never if `None`).
    pub fn until(mut self, after: Option<Duration>) -> Self {
        self.deadline = after.map(|d| tokio::time::Instant::from_std(Instant::now() + d));
        self
    }

    /// Waits for the next wake-up.
    pub async fn next(&mut self) -> Wake {
        let deadline = self.deadline;
        let child = self.sigchld.as_mut();
        tokio::select! {
            _ = self.tick.tick() => Wake::Tick,
            _ = async { match child { Some(c) => { c.recv().await; } None => std::future::pending::<()>().await } } => Wake::Tick,
            _ = self.sigint.recv() => Wake::Signal(Signal::SIGINT),
            _ = self.sigterm.recv() => Wake::Signal(Signal::SIGTERM),
            _ = self.sighup.recv() => Wake::Signal(Signal::SIGHUP),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                self.deadline = None;
                Wake::Deadline
            }
        }
    }
}
