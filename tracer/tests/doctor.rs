//! Kernel tier: `captrace doctor` tells the truth about this kernel.
mod support;

use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn doctor_agrees_with_what_really_works_here() {
    support::require_root();
    let out = Command::new(support::captrace_bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let f: Value = serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON");
    // It says it can trace exactly when a recording really works.
    let record = Command::new(support::captrace_bin())
        .args(["record", "--", "true"])
        .output()
        .unwrap();
    // Agreeing is not enough where tracing must work: in CI (the host and every VM guest, which
    // gets CI too) a doctor and a record that both fail would agree. So it happened on 7.3,
    // where a verifier change made every hook refuse to load and this test still passed.
    if std::env::var_os("CI").is_some() {
        assert!(
            record.status.success(),
            "in CI every kernel traces; record failed: {}",
            String::from_utf8_lossy(&record.stderr)
        );
    }
    assert_eq!(f["hook"]["Ok"].is_string(), record.status.success(), "{f}");
    assert_eq!(out.status.success(), record.status.success());
    if record.status.success() {
        // The hook it names is the one a recording uses.
        let hook = f["hook"]["Ok"].as_str().unwrap();
        let point = hook.split(' ').next().unwrap();
        let err = String::from_utf8_lossy(&record.stderr);
        assert!(err.contains(&format!("hook {point})")), "{hook} vs {err}");
        // The syscall number of each check is read without a helper exactly where the
        // program holds a BTF-typed task and the kernel has bpf_rdonly_cast (6.2 and later).
        let typed = point == "tp_btf/cap_capable" || point == "fexit/cap_capable";
        let read = f["syscall_read"].as_str().unwrap_or_default();
        let kernel = f["kernel"].as_str().unwrap_or_default();
        assert_eq!(
            read.contains("bpf_rdonly_cast"),
            typed && captrace::launch::seccomp::version(kernel) >= (6, 2),
            "{read} ({point}, kernel {kernel})"
        );
        if point.ends_with("tracepoint/cap_capable") || point == "tp_btf/cap_capable" {
            assert_eq!(f["cap_capable_tracepoint"], true);
            assert_eq!(f["program_types"]["raw_tracepoint"], true);
        } else {
            // fexit or kprobe: the program type it names is one the kernel accepts.
            let kind = match point {
                "fexit/cap_capable" => "tracing (fentry/fexit)",
                "kprobe/cap_capable" => "kprobe",
                other => panic!("an unknown hook: {other}"),
            };
            assert_eq!(f["program_types"][kind], true, "{f}");
        }
    }
    // The LSM list is the kernel's.
    if let Ok(lsm) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        assert_eq!(f["lsm"], lsm.trim());
    }
    assert_eq!(f["root"], true);
    assert_eq!(f["bpf_privileges"], true);
    // Enforcement is claimed exactly when `run --enforce` really starts a workload.
    let enforced = Command::new(support::captrace_bin())
        .args(["run", "--enforce", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        f["enforcement"]["Ok"].is_string(),
        enforced.status.success(),
        "{f} vs {}",
        String::from_utf8_lossy(&enforced.stderr)
    );
    let text = Command::new(support::captrace_bin())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("capability:cap_capable tracepoint: "),
        "{text}"
    );
}
