//! Checks the shared test helpers against the real docker daemon.
mod support;

use std::os::unix::fs::PermissionsExt as _;

const CHOWN: &str = "touch /tmp/x && chown 1000 /tmp/x";

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn docker_grants_only_the_added_capabilities() {
    support::require_root();
    let _serial = support::serial();
    let docker = support::Docker::start();

    let granted = docker.run(&["CHOWN"], None, CHOWN);
    assert!(granted.status.success(), "with CAP_CHOWN: {granted:?}");

    let denied = docker.run(&[], None, CHOWN);
    assert!(!denied.status.success(), "without capabilities: {denied:?}");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    let id = docker.run(&[], Some("1000"), "id -un");
    assert!(id.status.success(), "{id:?}");
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "user");

    // A second handle in the same process shares the daemon.
    let again = support::Docker::start();
    assert!(again.run(&[], None, "true").status.success());
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn busybox_rootfs_has_users_and_a_sticky_tmp() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    support::busybox_rootfs(dir.path());
    let passwd = std::fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
    assert!(passwd.contains("user:x:1000:1000:"), "{passwd}");
    let tmp = std::fs::metadata(dir.path().join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert!(dir.path().join("bin/sh").exists());
}
