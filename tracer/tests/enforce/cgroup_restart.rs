//! Issue #14 item 5, the race: `docker restart` removes the confined cgroup and makes a new one
//! at the same path a moment later. `enforce` may look in between, while the path is missing:
//! that must still end in the replaced-cgroup error, not in a quiet "the workload is gone"
//! with exit 0, while a path that stays away is the workload's end.
use std::{fs, path::PathBuf, process::Child, sync::mpsc};

use super::{assert_replaced, ended_by_itself, require_lsm, start_enforce, support, wait_for_line};

/// A fresh, empty cgroup v2 directory named after the test, and `enforce --cgroup` on it,
/// confining.
fn enforce_fresh_cgroup(what: &str) -> (PathBuf, String, Child, mpsc::Receiver<String>) {
    let cg =
        support::cgroup2_root().join(format!("captrace-enforce-{what}-{}", std::process::id()));
    let _ = fs::remove_dir(&cg);
    fs::create_dir(&cg).unwrap();
    let cg_arg = cg.display().to_string();
    let (enforcer, rx) = start_enforce(&["--cgroup", &cg_arg, "--cap-drop", "ALL"]);
    (cg, cg_arg, enforcer, rx)
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_cgroup_seen_missing_before_it_is_made_again_is_still_reported_replaced() {
    require_lsm();
    let (cg, cg_arg, enforcer, rx) = enforce_fresh_cgroup("restart");
    fs::remove_dir(&cg).unwrap();
    // enforce has now seen the path missing: only then does the "restart" make it again.
    let line = wait_for_line(&rx, "is gone; waiting");
    assert!(line.contains(&cg_arg), "{line}");
    fs::create_dir(&cg).unwrap();
    let (code, _, err) = ended_by_itself(enforcer, rx);
    let _ = fs::remove_dir(&cg);
    assert_replaced(code, &err);
    assert!(!err.contains("the workload is gone"), "{err}");
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_cgroup_removed_for_good_ends_enforce_as_gone() {
    require_lsm();
    let (cg, cg_arg, enforcer, rx) = enforce_fresh_cgroup("gone");
    fs::remove_dir(&cg).unwrap();
    let (code, _, err) = ended_by_itself(enforcer, rx);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("is gone; waiting"), "{err}");
    assert!(
        err.contains(&format!("released cgroup {cg_arg} (the workload is gone)")),
        "{err}"
    );
}
