//! `docker run` flags: drop everything, add back the set.
use crate::capability::Cap;

pub(super) fn render(caps: &[Cap]) -> String {
    let mut line = String::from("--cap-drop=ALL");
    for cap in caps {
        line.push_str(" --cap-add=");
        line.push_str(&cap.name());
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_flags() {
        assert_eq!(render_names(Format::Docker, &[]), "--cap-drop=ALL\n");
        assert_eq!(
            render_names(Format::Docker, &["cap_chown"]),
            "--cap-drop=ALL --cap-add=CHOWN\n"
        );
        assert_eq!(
            render_names(
                Format::Docker,
                &["NET_BIND_SERVICE", "CHOWN", "net_bind_service"]
            ),
            "--cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE\n"
        );
    }
}
