//! Progress lines, on a terminal only: `record --minimize` says which replay runs and what it
//! tries, `monitor` says when it is attached. A real pseudo-terminal (`script`, util-linux)
//! shows them; a pipe and `--json` never do.
mod support;

use std::process::{Command, Output};

use support::workload::describe;

/// `captrace ARGS` on a real pseudo-terminal, stdout and stderr together.
fn on_a_terminal(args: &[&str]) -> Output {
    let mut line = support::captrace_bin().display().to_string();
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .output()
        .expect("running script (util-linux)")
}

/// Changes the owner of a file it creates: CHOWN, one member, so three replays.
const CHOWN_A_NEW_FILE: &str = "f=$(mktemp) && chown 1000 \"$f\" && rm -f \"$f\"";

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn minimize_shows_each_replay_on_a_terminal_only() {
    support::require_root();
    let args = ["record", "--minimize", "--", "sh", "-c", CHOWN_A_NEW_FILE];
    let out = on_a_terminal(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let tty = support::text(&out.stdout);
    for line in [
        "captrace: replay 1 of 3: with captrace's own privileges",
        "captrace: replay 2 of 3: with exactly the recorded set",
        "captrace: replay 3 of 3: trying without CHOWN",
    ] {
        assert!(tty.contains(line), "no {line:?} on the terminal:\n{tty}");
    }
    // The line is rewritten in place and cleared before the report.
    assert!(tty.contains("\r\x1b[2K"), "{tty:?}");
    assert!(tty.contains("proven CHOWN"), "{tty}");

    let piped = support::captrace_output(&args);
    assert!(piped.status.success(), "{}", describe(&piped));
    assert!(
        !support::text(&piped.stderr).contains("replay 1 of"),
        "{}",
        describe(&piped)
    );
    let json = on_a_terminal(&[
        "record",
        "--minimize",
        "--json",
        "--",
        "sh",
        "-c",
        CHOWN_A_NEW_FILE,
    ]);
    assert!(
        !support::text(&json.stdout).contains("replay 1 of"),
        "{}",
        describe(&json)
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn monitor_says_it_is_attached_on_a_terminal_only() {
    support::require_root();
    let out = on_a_terminal(&["monitor", "--duration", "0.5"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        support::text(&out.stdout).contains("captrace: attached, watching the host"),
        "{}",
        describe(&out)
    );
    let piped = support::captrace_output(&["monitor", "--duration", "0.5"]);
    assert!(piped.status.success(), "{}", describe(&piped));
    assert!(
        !support::text(&piped.stderr).contains("attached"),
        "{}",
        describe(&piped)
    );
    let json = on_a_terminal(&["monitor", "--json", "--duration", "0.5"]);
    assert!(
        !support::text(&json.stdout).contains("attached"),
        "{}",
        describe(&json)
    );
}
