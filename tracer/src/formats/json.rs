//! Machine-readable JSON: the set in Docker's spelling.
use serde::Serialize;

use crate::capability::Cap;

#[derive(Serialize)]
struct Output<'a> {
    cap_drop: [&'static str; 1],
    cap_add: &'a [Cap],
}

pub(super) fn render(caps: &[Cap]) -> String {
    let output = Output {
        cap_drop: ["ALL"],
        cap_add: caps,
    };
    let mut json = serde_json::to_string(&output).expect("capability names always serialise");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_object() {
        assert_eq!(
            render_names(Format::Json, &[]),
            concat!(r#"{"cap_drop":["ALL"],"cap_add":[]}"#, "\n")
        );
        assert_eq!(
            render_names(Format::Json, &["CHOWN"]),
            concat!(r#"{"cap_drop":["ALL"],"cap_add":["CHOWN"]}"#, "\n")
        );
        assert_eq!(
            render_names(Format::Json, &["NET_BIND_SERVICE", "CHOWN", "CHOWN"]),
            concat!(
                r#"{"cap_drop":["ALL"],"cap_add":["CHOWN","NET_BIND_SERVICE"]}"#,
                "\n"
            )
        );
    }
}
