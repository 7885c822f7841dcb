//! `podman run` flags: podman takes Docker's `--cap-drop`/`--cap-add` syntax unchanged.
pub(super) use super::docker::render;

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_docker_flags() {
        assert_eq!(render_names(Format::Podman, &[]), "--cap-drop=ALL\n");
        assert_eq!(
            render_names(Format::Podman, &["CHOWN"]),
            "--cap-drop=ALL --cap-add=CHOWN\n"
        );
        assert_eq!(
            render_names(Format::Podman, &["NET_BIND_SERVICE", "CHOWN", "CHOWN"]),
            "--cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE\n"
        );
    }
}
