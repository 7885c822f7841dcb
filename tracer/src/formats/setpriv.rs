//! A util-linux `setpriv` command line to prefix the workload's command with. It must run with
//! CAP_SETPCAP (as root): without it setpriv 2.38 leaves the bounding set alone and still exits 0.
use crate::capability::Cap;

pub(super) fn render(caps: &[Cap]) -> String {
    // setpriv spells capabilities in lower case without the `cap_` prefix.
    let mut bounding = String::from("-all");
    for cap in caps {
        bounding.push_str(",+");
        bounding.push_str(&cap.name().to_ascii_lowercase());
    }
    format!("setpriv --inh-caps=-all --ambient-caps=-all --bounding-set={bounding} --\n")
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use crate::formats::{Format, render_names};

    #[test]
    fn renders_command_line() {
        assert_eq!(
            render_names(Format::Setpriv, &[]),
            "setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --\n"
        );
        assert_eq!(
            render_names(Format::Setpriv, &["CAP_CHOWN"]),
            "setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all,+chown --\n"
        );
        assert_eq!(
            render_names(
                Format::Setpriv,
                &["NET_BIND_SERVICE", "CHOWN", "NET_BIND_SERVICE"]
            ),
            "setpriv --inh-caps=-all --ambient-caps=-all \
             --bounding-set=-all,+chown,+net_bind_service --\n"
        );
    }

    /// The rendered line, run by the real setpriv, leaves exactly CAP_CHOWN in the bounding set.
    #[test]
    #[ignore = "needs root (cargo xtask test runs it)"]
    fn setpriv_accepts_the_line() {
        const SETPRIV: &str = "/usr/bin/setpriv";
        assert!(
            Path::new(SETPRIV).exists(),
            "{SETPRIV} is not installed (util-linux; `cargo xtask setup`)"
        );
        // PR_CAPBSET_DROP needs CAP_SETPCAP (cap_prctl_drop); without it setpriv exits 0 but
        // keeps the bounding set, so the CapBnd check below would fail for the wrong reason.
        assert!(
            caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .unwrap_or(false),
            "setpriv needs CAP_SETPCAP to drop from the bounding set: run as root"
        );
        let line = render_names(Format::Setpriv, &["CHOWN"]);
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("setpriv"), "{line}");
        let out = Command::new(SETPRIV)
            .args(words)
            .args(["/bin/cat", "/proc/self/status"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {SETPRIV}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{line}: {}: {stderr}", out.status);
        let status = String::from_utf8_lossy(&out.stdout);
        for want in [
            "CapBnd:\t0000000000000001",
            "CapInh:\t0000000000000000",
            "CapAmb:\t0000000000000000",
        ] {
            assert!(
                status.lines().any(|l| l == want),
                "no {want:?} in\n{status}"
            );
        }
    }
}
