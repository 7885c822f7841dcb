//! Kernel tier (root): workloads that turn on captrace. Whatever they do, their checks are
//! still counted, a `run` workload stays confined, and nothing of captrace stays attached.
mod support;

use support::{root_file, status_field};

use std::{
    fs,
    os::unix::{fs::MetadataExt as _, process::ExitStatusExt as _},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use support::{bpf, count, record, wait_for};

fn names(p: &captrace::profile::Profile) -> Vec<String> {
    p.cap_add.iter().map(|c| c.name()).collect()
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn hostile_workloads_are_still_traced() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    // Closes every fd it has, then uses a capability.
    fs::write(&f, "x").unwrap();
    let script = format!("exec 0<&- 1>&- 2>&-; chown 1000 {}", f.display());
    let (_, p) = record(&["sh", "-c", &script]);
    assert_eq!(
        p.cap_add.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["CHOWN"]
    );
    // Moves itself to another cgroup first: tracking is by process, not by cgroup.
    let cg = support::cgroup2_root().join("captrace-hostile");
    let _ = fs::create_dir(&cg);
    fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && chown 1000 {}",
        cg.display(),
        f.display()
    );
    let (out, p) = record(&["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        p.cap_add.iter().any(|c| c.name() == "CHOWN"),
        "{:?}",
        p.cap_add
    );
    let _ = fs::remove_dir(&cg);
    // Calls unshare and setns itself: followed into its namespaces, and the calls reported.
    let mut host = Command::new("sleep").arg("5").spawn().unwrap();
    let join = format!("hostname x; nsenter -t {} -u true", host.id());
    let (_, p) = record(&["unshare", "--uts", "--net", "sh", "-c", &join]);
    host.kill().ok();
    host.wait().ok();
    assert_eq!(p.namespaces.created, ["uts", "net"]);
    assert_eq!(p.namespaces.joined, ["uts"]);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_record_workload_that_kills_captrace_goes_on_untraced_and_nothing_stays_attached() {
    support::require_root();
    // The workload holds captrace's own privileges, so nothing stops it: captrace dies, the
    // workload is not killed with it (it goes on, untraced), no profile is written, and the
    // kernel drops the programs with captrace's fds.
    let dir = tempfile::tempdir().unwrap();
    let (go, done, f, p) = (
        dir.path().join("go"),
        dir.path().join("done"),
        dir.path().join("f"),
        dir.path().join("p.json"),
    );
    root_file(&f);
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; kill -9 $PPID; sleep 0.2; chown 1000 {f}; touch {done}",
        go = go.display(),
        f = f.display(),
        done = done.display()
    );
    let mut captrace = Command::new(support::captrace_bin())
        .args([
            "record",
            "-o",
            p.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let links = bpf::links_once_attached(captrace.id());
    fs::write(&go, "").unwrap();
    let status = captrace.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    wait_for("the workload to finish", Duration::from_secs(5), || {
        done.exists()
    });
    assert_eq!(fs::metadata(&f).unwrap().uid(), 1000);
    assert!(!p.exists(), "no profile from a killed captrace");
    bpf::wait_until_gone(&links);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_run_workload_that_kills_captrace_stays_confined() {
    support::require_root();
    // Same uid as captrace, so no capability is needed to kill it; what it was given was set in
    // the workload itself, before exec, and stays.
    for audit in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (go, status_file, node, rc) = (
            dir.path().join("go"),
            dir.path().join("status"),
            dir.path().join("node"),
            dir.path().join("rc"),
        );
        let script = format!(
            "while [ ! -e {go} ]; do sleep 0.05; done; kill -9 $PPID; sleep 0.2; cat /proc/self/status > {s}; mknod {n} c 1 3 2>/dev/null; echo $? > {rc}",
            go = go.display(),
            s = status_file.display(),
            n = node.display(),
            rc = rc.display()
        );
        let mut args = vec!["run", "--cap-drop", "ALL", "--cap-add", "CHOWN"];
        if audit {
            args.push("--audit");
        }
        args.extend(["--", "sh", "-c", &script]);
        let mut captrace = Command::new(support::captrace_bin())
            .args(&args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let links = audit.then(|| bpf::links_once_attached(captrace.id()));
        fs::write(&go, "").unwrap();
        let status = captrace.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "audit {audit}: {status:?}");
        wait_for("the workload to finish", Duration::from_secs(5), || {
            fs::read_to_string(&rc).is_ok_and(|s| s.ends_with('\n'))
        });
        let status = fs::read_to_string(&status_file).unwrap();
        assert_eq!(status_field(&status, "CapEff:"), "0000000000000001");
        assert_eq!(status_field(&status, "CapPrm:"), "0000000000000001");
        assert_eq!(status_field(&status, "CapBnd:"), "0000000000000001");
        assert_eq!(status_field(&status, "CapAmb:"), "0000000000000000");
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
        assert_ne!(
            fs::read_to_string(&rc).unwrap().trim(),
            "0",
            "mknod must fail"
        );
        assert!(!node.exists());
        if let Some(links) = links {
            bpf::wait_until_gone(&links);
        }
    }
}

/// Python: PTRACE_ATTACH to its parent (captrace); if that works, wait for the stop, then
/// detach (`detach`) or just exit (`exit`, the kernel detaches); then chown `f`.
const PTRACE_PARENT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_DETACH, WALL = 16, 17, 0x40000000
parent = os.getppid()
if libc.ptrace(PTRACE_ATTACH, parent, None, None) != 0:
    print("attach failed:", os.strerror(ctypes.get_errno()))
    sys.exit(3)
_, status = os.waitpid(parent, WALL)
print("attached; parent stopped by", os.WSTOPSIG(status))
if sys.argv[1] == "detach":
    libc.ptrace(PTRACE_DETACH, parent, None, None)
os.chown(sys.argv[2], 1000, -1)
"#;

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn ptrace_of_captrace_fails_in_run_and_only_pauses_record() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    let f = f.to_str().unwrap();
    // run: the workload's permitted set is not a superset of captrace's and it lacks
    // SYS_PTRACE (cap_ptrace_access_check), so the kernel refuses; captrace goes on.
    root_file(Path::new(f));
    let out = Command::new(support::captrace_bin())
        .args(["run", "--", "python3", "-c", PTRACE_PARENT, "detach", f])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(stdout, "attach failed: Operation not permitted\n");
    assert_eq!(fs::metadata(f).unwrap().uid(), 0);
    // record: the workload holds captrace's privileges and can stop it, but the checks are
    // counted in the kernel meanwhile, and captrace resumes when the tracer detaches or exits.
    for how in ["detach", "exit"] {
        root_file(Path::new(f));
        let (out, p) = record(&["python3", "-c", PTRACE_PARENT, how, f]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{how}: {stdout}");
        assert_eq!(stdout, "attached; parent stopped by 19\n", "{how}");
        assert_eq!(names(&p), ["CHOWN"], "{how}");
        let chown: u64 = ["chown", "fchownat"]
            .iter()
            .map(|s| count(&p, "CHOWN", s))
            .sum();
        assert_eq!(chown, 1, "{how}: {:?}", p.checks);
        assert_eq!(fs::metadata(f).unwrap().uid(), 1000);
    }
}

/// Python: unshare(CLONE_NEWUSER) (no exec, so it keeps every capability in the new
/// namespace), print CapEff, then mknod argv[1], which needs MKNOD on the host.
const UNSHARE_USER_THEN_MKNOD: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:
    sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
print([l for l in open("/proc/self/status") if l.startswith("CapEff")][0], end="", flush=True)
os.mknod(sys.argv[1], 0o20644, os.makedev(1, 3))
"#;

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn namespace_calls_do_not_unconfine_a_run_workload() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let n = node.to_str().unwrap();
    // The default seccomp filter refuses unshare and setns without SYS_ADMIN, as Docker's does
    // (tests/seccomp.rs); unconfined, the capability boundary beneath it must hold alone.
    let run = |ns: &[&str], cmd: &[&str]| {
        let out = Command::new(support::captrace_bin())
            .args(["run", "--cap-drop", "ALL", "--seccomp", "unconfined"])
            .args(ns)
            .arg("--")
            .args(cmd)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Every capability inside a user namespace of its own (unshare without exec keeps them),
    // none on the host.
    let (code, out, err) = run(&[], &["python3", "-c", UNSHARE_USER_THEN_MKNOD, n]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(out.contains("CapEff:\t000001ffffffffff"), "{out}{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!node.exists());
    // Mapping root into one needs SETFCAP (verify_root_map), other namespaces SYS_ADMIN.
    let (code, _, err) = run(&[], &["unshare", "--user", "--map-root-user", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("uid_map: Operation not permitted"), "{err}");
    let (code, _, err) = run(&[], &["unshare", "--mount", "--uts", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Operation not permitted"), "{err}");
    // Joining the host's namespaces back, from its own or from the host's.
    for ns in [&["--ns", "mnt,uts"][..], &[]] {
        let (code, _, err) = run(
            ns,
            &[
                "nsenter",
                "--mount=/proc/1/ns/mnt",
                "--uts=/proc/1/ns/uts",
                "true",
            ],
        );
        assert_ne!(code, Some(0), "{ns:?}");
        assert!(err.contains("Permission denied"), "{ns:?}: {err}");
    }
}
