//! `cargo xtask test`: setup, release build, tests (serially), the kernel-tier tests on Debian
//! kernels in qemu (`vm-test --suite`), clippy, rustfmt, and a short run of every fuzz target.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{self, cargo, header},
    setup,
};

#[derive(clap::Args)]
#[command(
    after_help = "Example: cargo xtask test --no-setup -- -p tracer --test e2e -- --nocapture"
)]
pub struct TestArgs {
    /// Do not run `cargo xtask setup` first.
    #[arg(long)]
    no_setup: bool,
    /// Do not run the kernel-tier tests on Debian kernels in qemu (`cargo xtask vm-test
    /// --suite`, several minutes under TCG). CI runs them; a failed boot or a missing qemu fails.
    #[arg(long)]
    pub no_vm: bool,
    #[command(flatten)]
    pub setup: setup::SetupArgs,
    /// Passed to `cargo test`; after a second `--`, to the test binaries (which always get
    /// `--test-threads=1`). With `-p`/`--package`, `--workspace` is not added.
    #[arg(last = true, value_name = "CARGO TEST ARGS")]
    pub extra: Vec<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    if args.no_setup {
        println!("skipping setup (--no-setup)");
    } else {
        setup::run(&args.setup)?;
    }

    header("build");
    cmd::run(cargo().args(["build", "--release"]))?;

    // Steps after the build all run, so one CI log shows every failure.
    let mut steps = vec![("test", test_command(&args.extra))];
    if args.no_vm {
        println!("\nvm: SKIPPED (--no-vm): the fentry/kprobe hooks are not tested");
    } else {
        steps.push(("vm", vm_command(args.setup.no_apt)?));
    }
    steps.extend([
        ("clippy", clippy_command()),
        ("rustfmt", fmt_command()),
        ("fuzz", fuzz_command()),
    ]);
    let mut failed = Vec::new();
    let mut times: Vec<(&str, Duration)> = Vec::new();
    for (name, mut command) in steps {
        header(name);
        let started = Instant::now();
        if let Err(e) = cmd::run(&mut command) {
            eprintln!("{name} FAILED: {e:#}");
            failed.push(name);
        }
        times.push((name, started.elapsed()));
    }

    header("summary");
    for (name, time) in &times {
        let state = if failed.contains(name) {
            "FAILED"
        } else {
            "ok"
        };
        println!("{name:<8} {state:<7} {:>7.1} s", time.as_secs_f64());
    }
    if args.no_vm {
        println!("vm       SKIPPED (--no-vm)");
    }
    if failed.is_empty() {
        println!("all steps passed");
        Ok(())
    } else {
        bail!("failed steps: {}", failed.join(", "))
    }
}

/// `cargo test --release` over the workspace (minus the eBPF crate), one test at a time: the
/// integration tests load BPF programs and drive a shared docker daemon.
fn test_command(extra: &[String]) -> Command {
    let (cargo_args, harness_args) = match extra.iter().position(|a| a == "--") {
        Some(i) => (&extra[..i], &extra[i + 1..]),
        None => (extra, &[][..]),
    };
    let picks_packages = cargo_args
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2));
    let mut command = cargo();
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    command.args(["test", "--release", "--no-fail-fast"]);
    if !picks_packages {
        command.args(["--workspace", "--exclude", "tracer-ebpf"]);
    }
    command
        .args(cargo_args)
        .args(["--", "--test-threads=1"])
        .args(harness_args);
    command
}

/// `cargo xtask vm-test --suite` on every kernel, one after the other (two guests at once halve
/// TCG's speed), run by this same xtask binary.
fn vm_command(no_apt: bool) -> anyhow::Result<Command> {
    let xtask = std::env::current_exe().context("cannot find the running xtask binary")?;
    let mut command = Command::new(xtask);
    command.current_dir(cmd::workspace_root());
    command.args(["vm-test", "--suite"]);
    if no_apt {
        command.arg("--no-apt");
    }
    Ok(command)
}

fn clippy_command() -> Command {
    let mut command = cargo();
    command.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    command
}

/// Every fuzz target for `CAPTRACE_FUZZ_SECONDS` (default 10) seconds; longer runs:
/// `fuzz/run-all.sh 600`.
fn fuzz_command() -> Command {
    let secs = std::env::var("CAPTRACE_FUZZ_SECONDS").unwrap_or_else(|_| "10".to_string());
    let mut command = Command::new("bash");
    command
        .arg(cmd::workspace_root().join("fuzz/run-all.sh"))
        .arg(secs);
    command
}

fn fmt_command() -> Command {
    let mut command = cargo();
    command.args(["fmt", "--all", "--", "--check"]);
    command
}

#[cfg(test)]
mod tests {
    use super::test_command;
    use crate::cmd::display;

    fn args_of(extra: &[&str]) -> String {
        let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
        let shown = display(&test_command(&extra));
        shown.split_once(" test ").unwrap().1.to_owned()
    }

    #[test]
    fn defaults_to_whole_workspace_serially() {
        assert_eq!(
            args_of(&[]),
            "--release --no-fail-fast --workspace --exclude tracer-ebpf -- --test-threads=1"
        );
    }

    #[test]
    fn splits_cargo_and_harness_args() {
        assert_eq!(
            args_of(&[
                "-p",
                "tracer",
                "--test",
                "e2e",
                "--",
                "--nocapture",
                "kernel"
            ]),
            "--release --no-fail-fast -p tracer --test e2e -- --test-threads=1 --nocapture kernel"
        );
        assert_eq!(
            args_of(&["--lib"]),
            "--release --no-fail-fast --workspace --exclude tracer-ebpf --lib -- --test-threads=1"
        );
    }
}
