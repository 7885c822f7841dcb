//! `monitor` does not take a cgroup's name for a container (#14 item 14): a process in a
//! hand-made `docker/<64 hex>` cgroup, with no container of that id in docker's records, is
//! reported as an unverified attribution, never as a verified docker container.
mod support;

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;

/// Every value of `key` anywhere in `v`.
fn values<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                values(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| values(x, key, out)),
        _ => {}
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_hand_made_docker_cgroup_is_reported_as_unverified() {
    if !support::require_root() {
        return;
    }
    let root = captrace::container::resolve::cgroup2_root().expect("cgroup v2 mounted");
    let fake = format!("{:064x}", 0xc0ffee_u64 + u64::from(std::process::id()));
    let docker = root.join("docker");
    let made_docker = !docker.exists();
    let cg = docker.join(&fake);
    fs::create_dir_all(&cg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "").unwrap();

    let mon = Command::new(support::captrace_bin())
        .args(["monitor", "--json", "--duration", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(3));
    // The impostor: moves itself into the cgroup, then makes CHOWN checks for a while.
    let script = format!(
        "echo $$ > {}/cgroup.procs && for i in $(seq 40); do chown 1000 {}; sleep 0.1; done",
        cg.display(),
        file.display()
    );
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    let out = mon.wait_with_output().unwrap();
    let _ = fs::remove_dir(&cg);
    if made_docker {
        let _ = fs::remove_dir(&docker);
    }
    assert!(status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.contains(&fake))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !lines.is_empty(),
        "monitor saw no check from the hand-made cgroup:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in &lines {
        let mut verified = vec![];
        values(line, "verified", &mut verified);
        assert_eq!(verified, [&Value::Bool(false)], "{line}");
        let mut runtime = vec![];
        values(line, "runtime", &mut runtime);
        assert!(runtime.contains(&&Value::String("docker".into())), "{line}");
    }
}
