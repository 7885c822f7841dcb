//! `cargo xtask setup`: install what a fresh machine lacks, checking before installing.
use std::{fs, process::Command};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{self, cargo, header, stdout_of, succeeds},
    vm,
};

const BPF_LINKER_VERSION: &str = "0.10.4";

/// Debian packages the tests use (container runtimes, namespace and BPF tools, test programs).
const DEBIAN_PACKAGES: &[&str] = &[
    "busybox-static",
    "runc",
    "podman",
    "docker.io",
    "docker-compose",
    "gcc",
    "util-linux",
    "iproute2",
    "bpftool",
    "bpftrace",
    "procps",
    "psmisc",
    "kmod",
    "python3",
    "netcat-openbsd",
    "iputils-ping",
    "attr",
    "libcap2-bin",
    // The HTML report's browser test, the Prometheus end-to-end test and `promtool check
    // rules`, and the virtual environment `kubernetes-validate` is installed into.
    "chromium",
    "prometheus",
    "python3-venv",
    // Real nginx for the recommendation tests (tracer/tests/nginx.rs).
    "nginx-light",
    "curl",
];

/// Debian's hook that decides whether a package may start its service on install. While the
/// packages install, one that says no is put in place if the machine has none: nginx started
/// by its package would hold :80, and the tests start every server themselves.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Pseudo file systems the tracer and the tests need: (mount point, type, source).
const MOUNTS: &[(&str, &str, &str)] = &[
    ("/sys/kernel/tracing", "tracefs", "nodev"),
    ("/sys/kernel/security", "securityfs", "none"),
];

#[derive(clap::Args)]
pub struct SetupArgs {
    /// Do not install Debian packages (no apt-get).
    #[arg(long)]
    pub no_apt: bool,
}

pub fn run(args: &SetupArgs) -> anyhow::Result<()> {
    header("setup: Rust toolchains");
    rust_toolchains()?;
    header("setup: bpf-linker");
    bpf_linker()?;
    header("setup: cargo-fuzz");
    cargo_fuzz()?;
    header("setup: Debian packages");
    if args.no_apt {
        println!("skipped (--no-apt)");
    } else {
        debian_packages()?;
    }
    header("setup: Debian packages for the VM tests (qemu)");
    if args.no_apt {
        println!("skipped (--no-apt)");
    } else {
        vm::packages::install()?;
    }
    header("setup: Python tools (kubernetes-validate for deploy/)");
    crate::pytools::install()?;
    header("setup: pseudo file systems");
    mounts()
}

fn rust_toolchains() -> anyhow::Result<()> {
    if !succeeds(Command::new("rustup").arg("--version")) {
        bail!("rustup not found on PATH: install it from https://rustup.rs (or add ~/.cargo/bin)");
    }
    if succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        println!("nightly toolchain: present");
    } else {
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = stdout_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.trim() == "rust-src") {
        println!("nightly rust-src: present");
    } else {
        cmd::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    // `cargo xtask test` runs clippy and rustfmt with the workspace's own toolchain.
    let has = |tool: &str| succeeds(cargo().args([tool, "--version"]));
    if has("clippy") && has("fmt") {
        println!("clippy and rustfmt: present");
    } else {
        let mut add = Command::new("rustup");
        add.current_dir(cmd::workspace_root());
        cmd::run(add.args(["component", "add", "clippy", "rustfmt"]))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = stdout_of(Command::new("bpf-linker").arg("--version"));
    let reported = version.as_deref().and_then(|v| v.split_whitespace().nth(1));
    if reported == Some(BPF_LINKER_VERSION) {
        println!("bpf-linker {BPF_LINKER_VERSION}: present");
        return Ok(());
    }
    println!(
        "bpf-linker: {} (want {BPF_LINKER_VERSION})",
        reported.unwrap_or("not found")
    );
    let package = format!("bpf-linker@{BPF_LINKER_VERSION}");
    cmd::run(cargo().args(["install", &package, "--locked"]))
}

/// The fuzz targets (`fuzz/`) run a short while in `cargo xtask test`.
fn cargo_fuzz() -> anyhow::Result<()> {
    if succeeds(Command::new("cargo-fuzz").arg("--version")) {
        println!("cargo-fuzz: present");
        return Ok(());
    }
    cmd::run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("all {} packages present", DEBIAN_PACKAGES.len());
        return Ok(());
    }
    println!("missing: {}", missing.join(" "));
    cmd::run(Command::new("apt-get").arg("update"))?;
    let placed = !std::path::Path::new(POLICY_RC_D).exists();
    if placed {
        use std::os::unix::fs::PermissionsExt as _;
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# cargo xtask setup: no service starts on install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))?;
    }
    let installed = cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NEEDRESTART_SUSPEND", "1")
            .args(["install", "-y"])
            .args(&missing),
    );
    if placed {
        fs::remove_file(POLICY_RC_D).with_context(|| format!("removing {POLICY_RC_D}"))?;
    }
    installed
}

fn dpkg_installed(package: &str) -> bool {
    stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn mounts() -> anyhow::Result<()> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    for &(target, fstype, source) in MOUNTS {
        if is_mounted(&mountinfo, target, fstype) {
            println!("{fstype} at {target}: mounted");
        } else {
            cmd::run(Command::new("mount").args(["-t", fstype, source, target]))?;
        }
    }
    Ok(())
}

/// True if `mountinfo` (the text of /proc/PID/mountinfo) has a `fstype` mount at `target`.
fn is_mounted(mountinfo: &str, target: &str, fstype: &str) -> bool {
    mountinfo.lines().any(|line| {
        let Some((left, right)) = line.split_once(" - ") else {
            return false;
        };
        left.split(' ').nth(4) == Some(target) && right.split(' ').next() == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::is_mounted;

    #[test]
    fn parses_mountinfo() {
        let info = "36 25 0:12 / /sys/kernel/tracing rw,relatime shared:7 - tracefs nodev rw\n\
                    37 25 0:13 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(is_mounted(info, "/sys/kernel/tracing", "tracefs"));
        assert!(!is_mounted(info, "/sys/kernel/security", "securityfs"));
        assert!(!is_mounted(info, "/sys/fs/cgroup/unified", "tracefs"));
    }
}
