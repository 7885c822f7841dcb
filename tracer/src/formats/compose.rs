//! Keys of a docker-compose service.
use crate::capability::Cap;

pub(super) fn render(caps: &[Cap]) -> String {
    let mut yaml = String::from("cap_drop:\n  - ALL\n");
    if !caps.is_empty() {
        yaml.push_str("cap_add:\n");
        for cap in caps {
            yaml.push_str(&format!("  - {cap}\n"));
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_service_keys() {
        assert_eq!(render_names(Format::Compose, &[]), "cap_drop:\n  - ALL\n");
        assert_eq!(
            render_names(Format::Compose, &["CHOWN"]),
            "cap_drop:\n  - ALL\ncap_add:\n  - CHOWN\n"
        );
        assert_eq!(
            render_names(
                Format::Compose,
                &["NET_BIND_SERVICE", "CHOWN", "NET_BIND_SERVICE"]
            ),
            "cap_drop:\n  - ALL\ncap_add:\n  - CHOWN\n  - NET_BIND_SERVICE\n"
        );
    }
}
