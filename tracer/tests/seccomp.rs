//! `run`'s default seccomp filter (#14 item 1): the syscalls Docker's default profile blocks fail
//! with EPERM, and the same attack works under `--seccomp unconfined` (so the attack is real
//! and the filter is what stops it).
mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Root checked, a temporary directory, and `fixtures/seccomp/attacks.c` built in it (static,
/// so it also runs in a busybox root).
fn attacks() -> (tempfile::TempDir, PathBuf) {
    support::require_root();
    let dir = support::tempdir();
    let bin = support::build_c(
        "seccomp/attacks.c",
        &["-static", "-O2"],
        dir.path(),
        "attacks",
    );
    (dir, bin)
}

fn run(args: &[&str]) -> Output {
    Command::new(support::captrace_bin())
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

use support::workload::describe;

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn shocker_open_by_handle_at_of_the_host_root_fails_under_the_default_filter() {
    let (_dir, bin) = attacks();
    let (_root_dir, root) = support::busybox_root();
    fs::copy(&bin, root.join("attacks")).unwrap();
    // The handle of the host's `/` (ext4: inode 2, generation 0), as shocker guesses it.
    let handle = Command::new(&bin).args(["handle", "/"]).output().unwrap();
    let handle = String::from_utf8_lossy(&handle.stdout).into_owned();
    let (kind, hex) = handle.trim().split_once(' ').expect("a handle");
    let rootfs = root.to_str().unwrap();
    let attack = |seccomp: &[&str]| {
        let mut args = vec!["--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH"];
        args.extend_from_slice(seccomp);
        args.extend([
            "--rootfs",
            rootfs,
            "--ns",
            "pid,mnt,uts,ipc,net",
            "--",
            "/attacks",
            "shocker",
            kind,
            hex,
        ]);
        run(&args)
    };
    // The attack is real: unconfined, the workload lists the host's root from its own root.
    let out = attack(&["--seccomp", "unconfined"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.starts_with("ok") && listing.split_whitespace().any(|e| e == "usr"),
        "the unconfined shocker should reach the host's / (usr is not in the busybox root):\n{}",
        describe(&out)
    );
    // Docker's profile allows open_by_handle_at to a holder of DAC_READ_SEARCH; captrace's
    // default does not (`record` recommends DAC_READ_SEARCH for reading files, and with it
    // shocker opens any file on the host's file systems from any root).
    let out = attack(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("errno {}\n", libc::EPERM),
        "{}",
        describe(&out)
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn add_key_fails_with_eperm_by_default_and_works_unconfined() {
    let (_dir, bin) = attacks();
    let bin = bin.to_str().unwrap();
    let out = run(&["--cap-drop", "ALL", "--", bin, "add_key"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("errno {}\n", libc::EPERM),
        "{}",
        describe(&out)
    );
    // Docker's format: podman's copy of the allow list (defaultErrnoRet ENOSYS) lacks it too.
    let docker_format = "/usr/share/containers/seccomp.json";
    if Path::new(docker_format).exists() {
        let out = run(&[
            "--seccomp",
            docker_format,
            "--cap-drop",
            "ALL",
            "--",
            bin,
            "add_key",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("errno {}\n", libc::ENOSYS),
            "{}",
            describe(&out)
        );
        // ... and allows what it allows: the program ran at all (execve, mmap, ...).
        let out = run(&[
            "--seccomp",
            docker_format,
            "--cap-drop",
            "ALL",
            "--",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }
    let out = run(&[
        "--seccomp",
        "unconfined",
        "--cap-drop",
        "ALL",
        "--",
        bin,
        "add_key",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok "),
        "{}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_bad_seccomp_profile_starts_nothing() {
    support::require_root();
    let dir = support::tempdir();
    let p = dir.path().join("bad.json");
    fs::write(&p, r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
    let marker = dir.path().join("ran");
    let out = run(&[
        "--seccomp",
        p.to_str().unwrap(),
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seccomp"));
    assert!(!marker.exists());
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn namespaces_need_sys_admin_under_the_default_filter() {
    support::require_root();
    // Without the filter a capability-less root makes a user namespace (tests/hostile.rs shows
    // it gives nothing on the host); with it, as in `docker run`, it cannot.
    for (seccomp, ok) in [("default", false), ("unconfined", true)] {
        let out = run(&[
            "--seccomp",
            seccomp,
            "--cap-drop",
            "ALL",
            "--",
            "unshare",
            "--user",
            "true",
        ]);
        assert_eq!(out.status.success(), ok, "{seccomp}: {}", describe(&out));
    }
    let out = run(&["--cap-drop", "ALL", "--", "unshare", "--user", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        describe(&out)
    );
}
