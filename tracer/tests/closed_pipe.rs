//! A reader that goes away (`captrace caps | head -1`, `captrace monitor --json | head -1`) ends
//! captrace quietly with status 0: no "Broken pipe" message, no failure status (125), no panic.
mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `captrace ARGS...` with stdout a pipe whose read end is already closed: its first write fails
/// with EPIPE, as after `head -1` has read its line and exited.
fn into_closed_pipe(args: &[&str]) -> Child {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    support::captrace(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting captrace")
}

#[test]
fn caps_into_a_closed_pipe_ends_quietly() {
    for args in [&["caps"][..], &["caps", "--json"][..]] {
        let out = support::output_within_of(into_closed_pipe(args), Duration::from_secs(10));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            support::text(&out.stderr)
        );
        assert_eq!(support::text(&out.stderr), "", "{args:?}");
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn monitor_json_into_a_closed_pipe_ends_quietly() {
    support::require_root();
    let dir = support::tempdir();
    let f = support::root_file(&dir.path().join("f"));
    let mut mon = into_closed_pipe(&["monitor", "--json", "--duration", "30"]);
    // Checks to report until it stops: the first line it writes meets the closed pipe (the
    // host's own checks may get there before ours, even before the programs show as attached).
    let deadline = Instant::now() + Duration::from_secs(20) * support::time_scale();
    while mon.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "monitor still runs with nobody reading its output"
        );
        // A CHOWN check each time (the caller's fsuid is not the owner's).
        let chown = Command::new("chown").arg("1000").arg(&f).status().unwrap();
        assert!(chown.success());
    }
    let out = mon.wait_with_output().unwrap();
    let stderr = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
