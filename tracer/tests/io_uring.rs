//! Work a workload hands to io_uring is still the workload's: io_uring's worker threads are
//! created without fork (create_io_thread), and an io_uring personality makes the kernel check
//! credentials that are not the thread's `real_cred`. Each recorded set is then proven with
//! `setpriv`: the program works with root bounded to exactly the set, and fails with any one
//! member removed.
mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// A root-owned file nobody may read without a DAC capability.
fn secret(dir: &Path) -> PathBuf {
    let f = dir.join("secret");
    fs::write(&f, "secret\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    f
}

fn works_with(bin: &Path, file: &Path, mode: &str, caps: &[String]) -> bool {
    let bounding: String = caps
        .iter()
        .map(|c| format!(",+{}", c.to_lowercase()))
        .collect();
    Command::new("setpriv")
        .args(["--inh-caps=-all", "--ambient-caps=-all"])
        .arg(format!("--bounding-set=-all{bounding}"))
        .arg("--")
        .arg(bin)
        .arg(file)
        .arg(mode)
        .status()
        .unwrap()
        .success()
}

fn record_and_prove(mode: &str) -> captrace::profile::Profile {
    let dir = tempfile::tempdir().unwrap();
    let bin = support::io_uring_openat(dir.path());
    let file = secret(dir.path());
    let (out, p) = support::record(&[bin.to_str().unwrap(), file.to_str().unwrap(), mode]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let caps: Vec<String> = p.cap_add.iter().map(|c| c.name()).collect();
    assert!(
        !caps.is_empty(),
        "io_uring's openat of a mode-000 file needs a DAC capability, recorded none: {err}"
    );
    assert!(
        caps.iter()
            .all(|c| c == "DAC_OVERRIDE" || c == "DAC_READ_SEARCH"),
        "{caps:?}"
    );
    assert!(
        works_with(&bin, &file, mode, &caps),
        "fails with exactly {caps:?}"
    );
    for (i, c) in caps.iter().enumerate() {
        let mut less = caps.clone();
        less.remove(i);
        assert!(
            !works_with(&bin, &file, mode, &less),
            "works without {c}: {caps:?} is not minimal"
        );
    }
    p
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn an_openat_forced_onto_an_io_uring_worker_thread_is_recorded() {
    support::require_root();
    let p = record_and_prove("async");
    // The check was made by the io-wq worker thread, which no fork created.
    assert!(
        p.checks
            .iter()
            .any(|c| c.comm.as_deref().is_some_and(|n| n.starts_with("iou-wrk"))),
        "{:?}",
        p.checks
    );
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn an_openat_under_an_io_uring_personality_is_the_workloads_own() {
    support::require_root();
    let p = record_and_prove("personality");
    let dac = p
        .checks
        .iter()
        .find(|c| c.cap.name().starts_with("DAC_") && c.audit == captrace::profile::Audit::Audited)
        .expect("the DAC check");
    assert!(dac.origin.is_workload(), "{dac:?}");
}
