//! End to end: `captrace monitor` and `record --container` against real dockerd and podman.
mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::docker;

/// A running `captrace monitor --json ...`, its stdout lines collected in the background.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Monitor {
    fn start(args: &[&str], podman_conf: Option<&std::path::Path>) -> Monitor {
        let mut cmd = Command::new(support::captrace_bin());
        cmd.arg("monitor")
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(conf) = podman_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        let mut child = cmd.spawn().expect("starting captrace monitor");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        // Watching once the kernel lists its programs attached (a fixed wait was outrun by a
        // loaded machine in reliability.rs).
        support::bpf::links_once_attached(child.id());
        Monitor { child, lines }
    }

    /// Waits for it to exit (--duration) and returns every line.
    fn finish(mut self) -> Vec<Value> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "monitor exited {status}");
        self.lines.iter().collect()
    }
}

fn container_id(name: &str) -> String {
    let out = docker(&["inspect", "--format", "{{.Id}}", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn checks_of<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| {
            l["type"] == "check" && l["container"]["name"] == name && l.get("origin").is_none()
        })
        .collect()
}

fn used_caps(lines: &[Value], name: &str) -> Vec<String> {
    let mut caps: Vec<String> = checks_of(lines, name)
        .iter()
        .filter(|l| l["verdict"] == "granted" && l["audit"] == "audited")
        .map(|l| l["cap"].as_str().unwrap().to_string())
        .collect();
    caps.sort();
    caps.dedup();
    caps
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_chown_in_a_docker_container_is_attributed_to_it_and_two_containers_stay_apart() {
    let _docker = support::docker_session();
    let mon = Monitor::start(&["--duration", "6", "--summary"], None);
    let a = thread::spawn(|| {
        docker(&[
            "run",
            "--rm",
            "--name",
            "ct-mon-a",
            support::Docker::IMAGE,
            "sh",
            "-c",
            "sleep 1.5; touch /tmp/x; chown 1000 /tmp/x; sleep 2",
        ])
    });
    let b = thread::spawn(|| {
        docker(&[
            "run",
            "--rm",
            "--name",
            "ct-mon-b",
            support::Docker::IMAGE,
            "sh",
            "-c",
            "sleep 1.5; mknod /tmp/n c 1 3; sleep 2",
        ])
    });
    // Both containers sleep 1.5 s before their checks: their ids are read while they run.
    support::wait_for("both containers to exist", Duration::from_secs(30), || {
        !container_id("ct-mon-a").is_empty() && !container_id("ct-mon-b").is_empty()
    });
    let (id_a, id_b) = (container_id("ct-mon-a"), container_id("ct-mon-b"));
    assert!(a.join().unwrap().status.success());
    assert!(b.join().unwrap().status.success());
    let lines = mon.finish();

    let chown = checks_of(&lines, "ct-mon-a")
        .into_iter()
        .find(|l| l["cap"] == "CHOWN")
        .expect("a CHOWN line for ct-mon-a");
    assert_eq!(chown["container"]["runtime"], "docker");
    assert_eq!(chown["container"]["id"], id_a.as_str());
    assert_eq!(chown["comm"], "chown");
    let inside = chown["pid_in_container"]
        .as_u64()
        .expect("in-container PID");
    let host = chown["pid"].as_u64().unwrap();
    assert!(
        inside < host && inside > 1,
        "PID {inside} inside, {host} on the host"
    );

    for (name, cap) in [("ct-mon-a", "CHOWN"), ("ct-mon-b", "MKNOD")] {
        let used = used_caps(&lines, name);
        let why: Vec<String> = checks_of(&lines, name)
            .iter()
            .filter(|l| l["verdict"] == "granted" && l["audit"] == "audited")
            .map(|l| l.to_string())
            .collect();
        assert_eq!(used, [cap], "{name} used: {why:#?}");
    }
    assert!(
        checks_of(&lines, "ct-mon-b")
            .iter()
            .all(|l| l["container"]["id"] == id_b.as_str())
    );

    // Each used one of Docker's 14 defaults: the summary says which 13 it can drop.
    let summary = lines
        .iter()
        .find(|l| l["type"] == "summary" && l["container"]["name"] == "ct-mon-a")
        .expect("a summary");
    assert_eq!(summary["used"], serde_json::json!(["CHOWN"]));
    assert_eq!(summary["grants"].as_array().unwrap().len(), 14, "{summary}");
    let can_drop = summary["can_drop"].as_array().unwrap();
    assert_eq!(can_drop.len(), 13);
    assert!(!can_drop.contains(&"CHOWN".into()));
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn on_a_terminal_it_shows_a_live_table_and_a_text_summary() {
    let _docker = support::docker_session();
    // `script` gives captrace a real terminal.
    let cmd = format!(
        "{} monitor --duration 5 --summary",
        support::captrace_bin().display()
    );
    let mon = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Watching once the kernel lists the programs of the captrace that `script` started.
    let mut captrace = None;
    support::wait_for("script to start captrace", Duration::from_secs(10), || {
        captrace = support::descendant_named(mon.id(), "captrace");
        captrace.is_some()
    });
    support::bpf::links_once_attached(captrace.unwrap());
    let run = docker(&[
        "run",
        "--rm",
        "--name",
        "ct-mon-text",
        support::Docker::IMAGE,
        "sh",
        "-c",
        "touch /tmp/x; chown 1000 /tmp/x; sleep 2",
    ]);
    assert!(run.status.success());
    let out = mon.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        text.contains("CONTAINER") && text.contains("CHECKS/S"),
        "a live table: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("docker ct-mon-text") && l.contains("CHOWN")),
        "a table row: {text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("ct-mon-text") && l.contains("grants"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.ends_with(": grants 14, used 1: --cap-drop=ALL --cap-add=CHOWN"),
        "{line}"
    );
    assert!(
        text.contains("  can drop 13: DAC_OVERRIDE, FOWNER, FSETID, KILL"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn record_container_writes_a_profile_that_docker_run_accepts() {
    let session = support::docker_session();
    let script = "sleep 1.5; touch /tmp/x && chown 1000 /tmp/x && mknod /tmp/n c 1 3";
    let started = docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "ct-rec",
        support::Docker::IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.json");
    let t = Instant::now();
    let rec = Command::new(support::captrace_bin())
        .args([
            "record",
            "--container",
            "ct-rec",
            "-o",
            profile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        rec.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stopped when the container exited"
    );
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    let caps: Vec<&str> = p["cap_add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(caps, ["CHOWN", "MKNOD"]);
    // It attached to a running container: the report says start-up was not seen.
    let stderr = String::from_utf8_lossy(&rec.stderr);
    assert!(
        stderr.contains("start-up was not observed") && stderr.contains("docker restart ct-rec"),
        "{stderr}"
    );
    // The flags make the same command succeed under docker run, and one less fails.
    let script = "touch /tmp/x && chown 1000 /tmp/x && mknod /tmp/n c 1 3";
    assert!(session.docker.run(&caps, None, script).status.success());
    for i in 0..caps.len() {
        let mut less = caps.clone();
        less.remove(i);
        assert!(
            !session.docker.run(&less, None, script).status.success(),
            "succeeded without {}",
            caps[i]
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_container_calling_unshare_is_flagged() {
    let _docker = support::docker_session();
    let mon = Monitor::start(&["--duration", "4"], None);
    // Docker's seccomp profile lets unshare through only with SYS_ADMIN.
    let run = docker(&[
        "run",
        "--rm",
        "--name",
        "ct-unshare",
        "--cap-add",
        "SYS_ADMIN",
        support::Docker::IMAGE,
        "sh",
        "-c",
        "unshare -u true",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = mon.finish();
    let flagged = lines
        .iter()
        .find(|l| {
            l["type"] == "namespace"
                && l["container"]["name"] == "ct-unshare"
                && l.get("flag").is_some()
        })
        .expect("a flagged namespace line");
    assert_eq!(flagged["syscall"], "unshare");
    assert_eq!(flagged["namespaces"], serde_json::json!(["uts"]));
    assert!(
        flagged["flag"]
            .as_str()
            .unwrap()
            .contains("namespace activity inside container docker ct-unshare")
    );
    // The runtime's own unshare while creating the container is not flagged.
    assert!(
        lines
            .iter()
            .filter(|l| l["type"] == "namespace" && l.get("runtime").is_some())
            .all(|l| l.get("flag").is_none())
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_podman_container_is_attributed_to_podman() {
    support::require_root();
    let _serial = support::serial();
    let podman = support::Podman::start();
    let mon = Monitor::start(
        &["--duration", "5", "--cap", "CHOWN", "--unique"],
        Some(podman.conf()),
    );
    let run = podman
        .command()
        .args([
            "run",
            "--rm",
            "--name",
            "ct-podman",
            support::Podman::IMAGE,
            "sh",
            "-c",
            "touch /tmp/x; chown 1000 /tmp/x; sleep 1",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = mon.finish();
    let chown = lines
        .iter()
        .find(|l| l["type"] == "check" && l["container"]["name"] == "ct-podman")
        .expect("a line for ct-podman");
    assert_eq!(chown["container"]["runtime"], "podman");
    assert!(
        chown["container"]["cgroup"]
            .as_str()
            .unwrap()
            .contains("libpod-")
    );
    assert_eq!(chown["cap"], "CHOWN");
    assert!(
        lines
            .iter()
            .filter(|l| l["type"] == "check")
            .all(|l| l["cap"] == "CHOWN"),
        "--cap filters"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn metrics_are_served_to_a_real_http_client() {
    let _docker = support::docker_session();
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mon = Monitor::start(&["--duration", "5", "--metrics", &addr], None);
    let run = docker(&[
        "run",
        "--rm",
        "--name",
        "ct-metrics",
        support::Docker::IMAGE,
        "sh",
        "-c",
        "touch /tmp/x; chown 1000 /tmp/x; sleep 1.5",
    ]);
    assert!(run.status.success());
    // The metrics refresh once a second: poll until the container's counter shows up.
    let scrape = || {
        let curl = Command::new("curl")
            .args(["-sf", &format!("http://{addr}/metrics")])
            .output()
            .expect("running curl");
        assert!(curl.status.success(), "curl failed");
        String::from_utf8_lossy(&curl.stdout).into_owned()
    };
    let is_chown = |l: &&str| {
        l.contains("container_name=\"ct-metrics\"")
            && l.contains("capability=\"CHOWN\"")
            && l.contains("origin=\"workload\"")
    };
    let mut body = String::new();
    support::wait_until(Duration::from_secs(5), || {
        body = scrape();
        body.lines().any(|l| is_chown(&l))
    });
    let line = body
        .lines()
        .find(is_chown)
        .unwrap_or_else(|| panic!("no CHOWN counter for ct-metrics in:\n{body}"));
    let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 1, "{line}");
    // OpenMetrics text (prometheus-client): the TYPE line names the counter without `_total`.
    assert!(
        body.contains("# TYPE captrace_events_lost counter"),
        "{body}"
    );
    let missing = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{addr}/nope"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    let _ = mon.finish();
}
