//! Helpers shared by the integration tests: each test file does `mod support;`.
#![allow(dead_code)] // every test binary uses a different subset

mod docker;
mod podman;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

#[allow(unused_imports)] // test binaries without containers
pub use docker::Docker;
#[allow(unused_imports)] // test binaries without podman
pub use podman::Podman;

/// True if the test may go on. Without root it panics in CI (`CI` set), and otherwise says why
/// on stderr and returns false, so the test can return early.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: loads BPF programs and runs containers, so it must run as root in CI");
    }
    eprintln!("{test}: skipped, it needs root (BPF programs, containers)");
    false
}

/// The `captrace` binary cargo built for these tests.
pub fn captrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_captrace"))
}

/// Builds a busybox root file system in `dir` (needs root and Debian's `busybox-static`):
/// /bin with busybox and its applet links, /etc/passwd and /etc/group with root and `user`
/// (uid/gid 1000), /tmp with mode 1777, and empty /proc, /dev, /sys, /root, /home/user.
pub fn busybox_rootfs(dir: &Path) {
    for sub in [
        "bin",
        "etc",
        "tmp",
        "proc",
        "dev",
        "sys",
        "root",
        "home/user",
    ] {
        fs::create_dir_all(dir.join(sub)).expect("creating the rootfs directories");
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("copying /bin/busybox: install busybox-static (`cargo xtask setup`)");
    let status = Command::new("chroot")
        .arg(dir)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .status()
        .expect("running chroot");
    assert!(status.success(), "busybox --install in {dir:?}: {status}");
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("writing /etc/passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("writing /etc/group");
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777 /tmp");
}

/// How much longer than on the host a test may wait before it calls something hung: 1, or 20
/// when `CAPTRACE_TEST_SLOW` is set (not empty, not `0`), as `cargo xtask vm-test --suite`
/// does: under qemu's TCG, `captrace record -- true` took 4-6 s against 0.3 s on the host.
/// Only limits that detect a hang scale; a bound that is the assertion itself must not.
pub fn time_scale() -> u32 {
    let slow = std::env::var("CAPTRACE_TEST_SLOW").is_ok_and(|v| !v.is_empty() && v != "0");
    if slow { 20 } else { 1 }
}
