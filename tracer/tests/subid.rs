//! A user-namespace `run` maps root onto the range /etc/subuid and /etc/subgid give root (or
//! a `captrace` entry), not onto 100000, usually the first user's range (#14 item 17). The
//! files are bind-mounted in a private mount namespace: the host's stay untouched.
mod support;

use std::fs;

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_user_namespace_run_takes_roots_range_from_subuid_and_subgid() {
    if !support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (uid, gid) = (dir.path().join("subuid"), dir.path().join("subgid"));
    fs::write(&uid, "user:100000:65536\nroot:300000:65536\n").unwrap();
    fs::write(
        &gid,
        "user:100000:65536\ncaptrace:400000:65536\nroot:500000:65536\n",
    )
    .unwrap();
    for f in ["/etc/subuid", "/etc/subgid"] {
        if !std::path::Path::new(f).exists() {
            // A mount point must exist; created empty and left as a machine without ranges has.
            fs::write(f, "").unwrap();
        }
    }
    let setup = format!(
        "mount --bind {} /etc/subuid; mount --bind {} /etc/subgid",
        uid.display(),
        gid.display()
    );
    let script = "cat /proc/self/uid_map /proc/self/gid_map";
    let out =
        support::in_private_mounts(&setup, &["run", "--ns", "user", "--", "sh", "-c", script])
            .output()
            .unwrap();
    let maps: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        maps,
        [["0", "300000", "65536"], ["0", "400000", "65536"]],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --userns-base still decides alone when given.
    let out = support::in_private_mounts(
        &setup,
        &[
            "run",
            "--ns",
            "user",
            "--userns-base",
            "600000",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("600000").count(), 2, "{text}");
}
