//! Why a capability seen in the recording is, or is not, in the set: the kinds of checks that
//! never count, and the profile's own findings (denials, capabilities added without a visible
//! check, refusals that changed nothing, losses).
use super::escape::html;
use crate::{
    minimize, namespaces,
    profile::{Added, Audit, Check, ContainerProfile, Profile, Scope},
};

/// The kinds of checks, with whether this recording has any (`present` marks them).
const KINDS: &[(&str, &str, &str)] = &[
    (
        "counted",
        "counted",
        "An audited check against the host's user namespace that the kernel granted to the workload: the capability is needed, and it is in the set.",
    ),
    (
        "noaudit",
        "noaudit",
        "The kernel asked without auditing (ns_capable_noaudit, has_capability_noaudit): e.g. memory accounting in security_vm_enough_memory_mm asks for SYS_ADMIN on every mmap. It changes a limit or a path, not the outcome; never counted.",
    ),
    (
        "probe",
        "probe",
        "Audited, but the kernel only asks to choose a path and succeeds without it (e.g. the SETPCAP check on every capset); never counted.",
    ),
    (
        "denied",
        "denied",
        "The kernel refused the check: the workload wanted it and did without. Listed under \"wanted but not granted\"; a set with it may change the outcome.",
    ),
    (
        "nested",
        "nested",
        "Checked against a user namespace the workload created and owns: it holds every capability there, so no host capability is needed.",
    ),
    (
        "runtime",
        "runtime",
        "Made by the container runtime's init (runc, crun) while it set the container up, with the runtime's privileges: never the container's.",
    ),
    (
        "borrowed",
        "borrowed",
        "Made against credentials the task borrowed (overlayfs acting as its mounter): never the workload's.",
    ),
    (
        "never-checked",
        "never checked",
        "In the set although no traced check showed it: a kernel rule or a replay proved it is needed (listed below with the reason).",
    ),
];

fn present(checks: &[Check], kind: &str) -> bool {
    checks.iter().any(|c| super::flags(c).contains(&kind))
}

fn never_checked(list: &[Added], out: &mut String) {
    if list.is_empty() {
        return;
    }
    out.push_str("<h3>Added without a visible check</h3>\n<ul class=\"never-checked\">\n");
    for a in list {
        out.push_str(&format!(
            "<li><span class=\"cap never-checked\">{}</span> {}</li>\n",
            a.cap,
            html(&a.reason)
        ));
    }
    out.push_str("</ul>\n");
}

fn denied(list: &[Check], out: &mut String) {
    if list.is_empty() {
        return;
    }
    out.push_str("<h3>Wanted but not granted</h3>\n<ul class=\"denied\">\n");
    for d in list {
        out.push_str(&format!(
            "<li><span class=\"cap denied\">{}</span> denied {}× in <code>{}</code> by <span class=\"comm\">{}</span>[{}]</li>\n",
            d.cap,
            d.count,
            html(d.syscall.as_deref().unwrap_or("-")),
            html(d.comm.as_deref().unwrap_or("?")),
            d.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ));
    }
    out.push_str("</ul>\n");
}

fn glossary(checks: &[Check], never: bool, out: &mut String) {
    out.push_str("<dl class=\"kinds\">\n");
    for (class, label, text) in KINDS {
        let here = if *class == "never-checked" {
            never
        } else {
            present(checks, class)
        };
        out.push_str(&format!(
            "<dt class=\"{}\"><span class=\"cap {class}\">{label}</span>{}</dt><dd>{text}</dd>\n",
            if here { "present" } else { "absent" },
            if here {
                " <small>in this recording</small>"
            } else {
                ""
            }
        ));
    }
    out.push_str("</dl>\n");
}

/// The explanations for the recording as a whole.
pub fn render(p: &Profile) -> String {
    let mut out = String::from("<section id=\"explanations\">\n<h2>What counts, and why</h2>\n");
    let all: Vec<Check> = p.checks.iter().chain(&p.denied).cloned().collect();
    glossary(&all, !p.never_checked.is_empty(), &mut out);
    denied(&p.denied, &mut out);
    never_checked(&p.never_checked, &mut out);
    if !p.nested_userns.is_empty() {
        let names: Vec<String> = p.nested_userns.iter().map(|c| c.name()).collect();
        out.push_str(&format!(
            "<p class=\"nested\">Used only inside its own user namespace (not host capabilities): {}</p>\n",
            names.join(", ")
        ));
    }
    if !p.silent_refusals.is_empty() {
        out.push_str("<h3>Refused without changing the outcome (left out of the set)</h3>\n<ul class=\"silent\">\n");
        for r in &p.silent_refusals {
            out.push_str(&format!("<li>{}</li>\n", html(&minimize::refusal_line(r))));
        }
        out.push_str("</ul>\n");
    }
    if let Some(m) = &p.minimize {
        out.push_str(&format!(
            "<p class=\"minimize\">minimize: {} replays, {}</p>\n",
            m.replays,
            if m.faithful {
                "the set is proven"
            } else {
                "not proven, the recorded set is kept"
            }
        ));
    }
    out.push_str(&format!(
        "<p class=\"namespaces\">namespaces: {}</p>\n",
        html(&namespaces::describe(&p.namespaces))
    ));
    for line in p.losses().lines() {
        out.push_str(&format!("<p class=\"loss\">{}</p>\n", html(&line)));
    }
    let audited_noaudit = p
        .checks
        .iter()
        .filter(|c| c.audit == Audit::Noaudit && c.scope == Scope::Host)
        .count();
    if audited_noaudit > 0 {
        out.push_str(&format!(
            "<p class=\"hint\">{audited_noaudit} distinct noaudit check(s) were seen and left out of the set.</p>\n"
        ));
    }
    out.push_str("</section>\n");
    out
}

/// The explanations for one container.
pub fn container(c: &ContainerProfile) -> String {
    let mut out = String::from("<div class=\"explanations\">\n");
    let all: Vec<Check> = c.checks.iter().chain(&c.denied).cloned().collect();
    glossary(&all, !c.never_checked.is_empty(), &mut out);
    denied(&c.denied, &mut out);
    never_checked(&c.never_checked, &mut out);
    out.push_str("</div>\n");
    out
}
