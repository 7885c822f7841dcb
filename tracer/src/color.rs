//! Colour for people at a terminal: the recommendation line in bold green, denials in red.
//! Only when the stream is a terminal and `NO_COLOR` is unset or empty (no-color.org); never
//! in pipes, files or CI logs, which keep the plain text scripts parse.
use std::{ffi::OsString, io::IsTerminal as _};

const GREEN_BOLD: &str = "\x1b[1;32m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Whether to colour a stream: a terminal, and `NO_COLOR` unset or empty.
pub fn wanted(is_terminal: bool, no_color: Option<OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// For stderr, from the process's own state.
pub fn stderr() -> bool {
    wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    )
}

/// For stdout, from the process's own state.
pub fn stdout() -> bool {
    wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR"),
    )
}

/// `report` (the text `report::render` makes) with the recommendation lines and the lines of
/// denials coloured; unchanged when `on` is false. Workload text in it is already escaped
/// (`escape::printable`), so the only escapes in the result are these.
pub fn report(text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_denied = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let newline = &line[body.len()..];
        let trimmed = body.trim_start();
        if body.starts_with("wanted but not granted:") {
            in_denied = body != "wanted but not granted: none";
            out.push_str(&paint(body, RED, in_denied));
        } else if in_denied && body.starts_with("  ") && trimmed.contains(" denied ") {
            out.push_str(&paint(body, RED, true));
        } else if trimmed.starts_with("wanted but not granted: ") {
            // A container's denials, one per line.
            out.push_str(&paint(body, RED, true));
        } else if body.starts_with("recommendation: ") {
            in_denied = false;
            out.push_str(&paint(body, GREEN_BOLD, true));
        } else {
            if !body.starts_with("  ") {
                in_denied = false;
            }
            out.push_str(body);
        }
        out.push_str(newline);
    }
    out
}

fn paint(text: &str, style: &str, on: bool) -> String {
    if on {
        format!("{style}{text}{RESET}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "captrace: recorded `x`\n\nnamespaces: created: none\nwanted but not granted:\n  CHOWN denied 1x in fchownat by chown[7]\nadded X\n\nrecommendation: --cap-drop=ALL\n  needs 1\n";

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wanted(true, None));
        assert!(wanted(true, Some("".into())));
        assert!(!wanted(true, Some("1".into())));
        assert!(!wanted(false, None));
    }

    #[test]
    fn the_recommendation_and_denials_are_coloured_and_nothing_else() {
        let out = report(REPORT, true);
        assert!(out.contains("\x1b[1;32mrecommendation: --cap-drop=ALL\x1b[0m\n"));
        assert!(out.contains("\x1b[31m  CHOWN denied 1x in fchownat by chown[7]\x1b[0m\n"));
        assert!(out.contains("\nadded X\n"));
        assert!(out.contains("\n  needs 1\n"));
        assert_eq!(report(REPORT, false), REPORT);
        let plain = out
            .replace(GREEN_BOLD, "")
            .replace(RED, "")
            .replace(RESET, "");
        assert_eq!(plain, REPORT);
        let none = report("wanted but not granted: none\n", true);
        assert_eq!(none, "wanted but not granted: none\n");
    }
}
