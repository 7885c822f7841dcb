//! Profiles in CI: the real `captrace record -o` makes profiles of real commands (root), and
//! the real `captrace diff`, `check` and `merge` compare and merge them; their exit statuses
//! and the capability names they print are the assertion.
mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use captrace::profile::Profile;

/// What a captrace run ended with.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn captrace<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Ran {
    let out = Command::new(support::captrace_bin())
        .args(args)
        .output()
        .expect("running captrace");
    Ran {
        code: out.status.code().expect("captrace exited by signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `captrace record -o DIR/NAME -- CMD...`, which must succeed; the profile's path.
fn record(dir: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["record", "-o", path.to_str().unwrap(), "--"];
    args.extend(cmd);
    let r = captrace(&args);
    assert_eq!(r.code, 0, "record {cmd:?}: {}", r.stderr);
    path
}

/// A profile of `true` (no capability) and one of chown of a root-owned file (CHOWN).
struct Recorded {
    dir: tempfile::TempDir,
    none: PathBuf,
    chown: PathBuf,
}

impl Recorded {
    fn new() -> Recorded {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = record(dir.path(), "none.json", &["true"]);
        let script = format!("cd {} && touch f && chown 1000 f", dir.path().display());
        let chown = record(dir.path(), "chown.json", &["sh", "-c", &script]);
        let names = |p: &Path| -> Vec<String> {
            let profile = Profile::read(p).unwrap();
            profile.cap_add.iter().map(|c| c.name()).collect()
        };
        assert_eq!(names(&none), Vec::<String>::new());
        assert_eq!(names(&chown), ["CHOWN"]);
        Recorded { dir, none, chown }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn diff_names_each_added_capability_with_its_first_use_and_exits_1() {
    support::require_root();
    let r = Recorded::new();
    let d = captrace(&["diff", p(&r.none), p(&r.chown)]);
    assert_eq!(d.code, 1, "{}{}", d.stdout, d.stderr);
    let lines: Vec<&str> = d.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", d.stdout);
    assert!(
        lines[0].starts_with("+ CHOWN: first used by chown[") && lines[0].contains("in fchownat"),
        "{}",
        d.stdout
    );
    assert!(d.stderr.is_empty(), "{}", d.stderr);

    let back = captrace(&["diff", p(&r.chown), p(&r.none)]);
    assert_eq!((back.code, back.stdout.as_str()), (1, "- CHOWN\n"));

    let same = captrace(&["diff", p(&r.chown), p(&r.chown)]);
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, ""),
        "{}",
        same.stderr
    );

    // Another run of the same command records other pids and counts: the sets are still equal.
    let script = format!("cd {} && touch g && chown 1000 g", r.dir.path().display());
    let again = record(r.dir.path(), "again.json", &["sh", "-c", &script]);
    assert_eq!(captrace(&["diff", p(&r.chown), p(&again)]).code, 0);

    let json = captrace(&["diff", "--json", p(&r.none), p(&r.chown)]);
    assert_eq!(json.code, 1);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("diff --json");
    assert_eq!(v["equal"], false);
    assert_eq!(v["added"][0]["cap"], "CHOWN");
    assert_eq!(v["added"][0]["comm"], "chown");
    assert_eq!(v["added"][0]["syscall"], "fchownat");
    assert!(v["added"][0]["pid"].as_u64().is_some(), "{v}");
    assert_eq!(v["removed"], serde_json::json!([]));
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn check_fails_on_each_capability_beyond_the_allowed_set() {
    support::require_root();
    let r = Recorded::new();
    let none = captrace(&["check", p(&r.chown), "--allow", ""]);
    assert_eq!(none.code, 1, "{}", none.stderr);
    let lines: Vec<&str> = none.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", none.stdout);
    assert!(
        lines[0].starts_with("CHOWN beyond the allowed set: first used by chown[")
            && lines[0].contains("in fchownat"),
        "{}",
        none.stdout
    );
    let other = captrace(&["check", p(&r.chown), "--allow", "NET_RAW,KILL"]);
    assert_eq!(other.code, 1);
    assert!(other.stdout.starts_with("CHOWN "), "{}", other.stdout);

    for allow in ["CHOWN", "cap_chown", "KILL,chown"] {
        let ok = captrace(&["check", p(&r.chown), "--allow", allow]);
        assert_eq!(
            (ok.code, ok.stdout.as_str()),
            (0, ""),
            "{allow}: {}",
            ok.stderr
        );
    }
    let from_base = captrace(&["check", p(&r.chown), "--allow-from", p(&r.none)]);
    assert_eq!(from_base.code, 1);
    assert!(
        from_base.stdout.starts_with("CHOWN "),
        "{}",
        from_base.stdout
    );
    let from_self = captrace(&["check", p(&r.chown), "--allow-from", p(&r.chown)]);
    assert_eq!(from_self.code, 0, "{}", from_self.stdout);
    let both = captrace(&[
        "check",
        p(&r.chown),
        "--allow-from",
        p(&r.none),
        "--allow",
        "CHOWN",
    ]);
    assert_eq!(both.code, 0, "{}", both.stdout);
    assert_eq!(captrace(&["check", p(&r.none), "--allow", ""]).code, 0);

    let json = captrace(&["check", "--json", p(&r.chown), "--allow-from", p(&r.none)]);
    assert_eq!(json.code, 1);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("check --json");
    assert_eq!(v["within"], false);
    assert_eq!(v["beyond"][0]["cap"], "CHOWN");
    assert_eq!(v["beyond"][0]["syscall"], "fchownat");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn merge_unites_runs_counts_them_and_recomputes_the_set() {
    support::require_root();
    let r = Recorded::new();
    let all = r.path("all.json");
    let m = captrace(&["merge", p(&r.none), p(&r.chown), "-o", p(&all)]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(m.stdout.is_empty(), "{}", m.stdout);
    assert!(
        m.stderr.contains("merged 2 profiles") && m.stderr.contains("--cap-add=CHOWN"),
        "{}",
        m.stderr
    );
    let merged = Profile::read(&all).expect("the merged profile");
    let chown = Profile::read(&r.chown).unwrap();
    let none = Profile::read(&r.none).unwrap();
    assert_eq!(merged.cap_add, chown.cap_add);
    assert!(merged.command.is_empty(), "the commands differ");
    assert_eq!(
        support::count(&merged, "CHOWN", "fchownat"),
        support::count(&chown, "CHOWN", "fchownat")
    );
    // Both runs exec'd: their noaudit SYS_ADMIN checks in execve are summed.
    let execs = support::count(&none, "SYS_ADMIN", "execve");
    assert!(execs > 0, "{:?}", none.checks);
    assert_eq!(
        support::count(&merged, "SYS_ADMIN", "execve"),
        execs + support::count(&chown, "SYS_ADMIN", "execve")
    );

    // The same run twice: every count doubles, the set stays; the order of the inputs does
    // not matter.
    let twice = captrace(&["merge", p(&r.chown), p(&r.chown)]);
    assert_eq!(twice.code, 0, "{}", twice.stderr);
    let twice = Profile::from_json(&twice.stdout, "stdout").expect("merge to stdout");
    assert_eq!(twice.cap_add, chown.cap_add);
    assert_eq!(twice.command, chown.command);
    assert_eq!(twice.checks.len(), chown.checks.len());
    for c in &chown.checks {
        let same = |t: &&captrace::profile::Check| {
            (t.cap, t.verdict, t.audit, t.scope, &t.syscall, t.origin)
                == (c.cap, c.verdict, c.audit, c.scope, &c.syscall, c.origin)
        };
        let doubled = twice.checks.iter().find(same).expect("every check is kept");
        assert_eq!(doubled.count, 2 * c.count, "{c:?}");
    }
    let forth = captrace(&["merge", p(&r.none), p(&r.chown), p(&all)]);
    let back = captrace(&["merge", p(&all), p(&r.chown), p(&r.none)]);
    assert_eq!(forth.code, 0);
    assert_eq!(forth.stdout, back.stdout);

    // A merged profile is a profile for every other command.
    assert_eq!(captrace(&["diff", p(&r.chown), p(&all)]).code, 0);
    assert_eq!(
        captrace(&["check", p(&all), "--allow-from", p(&r.chown)]).code,
        0
    );
    let rec = captrace(&["recommend", p(&all)]);
    assert_eq!(rec.stdout, "--cap-drop=ALL --cap-add=CHOWN\n");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn recorded_checks_carry_when_they_were_first_and_last_seen() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "cd {} && touch f && sleep 0.5 && chown 1000 f && sleep 0.5 && chown 1001 f",
        dir.path().display()
    );
    let path = record(dir.path(), "p.json", &["sh", "-c", &script]);
    let profile = Profile::read(&path).unwrap();
    let chown = profile
        .checks
        .iter()
        .find(|c| c.cap.name() == "CHOWN" && c.syscall.as_deref() == Some("fchownat"))
        .unwrap_or_else(|| panic!("no CHOWN check: {:?}", profile.checks));
    assert_eq!(chown.count, 2);
    let (first, last) = (chown.first_seen_ms.unwrap(), chown.last_seen_ms.unwrap());
    // Seen after the first sleep, and again after the second (polls are 100 ms apart).
    let slack = 1000 * u64::from(support::time_scale());
    assert!((450..500 + slack).contains(&first), "first {first} ms");
    assert!(last >= first + 400, "first {first} ms, last {last} ms");
    // The shell's own exec came before either.
    let exec = profile
        .checks
        .iter()
        .filter(|c| c.syscall.as_deref() == Some("execve"))
        .filter_map(|c| c.first_seen_ms)
        .min()
        .unwrap_or_else(|| panic!("no timed execve check: {:?}", profile.checks));
    assert!(exec < first, "execve at {exec} ms, CHOWN at {first} ms");
    // diff says when.
    let base = record(dir.path(), "none.json", &["true"]);
    let d = captrace(&["diff", p(&base), p(&path)]);
    assert!(d.stdout.contains(&format!("at {first} ms")), "{}", d.stdout);
}

/// Bad input is refused like everywhere in captrace: one line, `captrace: `, and the class's
/// exit status (2 usage, 3 bad profile). Needs no root: nothing is traced.
#[test]
fn bad_input_exits_2_or_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let mut profile = Profile::new();
    profile.cap_add = vec![captrace::capability::Cap(0)];
    profile.write(&good).unwrap();
    let not_json = dir.path().join("not.json");
    fs::write(&not_json, "chown").unwrap();
    let newer = dir.path().join("newer.json");
    fs::write(
        &newer,
        r#"{"schema":"captrace/profile","version":2,"cap_add":[]}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    let g = p(&good);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["diff", p(&missing), g], 3, "missing.json"),
        (
            vec!["diff", g, p(&not_json)],
            3,
            "not a valid captrace profile",
        ),
        (vec!["diff", g, p(&newer)], 3, "version 2"),
        (
            vec!["check", p(&not_json), "--allow", "CHOWN"],
            3,
            "not.json",
        ),
        (
            vec!["check", g, "--allow-from", p(&missing)],
            3,
            "missing.json",
        ),
        (
            vec!["check", g, "--allow", "CHWON"],
            2,
            "did you mean CHOWN",
        ),
        (vec!["merge", g, p(&newer)], 3, "newer.json"),
        (
            vec!["merge", g, "-o", "/nonexistent/dir/all.json"],
            2,
            "does not exist",
        ),
    ];
    for (args, code, says) in cases {
        let r = captrace(&args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{args:?}: one line: {}",
            r.stderr
        );
        assert!(r.stderr.starts_with("captrace: "), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(says),
            "{args:?}: {says:?} not in {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // clap's own usage errors: no allowed set, no profile to merge, one profile to diff.
    for args in [
        vec!["check", g],
        vec!["merge"],
        vec!["diff", g],
        vec!["diff", g, g, "--color"],
    ] {
        assert_eq!(captrace(&args).code, 2, "{args:?}");
    }
}
