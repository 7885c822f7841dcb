//! The command line people expect: man pages and completions generated from the clap
//! definitions (what `cargo xtask dist` installs), read by the real `man`/groff and completed by
//! the real bash; colour on a terminal (a real pty from `script`) and never in pipes or with
//! NO_COLOR.
mod support;

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

fn generate(dir: &Path) {
    let out = Command::new(support::captrace_bin())
        .arg("generate-docs")
        .arg(dir)
        .output()
        .expect("running captrace generate-docs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_render_in_groff_with_their_examples() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let man1 = dir.path().join("share/man/man1");
    let mut pages: Vec<String> = fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "captrace-caps.1",
            "captrace-check.1",
            "captrace-diff.1",
            "captrace-doctor.1",
            "captrace-enforce.1",
            "captrace-merge.1",
            "captrace-monitor.1",
            "captrace-recommend.1",
            "captrace-record.1",
            "captrace-report.1",
            "captrace-run.1",
            "captrace.1"
        ]
    );
    for page in &pages {
        // `man -l` formats a page file as `man captrace-record` would once installed.
        let out = Command::new("man")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .args(["--warnings", "-l"])
            .arg(man1.join(page))
            .output()
            .expect("running man (Debian's man-db)");
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{page}: {warnings}");
        assert!(
            warnings.trim().is_empty(),
            "{page}: groff warned: {warnings}"
        );
        assert!(text.contains("SYNOPSIS"), "{page}: {text}");
        if page != "captrace.1" {
            assert!(text.contains("Examples:"), "{page}: {text}");
        }
    }
    let record = Command::new("man")
        .env("MANPAGER", "cat")
        .arg("-l")
        .arg(man1.join("captrace-record.1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&record.stdout);
    assert!(text.contains("--html"), "{text}");
    assert!(
        text.contains("captrace record -- chown 1000 /tmp/f"),
        "{text}"
    );
}

/// What bash completes for `words` (the last one being completed) with captrace's script.
fn complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
         _captrace captrace '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let bash = dir
        .path()
        .join("share/bash-completion/completions/captrace");
    let subs = complete(&bash, &["captrace", "re"]);
    for want in ["record", "recommend", "report"] {
        assert!(subs.iter().any(|s| s == want), "{want}: {subs:?}");
    }
    assert!(!subs.iter().any(|s| s == "generate-docs"), "{subs:?}");
    let flags = complete(&bash, &["captrace", "report", "--"]);
    assert!(flags.iter().any(|s| s == "--html"), "{flags:?}");
    for (file, marker) in [
        ("share/zsh/site-functions/_captrace", "#compdef captrace"),
        (
            "share/fish/vendor_completions.d/captrace.fish",
            "complete -c captrace",
        ),
    ] {
        let text = fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(text.contains(marker), "{file}");
    }
}

/// `captrace ARGS` on a real pseudo-terminal (`script`), stdout and stderr together.
fn on_a_terminal(args: &[&str], no_color: bool) -> Output {
    let mut line = support::captrace_bin().display().to_string();
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"])
        .env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    cmd.output().expect("running script (util-linux)")
}

const GREEN_RECOMMENDATION: &str = "\x1b[1;32mrecommendation: --cap-drop=ALL --cap-add=CHOWN";
const RED_DENIAL: &str = "\x1b[31m  CHOWN denied";

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn colour_on_a_terminal_only_and_never_with_no_color() {
    if !support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // uid 1000 must reach the file for its chown to get as far as the capability check.
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let profile = dir.path().join("p.json");
    // CHOWN used (root chowns to 1000), then denied (uid 1000 cannot give the file back).
    let script = format!(
        "cd {d} && touch f && chown 1000 f && setpriv --reuid=1000 --regid=1000 --clear-groups chown 0 f; true"
    );
    let args = [
        "record",
        "-o",
        profile.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ];

    let tty = on_a_terminal(&args, false);
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(text.contains(GREEN_RECOMMENDATION), "{text:?}");
    assert!(text.contains(RED_DENIAL), "{text:?}");

    let no_color = on_a_terminal(&args, true);
    let text = String::from_utf8_lossy(&no_color.stdout);
    assert!(
        text.contains("recommendation: --cap-drop=ALL --cap-add=CHOWN"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "NO_COLOR=1 and still an escape: {text:?}"
    );

    let piped = Command::new(support::captrace_bin())
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&piped.stderr);
    assert!(text.contains("  CHOWN denied"), "{text}");
    assert!(!text.contains('\x1b'), "an escape in a pipe: {text:?}");

    // `report` of the profile: coloured on stdout when it is a terminal, plain in a pipe.
    let report = on_a_terminal(&["report", profile.to_str().unwrap()], false);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains(GREEN_RECOMMENDATION), "{text:?}");
    let piped = Command::new(support::captrace_bin())
        .args(["report", profile.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&piped.stdout);
    assert!(
        text.contains("\nrecommendation: --cap-drop=ALL --cap-add=CHOWN"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}
