//! `run`'s supervisors (the `--init` PID 1 beside the workload, the forwarder outside its PID
//! namespace) are worth nothing to the workload (#14 item 13): only KILL, no fd but 0-2 (so
//! none of `--audit`'s BPF maps), not dumpable.
mod support;

use std::{fs, process::Command, time::Duration};

/// The processes under `pid`, nearest first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    let mut parents = vec![pid];
    while let Some(p) = parents.pop() {
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            if after.split_whitespace().nth(1) == Some(&p.to_string()) {
                out.push(child);
                parents.push(child);
            }
        }
    }
    out
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_workload_cannot_read_its_supervisors_memory_or_fds_and_they_keep_only_kill() {
    if !support::require_root() {
        return;
    }
    // From the workload's side: PID 1 of its namespace is the --init supervisor. (The names
    // in /proc/1/fd list, as root owns the directory; what each fd is needs ptrace access.) The workload
    // holds KILL too, so without PR_SET_DUMPABLE 0 ptrace_may_access would let it in.
    let script = "grep CapEff /proc/1/status; \
        readlink /proc/1/fd/0 >/dev/null 2>&1 && echo FD-READ; \
        head -c 1 /proc/1/mem >/dev/null 2>&1 && echo MEM-READ; \
        cat /proc/1/environ >/dev/null 2>&1 && echo ENVIRON-READ; \
        sleep 3";
    let child = Command::new(support::captrace_bin())
        .args([
            "run",
            "--audit",
            "--init",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "KILL",
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let captrace = child.id();
    // From the host's side, while it sleeps: every supervisor's fds and capabilities.
    let mut supervisors = vec![];
    support::wait_for(
        "the workload's sleep",
        Duration::from_secs(20) * support::time_scale(),
        || {
            let procs = descendants(captrace);
            let comm = |p: &u32| fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if !procs.iter().any(|p| comm(p).trim() == "sleep") {
                return false;
            }
            supervisors = procs
                .into_iter()
                .filter(|p| comm(p).trim() == "captrace")
                .collect();
            true
        },
    );
    assert_eq!(
        supervisors.len(),
        2,
        "the forwarder outside the PID namespace and the init inside"
    );
    for sup in &supervisors {
        let fds: Vec<String> = fs::read_dir(format!("/proc/{sup}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().unwrap() > 2)
            .map(|e| {
                fs::read_link(e.path())
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert!(fds.is_empty(), "supervisor {sup} holds {fds:?}");
        let status = fs::read_to_string(format!("/proc/{sup}/status")).unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let line = status.lines().find(|l| l.starts_with(set)).unwrap();
            assert!(
                line.ends_with("0000000000000020"),
                "supervisor {sup}: {line} (only KILL, bit 5)"
            );
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("CapEff:\t0000000000000020"),
        "the init's CapEff as the workload sees it: {stdout}{stderr}"
    );
    for leak in ["FD-READ", "MEM-READ", "ENVIRON-READ"] {
        assert!(!stdout.contains(leak), "{leak}: {stdout}{stderr}");
    }
}
