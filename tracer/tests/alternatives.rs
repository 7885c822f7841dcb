//! Safer alternatives, proven by `record --minimize` and checked the way a user would: a
//! server on port 80 runs as a non-root user when its network namespace sets
//! `net.ipv4.ip_unprivileged_port_start` to the lowest port it binds (and not at one above);
//! a program that starts as root only to become another user works when started as that user
//! with the rest of its set as ambient capabilities (`--as-user`). Every recorded set is also
//! proven sufficient and minimal under `setpriv --bounding-set` (`support::workload`).
mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
    sync::{Mutex, PoisonError},
};

use serde_json::{Value, json};
use support::workload::{Fixture, Workload, describe, strings};

/// Held by the workloads that bind port 80 on the host, so they never race for it.
static PORT_80: Mutex<()> = Mutex::new(());

/// A server at its start: binds port 80 on every address and listens.
const SERVER: &str = "/usr/bin/python3 -c 'import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 80))
s.listen(1)
s.close()'";

/// An ICMP echo to 127.0.0.1 as iputils ping sends it: an ICMP datagram socket when the
/// caller's group is in `net.ipv4.ping_group_range`, else a raw socket (CAP_NET_RAW). Exits 0
/// on the echo reply.
const PING: &str = "/usr/bin/python3 -c 'import socket, struct
def checksum(b):
    s = sum(struct.unpack(\"!%dH\" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
except PermissionError:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
body = b\"captrace\"
packet = struct.pack(\"!BBHHH\", 8, 0, checksum(struct.pack(\"!BBHHH\", 8, 0, 0, 1, 1) + body), 1, 1) + body
s.settimeout(10)
s.sendto(packet, (\"127.0.0.1\", 0))
while True:
    reply = s.recv(1024)
    if s.type == socket.SOCK_RAW:
        reply = reply[20:]
    if reply[0] == 0:
        break'";

/// Like memcached -u or nginx's master: as root, does its privileged work (a chown), then
/// drops to nobody; started as another user it skips the drop.
const DROPS_TO_NOBODY: &str = "/usr/bin/python3 -c 'import os
os.chown(os.environ[\"D\"] + \"/file\", 1000, 1000)
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)'";

/// `$D` that nobody can enter, with `$D/file` owned by root.
fn open_dir_with_root_file(dir: &Path) -> Fixture {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod 755 $D");
    fs::write(dir.join("file"), "x\n").expect("writing the file");
    Fixture::default()
}

fn alternatives(profile: &Value) -> Vec<Value> {
    profile["alternatives"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no alternatives in the profile: {profile:#}"))
}

/// `captrace recommend --prefer-alternatives -f FORMAT` of the profile.
fn recommend_preferring(profile: &Value, format: &str) -> Output {
    let dir = support::tempdir();
    let path = dir.path().join("profile.json");
    fs::write(&path, profile.to_string()).expect("writing the profile");
    support::captrace_output(&[
        "recommend",
        "--prefer-alternatives",
        "-f",
        format,
        path.to_str().unwrap(),
    ])
}

/// What a user checks: in a new network namespace whose `ip_unprivileged_port_start` is
/// `start`, the script as nobody without any capability.
fn as_nobody_with_port_start(start: u16, script: &str) -> Output {
    let inner = format!(
        "echo {start} > /proc/sys/net/ipv4/ip_unprivileged_port_start && exec setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- sh -c \"$0\""
    );
    Command::new("unshare")
        .args(["--net", "sh", "-c", &inner, script])
        .output()
        .expect("running unshare (util-linux)")
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_server_on_port_80_is_proven_to_run_as_non_root_with_the_sysctl() {
    support::require_root();
    let _port = PORT_80.lock().unwrap_or_else(PoisonError::into_inner);
    let profile = Workload::new("server on 80", SERVER, &["NET_BIND_SERVICE"])
        .record_args(&["--minimize"])
        .check();
    assert_eq!(profile["minimize"]["faithful"], true, "{profile:#}");
    assert_eq!(
        alternatives(&profile),
        vec![json!({
            "cap": "NET_BIND_SERVICE",
            "instead": "sysctl net.ipv4.ip_unprivileged_port_start=80",
            "proven": true
        })],
        "{profile:#}"
    );

    // The user's own check of the alternative: it binds as nobody at 80, not at 81.
    let out = as_nobody_with_port_start(80, SERVER);
    assert!(
        out.status.success(),
        "as nobody, start 80:\n{}",
        describe(&out)
    );
    let out = as_nobody_with_port_start(81, SERVER);
    assert!(
        !out.status.success(),
        "as nobody, start 81:\n{}",
        describe(&out)
    );

    let out = recommend_preferring(&profile, "docker");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        support::text(&out.stdout),
        "--cap-drop=ALL --sysctl net.ipv4.ip_unprivileged_port_start=80 --user 65534\n"
    );
    let out = recommend_preferring(&profile, "k8s");
    let yaml = support::text(&out.stdout);
    assert!(
        yaml.contains("  - name: net.ipv4.ip_unprivileged_port_start\n    value: \"80\"\n")
            && yaml.contains("  runAsNonRoot: true\n  runAsUser: 65534\n")
            && !yaml.contains("add:"),
        "{yaml}"
    );
    // systemd has no sysctl of a service's own: the capability stays, and it says so.
    let out = recommend_preferring(&profile, "systemd");
    assert!(
        support::text(&out.stdout).contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "{}",
        describe(&out)
    );
    assert!(
        support::text(&out.stderr).contains("kept NET_BIND_SERVICE"),
        "{}",
        describe(&out)
    );
}

/// Without `--minimize` the alternative is found from the port the kernel saw, unproven, and
/// the report shows it next to the flag.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn the_report_names_the_lowest_port_bound() {
    support::require_root();
    let _port = PORT_80.lock().unwrap_or_else(PoisonError::into_inner);
    let script = "/usr/bin/python3 -c 'import socket
for port in (443, 80, 8080):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((\"0.0.0.0\", port))
    s.close()'";
    // The set itself, checked the user's way.
    Workload::new("binds 443, 80, 8080", script, &["NET_BIND_SERVICE"]).check();
    let dir = support::tempdir();
    let path = dir.path().join("p.json");
    let out = support::captrace_output(&[
        "record",
        "-o",
        path.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let profile: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        alternatives(&profile),
        vec![json!({
            "cap": "NET_BIND_SERVICE",
            "instead": "sysctl net.ipv4.ip_unprivileged_port_start=80",
            "proven": false
        })]
    );
    let report = support::text(&out.stderr);
    assert!(
        report.contains("instead of NET_BIND_SERVICE: --sysctl net.ipv4.ip_unprivileged_port_start=80 in a container with its own network namespace (not proven"),
        "{report}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn an_icmp_echo_is_proven_to_run_as_non_root_with_the_ping_group_range() {
    support::require_root();
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "0"],
        "this test needs the host's default ping_group_range (no group may open ping sockets)"
    );
    let lo_flags = fs::read_to_string("/sys/class/net/lo/flags").unwrap();
    let lo_flags = u32::from_str_radix(lo_flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert!(
        lo_flags & 1 == 1,
        "this test pings 127.0.0.1: bring loopback up first (ip link set lo up)"
    );
    let profile = Workload::new("icmp echo", PING, &["NET_RAW"])
        .record_args(&["--minimize"])
        .check();
    assert_eq!(profile["minimize"]["faithful"], true, "{profile:#}");
    assert_eq!(
        alternatives(&profile),
        vec![json!({
            "cap": "NET_RAW",
            "instead": "sysctl net.ipv4.ping_group_range=0 2147483647",
            "proven": true
        })],
        "{profile:#}"
    );
    // The user's check: as nobody without capabilities, it pings with every group allowed in
    // its network namespace, and not with the kernel's default range.
    let ping_as_nobody = |range: &str| {
        let inner = format!(
            "ip link set lo up && echo '{range}' > /proc/sys/net/ipv4/ping_group_range && exec setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- sh -c \"$0\""
        );
        Command::new("unshare")
            .args(["--net", "sh", "-c", &inner, PING])
            .output()
            .expect("running unshare (util-linux)")
    };
    let out = ping_as_nobody("0 2147483647");
    assert!(out.status.success(), "every group:\n{}", describe(&out));
    let out = ping_as_nobody("1 0");
    assert!(!out.status.success(), "no group:\n{}", describe(&out));
    let out = recommend_preferring(&profile, "docker");
    assert_eq!(
        support::text(&out.stdout),
        "--cap-drop=ALL --sysctl 'net.ipv4.ping_group_range=0 2147483647' --user 65534\n"
    );
}

/// Binds 80, then appends to a file only root may write: as nobody, with the sysctl, the bind
/// works and the write does not, so the alternative is found but not proven.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn an_alternative_whose_replay_fails_is_not_proven() {
    support::require_root();
    let _port = PORT_80.lock().unwrap_or_else(PoisonError::into_inner);
    let script = "/usr/bin/python3 -c 'import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 80))
s.close()
open(os.environ[\"D\"] + \"/file\", \"a\").write(\"served\\n\")'";
    let profile = Workload::new("server writing root's file", script, &["NET_BIND_SERVICE"])
        .setup(open_dir_with_root_file)
        .record_args(&["--minimize"])
        .check();
    assert_eq!(profile["minimize"]["faithful"], true, "{profile:#}");
    assert_eq!(
        alternatives(&profile),
        vec![json!({
            "cap": "NET_BIND_SERVICE",
            "instead": "sysctl net.ipv4.ip_unprivileged_port_start=80",
            "proven": false
        })],
        "{profile:#}"
    );
    let note = profile["minimize"]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("the sysctl alternative was not proven"),
        "{profile:#}"
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn starting_as_the_user_it_switches_to_is_proven_without_setuid_and_setgid() {
    support::require_root();
    let w = Workload::new(
        "drops to nobody",
        DROPS_TO_NOBODY,
        &["CHOWN", "SETGID", "SETUID"],
    )
    .setup(open_dir_with_root_file)
    .record_args(&["--minimize", "--as-user", "nobody"]);
    let profile = w.check();
    assert_eq!(profile["minimize"]["faithful"], true, "{profile:#}");
    // The static explanation survives the minimization.
    assert!(
        strings(&profile["advice"])
            .iter()
            .any(|a| a.starts_with("SETGID, SETUID: used by python3[")
                && a.contains("only in setgid/setgroups/setuid to change user")),
        "{profile:#}"
    );
    assert_eq!(
        alternatives(&profile),
        vec![
            json!({"cap": "SETUID", "instead": "user nobody", "proven": true}),
            json!({"cap": "SETGID", "instead": "user nobody", "proven": true}),
        ],
        "{profile:#}"
    );

    // The user's own check: started as nobody with CHOWN as its only (ambient) capability it
    // works, and without that ambient capability it does not.
    let as_nobody = |ambient: &str| {
        w.run(|cmd| {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all,+chown",
                &format!("--ambient-caps=-all{ambient}"),
                "--bounding-set=-all,+chown",
                "--",
            ])
            .arg(cmd.get_program())
            .args(cmd.get_args());
            c
        })
        .0
    };
    let out = as_nobody(",+chown");
    assert!(
        out.status.success(),
        "as nobody with CHOWN:\n{}",
        describe(&out)
    );
    let out = as_nobody("");
    assert!(
        !out.status.success(),
        "as nobody without CHOWN:\n{}",
        describe(&out)
    );

    let out = recommend_preferring(&profile, "systemd");
    assert_eq!(
        support::text(&out.stdout),
        "[Service]\nUser=nobody\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\nNoNewPrivileges=yes\n",
        "{}",
        describe(&out)
    );
    let out = recommend_preferring(&profile, "docker");
    assert_eq!(
        support::text(&out.stdout),
        "--cap-drop=ALL --cap-add=CHOWN --user nobody\n"
    );
}

#[test]
fn as_user_is_checked_before_anything_starts() {
    let out = support::captrace_output(&[
        "record",
        "--minimize",
        "--as-user",
        "no-such-user-here",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = support::text(&out.stderr);
    assert!(err.contains("--as-user no-such-user-here"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
