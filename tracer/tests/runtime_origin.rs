//! A container workload cannot pass for its runtime (#14 item 14): a process that renames
//! itself `runc:[2:INIT]` (what runc's init is called while it sets a container up with the
//! runtime's privileges) and then chowns a file and calls unshare is still the container's.
//! The kernel decides a check's origin from the executable (`tracer-ebpf/src/runtime.rs`),
//! never from the name alone. A real runc init stays the runtime's: monitor.rs and
//! containers.rs rely on that.
mod support;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use captrace::profile::Origin;
use serde_json::Value;
use support::docker;

const NAME_MONITOR: &str = "ct-impostor-mon";
const NAME_RECORD: &str = "ct-impostor-rec";

/// The impostor, static (busybox image: no libc), in a directory of its own.
fn impostor(dir: &Path) -> String {
    let bin = support::build_c(
        "impostor/runc_name.c",
        &["-static", "-O2"],
        dir,
        "runc_name",
    );
    bin.display().to_string()
}

/// `docker run` of the impostor with CHOWN and SYS_ADMIN (docker's seccomp profile lets
/// unshare through only with SYS_ADMIN); `keep`: the container then waits to be removed, so
/// that monitor can name it.
fn impostor_run(name: &str, dir: &Path, keep: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--name",
        name,
        "--network",
        "none",
        "--cap-drop",
        "ALL",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--cap-add", "CHOWN", "--cap-add", "SYS_ADMIN"].map(String::from));
    args.extend(["-v".into(), format!("{}:/x:ro", dir.display())]);
    let script = if keep {
        "/x/runc_name /tmp/f && exec sleep 300"
    } else {
        "/x/runc_name /tmp/f"
    };
    if !keep {
        args.push("--rm".into());
    } else {
        args.push("-d".into());
    }
    args.extend([support::Docker::IMAGE, "sh", "-c", script].map(String::from));
    args
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn monitor_counts_a_workload_named_like_runc_as_the_container() {
    support::require_root();
    let _serial = support::serial();
    let _docker = support::Docker::start();
    let dir = support::tempdir();
    impostor(dir.path());
    let _ = docker(&["rm", "-f", NAME_MONITOR]);

    let mut mon = Command::new(support::captrace_bin())
        .args(["monitor", "--json", "--duration", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting captrace monitor");
    let out = mon.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<Value>();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    support::bpf::links_once_attached(mon.id());

    let args = impostor_run(NAME_MONITOR, dir.path(), true);
    let run = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", support::text(&run.stderr));
    // Its lines, until the unshare's (the impostor's last call) has come.
    // The impostor is a child of the container's sh (pid 1); the real runc init, named the
    // same, becomes pid 1 (or is outside the container's PID namespace, before it exists).
    let ours = |l: &Value| {
        l["container"]["name"] == NAME_MONITOR
            && l["comm"] == "runc:[2:INIT]"
            && l["pid_in_container"].as_u64().is_some_and(|p| p > 1)
    };
    let mut seen = Vec::new();
    // The real runc init's checks in the same container: still the runtime's.
    let mut runtime_lines = 0;
    let deadline = Instant::now() + Duration::from_secs(60 * u64::from(support::time_scale()));
    while Instant::now() < deadline
        && !seen
            .iter()
            .any(|l: &Value| l["type"] == "namespace" && l["syscall"] == "unshare")
    {
        let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if l["container"]["name"] == NAME_MONITOR && l["origin"] == "runtime" {
            runtime_lines += 1;
        }
        if ours(&l) {
            seen.push(l);
        }
    }
    let _ = docker(&["rm", "-f", NAME_MONITOR]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = mon.wait().unwrap();
    let stderr = {
        let mut s = String::new();
        use std::io::Read as _;
        let _ = mon.stderr.take().unwrap().read_to_string(&mut s);
        s
    };
    assert!(status.success(), "monitor exited {status}: {stderr}");

    let chown = seen
        .iter()
        .find(|l| l["type"] == "check" && l["cap"] == "CHOWN")
        .unwrap_or_else(|| panic!("no CHOWN line of the impostor: {seen:#?}\n{stderr}"));
    // The workload's own: no `origin` (the runtime's lines say "origin": "runtime").
    assert!(chown.get("origin").is_none(), "{chown}");
    assert_eq!(chown["container"]["runtime"], "docker", "{chown}");
    let unshare = seen
        .iter()
        .find(|l| l["type"] == "namespace" && l["syscall"] == "unshare")
        .unwrap_or_else(|| panic!("no unshare line of the impostor: {seen:#?}\n{stderr}"));
    assert_eq!(
        unshare["namespaces"],
        serde_json::json!(["uts"]),
        "{unshare}"
    );
    assert!(unshare.get("runtime").is_none(), "{unshare}");
    assert!(
        runtime_lines > 0,
        "no check of the real runc init was the runtime's\n{stderr}"
    );
    assert!(
        unshare["flag"]
            .as_str()
            .is_some_and(|f| f.contains("namespace activity inside container docker")),
        "the impostor's unshare is not flagged: {unshare}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn record_puts_what_a_workload_named_like_runc_uses_in_its_containers_set() {
    support::require_root();
    let _serial = support::serial();
    let _docker = support::Docker::start();
    let dir = support::tempdir();
    impostor(dir.path());
    let _ = docker(&["rm", "-f", NAME_RECORD]);
    let mut args = vec!["docker".to_string()];
    args.extend(impostor_run(NAME_RECORD, dir.path(), false));
    let (out, p) = support::record(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(p.containers.len(), 1, "{err}");
    let c = &p.containers[0];
    assert_eq!(c.runtime, "docker", "{err}");
    let set: Vec<String> = c.cap_add.iter().map(|c| c.name()).collect();
    // The real runc init set the container up: its checks are kept apart.
    assert!(
        c.checks.iter().any(|k| k.origin == Origin::Runtime),
        "no check of the real runc init was the runtime's: {:#?}",
        c.checks
    );
    for cap in ["CHOWN", "SYS_ADMIN"] {
        assert!(
            set.contains(&cap.to_string()),
            "{cap} missing from {set:?}\n{err}"
        );
    }
}
