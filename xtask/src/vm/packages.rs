//! The host's Debian packages the harness needs, installed when missing.
use std::process::Command;

use crate::cmd::{self, stdout_of};

/// Debian packages the harness needs on the host.
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "cpio",
    "busybox-static",
    "xz-utils",
    "zstd",
];

/// Installs the missing packages. Debian's qemu-system-x86 7.2 conflicts with a newer qemu-utils
/// (the image has 10.0 from backports): that one is removed in the same transaction.
pub fn install() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| installed_version(p).is_none())
        .collect();
    if missing.is_empty() {
        println!("all {} packages present", PACKAGES.len());
        return Ok(());
    }
    println!("missing: {}", missing.join(" "));
    cmd::run(Command::new("apt-get").arg("update"))?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_SUSPEND", "1")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing);
    if missing.contains(&"qemu-system-x86")
        && let Some(utils) = installed_version("qemu-utils")
        && candidate("qemu-system-x86").is_some_and(|c| c != utils)
    {
        install.arg("qemu-utils-");
    }
    cmd::run(&mut install)
}

fn installed_version(package: &str) -> Option<String> {
    let out =
        stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", package]))?;
    let (status, version) = out.split_once('|')?;
    (status.trim() == "install ok installed").then(|| version.to_owned())
}

fn candidate(package: &str) -> Option<String> {
    let policy = stdout_of(Command::new("apt-cache").args(["policy", package]))?;
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| v != "(none)")
}
