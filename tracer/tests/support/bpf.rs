//! What BPF one captrace process holds, and which bpf() calls it makes. Other captrace runs
//! may be attached at the same time on a shared machine, so nothing here counts programs by
//! name: a process's links come from its own fds, and "gone" means "those link ids are gone".
use std::{
    collections::BTreeSet,
    fs::{self, File},
    io,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, ExitStatus, Output},
    time::Duration,
};

/// A BPF link a process holds an fd of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub id: u32,
    pub prog_id: u32,
    /// The raw tracepoint it attaches to.
    pub tp_name: String,
}

/// Every BPF link `pid` holds (from `/proc/PID/fdinfo`; a link's fdinfo has `link_id`).
pub fn links_of(pid: u32) -> Vec<Link> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for fd in fds.flatten() {
        let info = fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        if let (Some(id), Some(prog_id)) = (field("link_id:"), field("prog_id:")) {
            out.push(Link {
                id: id.parse().unwrap(),
                prog_id: prog_id.parse().unwrap(),
                tp_name: field("tp_name:").unwrap_or_default(),
            });
        }
    }
    out.sort();
    out
}

fn ids(what: &str) -> BTreeSet<u32> {
    let out = Command::new("bpftool")
        .args([what, "show", "--json"])
        .output()
        .expect("running bpftool (cargo xtask setup)");
    assert!(out.status.success(), "bpftool {what} show: {out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap() as u32)
        .collect()
}

/// The raw tracepoints one captrace instance attaches, one link each.
pub const OUR_TRACEPOINTS: &[&str] = &[
    "cap_capable",
    "sched_process_exec",
    "sched_process_exit",
    "task_newtask",
];

/// The namespace syscalls captrace watches, a link each: fexit on the syscall's function where
/// the kernel has trampolines (no `tp_name`), else its exit tracepoint
/// (`syscalls:sys_exit_NAME`, a perf link whose fdinfo names the event on recent kernels,
/// nothing on older ones). A kernel with neither gets one raw tracepoint on `sys_exit`.
pub const OUR_SYSCALL_EXITS: &[&str] = &["unshare", "setns", "clone", "clone3"];

/// Whether `links` are all that one captrace instance attaches, in one of those shapes.
fn complete(links: &[Link]) -> bool {
    let mut points: Vec<String> = links.iter().map(|l| l.tp_name.clone()).collect();
    points.sort();
    let shape = |ns: Vec<String>| {
        let mut all: Vec<String> = OUR_TRACEPOINTS.iter().map(|p| p.to_string()).collect();
        all.extend(ns);
        all.sort();
        all
    };
    let named = OUR_SYSCALL_EXITS.iter().map(|s| format!("sys_exit_{s}"));
    points == shape(named.collect())
        || points == shape(vec![String::new(); OUR_SYSCALL_EXITS.len()])
        || points == shape(vec!["sys_exit".into()])
}

/// The links of captrace process `pid`, once it has attached all of them, checked against
/// what the kernel lists.
pub fn links_once_attached(pid: u32) -> Vec<Link> {
    let mut links = Vec::new();
    super::wait_for("the programs to attach", Duration::from_secs(10), || {
        links = links_of(pid);
        complete(&links)
    });
    let attached = attached_link_ids();
    assert!(
        links.iter().all(|l| attached.contains(&l.id)),
        "bpftool lists them"
    );
    links
}

/// Waits until none of `links` (nor their programs) is left in the kernel.
pub fn wait_until_gone(links: &[Link]) {
    super::wait_for("the programs to go", Duration::from_secs(5), || {
        all_gone(links)
    });
}

/// Ids of every BPF link attached on the host, as the kernel lists them.
pub fn attached_link_ids() -> BTreeSet<u32> {
    ids("link")
}

/// Ids of every BPF program loaded on the host.
pub fn loaded_prog_ids() -> BTreeSet<u32> {
    ids("prog")
}

/// True when none of `links` nor their programs is known to the kernel any more.
pub fn all_gone(links: &[Link]) -> bool {
    let (attached, loaded) = (attached_link_ids(), loaded_prog_ids());
    links
        .iter()
        .all(|l| !attached.contains(&l.id) && !loaded.contains(&l.prog_id))
}

/// `cmd` of bpf(2) that loads a program.
pub const BPF_PROG_LOAD: u64 = 5;
/// `cmd` of bpf(2) that attaches a raw tracepoint.
pub const BPF_RAW_TRACEPOINT_OPEN: u64 = 17;
/// `cmd` of bpf(2) that makes a link (here: a program on a perf tracepoint event).
pub const BPF_LINK_CREATE: u64 = 28;

/// Runs `cmd` to its end under ptrace and returns its output and the `cmd` argument of every
/// bpf(2) call it made, through every exec (wrappers such as setpriv or unshare exec into
/// captrace) and in every thread; its children are not followed. stdout and stderr are
/// captured through files. Waits only for children of the calling thread (`__WNOTHREAD`), so
/// tests on other threads keep theirs; a child this thread started before and that exits
/// meanwhile is reaped here.
pub fn output_watching_bpf(mut cmd: Command) -> (Output, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    // SAFETY: PTRACE_TRACEME is async-signal-safe; the child stops at its exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[expect(
        clippy::zombie_processes,
        reason = "the ptrace loop reaps it with waitpid"
    )]
    let child = cmd.spawn().expect("spawning the traced command");
    let (status, calls) = trace(child.id() as i32);
    let output = Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    };
    (output, calls)
}

/// The next of this thread's children or tracees to change state. The tracee's parent is the
/// thread that spawned it (copy_process sets `real_parent = current`) and its threads are
/// traced by that thread too, so `__WNOTHREAD` keeps this from reaping the children of tests
/// running on other threads (`waitpid(-1, __WALL)` alone waits for the whole process's).
fn wait_any() -> (i32, i32) {
    let mut status = 0;
    // SAFETY: waitpid writes the status of one of this thread's (ptrace) children.
    let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
    assert!(tid > 0, "waitpid: {}", io::Error::last_os_error());
    (tid, status)
}

/// Lets a stopped tracee run to its next system call boundary, delivering `signal` (or none).
fn resume(tid: i32, signal: i32) {
    // SAFETY: tid is a tracee in a ptrace stop.
    unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, signal as libc::c_long) };
}

/// The bpf(2) `cmd` if `tid` stopped at the entry of a bpf call.
fn bpf_entry(tid: i32) -> Option<u64> {
    // SAFETY: all-zero is a valid ptrace_syscall_info; the kernel fills at most its size.
    let mut info: libc::ptrace_syscall_info = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::ptrace_syscall_info>();
    // SAFETY: tid is in a syscall stop; `info` is writable for `size` bytes.
    let n = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            size,
            &mut info as *mut libc::ptrace_syscall_info,
        )
    };
    assert!(
        n > 0,
        "PTRACE_GET_SYSCALL_INFO: {}",
        io::Error::last_os_error()
    );
    if info.op != libc::PTRACE_SYSCALL_INFO_ENTRY {
        return None;
    }
    // SAFETY: op says the entry member is the one filled.
    let entry = unsafe { info.u.entry };
    (entry.nr == libc::SYS_bpf as u64).then_some(entry.args[0])
}

/// The ptrace loop over `pid` (stopped at its first exec) and the threads it starts: its exit
/// status and every bpf() `cmd` seen.
fn trace(pid: i32) -> (ExitStatus, Vec<u64>) {
    let (tid, status) = wait_any();
    assert!(
        tid == pid && libc::WIFSTOPPED(status),
        "the traced command did not stop at exec"
    );
    let options = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: pid is our tracee, stopped.
    let set = unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options as libc::c_long) };
    assert_eq!(set, 0, "PTRACE_SETOPTIONS: {}", io::Error::last_os_error());
    resume(pid, 0);
    let mut calls = Vec::new();
    let mut threads: BTreeSet<i32> = BTreeSet::from([pid]);
    loop {
        let (tid, status) = wait_any();
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            threads.remove(&tid);
            if tid == pid {
                return (ExitStatus::from_raw(status), calls);
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        if signal == libc::SIGTRAP | 0x80 {
            calls.extend(bpf_entry(tid));
            resume(tid, 0);
        } else if event != 0 || (signal == libc::SIGSTOP && threads.insert(tid)) {
            // A ptrace event (clone, exec), or a new thread's first stop: nothing to deliver.
            resume(tid, 0);
        } else {
            resume(tid, signal);
        }
    }
}
