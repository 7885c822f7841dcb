//! deploy/: every Kubernetes manifest validated by `kubernetes-validate` (PyPI, the schemas
//! bundled) and the Prometheus rules by Debian's `promtool` (syntax, and their behaviour on
//! synthetic series). No cluster is reachable here; these are the real validators.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `target/tools/py/bin/NAME` (installed there by `cargo xtask setup`), else NAME on PATH.
fn py_tool(name: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("tools/py/bin")
        .join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (install it with `cargo xtask setup`)"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("reading deploy/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_passes_kubernetes_validate() {
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "daemonset.yaml",
        "service.yaml",
        "servicemonitor.yaml",
        "prometheusrule.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let out = run(
        Command::new(py_tool("kubernetes-validate"))
            .arg("--strict")
            .args(&files),
        "kubernetes-validate",
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // A custom resource has no bundled schema: the only line allowed that is not a pass.
        let crd = line.starts_with("WARN")
            && (line.contains("servicemonitor.yaml")
                && line.contains("Couldn't find schema for kind ServiceMonitor")
                || line.contains("prometheusrule.yaml")
                    && line.contains("Couldn't find schema for kind PrometheusRule"));
        assert!(
            line.starts_with("INFO") && line.contains(" passed for resource ") || crd,
            "kubernetes-validate: {line}\n{text}"
        );
    }
    for (file, resource) in [
        ("daemonset.yaml", "daemonset/captrace-monitor"),
        ("service.yaml", "service/captrace-monitor"),
    ] {
        assert!(
            text.contains(&format!("{file} passed for resource {resource}")),
            "{file} not validated:\n{text}"
        );
    }
}

/// What the schemas cannot tell: the ServiceMonitor selects the Service and names its port,
/// the PrometheusRule carries exactly the rules promtool checks,
/// and the Service selects the DaemonSet's pods on a port they declare.
#[test]
fn the_service_monitor_service_daemonset_and_prometheus_rule_agree() {
    let script = r#"
import sys, yaml
d = sys.argv[1]
ds = next(x for x in yaml.safe_load_all(open(d + "/daemonset.yaml")) if x and x["kind"] == "DaemonSet")
svc = yaml.safe_load(open(d + "/service.yaml"))
sm = yaml.safe_load(open(d + "/servicemonitor.yaml"))
pod_labels = ds["spec"]["template"]["metadata"]["labels"]
for k, v in svc["spec"]["selector"].items():
    assert pod_labels.get(k) == v, ("service selector", k, v, pod_labels)
pod_ports = {p["name"]: p["containerPort"] for c in ds["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
for p in svc_ports.values():
    assert p["targetPort"] in pod_ports, ("service targetPort", p, pod_ports)
assert svc["metadata"]["namespace"] == ds["metadata"]["namespace"]
assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
for k, v in sm["spec"]["selector"]["matchLabels"].items():
    assert svc["metadata"]["labels"].get(k) == v, ("servicemonitor selector", k, v)
assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
for e in sm["spec"]["endpoints"]:
    assert e["port"] in svc_ports, ("servicemonitor port", e["port"], list(svc_ports))
    assert set(e) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme", "bearerTokenFile", "tlsConfig"}, e
annotations = svc["metadata"]["annotations"]
rule = yaml.safe_load(open(d + "/prometheusrule.yaml"))
assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
assert rule["metadata"]["namespace"] == ds["metadata"]["namespace"]
assert rule["spec"]["groups"] == yaml.safe_load(open(d + "/prometheus-rules.yml"))["groups"], "prometheusrule.yaml's groups differ from prometheus-rules.yml"
assert sm["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"]
assert str(pod_ports[svc_ports[next(iter(svc_ports))]["targetPort"]]) == annotations["prometheus.io/port"]
print("ok")
"#;
    let out = run(
        Command::new(py_tool("python3"))
            .args(["-c", script])
            .arg(deploy_dir()),
        "python3 (the venv of kubernetes-validate, for PyYAML)",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn the_prometheus_rules_pass_promtool_check_and_their_tests() {
    let out = run(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(deploy_dir().join("prometheus-rules.yml")),
        "promtool check rules",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS: 5 rules found"), "{text}");
    // The alert for a capability outside the allowed set fires for NET_RAW and SYS_PTRACE and
    // not for CHOWN, noaudit SYS_ADMIN, the runtime's own checks or denials.
    let out = run(
        Command::new("promtool").current_dir(deploy_dir()).args([
            "test",
            "rules",
            "prometheus-rules.test.yml",
        ]),
        "promtool test rules",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}
