//! `recommend --prefer-alternatives`: the set with each proven-or-found alternative rendered in
//! place of the capability it replaces, where the syntax has an equivalent. Formats without
//! one keep the capability, and say so.
use crate::{
    alternatives::{self, NONROOT_UID},
    formats::Format,
    profile::Profile,
};

/// The rendering, and one note per alternative the format cannot express.
pub(super) fn render(p: &Profile, format: Format) -> (String, Vec<String>) {
    let all = &p.alternatives;
    let usable: Vec<_> = all
        .iter()
        .filter(|a| match format {
            Format::Docker | Format::Podman | Format::Compose | Format::K8s => true,
            // A service shares the host's network namespace: no sysctl of its own.
            Format::Systemd => alternatives::user(a).is_some(),
            _ => false,
        })
        .cloned()
        .collect();
    let notes: Vec<String> = all
        .iter()
        .filter(|a| !usable.contains(a))
        .map(|a| {
            format!(
                "--format {} has no equivalent of {}: kept {}",
                format_name(format),
                a.instead,
                a.cap
            )
        })
        .collect();
    let rest = alternatives::remaining(&p.cap_add, &usable);
    let sysctls = alternatives::sysctls(&usable);
    let user: Option<String> = usable
        .iter()
        .find_map(|a| alternatives::user(a).map(str::to_string))
        .or_else(|| (rest.is_empty() && !sysctls.is_empty()).then(|| NONROOT_UID.to_string()));
    let base = super::render_set(&rest, format);
    let text = match format {
        Format::Docker | Format::Podman => {
            let mut line = base.trim_end().to_string();
            for (k, v) in &sysctls {
                line += &format!(
                    " --sysctl {}",
                    alternatives::shell_word(&format!("{k}={v}"))
                );
            }
            if let Some(u) = &user {
                line += &format!(" --user {u}");
            }
            line + "\n"
        }
        Format::Compose => {
            let mut yaml = base;
            if !sysctls.is_empty() {
                yaml += "sysctls:\n";
                for (k, v) in &sysctls {
                    yaml += &format!("  {k}: \"{v}\"\n");
                }
            }
            if let Some(u) = &user {
                yaml += &format!("user: \"{u}\"\n");
            }
            yaml
        }
        Format::K8s => k8s(base, &sysctls, user.as_deref()),
        Format::Systemd => match &user {
            Some(u) => base.replacen("[Service]\n", &format!("[Service]\nUser={u}\n"), 1),
            None => base,
        },
        _ => base,
    };
    (text, notes)
}

/// Sysctls are per pod (`spec.securityContext.sysctls`; `ip_unprivileged_port_start` is a
/// safe sysctl since Kubernetes 1.22): shown under `podSecurityContext`, as Helm charts name
/// it; the user goes into the container's `securityContext`.
fn k8s(container: String, sysctls: &[(String, String)], user: Option<&str>) -> String {
    let mut yaml = String::new();
    if !sysctls.is_empty() {
        yaml += "# the pod's spec.securityContext (sysctls are set per pod)\npodSecurityContext:\n  sysctls:\n";
        for (k, v) in sysctls {
            yaml += &format!("  - name: {k}\n    value: \"{v}\"\n");
        }
    }
    let mut c = container.replace(
        "  # runAsNonRoot: true  # suggested: no capability is needed\n",
        "",
    );
    if let Some(u) = user {
        let run_as = match u.parse::<u32>() {
            Ok(uid) => format!("  runAsNonRoot: true\n  runAsUser: {uid}\n"),
            // Kubernetes takes a number only: the image's USER names it.
            Err(_) => format!("  runAsNonRoot: true  # USER {u} in the image\n"),
        };
        c = c.replacen(
            "securityContext:\n",
            &format!("securityContext:\n{run_as}"),
            1,
        );
    }
    yaml + &c
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Docker => "docker",
        Format::Compose => "compose",
        Format::Podman => "podman",
        Format::K8s => "k8s",
        Format::Oci => "oci",
        Format::Systemd => "systemd",
        Format::Bwrap => "bwrap",
        Format::Setpriv => "setpriv",
        Format::Json => "json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capability::Cap, profile::Alternative};

    fn profile(caps: &[u8], alts: &[(u8, &str)]) -> Profile {
        let mut p = Profile::new();
        p.cap_add = caps.iter().map(|c| Cap(*c)).collect();
        p.alternatives = alts
            .iter()
            .map(|(c, i)| Alternative {
                cap: Cap(*c),
                instead: i.to_string(),
                proven: true,
            })
            .collect();
        p
    }

    const PORT: &str = "sysctl net.ipv4.ip_unprivileged_port_start=80";

    #[test]
    fn docker_gets_the_sysctl_and_a_user() {
        let p = profile(&[10], &[(10, PORT)]);
        let (text, notes) = render(&p, Format::Docker);
        assert_eq!(
            text,
            "--cap-drop=ALL --sysctl net.ipv4.ip_unprivileged_port_start=80 --user 65534\n"
        );
        assert!(notes.is_empty());
        // Another capability stays: root keeps it, no --user.
        let p = profile(&[0, 10], &[(10, PORT)]);
        assert_eq!(
            render(&p, Format::Docker).0,
            "--cap-drop=ALL --cap-add=CHOWN --sysctl net.ipv4.ip_unprivileged_port_start=80\n"
        );
    }

    #[test]
    fn k8s_sets_the_pod_sysctl_and_runs_as_non_root() {
        let (yaml, _) = render(&profile(&[10], &[(10, PORT)]), Format::K8s);
        assert_eq!(
            yaml,
            r#"# the pod's spec.securityContext (sysctls are set per pod)
podSecurityContext:
  sysctls:
  - name: net.ipv4.ip_unprivileged_port_start
    value: "80"
securityContext:
  runAsNonRoot: true
  runAsUser: 65534
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
"#
        );
    }

    #[test]
    fn systemd_keeps_the_capability_but_takes_the_user() {
        let (unit, notes) = render(&profile(&[10], &[(10, PORT)]), Format::Systemd);
        assert!(
            unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
            "{unit}"
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("kept NET_BIND_SERVICE"), "{}", notes[0]);
        let p = profile(&[0, 6, 7], &[(6, "user www-data"), (7, "user www-data")]);
        let (unit, notes) = render(&p, Format::Systemd);
        assert_eq!(
            unit,
            "[Service]\nUser=www-data\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\nNoNewPrivileges=yes\n"
        );
        assert!(notes.is_empty());
        assert_eq!(
            render(&p, Format::Docker).0,
            "--cap-drop=ALL --cap-add=CHOWN --user www-data\n"
        );
    }
}
