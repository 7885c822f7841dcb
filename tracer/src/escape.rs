//! Text that comes from a workload (process names, cgroup and container names, paths) made
//! safe to print: a process can name itself `\e]0;title\a` or `\e[2K`, and printed raw that
//! would retitle, clear or reprogram the terminal of whoever reads captrace's output.

use std::borrow::Cow;

/// `s` with every C0 control (U+0000-U+001F), DEL (U+007F) and C1 control (U+0080-U+009F:
/// terminals take U+009B as CSI) written as `\xNN` / `\u{NN}`, and `\` doubled so an escape
/// cannot be forged. Untouched (borrowed) when there is nothing to escape.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control()
}

/// Serialised JSON with DEL and the C1 controls written as `\u007f`..`\u009f`: JSON escapes
/// only C0 and leaves U+009B (CSI) raw for a terminal to act on. Outside strings JSON text is
/// ASCII, so every such character is inside a string, where the escape means the same.
pub fn json(text: String) -> String {
    if !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_meaning_without_raw_c1_controls() {
        let value = serde_json::json!({"comm": "\u{9b}2J\x1b[2K\u{7f}é", "n": 1});
        let text = json(serde_json::to_string(&value).unwrap());
        assert!(!text.chars().any(char::is_control), "{text}");
        assert!(text.contains("\\u009b2J\\u001b[2K\\u007fé"), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
        let plain = r#"{"a":"b"}"#.to_string();
        assert_eq!(json(plain.clone()), plain);
    }

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("nginx: worker"), Cow::Borrowed(_)));
        assert_eq!(printable("caf\u{e9} \u{1f600}"), "caf\u{e9} \u{1f600}");
        assert_eq!(
            printable("\x1b]0;owned\x07\x1b[2K"),
            "\\x1b]0;owned\\x07\\x1b[2K"
        );
        assert_eq!(printable("a\nb\tc\x7f\0"), "a\\x0ab\\x09c\\x7f\\x00");
        assert_eq!(printable("\u{9b}2J\u{85}"), "\\u{9b}2J\\u{85}");
        assert_eq!(printable("a\\x1b"), "a\\\\x1b");
        for c in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let s = char::from_u32(c).unwrap().to_string();
            assert!(!printable(&s).chars().any(char::is_control), "{c:#x}");
        }
    }
}
