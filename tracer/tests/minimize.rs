//! `record --minimize` on real programs: replays must be faithful to the recording before they
//! prove anything, a member is dropped only when a replay reached the code that checks it, and
//! what the kernel refused without changing the outcome is listed. Every set is then proven
//! the way a user would: the workload succeeds under `setpriv --bounding-set` with exactly it
//! and fails with any one member removed (`support::workload`). Each run gets a fresh `$D`.
mod support;

use std::{fs, os::unix::fs::chown, path::Path, process::Command};

use captrace::{
    capability::Cap,
    launch::{self, Privileges, Spec},
};
use serde_json::Value;
use support::workload::{Fixture, Workload, cap_add, strings};

/// Like nginx at start-up: chown its directory to www-data (uid 33) only if it is not owned
/// by 33 already. The recording chowns; a replay finds it done.
const CHOWN_IF_NEEDED: &str = r#"[ "$(stat -c %u "$D/dir")" = 33 ] || chown 33 "$D/dir""#;

/// `$D/dir`, owned by root.
fn root_dir(dir: &Path) -> Fixture {
    fs::create_dir(dir.join("dir")).expect("creating dir");
    Fixture::default()
}

/// `$D/file`, owned by uid/gid 1000.
fn file_of_another_user(dir: &Path) -> Fixture {
    let file = dir.join("file");
    fs::write(&file, "x\n").expect("writing the file");
    chown(&file, Some(1000), Some(1000)).expect("chown 1000:1000");
    Fixture::default()
}

/// `$D/file`, owned by root.
fn root_file(dir: &Path) -> Fixture {
    fs::write(dir.join("file"), "x\n").expect("writing the file");
    Fixture::default()
}

/// `$D/archive.tar`: a directory and two files owned by uid/gid 1000 (as any tarball made on
/// another machine), and an empty `$D/out` to extract it into.
fn foreign_archive(dir: &Path) -> Fixture {
    let src = dir.join("src");
    fs::create_dir_all(src.join("data")).expect("creating src/data");
    for (name, text) in [("a", "alpha\n"), ("b", "beta\n")] {
        let f = src.join("data").join(name);
        fs::write(&f, text).expect("writing a file to archive");
        chown(&f, Some(1000), Some(1000)).expect("chown of a file to archive");
    }
    chown(src.join("data"), Some(1000), Some(1000)).expect("chown src/data");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(dir.join("archive.tar"))
        .arg("data")
        .status()
        .expect("running tar -c");
    assert!(status.success(), "tar -c: {status}");
    fs::remove_dir_all(&src).expect("removing src");
    fs::create_dir(dir.join("out")).expect("creating out");
    Fixture::default()
}

fn minimize(profile: &Value) -> &Value {
    let m = &profile["minimize"];
    assert!(m.is_object(), "no minimize section: {profile:#}");
    m
}

/// The profile's silent refusals of `cap`.
fn refusals<'a>(profile: &'a Value, cap: &str) -> Vec<&'a Value> {
    profile["silent_refusals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["cap"] == cap)
        .collect()
}

/// Replays find the directory owned by 33 and never chown: they are not faithful, so nothing
/// they show may drop CHOWN (before, `--minimize` dropped it).
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chown_only_if_needed_keeps_chown_and_says_replays_were_not_faithful() {
    support::require_root();
    let profile = Workload::new("chown if needed", CHOWN_IF_NEEDED, &["CHOWN"])
        .setup(root_dir)
        .record_args(&["--minimize"])
        .check();
    let m = minimize(&profile);
    assert_eq!(m["faithful"], false, "{m:#}");
    assert_eq!(strings(&m["dropped"]), Vec::<String>::new(), "{m:#}");
    assert!(
        strings(&m["differences"])
            .contains(&"CHOWN in fchownat by chown: recorded 1x, replayed 0x".to_string()),
        "{m:#}"
    );
    let note = m["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("not faithful") && note.contains("--setup"),
        "{note}"
    );
}

/// With `--setup` restoring the owner, every replay chowns: faithful, and CHOWN is proven.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chown_only_if_needed_with_setup_is_faithful_and_proves_chown() {
    support::require_root();
    let profile = Workload::new("chown if needed --setup", CHOWN_IF_NEEDED, &["CHOWN"])
        .setup(root_dir)
        .record_args(&["--minimize", "--setup", r#"chown 0 "$D/dir""#])
        .check();
    let m = minimize(&profile);
    assert_eq!(m["faithful"], true, "{m:#}");
    assert_eq!(strings(&m["proven"]), ["CHOWN"], "{m:#}");
}

/// A replay extracts over the first extraction: files owned by uid 1000 are in the way, and
/// overwriting them asks DAC_OVERRIDE, which the recording into an empty directory never did.
/// That is another code path, not a need: DAC_OVERRIDE is never added.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn tar_xp_of_foreign_files_never_adds_dac_override() {
    support::require_root();
    let tar = Workload::new(
        "tar -xp",
        r#"tar -xpf "$D/archive.tar" -C "$D/out""#,
        &["CHOWN", "FOWNER"],
    )
    .setup(foreign_archive);
    for record_args in [
        &["--minimize"][..],
        &[
            "--minimize",
            "--setup",
            r#"rm -rf "$D/out" && mkdir "$D/out""#,
        ][..],
    ] {
        let profile = Workload {
            record_args,
            ..Workload::new(tar.name, tar.script, tar.expected).setup(foreign_archive)
        }
        .check();
        let m = minimize(&profile);
        assert!(
            !cap_add(&profile).contains(&"DAC_OVERRIDE".to_string())
                && !strings(&m["added"]).contains(&"DAC_OVERRIDE".to_string()),
            "{record_args:?}: {m:#}"
        );
        // Without --setup the replays extract over the first extraction.
        assert_eq!(
            m["faithful"],
            record_args.len() > 1,
            "{record_args:?}: {m:#}"
        );
    }
}

/// chmod of another user's file needs FOWNER; the kernel also asks FSETID there, only to keep
/// a set-group-ID bit that 644 does not have (a probe): it is refused in the proving replay
/// and listed, with its effect, not recommended.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chmod_644_of_another_users_file_lists_the_fsetid_refusal() {
    support::require_root();
    let profile = Workload::new("chmod 644", r#"chmod 644 "$D/file""#, &["FOWNER"])
        .setup(file_of_another_user)
        .record_args(&["--minimize"])
        .check();
    let r = refusals(&profile, "FSETID");
    assert!(!r.is_empty(), "no FSETID refusal listed: {profile:#}");
    assert_eq!(r[0]["syscall"], "fchmodat", "{r:?}");
    assert!(
        r[0]["effect"]
            .as_str()
            .is_some_and(|e| e.contains("set-group-ID bits are cleared")),
        "{r:?}"
    );
}

/// A program that asks for a receive buffer beyond rmem_max with SO_RCVBUFFORCE and falls back
/// to SO_RCVBUF when refused: it succeeds without NET_ADMIN, and the refusal is listed.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn rcvbufforce_with_a_fallback_does_not_need_net_admin() {
    support::require_root();
    let profile = Workload::new(
        "SO_RCVBUFFORCE",
        "/usr/bin/python3 -c 'import socket
SO_RCVBUFFORCE = 33  # Linux, asm-generic/socket.h; not exported by python
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
except PermissionError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.close()'",
        &[],
    )
    .record_args(&["--minimize"])
    .check();
    let m = minimize(&profile);
    assert_eq!(strings(&m["dropped"]), ["NET_ADMIN"], "{m:#}");
    let r = refusals(&profile, "NET_ADMIN");
    assert!(!r.is_empty(), "no NET_ADMIN refusal listed: {profile:#}");
    // Replays drop their capabilities before they are traced: captrace's own PR_CAPBSET_DROP
    // and capset are not the command's refusals.
    let all = profile["silent_refusals"].as_array().map_or(0, Vec::len);
    assert_eq!(all, r.len(), "{:#}", profile["silent_refusals"]);
    assert_eq!(r[0]["syscall"], "setsockopt", "{r:?}");
    assert!(
        r[0]["effect"]
            .as_str()
            .is_some_and(|e| e.contains("SO_RCVBUFFORCE")),
        "{r:?}"
    );
}

/// `chown ... || true` exits 0 whether or not the chown worked. Without `--check` the refusal
/// is silent (and listed); `--check` that the owner changed makes the replay without CHOWN
/// fail, so CHOWN stays.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_check_makes_a_replay_without_the_effect_fail() {
    support::require_root();
    const SCRIPT: &str = r#"chown 1000 "$D/file" 2>/dev/null || true"#;
    const SETUP: &[&str] = &["--minimize", "--setup", r#"chown 0 "$D/file""#];
    let silent = Workload::new("chown || true", SCRIPT, &[])
        .setup(root_file)
        .record_args(SETUP)
        .check();
    assert_eq!(strings(&minimize(&silent)["dropped"]), ["CHOWN"]);
    assert!(!refusals(&silent, "CHOWN").is_empty(), "{silent:#}");

    let checked = Workload::new("chown || true --check", SCRIPT, &["CHOWN"])
        .setup(root_file)
        .record_args(SETUP)
        .check_cmd(r#"test "$(stat -c %u "$D/file")" = 1000"#)
        .check();
    let m = minimize(&checked);
    assert_eq!(strings(&m["proven"]), ["CHOWN"], "{m:#}");
    assert!(refusals(&checked, "CHOWN").is_empty(), "{checked:#}");
}

/// `--check false` fails after the recording itself: nothing can pass, the set stays.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn check_false_keeps_the_recorded_set() {
    support::require_root();
    let profile = Workload::new("chown --check false", r#"chown 1000 "$D/file""#, &["CHOWN"])
        .setup(root_file)
        .record_args(&["--minimize", "--check", "false"])
        .check();
    let m = minimize(&profile);
    assert!(
        m["note"]
            .as_str()
            .is_some_and(|n| n.contains("--check \"false\" failed")),
        "{m:#}"
    );
    assert_eq!(strings(&m["dropped"]), Vec::<String>::new(), "{m:#}");
}

/// Replays drop their capabilities before captrace registers them for tracing
/// (`Spec::privileges_first`): the child waiting to be released already has exactly its set,
/// so the launcher's own PR_CAPBSET_DROP and capset checks are never counted as the command's.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_replay_has_its_set_before_it_is_released() {
    support::require_root();
    let spec = Spec {
        argv: vec!["true".into()],
        privileges: Some(Privileges {
            caps: vec![Cap(0)],
            ..Default::default()
        }),
        privileges_first: true,
        quiet: true,
        ..Default::default()
    };
    let child = launch::spawn_suspended(&spec).expect("spawning true");
    let status = fs::read_to_string(format!("/proc/{}/status", child.pid)).expect("status");
    let pid = child.resume().expect("releasing true");
    let _ = nix::sys::wait::waitpid(pid, None);
    // CHOWN is bit 0.
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            status.contains(&format!("{set}:\t0000000000000001\n")),
            "{set}: {status}"
        );
    }
}
