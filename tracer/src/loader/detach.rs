//! Detaching the per-syscall tracepoints off captrace's own exit path.
//!
//! Releasing a perf tracepoint event waits for an RCU grace period while holding `event_mutex`
//! (kernel/trace/trace_event_perf.c: perf_trace_destroy() → perf_trace_event_unreg() →
//! tracepoint_synchronize_unregister()), so the four `syscalls:sys_exit_*` links detach one
//! after the other, tens of milliseconds each, in parallel or not. A process that closes them
//! (or exits holding them) pays that before its parent sees it end. So the last references are
//! handed to an orphaned grandchild: it keeps only those fds, waits until captrace has dropped
//! its own, and exits; its exit does the detaching while captrace is already gone.
use std::{
    collections::BTreeSet,
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

use aya::programs::links::FdLink;

/// Drops `links`, leaving the wait for their detach to an orphaned grandchild. Falls back to
/// dropping them here (detach included) when that cannot be set up.
pub(super) fn hand_off(links: Vec<FdLink>) {
    if links.is_empty() {
        return;
    }
    let keep = match fds_of(&links) {
        Some(fds) => fds,
        None => {
            tracing::debug!("link fds not found in /proc/self/fdinfo; detaching inline");
            return;
        }
    };
    let mut pipe = [0; 2];
    // SAFETY: pipe2 writes two fds into `pipe`.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let mut keep: Vec<RawFd> = keep.into_iter().chain([read.as_raw_fd()]).collect();
    keep.sort_unstable();
    // SAFETY: the child only makes async-signal-safe system calls (fork, close_range/close,
    // read, _exit), as required after fork in a multithreaded process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe { holder(&keep, read.as_raw_fd()) }
    }
    if pid > 0 {
        let mut status = 0;
        // SAFETY: waits for the child just forked, which exits at once.
        unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    }
    drop(read);
    // Our references go first; the grandchild's are then the last ones.
    drop(links);
    drop::<OwnedFd>(write);
}

/// The child: forks the holder and exits, so the holder is nobody's child to wait for. The
/// holder closes every fd but `keep`, blocks until the pipe's write end is closed (captrace
/// dropped its links, or exited), and exits: the kernel then releases the links.
///
/// # Safety
/// Only in a child just forked.
unsafe fn holder(keep: &[RawFd], read: RawFd) -> ! {
    // SAFETY: async-signal-safe calls only.
    unsafe {
        if libc::fork() != 0 {
            libc::_exit(0);
        }
        libc::setsid();
        close_all_but(keep);
        let mut byte = 0u8;
        loop {
            let n = libc::read(read, (&raw mut byte).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        libc::_exit(0)
    }
}

/// Closes every fd except `keep` (sorted), without allocating.
///
/// # Safety
/// Closes fds other code may own: only in a forked child.
unsafe fn close_all_but(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: plain system call.
            unsafe { close_range(from, fd - 1) };
        }
        from = fd + 1;
    }
    // SAFETY: plain system call.
    unsafe { close_range(from, u32::MAX) };
}

/// close_range(2) (Linux 5.9), or close() over a bounded range where it is missing.
///
/// # Safety
/// As [`close_all_but`].
unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: plain system calls.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, last, 0) == 0 {
            return;
        }
        for fd in first..=last.min(65_535) {
            libc::close(fd as i32);
        }
    }
}

/// The fds of this process that hold `links`, sorted, found by link id in
/// `/proc/self/fdinfo`; None unless every link's fd is found.
fn fds_of(links: &[FdLink]) -> Option<BTreeSet<RawFd>> {
    let ids: BTreeSet<u32> = links
        .iter()
        .map(|l| l.info().ok().map(|i| i.id()))
        .collect::<Option<_>>()?;
    let mut fds = BTreeSet::new();
    for entry in fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let info = fs::read_to_string(entry.path()).unwrap_or_default();
        let id = info
            .lines()
            .find_map(|l| l.strip_prefix("link_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if id.is_some_and(|id| ids.contains(&id)) {
            fds.insert(fd);
        }
    }
    (fds.len() == links.len()).then_some(fds)
}
