//! End to end with the real Docker engine: record a busybox workload on the host, render the
//! recommendation with `captrace recommend --format docker`, and run the same script in the
//! busybox image with exactly the recommended capabilities (it must succeed) and with any one of
//! them taken away (it must fail).
//!
//! The scripts run under `/bin/busybox sh` on the host and under the image's `sh`, which is the
//! same busybox, so host and container run the same code. Port binding is left out on purpose:
//! docker sets `net.ipv4.ip_unprivileged_port_start=0` in the containers it gives a network
//! namespace, so port 80 needs no capability there while it needs NET_BIND_SERVICE on the host.
mod support;

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use serde_json::Value;
use support::workload::describe;

/// Changes the owner of a new root-owned file.
const CHOWN: &str = r#"d=$(mktemp -d) || exit 1
touch "$d/file" && chown 1000 "$d/file"
rc=$?
rm -rf "$d"
exit $rc"#;

/// Changes the owner of a new root-owned file, then makes a character device.
const CHOWN_MKNOD: &str = r#"d=$(mktemp -d) || exit 1
touch "$d/file" && chown 1000 "$d/file" && mknod "$d/null" c 1 3
rc=$?
rm -rf "$d"
exit $rc"#;

/// Records `/bin/busybox sh -c SCRIPT` on the host and returns the `--cap-add` names of
/// `captrace recommend --format docker`, checked against the profile's `cap_add`.
fn recommend(script: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let profile = dir.path().join("profile.json");
    let out = Command::new(support::captrace_bin())
        .arg("record")
        .arg("-o")
        .arg(&profile)
        .args(["--", "/bin/busybox", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("running captrace record");
    assert!(out.status.success(), "captrace record:\n{}", describe(&out));

    let out = Command::new(support::captrace_bin())
        .arg("recommend")
        .arg(&profile)
        .args(["--format", "docker"])
        .output()
        .expect("running captrace recommend");
    assert!(
        out.status.success(),
        "captrace recommend:\n{}",
        describe(&out)
    );
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = flags.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"--cap-drop=ALL"), "{flags}");
    let cap_add: Vec<String> = words[1..]
        .iter()
        .map(|word| match word.strip_prefix("--cap-add=") {
            Some(cap) => cap.to_owned(),
            None => panic!("unexpected {word:?} in the docker recommendation {flags:?}"),
        })
        .collect();

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap())
        .expect("the profile is JSON");
    assert_eq!(
        json["cap_add"],
        serde_json::json!(cap_add),
        "`recommend --format docker` and the profile's cap_add differ"
    );
    cap_add
}

/// The end-to-end check of `script`, which must need exactly `expected`.
fn check(name: &str, script: &str, expected: &[&str]) {
    let started = Instant::now();
    let docker = support::Docker::start();
    let recommended = recommend(script);
    let caps: Vec<&str> = recommended.iter().map(String::as_str).collect();

    let out = docker.run(&caps, None, script);
    assert!(
        out.status.success(),
        "{name}: fails in docker with the recommended {caps:?}:\n{}",
        describe(&out)
    );
    for cap in &caps {
        let fewer: Vec<&str> = caps.iter().copied().filter(|c| c != cap).collect();
        let out = docker.run(&fewer, None, script);
        assert!(
            !out.status.success(),
            "{name}: still succeeds in docker without {cap}, so {caps:?} is not minimal:\n{}",
            describe(&out)
        );
    }

    let mut sorted = caps.clone();
    sorted.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "{name}: recommended capabilities");
    eprintln!(
        "{name}: --cap-add {caps:?} works in docker and is minimal ({:.1?})",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chown_in_docker() {
    support::require_root();
    let _serial = support::serial();
    check("chown", CHOWN, &["CHOWN"]);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chown_and_mknod_in_docker() {
    support::require_root();
    let _serial = support::serial();
    check("chown+mknod", CHOWN_MKNOD, &["CHOWN", "MKNOD"]);
}
