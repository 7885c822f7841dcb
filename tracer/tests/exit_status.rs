//! Kernel tier (root): every class of captrace's own failure has its exit status and one line
//! naming the problem and the fix, and nothing has started: the command did not run and
//! captrace made no bpf() call at all, so it loaded and attached nothing. The faults are real:
//! another uid, a reduced bounding set, a user namespace, BTF or cgroup v2 hidden in a private
//! mount namespace.
mod support;

use support::{captrace, text};

use std::{
    fs,
    net::TcpListener,
    path::Path,
    process::{Command, Output},
};

use support::bpf::{self, BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN};

/// Runs `cmd` watching its bpf() calls and checks what must hold when captrace fails before
/// starting anything: exit status `code`, exactly one line of stderr that starts with
/// `captrace: ` and contains each of `says`, the command (which creates `ran`) did not run,
/// and not one bpf() call.
fn fails_before_starting(what: &str, cmd: Command, ran: &Path, code: i32, says: &[&str]) {
    let (out, calls) = bpf::output_watching_bpf(cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.starts_with("captrace: "), "{what}: {err}");
    for s in says {
        assert!(err.contains(s), "{what}: {s:?} not in {err}");
    }
    assert!(!ran.exists(), "{what}: the command ran");
    assert_eq!(calls, Vec::<u64>::new(), "{what}: bpf() calls made");
}

fn record(script: &str) -> Vec<&str> {
    vec!["record", "--", "sh", "-c", script]
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_bpf_watch_sees_a_recording_load_and_attach() {
    support::require_root();
    // The other tests here assert no bpf() call; this shows the watch would see them.
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let (out, calls) = bpf::output_watching_bpf(captrace(&record(&script)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(ran.exists());
    assert!(calls.contains(&BPF_PROG_LOAD), "{calls:?}");
    // One attach per raw tracepoint: the process-following ones and cap_capable (tp_btf
    // programs attach through the same command); one link per namespace syscall's exit.
    let count = |cmd| calls.iter().filter(|c| **c == cmd).count();
    assert_eq!(
        count(BPF_RAW_TRACEPOINT_OPEN),
        bpf::OUR_TRACEPOINTS.len(),
        "{calls:?}"
    );
    // aya's feature probe makes one link before anything is attached.
    let first_attach = calls.iter().position(|c| *c == BPF_RAW_TRACEPOINT_OPEN);
    let links = calls[first_attach.unwrap_or(calls.len())..]
        .iter()
        .filter(|c| **c == bpf::BPF_LINK_CREATE);
    assert_eq!(links.count(), bpf::OUR_SYSCALL_EXITS.len(), "{calls:?}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn bad_usage_exits_2() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let sh = ["--", "sh", "-c", script.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(sh).collect() };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            with(&["run", "--cap-add", "CHWON"]),
            vec!["unknown capability \"CHWON\" (did you mean CHOWN?)"],
        ),
        (
            with(&["run", "--cap-drop", "ALL,net_bindservice"]),
            vec!["did you mean NET_BIND_SERVICE?"],
        ),
        (
            with(&["run", "--ns", "pid,time"]),
            vec!["unknown namespace \"time\""],
        ),
        (
            with(&["run", "--user", "no-such-user-captrace"]),
            vec!["unknown user \"no-such-user-captrace\"", "/etc/passwd"],
        ),
        (
            with(&["run", "--user", "0:no-such-group-captrace"]),
            vec!["unknown group \"no-such-group-captrace\"", "/etc/group"],
        ),
        (
            with(&["run", "--rootfs", "/proc/self/fdinfo"]),
            vec!["not a root file system"],
        ),
        (
            with(&["record", "-o", "/no-such-dir-captrace/p.json"]),
            vec!["directory /no-such-dir-captrace does not exist"],
        ),
        (
            vec!["record", "--", ""],
            vec!["no command given", "captrace record -- "],
        ),
        (vec!["run", "--", ""], vec!["no command given"]),
        (
            vec!["monitor", "--json", "--duration", "1", "--cap", "CHWON"],
            vec!["unknown capability"],
        ),
        (
            vec![
                "monitor",
                "--json",
                "--duration",
                "1",
                "--container",
                "no-such-container-captrace",
            ],
            vec!["no running docker or podman container \"no-such-container-captrace\""],
        ),
    ];
    for (args, says) in &cases {
        let what = args.join(" ");
        fails_before_starting(&what, captrace(args), &ran, 2, says);
    }
    // A capability captrace itself lacks cannot be granted.
    let cmd = support::wrapped(
        &["setpriv", "--inh-caps=-all", "--bounding-set=-mknod", "--"],
        &with(&["run", "--cap-add", "MKNOD"]),
    );
    let says = ["captrace itself does not hold MKNOD"];
    fails_before_starting("run without MKNOD", cmd, &ran, 2, &says);
    // clap's own usage errors: 2 too, with its usage text.
    for args in [
        with(&["record", "--no-such-flag"]),
        with(&["record", "--setup", "true"]),
        with(&["record", "--check", "true"]),
        with(&["record", "--container", "x", "--minimize"]),
        vec!["run"],
    ] {
        let (out, calls) = bpf::output_watching_bpf(captrace(&args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!ran.exists() && calls.is_empty(), "{args:?}");
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_bad_profile_exits_3() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let head = r#"{"schema":"captrace/profile","version":1,"#;
    let write = |name: &str, content: &str| {
        let p = dir.path().join(name);
        fs::write(&p, content).unwrap();
        p
    };
    let large = dir.path().join("large.json");
    // Sparse: refused by its size before a byte is read.
    fs::File::create(&large).unwrap().set_len(17 << 20).unwrap();
    let cases = [
        (
            write("malformed.json", &format!("{head}\"cap_add\":[")),
            "not a valid captrace profile",
        ),
        (
            write("type.json", &format!("{head}\"cap_add\":\"CHOWN\"}}")),
            "invalid type",
        ),
        (
            write("unknown.json", &format!("{head}\"cap_add\":[\"CHOWM\"]}}")),
            "did you mean CHOWN?",
        ),
        (
            write("field.json", &format!("{head}\"cap_add\":[],\"caps\":1}}")),
            "unknown field",
        ),
        (
            write(
                "version.json",
                r#"{"schema":"captrace/profile","version":9,"cap_add":[]}"#,
            ),
            "this captrace reads",
        ),
        (large, "over the 16777216-byte limit"),
        (dir.path().join("missing.json"), "cannot read profile"),
        (dir.path().to_path_buf(), "cannot read profile"),
    ];
    for (path, says) in &cases {
        let p = path.to_str().unwrap();
        let name = path.display().to_string();
        let run = captrace(&["run", "--profile", p, "--", "sh", "-c", &script]);
        fails_before_starting(&format!("run {p}"), run, &ran, 3, &[&name, says]);
        let recommend = captrace(&["recommend", p]);
        let fix = "captrace record -o FILE";
        fails_before_starting(
            &format!("recommend {p}"),
            recommend,
            &ran,
            3,
            &[&name, says, fix],
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn missing_privileges_exit_4() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ];
    let sudo = "root (or CAP_BPF and CAP_PERFMON) is needed to load the kernel programs: run captrace with sudo";
    let monitor = ["monitor", "--json", "--duration", "1"];
    let audit = ["run", "--audit", "--", "sh", "-c", &script];
    for args in [&record(&script)[..], &audit, &monitor] {
        let cmd = support::wrapped(&nobody, args);
        fails_before_starting(&format!("uid 65534: {args:?}"), cmd, &ran, 4, &[sudo]);
    }
    // Setting a workload's sets and namespaces needs root too.
    for args in [
        &["run", "--", "sh", "-c", &script][..],
        &["run", "--ns", "pid", "--", "sh", "-c", &script],
    ] {
        let cmd = support::wrapped(&nobody, args);
        let says = [
            "Operation not permitted",
            "needs root: run captrace with sudo",
        ];
        fails_before_starting(&format!("uid 65534: {args:?}"), cmd, &ran, 4, &says);
    }
    // Root without CAP_BPF, without CAP_PERFMON, without both (and never CAP_SYS_ADMIN, which
    // covers both).
    for drop in [
        "sys_admin,-bpf",
        "sys_admin,-perfmon",
        "sys_admin,-bpf,-perfmon",
    ] {
        let bounding = format!("--bounding-set=-{drop}");
        let cmd = support::wrapped(
            &["setpriv", "--inh-caps=-all", &bounding, "--"],
            &record(&script),
        );
        fails_before_starting(&bounding, cmd, &ran, 4, &[sudo]);
    }
    // Root of a user namespace: its capabilities do not count for bpf().
    let cmd = support::wrapped(
        &["unshare", "--user", "--map-root-user", "--"],
        &record(&script),
    );
    let says = [
        "inside a user namespace",
        "run captrace as root on the host",
    ];
    fails_before_starting("unshare --user", cmd, &ran, 4, &says);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn cap_bpf_and_cap_perfmon_are_enough_without_cap_sys_admin() {
    support::require_root();
    // What the privilege message says is true: no CAP_SYS_ADMIN, and the recording works.
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let cmd = support::wrapped(
        &[
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-sys_admin",
            "--",
        ],
        &record(&script),
    );
    let (out, calls) = bpf::output_watching_bpf(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(ran.exists());
    assert!(calls.contains(&BPF_PROG_LOAD), "{calls:?}");
}

/// Shell commands that hide every cgroup v2 mount of a private mount namespace: unmounted,
/// or (the other way) hidden under a tmpfs, where mountinfo still lists them.
const UNMOUNT_CGROUP2: &str = "for m in $(findmnt -rn -t cgroup2 -o TARGET); do umount -l \"$m\"; done; test -z \"$(findmnt -rn -t cgroup2)\"";
const HIDE_CGROUPS: &str = "mount -t tmpfs none /sys/fs/cgroup";

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn missing_kernel_features_exit_5() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    let hide_btf = "mount -t tmpfs none /sys/kernel/btf";
    let btf = [
        "cannot read kernel type information from /sys/kernel/btf/vmlinux",
        "CONFIG_DEBUG_INFO_BTF=y",
    ];
    let monitor = ["monitor", "--json", "--duration", "1"];
    let audit = ["run", "--audit", "--", "sh", "-c", &script];
    for args in [&record(&script)[..], &audit, &monitor] {
        let cmd = support::in_private_mounts(hide_btf, args);
        fails_before_starting(&format!("no BTF: {args:?}"), cmd, &ran, 5, &btf);
    }
    let cgroup = [
        "cgroup v2 is not mounted",
        "mount -t cgroup2 none /sys/fs/cgroup",
    ];
    for setup in [UNMOUNT_CGROUP2, HIDE_CGROUPS] {
        let cmd = support::in_private_mounts(setup, &monitor);
        fails_before_starting(&format!("{setup}: monitor"), cmd, &ran, 5, &cgroup);
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn record_needs_no_cgroup_v2() {
    support::require_root();
    // Workloads are followed by process in the kernel, not by cgroup: only monitor needs it.
    for setup in [UNMOUNT_CGROUP2, HIDE_CGROUPS] {
        let dir = tempfile::tempdir().unwrap();
        let (ran, script) = support::marker(dir.path());
        let p = dir.path().join("p.json");
        let args = [
            "record",
            "-o",
            p.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ];
        let out: Output = support::in_private_mounts(setup, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{setup}: {}", text(&out.stderr));
        assert!(ran.exists(), "{setup}");
        let profile = captrace::profile::Profile::read(&p).unwrap();
        assert_eq!(profile.exit_status, Some(0));
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn other_failures_exit_125() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (ran, script) = support::marker(dir.path());
    // Before anything starts: the metrics address is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cmd = captrace(&["monitor", "--json", "--duration", "1", "--metrics", &addr]);
    let says = [
        format!("--metrics {addr}: cannot listen"),
        "Address already in use".into(),
    ];
    let says: Vec<&str> = says.iter().map(String::as_str).collect();
    fails_before_starting("metrics address in use", cmd, &ran, 125, &says);
    // After the command ran: the profile cannot be written. Only the last line is the error.
    let out = captrace(&[
        "record",
        "-o",
        "/proc/captrace-no-such.json",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        ran.exists(),
        "the command ran before the profile was written"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("captrace: cannot write profile /proc/captrace-no-such.json: "),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_command_that_cannot_run_exits_126_or_127() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    for sub in ["record", "run"] {
        let cmd = captrace(&[sub, "--", "no-such-command-captrace"]);
        let says = ["captrace: no-such-command-captrace: command not found"];
        fails_before_starting(sub, cmd, &ran, 127, &says);
        let cmd = captrace(&[sub, "--", "/etc/passwd"]);
        let says = ["captrace: /etc/passwd: cannot execute: permission denied"];
        fails_before_starting(sub, cmd, &ran, 126, &says);
    }
}
