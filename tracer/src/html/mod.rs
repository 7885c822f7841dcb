//! The HTML report (`report --html`, `record --html`): one self-contained file, with inline CSS
//! and a few lines of inline JavaScript (the copy buttons) and nothing fetched from the network,
//! so it can be attached to a CI run or mailed. Everything taken from the profile is escaped
//! (`escape::html`): process, container and image names are the workload's choice.
use std::path::Path;

use anyhow::Context as _;
use clap::ValueEnum as _;

use crate::{
    container::sets,
    formats,
    formats::Format,
    profile::{Audit, Check, Origin, Profile, Scope, Verdict},
    safe_file::{self, NoOutputDir},
};

mod escape;
mod explain;
mod timeline;
mod tree;

pub use escape::html;

/// `--html FILE` into a directory that does not exist is bad usage, found before anything starts.
pub fn check_output(out: &Path) -> Result<(), NoOutputDir> {
    safe_file::check_parent_dir("the HTML report", out)
}

/// Writes the page as `-o` writes a profile: never through a symlink planted at the path.
pub fn write(profile: &Profile, out: &Path) -> anyhow::Result<()> {
    safe_file::write_replacing(out, render(profile).as_bytes(), 0o644)
        .with_context(|| format!("cannot write the HTML report {}", out.display()))
}

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// How a check counted, as CSS classes: `counted` (audited, granted, host, the workload's own:
/// the only kind that makes a capability needed), or the reasons it did not.
pub(crate) fn flags(c: &Check) -> Vec<&'static str> {
    let mut f = Vec::new();
    match c.audit {
        Audit::Noaudit => f.push("noaudit"),
        Audit::Probe => f.push("probe"),
        Audit::Audited | Audit::Unknown => {}
    }
    if c.verdict == Verdict::Denied {
        f.push("denied");
    }
    match c.scope {
        Scope::Nested => f.push("nested"),
        Scope::Host | Scope::Unknown => {}
    }
    match c.origin {
        Origin::Runtime => f.push("runtime"),
        Origin::Borrowed => f.push("borrowed"),
        Origin::Workload => {}
    }
    if f.is_empty() {
        f.push("counted");
    }
    f
}

/// Every format's rendering of `caps`, each with a copy button; `id` prefixes element ids.
fn recommendation(rendered: impl Fn(Format) -> String, id: &str) -> String {
    let mut out = String::from("<div class=\"formats\">\n");
    for format in Format::value_variants() {
        let name = format
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "<div class=\"format\" data-format=\"{name}\"><div class=\"format-head\"><span>{name}</span>\
<button type=\"button\" class=\"copy\" data-target=\"{id}-{name}\">Copy</button></div>\
<pre id=\"{id}-{name}\">{}</pre></div>\n",
            escape::lines(rendered(*format).trim_end())
        ));
    }
    out.push_str("</div>\n");
    out
}

fn header(p: &Profile) -> String {
    let status = p
        .exit_status
        .map_or("unknown".to_string(), |s| s.to_string());
    let docker = if p.follows_containers && p.containers.is_empty() {
        "none for a container".to_string()
    } else {
        formats::render(p, Format::Docker).trim_end().to_string()
    };
    let mut out = format!(
        "<header><h1>captrace report</h1>\n<p class=\"meta\"><code class=\"command\">{}</code> · exit status {status} · hook {} · kernel {}</p>\n\
<p class=\"headline\">recommendation: <code id=\"headline\">{}</code></p>\n",
        html(&p.command.join(" ")),
        html(&p.hook),
        html(&p.kernel),
        html(&docker)
    );
    if !p.advice.is_empty() {
        out.push_str("<ul class=\"advice\">\n");
        for a in &p.advice {
            out.push_str(&format!("<li>{}</li>\n", html(a)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</header>\n");
    out
}

/// One section per container of a container recording.
fn containers(p: &Profile) -> String {
    let mut out = String::new();
    for (i, c) in p.containers.iter().enumerate() {
        out.push_str(&format!(
            "<section class=\"container\" id=\"container-{i}\">\n<h2>Container {}</h2>\n<p class=\"meta\">{}{}{}</p>\n",
            html(&c.label()),
            c.image
                .as_deref()
                .map(|v| format!("image <code>{}</code> ", html(v)))
                .unwrap_or_default(),
            c.service
                .as_deref()
                .map(|v| format!("· compose service <code>{}</code> ", html(v)))
                .unwrap_or_default(),
            c.granted
                .as_ref()
                .map(|g| format!("· granted {}, used {}", g.len(), c.cap_add.len()))
                .unwrap_or_default(),
        ));
        out.push_str(&format!(
            "<p class=\"headline\"><code>{}</code></p>\n",
            html(&sets::run_flags(c))
        ));
        let all: Vec<Check> = c.checks.iter().chain(&c.denied).cloned().collect();
        out.push_str(&timeline::render(&all, &format!("timeline-{i}")));
        out.push_str("<h3>Recommendation</h3>\n");
        out.push_str(&recommendation(
            |f| formats::render_set(&c.cap_add, f),
            &format!("rec-{i}"),
        ));
        out.push_str(&explain::container(c));
        out.push_str("</section>\n");
    }
    out
}

/// The whole report as one HTML document.
pub fn render(p: &Profile) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    );
    out.push_str(&format!(
        "<title>captrace: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        html(&p.command.join(" "))
    ));
    out.push_str(&header(p));
    out.push_str("<main>\n");
    out.push_str(&tree::render(p));
    let all: Vec<Check> = p.checks.iter().chain(&p.denied).cloned().collect();
    out.push_str(&timeline::render(&all, "timeline"));
    out.push_str("<section id=\"recommendation\">\n<h2>Recommendation</h2>\n");
    match sets::compose_override(&p.containers) {
        // A compose recording: the override file has one block per service.
        Some(compose) => out.push_str(&recommendation(
            |f| {
                if f == Format::Compose {
                    compose.clone()
                } else {
                    formats::render(p, f)
                }
            },
            "rec",
        )),
        None => out.push_str(&recommendation(|f| formats::render(p, f), "rec")),
    }
    out.push_str("</section>\n");
    out.push_str(&explain::render(p));
    out.push_str(&containers(p));
    out.push_str(&format!(
        "</main>\n<footer>captrace {} · profile {} v{}</footer>\n<script>\n{SCRIPT}</script>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        html(&p.schema),
        p.version
    ));
    out
}

#[cfg(test)]
mod tests;
