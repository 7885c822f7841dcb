//! The report `record` prints on stderr after the command finishes.
use std::collections::BTreeMap;

use comfy_table::{Table, presets::NOTHING};

use crate::{
    capability::Cap,
    classifier,
    cli::Format,
    escape::printable,
    formats, namespaces,
    profile::{Audit, Check, Profile, Scope, Verdict},
};

/// One table row: all checks of one capability with the same audit class and scope.
#[derive(Default)]
struct Row {
    checks: u64,
    granted: u64,
    denied: u64,
    first: Option<String>,
    syscalls: Vec<String>,
    path: String,
}

fn audit_label(a: Audit) -> &'static str {
    match a {
        Audit::Audited => "audited",
        Audit::Noaudit => "noaudit",
        Audit::Probe => "probe",
        Audit::Unknown => "unknown",
    }
}

fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::Host => "host",
        Scope::Nested => "own userns",
        Scope::Unknown => "unknown",
    }
}

fn rows(checks: &[Check]) -> BTreeMap<(Cap, Audit, Scope), Row> {
    let mut rows: BTreeMap<(Cap, Audit, Scope), Row> = BTreeMap::new();
    for c in checks {
        let row = rows.entry((c.cap, c.audit, c.scope)).or_default();
        row.checks += c.count;
        match c.verdict {
            Verdict::Granted => row.granted += c.count,
            Verdict::Denied => row.denied += c.count,
        }
        if row.first.is_none()
            && let (Some(pid), Some(comm)) = (c.pid, &c.comm)
        {
            row.first = Some(format!("{}[{pid}]", printable(comm)));
        }
        let sys = c.syscall.clone().unwrap_or_else(|| "-".into());
        if !row.syscalls.contains(&sys) {
            row.syscalls.push(sys);
        }
        if row.path.is_empty()
            && let Some(p) = c.call_paths.first()
        {
            row.path = classifier::short_path(&p.frames, 3);
        }
    }
    rows
}

fn syscalls(list: &[String]) -> String {
    match list.len() {
        0..=3 => list.join(","),
        n => format!("{},+{}", list[..3].join(","), n - 3),
    }
}

/// The whole human report.
pub fn render(p: &Profile) -> String {
    let mut out = String::new();
    let status = p
        .exit_status
        .map_or("unknown".to_string(), |s| s.to_string());
    out += &format!(
        "captrace: recorded `{}` (exit status {status}, hook {})\n\n",
        printable(&p.command.join(" ")),
        p.hook
    );

    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "CAPABILITY",
        "CHECKS",
        "GRANTED",
        "DENIED",
        "AUDIT",
        "SCOPE",
        "FIRST PROCESS",
        "SYSCALL",
        "KERNEL PATH",
    ]);
    for ((cap, audit, scope), r) in rows(&p.checks) {
        table.add_row([
            cap.name(),
            r.checks.to_string(),
            r.granted.to_string(),
            r.denied.to_string(),
            audit_label(audit).to_string(),
            scope_label(scope).to_string(),
            r.first.unwrap_or_else(|| "-".into()),
            syscalls(&r.syscalls),
            r.path,
        ]);
    }
    if p.checks.is_empty() {
        out += "no capability checks\n";
    } else {
        out += &table.to_string();
        out += "\n";
    }
    out += "(noaudit and probe checks are the kernel asking without needing, e.g. memory accounting; they are never counted)\n\n";

    out += &format!("namespaces: {}\n", namespaces::describe(&p.namespaces));
    for c in p.namespaces.calls.iter().filter(|c| c.ret < 0) {
        out += &format!(
            "  {}({}) by {}[{}] failed: {}\n",
            c.syscall,
            c.namespaces.join("|"),
            printable(&c.comm),
            c.pid,
            errno_name(c.ret)
        );
    }
    if p.denied.is_empty() {
        out += "wanted but not granted: none\n";
    } else {
        out += "wanted but not granted:\n";
        for d in &p.denied {
            out += &format!(
                "  {} denied {}x in {} by {}[{}]\n",
                d.cap,
                d.count,
                d.syscall.as_deref().unwrap_or("-"),
                printable(d.comm.as_deref().unwrap_or("?")),
                d.pid.unwrap_or(0)
            );
        }
    }
    if !p.nested_userns.is_empty() {
        let names: Vec<String> = p.nested_userns.iter().map(|c| c.name()).collect();
        out += &format!(
            "used only inside its own user namespace (not host capabilities): {}\n",
            names.join(", ")
        );
    }
    for a in &p.never_checked {
        out += &format!("added {} without a visible check: {}\n", a.cap, a.reason);
    }
    if p.lost_events > 0 {
        out += &format!(
            "lost {} detail events (ring buffer full); counts are still exact\n",
            p.lost_events
        );
    }
    if let Some(m) = &p.minimize {
        let list = |v: &[Cap]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            }
        };
        out += &format!(
            "minimize ({} replays): proven {}; dropped {}; added {}\n",
            m.replays,
            list(&m.proven),
            list(&m.dropped),
            list(&m.added)
        );
        if let Some(note) = &m.note {
            out += &format!("  {note}\n");
        }
    }
    out += &format!(
        "\nrecommendation: {}\n",
        formats::render(p, Format::Docker).trim_end()
    );
    for a in &p.advice {
        out += &format!("  {a}\n");
    }
    out
}

fn errno_name(ret: i64) -> String {
    nix::errno::Errno::from_raw((-ret) as i32).to_string()
}
