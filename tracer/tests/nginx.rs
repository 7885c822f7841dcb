//! Real nginx (Debian's nginx-light, installed by `cargo xtask setup`), the way its package runs
//! it: the master starts as root, creates its temporary directories and chowns them to
//! www-data, and its worker drops to www-data (setgid, setgroups, setuid). One request is
//! served, then nginx quits. Each run (the recording, each replay's fixture, each proof) has a
//! fresh `$D` with nothing created yet, as a fresh deployment has.
//!
//! The set is checked the way a user would (`support::workload`): nginx serves the request
//! under `setpriv --bounding-set` with exactly the recorded set and fails with any one member
//! removed. The port is above 1024 so that tests running in parallel never compete for :80;
//! NET_BIND_SERVICE and its alternative are covered by `alternatives.rs`.
mod support;

use std::{
    fs::{self, Permissions},
    os::unix::fs::PermissionsExt as _,
    path::Path,
};

use support::workload::{Fixture, Workload, strings};

/// Starts nginx with `$D/nginx.conf`, fetches `/` from PORT, asks nginx to quit and waits
/// until its master has exited, so that the next run can bind the port again.
macro_rules! serve_once {
    ($port:literal) => {
        concat!(
            r#"nginx -e "$D/error.log" -c "$D/nginx.conf" || exit 1
curl -sf -m 3 http://127.0.0.1:"#,
            $port,
            r#"/ >/dev/null; s=$?
p=$(cat "$D/nginx.pid" 2>/dev/null)
nginx -e "$D/error.log" -c "$D/nginx.conf" -s quit
while [ -n "$p" ] && kill -0 "$p" 2>/dev/null; do sleep 0.05; done
exit $s"#
        )
    };
}

/// A site in `$D` served on `port` by a worker running as www-data, with every temporary
/// directory under `$D/tmp` (not yet created: nginx creates and chowns them at start-up).
fn site(dir: &Path, port: u16) -> Fixture {
    // The worker (www-data) must reach the document root.
    fs::set_permissions(dir, Permissions::from_mode(0o755)).expect("chmod 755 $D");
    fs::create_dir(dir.join("html")).expect("creating html");
    fs::write(dir.join("html/index.html"), "hello\n").expect("writing index.html");
    fs::create_dir(dir.join("tmp")).expect("creating tmp");
    let d = dir.display();
    let conf = format!(
        "user www-data;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{ listen 127.0.0.1:{port}; root {d}/html; }}
}}
"
    );
    fs::write(dir.join("nginx.conf"), conf).expect("writing nginx.conf");
    Fixture::default()
}

fn site_18071(dir: &Path) -> Fixture {
    site(dir, 18071)
}

fn site_18072(dir: &Path) -> Fixture {
    site(dir, 18072)
}

fn site_18073(dir: &Path) -> Fixture {
    site(dir, 18073)
}

/// The capabilities nginx's package start needs: CHOWN for the temporary directories, SETGID
/// and SETUID for the worker to become www-data.
const NGINX_SET: &[&str] = &["CHOWN", "SETGID", "SETUID"];

/// The static recommendation is nginx's set, and it says why SETUID and SETGID are there.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn nginx_is_recorded_with_exactly_the_set_its_start_needs() {
    support::require_root();
    let profile = Workload::new("nginx", serve_once!("18071"), NGINX_SET)
        .setup(site_18071)
        .check();
    let advice = strings(&profile["advice"]).join("\n");
    assert!(
        advice.contains("SETUID") && advice.contains("change user"),
        "no user-change explanation in the advice:\n{advice}"
    );
}

/// `--minimize`: every replay runs in the recording's `$D`, where the recording already
/// created the temporary directories and chowned them to www-data, as a host's /var/lib/nginx
/// survives the first start. No replay chowns, so the replays are not faithful, and the
/// recorded set is kept, CHOWN included (before, `--minimize` dropped CHOWN, and the set broke
/// nginx on a fresh host). The kept set is then proven on fresh fixtures by `check()`.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn nginx_minimize_keeps_chown_when_the_replays_find_its_directories_made() {
    support::require_root();
    let profile = Workload::new("nginx --minimize", serve_once!("18072"), NGINX_SET)
        .setup(site_18072)
        .record_args(&["--minimize"])
        .check();
    let m = &profile["minimize"];
    assert_eq!(m["faithful"], false, "{m:#}");
    assert!(
        !strings(&m["dropped"]).contains(&"CHOWN".to_string()),
        "--minimize dropped CHOWN: {m:#}"
    );
    assert!(
        strings(&m["differences"])
            .iter()
            .any(|d| d.starts_with("CHOWN in ") && d.contains("replayed 0x")),
        "{m:#}"
    );
    let note = m["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("not faithful") && note.contains("--setup"),
        "{note}"
    );
}

/// With `--setup` removing the temporary directories before each replay, every replay
/// creates and chowns them as a fresh start does: faithful, and the whole set is proven.
#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn nginx_minimize_with_setup_proves_chown_setgid_and_setuid() {
    support::require_root();
    let profile = Workload::new("nginx --minimize --setup", serve_once!("18073"), NGINX_SET)
        .setup(site_18073)
        .record_args(&["--minimize", "--setup", r#"rm -rf "$D"/tmp/*"#])
        .check();
    let m = &profile["minimize"];
    assert_eq!(m["faithful"], true, "{m:#}");
    assert_eq!(strings(&m["proven"]), NGINX_SET, "{m:#}");
}
