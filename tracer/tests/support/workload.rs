//! The acceptance method of captrace, shared by the test files that use it: record a real
//! workload with `captrace record`, then prove the recorded `cap_add` on the host with
//! `setpriv`: the workload succeeds when root's bounding set is exactly `cap_add` (sufficient),
//! and fails when any one member is taken away (minimal).
//!
//! Each workload is a `sh -c` script run as root. Every run (the recording and each proof) gets
//! a fresh private directory in `$D`, built by the workload's setup and removed afterwards.
use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Instant,
};

use serde_json::Value;

/// A workload and what captrace must find for it.
pub struct Workload {
    pub name: &'static str,
    /// The `sh -c` script; `$D` names the run's private directory.
    pub script: &'static str,
    /// Builds the run's fixture in `$D`, with every capability and untraced.
    pub setup: fn(&Path) -> Fixture,
    /// Extra `captrace record` options.
    pub record_args: &'static [&'static str],
    /// The capabilities the kernel asks for, Docker-style names.
    pub expected: &'static [&'static str],
    /// A shell command that must also succeed after the workload for it to count as
    /// succeeding; passed to `record --minimize` as `--check` and run after the script in
    /// every proof.
    pub check: Option<&'static str>,
}

impl Workload {
    pub fn new(
        name: &'static str,
        script: &'static str,
        expected: &'static [&'static str],
    ) -> Self {
        Workload {
            name,
            script,
            setup: |_| Fixture::default(),
            record_args: &[],
            expected,
            check: None,
        }
    }

    pub fn setup(self, setup: fn(&Path) -> Fixture) -> Self {
        Workload { setup, ..self }
    }

    pub fn record_args(self, record_args: &'static [&'static str]) -> Self {
        Workload {
            record_args,
            ..self
        }
    }

    /// `--check CMD` for the recording, and a condition of success in every proof.
    pub fn check_cmd(self, check: &'static str) -> Self {
        Workload {
            check: Some(check),
            ..self
        }
    }

    /// The script a proof runs: the workload, then its check.
    fn proof_script(&self) -> String {
        match self.check {
            Some(check) => format!("( {} ) && {check}", self.script),
            None => self.script.to_string(),
        }
    }

    /// Records the workload and returns its profile.
    pub fn record(&self) -> Value {
        let out_dir = tempfile::tempdir().expect("creating a temporary directory");
        let profile = out_dir.path().join("profile.json");
        let (out, _fixture) = self.run(|cmd| {
            let mut record = Command::new(super::captrace_bin());
            record
                .arg("record")
                .arg("-o")
                .arg(&profile)
                .args(self.record_args);
            if let Some(check) = self.check {
                record.arg("--check").arg(check);
            }
            record.arg("--").arg(cmd.get_program()).args(cmd.get_args());
            record
        });
        assert!(
            out.status.success(),
            "{}: `captrace record` failed ({}):\n{}",
            self.name,
            out.status,
            describe(&out)
        );
        let text = fs::read_to_string(&profile)
            .unwrap_or_else(|e| panic!("{}: reading {}: {e}", self.name, profile.display()));
        let profile: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: the profile is not JSON ({e}):\n{text}", self.name));
        assert_eq!(
            profile["exit_status"], 0,
            "{}: the profile's exit status",
            self.name
        );
        profile
    }

    /// Runs the workload with root's capabilities bounded to `caps` (Docker-style names).
    pub fn run_confined(&self, caps: &[&str]) -> Output {
        let bounding: String = caps
            .iter()
            .map(|cap| format!(",+{}", cap.to_lowercase()))
            .collect();
        self.run_script(&self.proof_script(), |cmd| {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .args(["--inh-caps=-all", "--ambient-caps=-all"])
                .arg(format!("--bounding-set=-all{bounding}"))
                .arg("--")
                .arg(cmd.get_program())
                .args(cmd.get_args());
            setpriv
        })
        .0
    }

    /// Runs `sh -c SCRIPT`, wrapped by `wrap`, with `D` set to a fresh fixture's directory.
    /// Returns the output and the fixture, for the caller to drop when done with it.
    pub fn run(&self, wrap: impl FnOnce(&Command) -> Command) -> (Output, Fixture) {
        self.run_script(self.script, wrap)
    }

    /// [`Workload::run`] of another script.
    fn run_script(
        &self,
        script: &str,
        wrap: impl FnOnce(&Command) -> Command,
    ) -> (Output, Fixture) {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut fixture = (self.setup)(dir.path());
        let mut cmd = wrap(Command::new("sh").args(["-c", script]));
        let out = cmd
            .env("D", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: running {cmd:?}: {e}", self.name));
        fixture.dir = Some(dir);
        (out, fixture)
    }

    /// The acceptance check: record, prove sufficient, prove minimal, compare with `expected`.
    /// Returns the profile for further checks.
    pub fn check(&self) -> Value {
        let started = Instant::now();
        let profile = self.record();
        let cap_add = cap_add(&profile);
        let caps: Vec<&str> = cap_add.iter().map(String::as_str).collect();

        let out = self.run_confined(&caps);
        assert!(
            out.status.success(),
            "{}: fails with only the recorded {caps:?} ({}):\n{}",
            self.name,
            out.status,
            describe(&out)
        );

        for cap in &caps {
            let fewer: Vec<&str> = caps.iter().copied().filter(|c| c != cap).collect();
            let out = self.run_confined(&fewer);
            assert!(
                !out.status.success(),
                "{}: the recorded {caps:?} is not minimal: it still succeeds without {cap}:\n{}",
                self.name,
                describe(&out)
            );
        }

        let expected: BTreeSet<&str> = self.expected.iter().copied().collect();
        assert_eq!(
            caps.iter().copied().collect::<BTreeSet<_>>(),
            expected,
            "{}: recorded cap_add",
            self.name
        );
        eprintln!(
            "{}: cap_add {caps:?}, sufficient and minimal ({:.1?})",
            self.name,
            started.elapsed()
        );
        profile
    }
}

/// What a run needs besides its directory: dropped after the run.
#[derive(Default)]
pub struct Fixture {
    /// A process of another user for the workload to signal; killed and reaped on drop.
    pub victim: Option<Child>,
    /// The run's directory (`$D`), removed on drop.
    pub dir: Option<tempfile::TempDir>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut victim) = self.victim.take() {
            let _ = victim.kill();
            let _ = victim.wait();
        }
    }
}

/// The strings of a JSON array (a profile's capability lists); none when it is not one.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The profile's `cap_add`.
pub fn cap_add(profile: &Value) -> Vec<String> {
    profile["cap_add"]
        .as_array()
        .unwrap_or_else(|| panic!("no cap_add array in the profile: {profile:#}"))
        .iter()
        .map(|cap| {
            cap.as_str()
                .unwrap_or_else(|| panic!("cap_add holds {cap}"))
                .to_owned()
        })
        .collect()
}

/// True if the profile counts `cap` checks made with `audit` (`audited` or `noaudit`).
pub fn has_check(profile: &Value, cap: &str, audit: &str) -> bool {
    profile["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|check| check["cap"] == cap && check["audit"] == audit)
}

/// A finished command's status, stdout and stderr, for a failure message.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
