//! `cargo xtask test`: setup, release build, tests, the kernel-tier tests on Debian kernels in
//! qemu (`vm-test --suite`), clippy, rustfmt, and a short run of every fuzz target.
//!
//! The kernel-tier tests are `#[ignore = "needs root ..."]` so that a plain `cargo test` off root
//! reports them as ignored instead of passing without running. Here they run
//! (`--include-ignored`), and in CI (`CI` set) the step fails if cargo's summary counts a test as
//! ignored or filtered out that it should have run.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
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
    /// `--include-ignored`). With `-p`/`--package`, `--workspace` is not added.
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
    let mut failed = Vec::new();
    let mut times: Vec<(&str, Duration)> = Vec::new();
    header("test");
    let started = Instant::now();
    let lsm = Lsm::probe();
    let mut details = Vec::new();
    if let Err(e) = run_tests(&args.extra, lsm, !args.no_vm) {
        eprintln!("test FAILED: {e:#}");
        details.push(format!("test: {e:#}"));
        failed.push("test");
    }
    times.push(("test", started.elapsed()));

    let mut steps = Vec::new();
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
    let vm_summary = crate::vm::suite::summary_path();
    let _ = std::fs::remove_file(&vm_summary);
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
    // What failed, again at the end, where a log's tail shows it.
    for line in &details {
        println!("{line}");
    }
    if failed.contains(&"vm")
        && let Ok(summary) = std::fs::read_to_string(&vm_summary)
    {
        println!("vm suite:\n{summary}");
    }
    if failed.is_empty() {
        println!("all steps passed");
        Ok(())
    } else {
        bail!("failed steps: {}", failed.join(", "))
    }
}

/// Whether this kernel runs BPF LSM programs, per the `captrace doctor` just built (the same
/// question `tests/enforce.rs` asks). The enforce tests named `needs_lsm_` run only where it
/// does, `without_lsm_` only where it does not; the other group is filtered out (`--skip`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lsm {
    Available,
    Missing,
}

impl Lsm {
    fn probe() -> Self {
        let doctor = target_dir().join("release/captrace");
        let available = cmd::stdout_of(Command::new(&doctor).args(["doctor", "--json"]))
            .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
            .is_some_and(|v| v["enforcement"].get("Ok").is_some());
        if available {
            println!("BPF LSM works here: the `without_lsm_` enforce test is filtered out");
            Self::Available
        } else {
            println!(
                "no BPF LSM here (captrace doctor): the `needs_lsm_` enforce tests are filtered \
                 out; the vm stage runs them"
            );
            Self::Missing
        }
    }

    /// The test-name prefix this kernel cannot run.
    fn skip(self) -> &'static str {
        match self {
            Self::Available => "without_lsm_",
            Self::Missing => "needs_lsm_",
        }
    }
}

/// cargo's target directory (`CARGO_TARGET_DIR`, else `target` in the workspace).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => cmd::workspace_root().join(dir),
        None => cmd::workspace_root().join("target"),
    }
}

/// Runs the tests, streaming cargo's output, and checks its summaries: in CI every test must
/// have run, except the enforce tests this kernel cannot run (and of those, `needs_lsm_` only
/// when the vm stage runs them instead).
fn run_tests(extra: &[String], lsm: Lsm, vm_runs: bool) -> anyhow::Result<()> {
    let mut command = test_command(extra, lsm);
    let shown = cmd::display(&command);
    println!("+ {shown}");
    let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    command
        .stdout(writer.try_clone().context("cannot dup a pipe")?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    // The pipe's write ends live in `command` too: drop them so the reader sees the end.
    drop(command);
    let mut out = String::new();
    let mut stdout = std::io::stdout();
    for line in BufReader::new(reader).lines() {
        let line = line.context("reading cargo test's output")?;
        let _ = writeln!(stdout, "{line}");
        out += &line;
        out.push('\n');
    }
    let status = child.wait().context("waiting for cargo test")?;

    let summaries = summaries(&out);
    let filters_given = extra
        .iter()
        .position(|a| a == "--")
        .is_some_and(|i| i + 1 < extra.len());
    let unrun = unrun_tests(&summaries, lsm, vm_runs, filters_given);
    println!();
    for s in &summaries {
        println!(
            "{:<40} {:>4} passed {:>3} failed {:>3} ignored {:>3} filtered out",
            s.binary, s.passed, s.failed, s.ignored, s.filtered
        );
    }
    for problem in &unrun {
        println!("NOT RUN: {problem}");
    }
    if !status.success() {
        let failed = failed_tests(&out);
        bail!(
            "`{shown}` failed ({status}){}{}",
            if failed.is_empty() {
                ""
            } else {
                "; failed tests:\n    "
            },
            failed.join("\n    ")
        );
    }
    if !unrun.is_empty() && std::env::var_os("CI").is_some() {
        bail!(
            "{} test binaries did not run every test (CI runs everything)",
            unrun.len()
        );
    }
    Ok(())
}

/// The counts of one `test result:` line, with the binary cargo named before it.
#[derive(Debug, PartialEq)]
struct Summary {
    binary: String,
    passed: u64,
    failed: u64,
    ignored: u64,
    filtered: u64,
}

/// Every `test result:` line of cargo test's output (stdout and stderr merged, in order).
fn summaries(out: &str) -> Vec<Summary> {
    let mut binary = String::from("?");
    let mut found = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            binary = rest.split(" (").next().unwrap_or(rest).to_owned();
        } else if let Some(rest) = line.strip_prefix("Doc-tests ") {
            binary = format!("doc-tests {rest}");
        } else if line.starts_with("test result:") {
            found.push(Summary {
                binary: binary.clone(),
                passed: summary_count(line, "passed"),
                failed: summary_count(line, "failed"),
                ignored: summary_count(line, "ignored"),
                filtered: summary_count(line, "filtered out"),
            });
        }
    }
    found
}

/// `binary: test` for every `test ... FAILED` line of cargo test's output.
fn failed_tests(out: &str) -> Vec<String> {
    let mut binary = "?";
    let mut failed = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            binary = rest.split(" (").next().unwrap_or(rest);
        } else if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failed.push(format!("{binary}: {test}"));
        }
    }
    failed
}

/// The number before `what` in a `test result:` line (`3 ignored`), 0 if it is not there.
pub fn summary_count(line: &str, what: &str) -> u64 {
    let counts = line.split_once(". ").map_or(line, |(_, c)| c);
    counts
        .split(';')
        .filter_map(|c| c.trim().strip_suffix(what))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// What did not run that should have: ignored tests anywhere; tests filtered out anywhere but
/// the enforce binary (where the LSM group this kernel cannot run is), unless the caller gave
/// filters of its own; the `needs_lsm_` group when no vm stage runs it instead.
fn unrun_tests(summaries: &[Summary], lsm: Lsm, vm_runs: bool, filters_given: bool) -> Vec<String> {
    let mut unrun = Vec::new();
    for s in summaries {
        if s.ignored > 0 {
            unrun.push(format!("{}: {} ignored", s.binary, s.ignored));
        }
        if s.filtered == 0 || filters_given {
            continue;
        }
        let enforce = s.binary.starts_with("tests/enforce.rs");
        if !enforce {
            unrun.push(format!("{}: {} filtered out", s.binary, s.filtered));
        } else if lsm == Lsm::Missing && !vm_runs {
            unrun.push(format!(
                "{}: {} `needs_lsm_` tests filtered out (no BPF LSM here) and --no-vm",
                s.binary, s.filtered
            ));
        }
    }
    unrun
}

/// `cargo test --release` over the workspace (minus the eBPF crate), root-only tests included,
/// with cargo's default parallelism: the tests of one binary run on several threads (the
/// container tiers serialize themselves with `support::serial()`: one dockerd, a host-wide
/// monitor), the binaries one after another.
fn test_command(extra: &[String], lsm: Lsm) -> Command {
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
    command.args(cargo_args).arg("--");
    if !harness_args.iter().any(|a| a == "--include-ignored") {
        command.arg("--include-ignored");
    }
    command.args(["--skip", lsm.skip()]).args(harness_args);
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
    use super::*;
    use crate::cmd::display;

    fn args_of(extra: &[&str]) -> String {
        let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
        let shown = display(&test_command(&extra, Lsm::Missing));
        shown.split_once(" test ").unwrap().1.to_owned()
    }

    #[test]
    fn defaults_to_the_whole_workspace_root_tests_included() {
        assert_eq!(
            args_of(&[]),
            "--release --no-fail-fast --workspace --exclude tracer-ebpf -- \
             --include-ignored --skip needs_lsm_"
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
            "--release --no-fail-fast -p tracer --test e2e -- \
             --include-ignored --skip needs_lsm_ --nocapture kernel"
        );
        assert_eq!(
            args_of(&["--lib"]),
            "--release --no-fail-fast --workspace --exclude tracer-ebpf --lib -- \
             --include-ignored --skip needs_lsm_"
        );
    }

    const OUTPUT: &str = "\
     Running unittests src/lib.rs (target/release/deps/captrace-1)
test result: ok. 500 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s
     Running tests/enforce.rs (target/release/deps/enforce-2)
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 6 filtered out; finished in 3s
     Running tests/record.rs (target/release/deps/record-3)
test result: FAILED. 12 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9s
   Doc-tests captrace
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.0s
";

    #[test]
    fn names_each_failed_test_with_its_binary() {
        let out = "     Running tests/a.rs (target/release/deps/a-1)\n\
                   test one ... ok\n\
                   test two ... FAILED\n\
                   \x20    Running tests/b.rs (target/release/deps/b-2)\n\
                   test three ... FAILED\n";
        assert_eq!(failed_tests(out), ["tests/a.rs: two", "tests/b.rs: three"]);
    }

    #[test]
    fn reads_every_summary_with_its_binary() {
        let s = summaries(OUTPUT);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[2],
            Summary {
                binary: "tests/record.rs".into(),
                passed: 12,
                failed: 1,
                ignored: 1,
                filtered: 0
            }
        );
        assert_eq!(s[3].binary, "doc-tests captrace");
        assert_eq!(
            summary_count("test result: ok. 6 passed; 0 failed", "ignored"),
            0
        );
    }

    #[test]
    fn an_ignored_or_filtered_test_is_not_run() {
        let s = summaries(OUTPUT);
        assert_eq!(
            unrun_tests(&s, Lsm::Missing, true, false),
            ["tests/record.rs: 1 ignored"]
        );
        // Without the vm stage nothing runs the BPF LSM tests.
        assert_eq!(unrun_tests(&s, Lsm::Missing, false, false).len(), 2);
        let mut other = summaries(OUTPUT);
        other[0].filtered = 3;
        assert_eq!(
            unrun_tests(&other, Lsm::Available, true, false),
            [
                "unittests src/lib.rs: 3 filtered out",
                "tests/record.rs: 1 ignored"
            ]
        );
        // Filters of the caller's own are theirs.
        assert_eq!(unrun_tests(&other, Lsm::Available, true, true).len(), 1);
    }
}
