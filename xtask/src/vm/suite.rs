//! `cargo xtask vm-test --suite`: the kernel-tier tests that run in a guest, on each kernel's own
//! hooks. The test binaries are built once on the host (release); each kernel is booted once and
//! runs the record tests once per hook of `HOOKS` (`CAPTRACE_HOOK=<hook>`), then the enforce
//! tests. Each binary's output goes to stdout as it runs; its exit status, wall time, cargo's
//! `test result:` line and the names of its failed tests come back in the share's `results`.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{first_line, guest::Machine, kernel::Spec, kernel_line, shell_quote};
use crate::cmd::{self, cargo, header};

/// The hooks the record tests run on, per kernel (`--kernel` name). The host's own run of the
/// tests covers the `capability:cap_capable` tracepoint. Each pass costs 60-90 s under TCG with
/// one vCPU, so kprobe (the fallback for kernels without trampolines) runs on the oldest
/// kernel only; every hook passed on every kernel when this table was written.
pub const HOOKS: &[(&str, &[&str])] = &[
    ("6.1", &["fentry", "kprobe"]),
    ("6.12", &["fentry"]),
    ("trixie", &["fentry"]),
];

/// A test target of the `tracer` package that runs in a guest.
#[derive(Debug)]
struct Target {
    name: &'static str,
    /// Run once per hook of `HOOKS` (`CAPTRACE_HOOK`), else once.
    per_hook: bool,
    /// The kernels (`--kernel` names) it runs on; empty: every kernel.
    kernels: &'static [&'static str],
    /// Tests left out in the guests (`--skip`), each for a reason given in `TARGETS`.
    skip: &'static [&'static str],
}

const fn target(name: &'static str, per_hook: bool, kernels: &'static [&'static str]) -> Target {
    Target {
        name,
        per_hook,
        kernels,
        skip: &[],
    }
}

/// The targets that run in a guest. A target whose source file is missing is left out. The
/// record and enforce tests need the guests' hooks (fentry, kprobe, BPF LSM) and run on every
/// kernel. The others passed on 6.1 and 6.12 when this table was written; to keep the stage
/// short each runs on one kernel: `run`'s confinement (namespaces, mounts, seccomp, pids
/// limits) on the oldest, the record-and-prove tests (alternatives, minimize, nginx over
/// loopback) on 6.12, io_uring on both (about 1.5 min and 2.5 min under TCG). Nothing that
/// starts docker or podman: the guests have neither.
const TARGETS: &[Target] = &[
    target("record", true, &[]),
    target("enforce", false, &[]),
    // What doctor says of each kernel (the hook, how the syscall number is read: with the
    // bpf_rdonly_cast kfunc from 6.2, with a helper on 6.1) against what really runs there.
    target("doctor", false, &[]),
    target("security", false, &["6.1"]),
    target("security_files", false, &["6.1"]),
    Target {
        // The guest's `/` is an overlay over 9p, whose file handles do not decode (ESTALE):
        // shocker's premise, a host root on ext4 whose inode 2 is `/`, holds on the host only,
        // which runs this test.
        skip: &["shocker_open_by_handle_at_of_the_host_root_fails_under_the_default_filter"],
        ..target("seccomp", false, &["6.1"])
    },
    target("io_uring", false, &["6.1", "6.12"]),
    target("alternatives", false, &["6.12"]),
    target("minimize", false, &["6.12"]),
    target("nginx", false, &["6.12"]),
];

/// Environment of every test binary in the guest: TCG runs code several times slower than the
/// host, and timing bounds in the tests scale by this.
const GUEST_ENV: &[(&str, &str)] = &[("CAPTRACE_TEST_SLOW", "1"), ("RUST_BACKTRACE", "1")];

/// What every test binary gets in the guest. The kernel-tier tests are `#[ignore]`d for a plain
/// `cargo test` (they need root); here they must all run. Every guest boots with bpf in `lsm=`,
/// so the enforce tests that need BPF LSM run (and fail if it is missing) and the one that needs
/// its absence is filtered out.
const HARNESS_ARGS: &str = "--test-threads=1 --include-ignored --skip without_lsm_";

/// A built test binary.
#[derive(Debug)]
struct Binary {
    /// The cargo target name (`record`).
    name: String,
    path: PathBuf,
    /// The package's directory: where `cargo test` would run the binary.
    dir: PathBuf,
    per_hook: bool,
    kernels: &'static [&'static str],
    skip: &'static [&'static str],
}

/// One run of a test binary in the guest.
#[derive(Debug, PartialEq)]
struct Entry {
    /// `record/fentry`, `enforce`.
    label: String,
    hook: Option<&'static str>,
}

/// What the guest reported about one entry.
#[derive(Debug, Default, PartialEq)]
struct Report {
    status: Option<i32>,
    secs: Option<f64>,
    /// The counts of cargo's `test result:` line (`13 passed; 1 failed`), if it printed one.
    counts: String,
    /// Tests the summary counts as ignored: a test that did not run is a failure here.
    ignored: u64,
    failed_tests: Vec<String>,
}

pub fn run(machine: &mut Machine, specs: &[Spec]) -> anyhow::Result<()> {
    header("vm-test --suite: build the test binaries (release)");
    let binaries = build()?;
    for b in &binaries {
        println!("{}: {}", b.name, b.path.display());
    }

    let per_binary = machine.timeout;
    let mut results = Vec::new();
    for &spec in specs {
        let entries = entries(spec.name, &binaries)?;
        // The guest's own limit: every binary at its limit, plus the boot.
        machine.timeout = per_binary * u32::try_from(entries.len())? + Duration::from_secs(120);
        let job = job_script(&entries, &binaries, per_binary);
        let outcome = machine.kernel(spec, &job);
        let reports = entries
            .iter()
            .map(|e| report(&outcome.results, &e.label))
            .collect::<Vec<_>>();
        results.push((outcome, entries, reports));
    }
    machine.timeout = per_binary;

    header("vm-test --suite: summary");
    let mut summary = String::new();
    let mut failures = 0;
    for (outcome, entries, reports) in &results {
        let _ = writeln!(summary, "{}", kernel_line(outcome));
        if let Err(e) = &outcome.result
            && reports.iter().all(|r| r.status.is_none())
        {
            let _ = writeln!(summary, "        FAILED: {}", first_line(e));
            failures += entries.len().max(1);
            continue;
        }
        for (entry, r) in entries.iter().zip(reports) {
            let passed = r.status == Some(0) && r.ignored == 0;
            if !passed {
                failures += 1;
            }
            let _ = writeln!(
                summary,
                "        {:<16} {:<11} {:>8}  {}",
                entry.label,
                verdict(r),
                r.secs.map_or("-".to_owned(), |s| format!("{s:.1} s")),
                r.counts
            );
            for test in &r.failed_tests {
                let _ = writeln!(summary, "            failed: {test}");
            }
        }
        if let Err(e) = &outcome.result
            && reports
                .iter()
                .all(|r| r.status == Some(0) && r.ignored == 0)
        {
            // Every binary passed but the guest did not end well (e.g. killed at the limit).
            let _ = writeln!(summary, "        guest FAILED: {}", first_line(e));
            failures += 1;
        }
    }
    print!("{summary}");
    // `cargo xtask test` shows it again at the end of its own summary.
    let _ = std::fs::write(summary_path(), &summary);
    if failures > 0 {
        bail!("{failures} suite run(s) failed (see the summary above)");
    }
    println!("all suite runs passed");
    Ok(())
}

/// Where the last suite run's summary is kept, for `cargo xtask test` to show again.
pub fn summary_path() -> PathBuf {
    cmd::workspace_root().join("target/vm/suite-summary.txt")
}

fn verdict(r: &Report) -> String {
    match r.status {
        Some(0) if r.ignored > 0 => format!("IGNORED({})", r.ignored),
        Some(0) => "passed".to_owned(),
        // `timeout` exits with 124 when it killed the binary at its limit.
        Some(124) => "TIMEOUT".to_owned(),
        Some(code) => format!("FAILED({code})"),
        None => "NOT RUN".to_owned(),
    }
}

/// Builds the guest-runnable test binaries with `--message-format=json` and finds them.
fn build() -> anyhow::Result<Vec<Binary>> {
    let tests_dir = cmd::workspace_root().join("tracer/tests");
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| tests_dir.join(format!("{}.rs", t.name)).is_file())
        .collect();
    let mut command = cargo();
    command.args(["test", "--release", "--no-run", "-p", "tracer"]);
    for t in &targets {
        command.args(["--test", t.name]);
    }
    command
        .arg("--message-format=json")
        .stderr(Stdio::inherit());
    println!("+ {}", cmd::display(&command));
    let out = command
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::display(&command)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", cmd::display(&command), out.status);
    }
    let found = executables(&String::from_utf8_lossy(&out.stdout));
    targets
        .into_iter()
        .map(|t| {
            let (path, dir) = found
                .iter()
                .find(|(n, ..)| n == t.name)
                .map(|(_, p, d)| (p.clone(), d.clone()))
                .with_context(|| format!("cargo built no test executable named {}", t.name))?;
            Ok(Binary {
                name: t.name.to_owned(),
                path,
                dir,
                per_hook: t.per_hook,
                kernels: t.kernels,
                skip: t.skip,
            })
        })
        .collect()
}

/// (target name, executable, package directory) of each test executable in cargo's JSON
/// messages.
fn executables(messages: &str) -> Vec<(String, PathBuf, PathBuf)> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            let exe = PathBuf::from(m["executable"].as_str()?);
            let dir = Path::new(m["manifest_path"].as_str()?).parent()?.to_owned();
            Some((name, exe, dir))
        })
        .collect()
}

/// The runs on the kernel named `kernel`: each per-hook binary once per hook, then the others;
/// only the binaries meant for that kernel.
fn entries(kernel: &str, binaries: &[Binary]) -> anyhow::Result<Vec<Entry>> {
    let hooks = HOOKS
        .iter()
        .find(|(k, _)| *k == kernel)
        .map(|(_, h)| *h)
        .with_context(|| format!("no hooks listed for kernel {kernel} in suite::HOOKS"))?;
    let binaries: Vec<&Binary> = binaries
        .iter()
        .filter(|b| b.kernels.is_empty() || b.kernels.contains(&kernel))
        .collect();
    let mut entries = Vec::new();
    for b in binaries.iter().filter(|b| b.per_hook) {
        entries.extend(hooks.iter().map(|&hook| Entry {
            label: format!("{}/{hook}", b.name),
            hook: Some(hook),
        }));
    }
    entries.extend(binaries.iter().filter(|b| !b.per_hook).map(|b| Entry {
        label: b.name.clone(),
        hook: None,
    }));
    Ok(entries)
}

/// The guest's job: every entry in turn, each under `timeout`, output to stdout and to its own
/// file; a `results` line per entry (`entry`, label, status, seconds, cargo's summary) and one
/// per failed test (`failed`, label, test). Exits non-zero if any entry failed.
fn job_script(entries: &[Entry], binaries: &[Binary], limit: Duration) -> String {
    let env: Vec<String> = GUEST_ENV
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    let ci = std::env::var("CI")
        .map(|v| format!(" CI={}", shell_quote(&v)))
        .unwrap_or_default();
    let mut script = format!(
        r#"# generated by `cargo xtask vm-test --suite`
export {env}{ci}
results=$VM_SHARE/results
failed=0
echo "kernel $(uname -r)"
# run LABEL HOOK DIR BINARY [HARNESS ARGUMENT]...
run() {{
    label=$1 hook=$2 dir=$3 bin=$4
    shift 4
    log=$VM_SHARE/$(echo "$label" | tr / -).out
    echo "=== vm-test --suite: $label"
    t0=$(cut -d' ' -f1 /proc/uptime)
    # Into a file, shown as it grows: a process the tests left behind that still holds the
    # output (an orphan blocked on a FIFO) must not keep the suite waiting, as a pipe's reader
    # would wait for its last writer.
    (
        cd "$dir" || exit 125
        if [ -n "$hook" ]; then export CAPTRACE_HOOK="$hook"; fi
        exec timeout -k 10 {limit} "$bin" {harness} "$@"
    ) >"$log" 2>&1 </dev/null &
    pid=$!
    tail -n +1 -f --pid="$pid" "$log"
    wait "$pid"
    echo $? >"$log.status"
    t1=$(cut -d' ' -f1 /proc/uptime)
    status=$(cat "$log.status")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {{ printf "%.1f", b - a }}')
    summary=$(grep '^test result:' "$log" | tail -n 1)
    printf 'entry\t%s\t%s\t%s\t%s\n' "$label" "$status" "$secs" "$summary" >>"$results"
    sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | while read -r t; do
        printf 'failed\t%s\t%s\n' "$label" "$t"
        # The first lines of its panic, for the summary.
        awk -v h="---- $t stdout ----" '$0 == h {{ on = 1; next }}
            on && /^(----|failures:|$)/ {{ exit }} /^note: / {{ next }} on && n < 3 {{ print; n++ }}' "$log" |
            while IFS= read -r why; do printf 'why\t%s\t%s\n' "$label" "$why"; done
    done >>"$results"
    # Killed at the limit: the test that was running is the last one without a verdict.
    if [ "$status" = 124 ]; then
        t=$(sed -n 's/^test \(.*\) \.\.\. *$/\1/p' "$log" | tail -n 1)
        printf 'failed\t%s\t%s (running when the binary was killed)\n' "$label" "$t" >>"$results"
    fi
    echo "=== vm-test --suite: $label: status $status, $secs s"
    [ "$status" = 0 ] || failed=1
}}
"#,
        env = env.join(" "),
        limit = limit.as_secs(),
        harness = HARNESS_ARGS,
    );
    for e in entries {
        let name = e.label.split('/').next().unwrap_or(&e.label);
        let Some(b) = binaries.iter().find(|b| b.name == name) else {
            continue;
        };
        let quote = |p: &Path| shell_quote(&p.to_string_lossy());
        let skips: String = b
            .skip
            .iter()
            .map(|t| format!(" --skip {}", shell_quote(t)))
            .collect();
        script += &format!(
            "run {} {} {} {}{skips}\n",
            shell_quote(&e.label),
            shell_quote(e.hook.unwrap_or("")),
            quote(&b.dir),
            quote(&b.path)
        );
    }
    script += "exit $failed\n";
    script
}

/// The guest's report on `label`, from the `results` text.
fn report(results: &str, label: &str) -> Report {
    let mut report = Report::default();
    for line in results.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["entry", l, status, secs, summary @ ..] if *l == label => {
                report.status = status.trim().parse().ok().or(Some(-1));
                report.secs = secs.parse().ok();
                report.counts = counts(&summary.join("\t"));
                report.ignored = crate::test::summary_count(&summary.join("\t"), "ignored");
            }
            ["failed", l, test] if *l == label => report.failed_tests.push((*test).to_owned()),
            ["why", l, why @ ..] if *l == label => {
                if let Some(last) = report.failed_tests.last_mut() {
                    last.push_str(&format!("\n                {}", why.join("\t")));
                }
            }
            _ => {}
        }
    }
    report
}

/// `13 passed; 1 failed` from `test result: FAILED. 13 passed; 1 failed; 0 ignored; ...`.
fn counts(result_line: &str) -> String {
    let counts = result_line.split_once(". ").map_or("", |(_, c)| c);
    counts
        .split("; ")
        .filter(|c| c.ends_with(" passed") || c.ends_with(" failed"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::kernel::SPECS;

    fn binaries() -> Vec<Binary> {
        let binary = |name: &str, per_hook| Binary {
            name: name.to_owned(),
            path: PathBuf::from(format!("/w/target/release/deps/{name}-0123")),
            dir: PathBuf::from("/w/tracer"),
            per_hook,
            kernels: &[],
            skip: &[],
        };
        vec![
            binary("record", true),
            binary("enforce", false),
            Binary {
                kernels: &["6.12"],
                skip: &["a_test"],
                ..binary("seccomp", false)
            },
        ]
    }

    #[test]
    fn every_kernel_has_hooks() {
        for spec in SPECS {
            let hooks = HOOKS.iter().find(|(k, _)| *k == spec.name);
            assert!(hooks.is_some_and(|(_, h)| !h.is_empty()), "{}", spec.name);
        }
    }

    #[test]
    fn runs_record_per_hook_then_enforce_once() {
        let labels: Vec<String> = entries("6.1", &binaries())
            .unwrap()
            .into_iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(labels, ["record/fentry", "record/kprobe", "enforce"]);
        let labels: Vec<String> = entries("6.12", &binaries())
            .unwrap()
            .into_iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(labels, ["record/fentry", "enforce", "seccomp"]);
        assert!(entries("5.10", &binaries()).is_err());
    }

    #[test]
    fn the_job_sets_the_hook_and_runs_each_binary() {
        let b = binaries();
        let script = job_script(&entries("6.12", &b).unwrap(), &b, Duration::from_secs(60));
        assert!(script.contains(
            "run seccomp '' /w/tracer /w/target/release/deps/seccomp-0123 --skip a_test\n"
        ));
        let script = job_script(&entries("6.1", &b).unwrap(), &b, Duration::from_secs(60));
        assert!(script.contains("CAPTRACE_TEST_SLOW=1"));
        assert!(script.contains("export CAPTRACE_HOOK=\"$hook\""));
        assert!(script.contains(
            "timeout -k 10 60 \"$bin\" --test-threads=1 --include-ignored --skip without_lsm_ \"$@\""
        ));
        assert!(
            script.contains(
                "run record/kprobe kprobe /w/tracer /w/target/release/deps/record-0123\n"
            )
        );
        assert!(script.contains("run enforce '' /w/tracer /w/target/release/deps/enforce-0123\n"));
        assert!(script.ends_with("exit $failed\n"));
    }

    #[test]
    fn reads_the_guest_results() {
        let results = "entry\trecord/fentry\t101\t80.5\ttest result: FAILED. 12 passed; 2 failed; 0 ignored\n\
                       failed\trecord/fentry\tno_follow_daemons_stops_with_the_command\n\
                       failed\trecord/fentry\tnamespace_creation_is_reported\n\
                       entry\trecord/kprobe\t0\t70.0\ttest result: ok. 14 passed; 0 failed\n\
                       entry\tenforce\t0\t9.0\ttest result: ok. 6 passed; 0 failed; 2 ignored\n";
        let r = report(results, "record/fentry");
        assert_eq!(r.status, Some(101));
        assert_eq!(r.secs, Some(80.5));
        assert_eq!(r.counts, "12 passed; 2 failed");
        assert_eq!(r.failed_tests.len(), 2);
        assert_eq!(verdict(&r), "FAILED(101)");
        assert_eq!(verdict(&report(results, "record/kprobe")), "passed");
        assert_eq!(verdict(&report(results, "enforce")), "IGNORED(2)");
        assert_eq!(verdict(&report(results, "enforce/x")), "NOT RUN");
    }

    #[test]
    fn finds_test_executables_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"record","kind":["test"]},"profile":{"test":true},"executable":"/w/target/release/deps/record-0123","manifest_path":"/w/tracer/Cargo.toml"}
{"reason":"compiler-artifact","target":{"name":"captrace","kind":["bin"]},"profile":{"test":false},"executable":"/w/target/release/captrace","manifest_path":"/w/tracer/Cargo.toml"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executables(messages),
            [(
                "record".to_owned(),
                PathBuf::from("/w/target/release/deps/record-0123"),
                PathBuf::from("/w/tracer")
            )]
        );
    }
}
