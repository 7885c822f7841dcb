//! The timeline: for each capability, a bar from when it was first checked to when it was last
//! checked, relative to the start of the recording (`first_seen_ms`, `last_seen_ms`), so
//! capabilities used only during start-up stand out from those used all along.
use std::collections::{BTreeMap, BTreeSet};

use super::flags;
use crate::{capability::Cap, profile::Check};

#[derive(Default)]
struct Span {
    first: Option<u64>,
    last: Option<u64>,
    count: u64,
    flags: BTreeSet<&'static str>,
}

/// Bars keyed by capability and whether its checks counted: a capability both needed and
/// probed (SYS_ADMIN audited once, noaudit a hundred times) gets two bars.
fn spans(checks: &[Check]) -> BTreeMap<(Cap, bool), Span> {
    let mut spans: BTreeMap<(Cap, bool), Span> = BTreeMap::new();
    for c in checks {
        let fl = flags(c);
        let s = spans.entry((c.cap, fl.contains(&"counted"))).or_default();
        s.count += c.count;
        s.flags.extend(fl);
        if let Some(f) = c.first_seen_ms {
            s.first = Some(s.first.map_or(f, |x| x.min(f)));
        }
        if let Some(l) = c.last_seen_ms.or(c.first_seen_ms) {
            s.last = Some(s.last.map_or(l, |x| x.max(l)));
        }
    }
    spans
}

/// A `<section>` with one row per capability; `id` is `timeline` for the recording and
/// `timeline-N` for container N.
pub fn render(checks: &[Check], id: &str) -> String {
    let spans = spans(checks);
    let mut out = format!("<section class=\"timeline\" id=\"{id}\">\n<h3>Timeline</h3>\n");
    if spans.is_empty() {
        out.push_str("<p class=\"none\">no capability checks</p>\n</section>\n");
        return out;
    }
    let end = spans
        .values()
        .filter_map(|s| s.last)
        .max()
        .unwrap_or(0)
        .max(1);
    if spans.values().all(|s| s.first.is_none()) {
        out.push_str(
            "<p class=\"none\">this profile has no times (older captrace, or <code>record --container</code>)</p>\n",
        );
    }
    out.push_str(&format!(
        "<div class=\"axis\"><span>0 ms</span><span>{} ms</span></div>\n",
        end
    ));
    // Start-up first: sorted by first sighting, untimed last.
    let mut rows: Vec<_> = spans.into_iter().collect();
    rows.sort_by_key(|((cap, counted), s)| (s.first.unwrap_or(u64::MAX), !counted, *cap));
    for ((cap, _), s) in rows {
        let classes: Vec<&str> = s.flags.iter().copied().collect();
        let (left, width, when) = match (s.first, s.last) {
            (Some(f), Some(l)) => (
                f as f64 * 100.0 / end as f64,
                ((l.saturating_sub(f)) as f64 * 100.0 / end as f64).max(0.6),
                if f == l {
                    format!("at {f} ms")
                } else {
                    format!("{f}–{l} ms")
                },
            ),
            _ => (0.0, 100.0, "time unknown".to_string()),
        };
        let left = left.min(99.4);
        let notes: Vec<&str> = classes
            .iter()
            .copied()
            .filter(|f| *f != "counted")
            .collect();
        out.push_str(&format!(
            "<div class=\"row\" data-cap=\"{name}\" data-first-ms=\"{first}\" data-last-ms=\"{last}\">\
<span class=\"label\">{name}{note}</span>\
<span class=\"lane\"><span class=\"bar {cls}\" style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{name}: {count} checks, {when}\"></span></span>\
<span class=\"when\">{when} · {count}×</span></div>\n",
            name = cap.name(),
            note = if notes.is_empty() {
                String::new()
            } else {
                format!(" <small>{}</small>", notes.join(" "))
            },
            first = s.first.map(|v| v.to_string()).unwrap_or_default(),
            last = s.last.map(|v| v.to_string()).unwrap_or_default(),
            cls = classes.join(" "),
            count = s.count,
        ));
    }
    out.push_str("</section>\n");
    out
}
