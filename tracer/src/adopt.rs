//! Adopting a running process tree (`enforce --pid`): which trees may be adopted, and how to
//! adopt one without losing a process to a race.
//!
//! The kernel follows every task created by an adopted thread (`task_newtask`), so the only
//! window is between reading the tree in /proc and registering it. Each process is registered
//! *before* its children are read: a child forked after that is the kernel's to follow, one
//! forked before is in the list read after, so a child that double-forks while the walk runs
//! cannot leave the tree unseen. Threads are listed again until a pass finds nothing new. A
//! thread id read from /proc may belong to another process by the time it is registered (the
//! thread exited and its id was reused): each is checked by its start time after registration
//! and forgotten if it changed.
use std::{collections::BTreeMap, fs};

/// A thread's start time (`/proc/TID/stat` field 22, clock ticks since boot), None once it is
/// gone or a zombie.
pub fn start_time(tid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// The start time in a `/proc/TID/stat` line, None for an exited (zombie, dead) thread. The
/// command name may hold spaces and parentheses: fields are counted after its last ')'.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// The parent of `pid` (`PPid:` of /proc/PID/status), None when it is gone.
fn parent(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "PPid:")
}

fn status_field(status: &str, name: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

/// The process (thread group) a thread id belongs to.
fn tgid(tid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status_field(&status, "Tgid:")
}

/// captrace and its ancestors up to init, nearest first.
fn own_ancestry() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(p) = chain.last().and_then(|&p| parent(p)) {
        if p == 0 || chain.contains(&p) {
            break;
        }
        chain.push(p);
    }
    chain
}

/// Why `pid` may not be confined, if it may not: init (the whole host would be confined), or
/// captrace itself or one of its ancestors (captrace would confine itself, and the shell it
/// reports to).
pub fn refusal(pid: u32) -> Option<String> {
    let process = tgid(pid).unwrap_or(pid);
    refusal_in(process, &own_ancestry())
}

fn refusal_in(process: u32, ancestry: &[u32]) -> Option<String> {
    if process == 1 {
        return Some(
            "is init: confining its tree would confine every process of the host, captrace \
             included; give the pid of the workload"
                .into(),
        );
    }
    if ancestry.first() == Some(&process) {
        return Some("is captrace itself".into());
    }
    ancestry.contains(&process).then(|| {
        "is an ancestor of captrace: confining its tree would confine captrace too; give the \
         pid of the workload"
            .into()
    })
}

/// Registers and unregisters thread ids with the kernel (`loader::Tracer` in `enforce`).
pub trait Registry {
    fn register(&mut self, tids: &[u32]) -> anyhow::Result<()>;
    fn unregister(&mut self, tids: &[u32]) -> anyhow::Result<()>;
}

/// Passes over the tree before giving up on it becoming stable (a tree that creates threads
/// faster than /proc can be read).
const MAX_PASSES: usize = 64;

/// Adopts the tree rooted at `root`: every thread of it and of its descendants, each process
/// registered before its children are read, until a pass finds nothing new. Returns the
/// number of threads adopted.
pub fn adopt_tree(registry: &mut impl Registry, root: u32) -> anyhow::Result<usize> {
    // tid -> start time when it was registered.
    let mut adopted: BTreeMap<u32, u64> = BTreeMap::new();
    for _ in 0..MAX_PASSES {
        let mut new = 0;
        let mut todo = vec![root];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(p) = todo.pop() {
            if !seen.insert(p) {
                continue;
            }
            let fresh: Vec<(u32, u64)> = threads(p)
                .into_iter()
                .filter(|t| !adopted.contains_key(t))
                .filter_map(|t| Some((t, start_time(t)?)))
                .collect();
            let tids: Vec<u32> = fresh.iter().map(|&(t, _)| t).collect();
            registry.register(&tids)?;
            // Registered first, checked after: an id that now names another thread (or none)
            // is not the workload's.
            let stale: Vec<u32> = fresh
                .iter()
                .filter(|&&(t, start)| start_time(t) != Some(start))
                .map(|&(t, _)| t)
                .collect();
            registry.unregister(&stale)?;
            for (t, start) in fresh {
                if !stale.contains(&t) {
                    adopted.insert(t, start);
                    new += 1;
                }
            }
            // Children are read only now that every thread of `p` is registered.
            for t in threads(p) {
                todo.extend(children(p, t));
            }
        }
        if new == 0 {
            return Ok(adopted.len());
        }
    }
    anyhow::bail!(
        "--pid {root}: its process tree kept changing over {MAX_PASSES} passes; nothing was confined"
    )
}

/// The thread ids of process `pid`, as /proc shows them now.
fn threads(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children thread `tid` of `pid` forked.
fn children(pid: u32, tid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_spaces_and_parens_in_the_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987_654));
        let zombie = stat.replace(") S ", ") Z ");
        assert_eq!(parse_start_time(&zombie), None);
        assert_eq!(parse_start_time("4242 (x"), None);
    }

    #[test]
    fn init_captrace_and_its_ancestors_are_refused() {
        let ancestry = [500, 400, 300, 1];
        assert!(refusal_in(1, &ancestry).unwrap().starts_with("is init"));
        assert_eq!(
            refusal_in(500, &ancestry).as_deref(),
            Some("is captrace itself")
        );
        assert!(
            refusal_in(300, &ancestry)
                .unwrap()
                .starts_with("is an ancestor of captrace")
        );
        assert_eq!(refusal_in(600, &ancestry), None);
    }

    #[test]
    fn the_own_ancestry_ends_at_init() {
        let chain = own_ancestry();
        assert_eq!(chain[0], std::process::id());
        assert!(chain.len() >= 2, "{chain:?}");
        assert_eq!(chain.last(), Some(&1), "{chain:?}");
    }
}
