//! `[Service]` settings of a systemd unit.
use crate::capability::Cap;

pub(super) fn render(caps: &[Cap]) -> String {
    let names: Vec<String> = caps.iter().map(|c| c.kernel_name()).collect();
    let names = names.join(" ");
    // An empty CapabilityBoundingSet= empties the bounding set (systemd.exec(5)).
    let mut unit = format!("[Service]\nCapabilityBoundingSet={names}\n");
    if !caps.is_empty() {
        // Ambient capabilities survive the switch to a non-root User=.
        unit.push_str(&format!("AmbientCapabilities={names}\n"));
    }
    unit.push_str("NoNewPrivileges=yes\n");
    unit
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_service_settings() {
        assert_eq!(
            render_names(Format::Systemd, &[]),
            "[Service]\nCapabilityBoundingSet=\nNoNewPrivileges=yes\n"
        );
        assert_eq!(
            render_names(Format::Systemd, &["CHOWN"]),
            "[Service]\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\n\
             NoNewPrivileges=yes\n"
        );
        assert_eq!(
            render_names(
                Format::Systemd,
                &["NET_BIND_SERVICE", "CHOWN", "NET_BIND_SERVICE"]
            ),
            "[Service]\nCapabilityBoundingSet=CAP_CHOWN CAP_NET_BIND_SERVICE\n\
             AmbientCapabilities=CAP_CHOWN CAP_NET_BIND_SERVICE\nNoNewPrivileges=yes\n"
        );
    }
}
