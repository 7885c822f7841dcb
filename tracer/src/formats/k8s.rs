//! A container's `securityContext` in a Kubernetes pod spec.
use crate::capability::Cap;

/// The only capability the Pod Security Standards "restricted" level lets a container add.
const RESTRICTED_ALLOWS: &str = "NET_BIND_SERVICE";

pub(super) fn render(caps: &[Cap]) -> String {
    let mut yaml = String::new();
    let beyond: Vec<String> = caps
        .iter()
        .map(|c| c.name())
        .filter(|n| n != RESTRICTED_ALLOWS)
        .collect();
    if !beyond.is_empty() {
        yaml.push_str(&format!(
            "# Exceeds the Pod Security Standards \"restricted\" level, which allows adding only \
             {RESTRICTED_ALLOWS}: {}\n",
            beyond.join(", ")
        ));
    }
    yaml.push_str("securityContext:\n  allowPrivilegeEscalation: false\n");
    if caps.is_empty() {
        // A comment, not the field: uid 0 without capabilities still owns root's files, so
        // whether the workload runs as another user unchanged is for the user to check.
        yaml.push_str("  # runAsNonRoot: true  # suggested: no capability is needed\n");
    }
    yaml.push_str("  capabilities:\n    drop: [\"ALL\"]\n");
    if !caps.is_empty() {
        let names: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
        yaml.push_str(&format!("    add: [{}]\n", names.join(", ")));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_security_context() {
        assert_eq!(
            render_names(Format::K8s, &[]),
            r#"securityContext:
  allowPrivilegeEscalation: false
  # runAsNonRoot: true  # suggested: no capability is needed
  capabilities:
    drop: ["ALL"]
"#
        );
        assert_eq!(
            render_names(Format::K8s, &["NET_BIND_SERVICE"]),
            r#"securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
    add: ["NET_BIND_SERVICE"]
"#
        );
        assert_eq!(
            render_names(Format::K8s, &["CHOWN"]),
            r#"# Exceeds the Pod Security Standards "restricted" level, which allows adding only NET_BIND_SERVICE: CHOWN
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
    add: ["CHOWN"]
"#
        );
        assert_eq!(
            render_names(
                Format::K8s,
                &["NET_BIND_SERVICE", "CHOWN", "NET_BIND_SERVICE"]
            ),
            r#"# Exceeds the Pod Security Standards "restricted" level, which allows adding only NET_BIND_SERVICE: CHOWN
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
    add: ["CHOWN", "NET_BIND_SERVICE"]
"#
        );
    }

    #[test]
    fn names_every_capability_beyond_restricted() {
        let yaml = render_names(Format::K8s, &["SYS_ADMIN", "NET_BIND_SERVICE", "CHOWN"]);
        assert!(
            yaml.starts_with("# Exceeds the Pod Security Standards \"restricted\" level, which allows adding only NET_BIND_SERVICE: CHOWN, SYS_ADMIN\n"),
            "{yaml}"
        );
    }
}
