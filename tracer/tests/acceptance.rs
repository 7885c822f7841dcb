//! The acceptance method of captrace: record real workloads with `captrace record`, then prove
//! the recorded `cap_add` on the host with `setpriv`:
//!
//! 1. the workload succeeds when root's bounding set is exactly `cap_add` (sufficient), and
//! 2. it fails when any one member of `cap_add` is taken away (minimal),
//!
//! and check that `cap_add` is the set the kernel is known to ask for.
//!
//! Each workload is a `sh -c` script run as root. Every run (the recording and each proof) gets
//! a fresh private directory in `$D`, built by the workload's setup and removed afterwards, so
//! the workloads are re-runnable and leave nothing behind.
mod support;

use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, chown},
    path::Path,
    process::{Command, Stdio},
    sync::{Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use support::workload::{Fixture, Workload, cap_add, describe, has_check};

/// Held by the workloads that use 127.0.0.1:80, so they never race for it.
static PORT_80: Mutex<()> = Mutex::new(());

/// Content of the files the workloads read or serve.
const CONTENT: &str = "captrace acceptance\n";

/// `$D/secret`: [`CONTENT`], owned by uid/gid 1000, mode 0000.
fn secret_of_another_user(dir: &Path) -> Fixture {
    let secret = dir.join("secret");
    fs::write(&secret, CONTENT).expect("writing the secret");
    chown(&secret, Some(1000), Some(1000)).expect("chown 1000:1000 of the secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).expect("chmod 0 the secret");
    Fixture::default()
}

/// `$D/victim`: the PID of a `sleep` running as uid/gid 1000.
fn victim_of_another_user(dir: &Path) -> Fixture {
    let victim = Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting setpriv");
    let pid = victim.id();
    let fixture = Fixture {
        victim: Some(victim),
        dir: None,
    };
    // Signalling it before setpriv changed its uid would need no capability.
    let status = format!("/proc/{pid}/status");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(&status).is_ok_and(|s| s.contains("\nUid:\t1000\t1000\t1000\t1000")) {
        assert!(Instant::now() < deadline, "pid {pid} never became uid 1000");
        thread::sleep(Duration::from_millis(10));
    }
    fs::write(dir.join("victim"), pid.to_string()).expect("writing the victim's PID");
    fixture
}

/// `$D/www/index.html`: [`CONTENT`].
fn web_root(dir: &Path) -> Fixture {
    fs::create_dir(dir.join("www")).expect("creating www");
    fs::write(dir.join("www/index.html"), CONTENT).expect("writing index.html");
    Fixture::default()
}

/// `$D/file`, owned by root.
fn root_file(dir: &Path) -> Fixture {
    fs::write(dir.join("file"), CONTENT).expect("writing the file");
    Fixture::default()
}

/// The harness itself: `run_confined` really bounds root's capabilities.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn setpriv_bounds_root_to_the_given_capabilities() {
    support::require_root();
    let probe = Workload::new("probe", "grep '^Cap[EP]' /proc/self/status", &[]);
    let out = probe.run_confined(&["CHOWN", "NET_RAW"]);
    assert!(out.status.success(), "{}", describe(&out));
    // CHOWN is bit 0 and NET_RAW bit 13.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "CapPrm:\t0000000000002001\nCapEff:\t0000000000002001\n"
    );
    let out = probe.run_confined(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn chown_of_a_root_file() {
    support::require_root();
    Workload::new("chown", r#"chown 1000 "$D/file""#, &["CHOWN"])
        .setup(root_file)
        .check();
}

/// Reading asks for DAC_READ_SEARCH first, and the kernel stops there when it is granted
/// (`generic_permission`); DAC_OVERRIDE would do too, so either is minimal.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn reading_a_mode_0000_file_of_another_user() {
    support::require_root();
    let profile = Workload::new("dac read", r#"cat "$D/secret""#, &["DAC_READ_SEARCH"])
        .setup(secret_of_another_user)
        .check();
    assert!(has_check(&profile, "DAC_READ_SEARCH", "audited"));
}

/// Only DAC_OVERRIDE overrides a missing write permission.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn writing_a_mode_0000_file_of_another_user() {
    support::require_root();
    Workload::new("dac write", r#"echo more >>"$D/secret""#, &["DAC_OVERRIDE"])
        .setup(secret_of_another_user)
        .check();
}

/// The read makes a DAC_READ_SEARCH check and the append a DAC_OVERRIDE one; DAC_OVERRIDE alone
/// allows both (`generic_permission`), so the record keeps only it, and `--minimize` proves it.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn reading_and_writing_a_mode_0000_file_minimized() {
    support::require_root();
    let profile = Workload::new(
        "dac read+write --minimize",
        r#"cat "$D/secret" && echo more >>"$D/secret""#,
        &["DAC_OVERRIDE"],
    )
    .setup(secret_of_another_user)
    .record_args(&["--minimize"])
    .check();
    assert!(has_check(&profile, "DAC_READ_SEARCH", "audited"));
    assert_eq!(
        profile["minimize"]["proven"],
        serde_json::json!(["DAC_OVERRIDE"])
    );
}

/// python makes many granted CAP_SYS_ADMIN checks with CAP_OPT_NOAUDIT (memory accounting):
/// they must not reach `cap_add`.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn python_binding_port_80() {
    support::require_root();
    let _port = PORT_80.lock().unwrap_or_else(PoisonError::into_inner);
    let profile = Workload::new(
        "bind 80",
        "/usr/bin/python3 -c 'import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"127.0.0.1\", 80))
s.close()'",
        &["NET_BIND_SERVICE"],
    )
    .check();
    assert!(!cap_add(&profile).iter().any(|cap| cap == "SYS_ADMIN"));
    assert!(
        has_check(&profile, "SYS_ADMIN", "noaudit"),
        "python made no noaudit SYS_ADMIN check, so this test no longer shows they are ignored"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn python_opening_a_raw_socket() {
    support::require_root();
    Workload::new(
        "raw socket",
        "/usr/bin/python3 -c 'import socket
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()'",
        &["NET_RAW"],
    )
    .check();
}

/// Both `unshare(CLONE_NEWUTS)` and `sethostname` in the new namespace (owned by the host user
/// namespace) ask for SYS_ADMIN.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn hostname_in_a_new_uts_namespace() {
    support::require_root();
    Workload::new(
        "unshare uts",
        "unshare --uts hostname captrace-acceptance",
        &["SYS_ADMIN"],
    )
    .check();
}

/// The process of uid 1000 is started by the fixture: starting it in the workload would need
/// SETUID and SETGID too.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn killing_a_process_of_another_user() {
    support::require_root();
    Workload::new("kill", r#"kill "$(cat "$D/victim")""#, &["KILL"])
        .setup(victim_of_another_user)
        .check();
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn mknod_of_a_character_device() {
    support::require_root();
    Workload::new(
        "mknod",
        r#"mknod "$D/null" c 1 3 && rm "$D/null""#,
        &["MKNOD"],
    )
    .check();
}

/// A real server: busybox httpd on port 80, fetched once, then stopped.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn busybox_httpd_on_port_80() {
    support::require_root();
    let _port = PORT_80.lock().unwrap_or_else(PoisonError::into_inner);
    let httpd = Workload::new(
        "httpd",
        r#"/bin/busybox httpd -f -p 127.0.0.1:80 -h "$D/www" &
httpd=$!
ok=1
i=0
while [ $i -lt 50 ]; do
    if /bin/busybox wget -q -O- http://127.0.0.1:80/; then ok=0; break; fi
    kill -0 $httpd 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
kill $httpd 2>/dev/null
wait $httpd
exit $ok"#,
        &["NET_BIND_SERVICE"],
    )
    .setup(web_root);
    httpd.check();
    let out = httpd.run_confined(&["NET_BIND_SERVICE"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        CONTENT,
        "{}",
        describe(&out)
    );
}
