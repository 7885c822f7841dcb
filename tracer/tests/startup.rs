//! Kernel tier: what captrace's start-up caches or skips changes nothing it reports (root).
//! What it finds in the kernel's BTF is cached for the rest of the boot (`/run/captrace/btf`)
//! and the next `record` reads it instead of scanning the BTF; a kernel that refuses every
//! fexit program is asked once, not once per program.
mod support;

use std::{fs, path::Path, time::Duration};

use captrace::profile::Profile;
use support::text;

/// The debug log without its colours.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut rest = log;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    out + rest
}

fn with_log(mut cmd: std::process::Command) -> (std::process::Output, String) {
    cmd.env("CAPTRACE_LOG", "captrace=debug");
    let out = support::output_within(cmd, Duration::from_secs(60));
    let log = plain(&text(&out.stderr));
    (out, log)
}

fn cap_add(profile: &Path) -> Vec<String> {
    let written = fs::read_to_string(profile).unwrap();
    let p = Profile::from_json(&written, "p.json").unwrap();
    assert_eq!(support::count(&p, "CHOWN", "fchownat"), 1, "{written}");
    p.cap_add.iter().map(|c| c.name()).collect()
}

/// Records `chown 1000 FILE` twice in one private mount namespace over a tmpfs `/run`, after
/// `setup` (so the machine's own caches are untouched): the profiles and debug logs of both.
/// The cache's mode and owner after the first are in `dir/mode`.
fn record_twice(dir: &Path, setup: &str) -> [(Vec<String>, String); 2] {
    let file = dir.join("f");
    fs::write(&file, "").unwrap();
    let (p1, p2, log1) = (dir.join("1.json"), dir.join("2.json"), dir.join("1.log"));
    let (f, p1s, p2s) = (
        file.to_str().unwrap(),
        p1.to_str().unwrap(),
        p2.to_str().unwrap(),
    );
    let setup = format!(
        "mount -t tmpfs none /run; {setup}; \"$0\" record -o {p1s} -- chown 1000 {f} 2>{}; \
         stat -c '%a %u' /run/captrace/btf >{} 2>&1 || true",
        log1.display(),
        dir.join("mode").display()
    );
    let mut cmd =
        support::in_private_mounts(&setup, &["record", "-o", p2s, "--", "chown", "1000", f]);
    cmd.env("CAPTRACE_LOG", "captrace=debug");
    let out = support::output_within(cmd, Duration::from_secs(60));
    let log2 = plain(&text(&out.stderr));
    let log1 = plain(&fs::read_to_string(&log1).unwrap_or_default());
    assert_eq!(out.status.code(), Some(0), "first: {log1}\nsecond: {log2}");
    [(cap_add(&p1), log1), (cap_add(&p2), log2)]
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_second_record_on_the_same_boot_reads_the_kernel_btf_cache_and_still_reports_chown() {
    support::require_root();
    let dir = support::tempdir();
    let [(first, log1), (second, log2)] = record_twice(dir.path(), "true");
    assert!(
        log1.contains("kernel BTF facts source=Scanned"),
        "the first record scans: {log1}"
    );
    assert!(
        log2.contains("kernel BTF facts source=Cache"),
        "the second reads the cache: {log2}"
    );
    assert_eq!(first, ["CHOWN"]);
    assert_eq!(second, ["CHOWN"]);
    assert!(log2.contains("hook=Some((Tracepoint") || log2.contains("hook=Some((Fentry"));
    // Root's alone, as the first record left it.
    let mode = fs::read_to_string(dir.path().join("mode")).unwrap();
    assert_eq!(mode, "600 0\n");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_kernel_btf_cache_others_could_write_is_never_used() {
    support::require_root();
    let dir = support::tempdir();
    // A directory anyone can write: a cache there (even the one captrace itself would write)
    // is neither read nor replaced, and both records scan.
    let [(first, log1), (second, log2)] = record_twice(dir.path(), "mkdir -m 0777 /run/captrace");
    for log in [&log1, &log2] {
        assert!(
            log.contains(
                "kernel BTF facts source=Scanned(\"its directory is missing or not root's alone\")"
            ),
            "{log}"
        );
        assert!(log.contains("kernel BTF facts not cached"), "{log}");
    }
    assert_eq!(first, ["CHOWN"]);
    assert_eq!(second, ["CHOWN"]);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn fexit_is_left_out_only_where_the_kernel_refuses_captraces_own_fexit_program() {
    support::require_root();
    let dir = support::tempdir();
    let file = dir.path().join("f");
    fs::write(&file, "").unwrap();
    let p = dir.path().join("p.json");
    let (f, ps) = (file.to_str().unwrap(), p.to_str().unwrap());
    // fentry by name is always tried: what the kernel says of captrace's own program.
    let (named, named_log) = with_log(support::captrace(&[
        "record", "--hook", "fentry", "--", "true",
    ]));
    let (auto, log) = with_log(support::captrace(&[
        "record", "--hook", "auto", "-o", ps, "--", "chown", "1000", f,
    ]));
    assert_eq!(auto.status.code(), Some(0), "{log}");
    assert_eq!(cap_add(&p), ["CHOWN"]);
    let not_tried = "fexit on the namespace syscalls not tried";
    if named.status.code() == Some(0) {
        // Trampolines: auto takes fentry, as before.
        assert!(named_log.contains("hook=Some((Fentry"), "{named_log}");
        assert!(log.contains("hook=Some((Fentry"), "{log}");
        assert!(!log.contains(not_tried), "{log}");
    } else if named_log.contains("fentry: the kernel refused the program: Operation not permitted")
    {
        // This host (KERNEL.md): refused before verification, so auto does not try fexit and
        // gives the same reason.
        assert!(
            log.contains(&format!(
                "{not_tried} why=the kernel refused the program: Operation not permitted"
            )),
            "{log}"
        );
        assert!(
            log.contains("hook refused hook=\"fentry\" why=the kernel refused the program: Operation not permitted"),
            "{log}"
        );
        assert!(
            !log.contains("fexit on the namespace syscalls refused"),
            "{log}"
        );
        assert!(log.contains("hook=Some((Tracepoint") || log.contains("hook=Some((Kprobe"));
    } else {
        // Refused for another reason: auto tries the programs themselves.
        assert!(!log.contains(not_tried), "{log}");
    }
}
