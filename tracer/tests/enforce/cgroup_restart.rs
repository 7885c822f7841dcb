//! Issue #14 item 5, the race: `docker restart` removes the confined cgroup and makes a new one
//! at the same path a moment later. `enforce` may look in between, while the path is missing:
//! that must still end in the replaced-cgroup error, not in a quiet "the workload is gone"
//! with exit 0, while a path that stays away is the workload's end.
use std::{fs, path::PathBuf, time::Duration};

use super::{require_lsm, start_enforce, support, wait_at_most, wait_for_line};

/// A fresh cgroup v2 directory named after the test, with nothing in it.
fn fresh_cgroup(what: &str) -> PathBuf {
    let cg =
        support::cgroup2_root().join(format!("captrace-enforce-{what}-{}", std::process::id()));
    let _ = fs::remove_dir(&cg);
    fs::create_dir(&cg).unwrap();
    cg
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_cgroup_seen_missing_before_it_is_made_again_is_still_reported_replaced() {
    require_lsm();
    let cg = fresh_cgroup("restart");
    let cg_arg = cg.display().to_string();
    let (enforcer, rx) = start_enforce(&["--cgroup", &cg_arg, "--cap-drop", "ALL"]);
    fs::remove_dir(&cg).unwrap();
    // enforce has now seen the path missing: only then does the "restart" make it again.
    let line = wait_for_line(&rx, "is gone; waiting");
    assert!(line.contains(&cg_arg), "{line}");
    fs::create_dir(&cg).unwrap();
    let out = wait_at_most(enforcer, Duration::from_secs(60) * support::time_scale());
    let err: Vec<String> = rx.iter().collect();
    let err = err.join("\n");
    let _ = fs::remove_dir(&cg);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("was replaced by a new cgroup at the same path")
            && err.contains("NOT confined"),
        "{err}"
    );
    assert!(!err.contains("the workload is gone"), "{err}");
}

#[test]
#[ignore = "needs root and BPF LSM (cargo xtask test runs it where the kernel has BPF LSM)"]
fn needs_lsm_a_cgroup_removed_for_good_ends_enforce_as_gone() {
    require_lsm();
    let cg = fresh_cgroup("gone");
    let cg_arg = cg.display().to_string();
    let (enforcer, rx) = start_enforce(&["--cgroup", &cg_arg, "--cap-drop", "ALL"]);
    fs::remove_dir(&cg).unwrap();
    let out = wait_at_most(enforcer, Duration::from_secs(60) * support::time_scale());
    let err: Vec<String> = rx.iter().collect();
    let err = err.join("\n");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("is gone; waiting"), "{err}");
    assert!(
        err.contains(&format!("released cgroup {cg_arg} (the workload is gone)")),
        "{err}"
    );
}
