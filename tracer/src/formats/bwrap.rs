//! bubblewrap (`bwrap`) flags.
use crate::capability::Cap;

pub(super) fn render(caps: &[Cap]) -> String {
    let mut line = String::from("--cap-drop ALL");
    for cap in caps {
        line.push_str(" --cap-add ");
        line.push_str(&cap.kernel_name());
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_flags() {
        assert_eq!(render_names(Format::Bwrap, &[]), "--cap-drop ALL\n");
        assert_eq!(
            render_names(Format::Bwrap, &["CHOWN"]),
            "--cap-drop ALL --cap-add CAP_CHOWN\n"
        );
        assert_eq!(
            render_names(Format::Bwrap, &["NET_BIND_SERVICE", "CHOWN", "CHOWN"]),
            "--cap-drop ALL --cap-add CAP_CHOWN --cap-add CAP_NET_BIND_SERVICE\n"
        );
    }
}
