//! Text from a profile made safe inside HTML. A profile holds strings the workload chose
//! (process names, container names and images, command arguments): each is first made
//! printable (control characters as `\xNN`, as in every other output) and then has the five
//! characters HTML gives a meaning escaped, so it can neither close an element or an attribute
//! nor start a script.

use crate::escape::printable;

/// `s` as HTML text or as the value of a quoted attribute.
pub fn html(s: &str) -> String {
    let s = printable(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Multi-line text (a rendered format: YAML, JSON, a unit file) for a `<pre>`: each line as
/// [`html`] makes it, the line breaks kept.
pub fn lines(s: &str) -> String {
    s.split('\n').map(html).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_escaped() {
        assert_eq!(
            html("<script>alert('x')</script>&\"\u{1b}]0;t\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\x1b]0;t\\x07"
        );
        assert_eq!(html("chown"), "chown");
        assert_eq!(lines("a:\n  - <b>\x1b"), "a:\n  - &lt;b&gt;\\x1b");
    }
}
