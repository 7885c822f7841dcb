//! The report `record` prints on stderr after the command finishes.
use std::collections::BTreeMap;

use comfy_table::{Table, presets::NOTHING};

use crate::{
    alternatives,
    capability::Cap,
    classifier,
    container::sets,
    escape::printable,
    formats,
    formats::Format,
    minimize, namespaces,
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

    out += &checks_table(&p.checks);
    out += "(noaudit and probe checks are the kernel asking without needing, e.g. memory accounting; they are never counted)\n\n";
    out += &body(p);
    out
}

/// The table of checks, or a line saying there were none.
fn checks_table(checks: &[Check]) -> String {
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
    for ((cap, audit, scope), r) in rows(checks) {
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
    if checks.is_empty() {
        "no capability checks\n".to_string()
    } else {
        table.to_string() + "\n"
    }
}

/// Everything after the table.
fn body(p: &Profile) -> String {
    let mut out = String::new();
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
    for line in p.losses().lines() {
        out += &line;
        out.push('\n');
    }
    if let Some(m) = &p.minimize {
        let list = |v: &[Cap]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            }
        };
        if m.faithful {
            out += &format!(
                "minimize ({} replays): proven {}; dropped {}; added {}\n",
                m.replays,
                list(&m.proven),
                list(&m.dropped),
                list(&m.added)
            );
        } else {
            out += &format!(
                "minimize ({} replays): not proven, the recorded set is kept\n",
                m.replays
            );
        }
        if let Some(note) = &m.note {
            out += &format!("  {note}\n");
        }
    }
    if !p.silent_refusals.is_empty() {
        out += "refused without changing the outcome (left out of the set):\n";
        for r in &p.silent_refusals {
            out += &format!("  {}\n", minimize::refusal_line(r));
        }
    }
    out += &containers(p);
    if p.follows_containers && p.containers.is_empty() {
        out += "\nrecommendation: none for a container\n";
    } else {
        out += &format!(
            "\nrecommendation: {}\n",
            formats::render(p, Format::Docker).trim_end()
        );
        for a in &p.alternatives {
            out += &format!("  {}\n", alternatives::line(a, p.minimize.is_some()));
        }
        if let Some(line) = alternatives::non_root_line(&p.cap_add, &p.alternatives) {
            out += &format!("  {line}\n");
        }
        if !p.alternatives.is_empty() {
            out += &format!(
                "  with the alternatives: {} (captrace recommend --prefer-alternatives)\n",
                formats::render_preferring(p, Format::Docker).trim_end()
            );
        }
    }
    if let Some(s) = p.exit_status.filter(|s| *s != 0) {
        out += &format!(
            "  covers only what ran before the command failed (exit status {s}): a run that succeeds may need more\n"
        );
        for a in p
            .advice
            .iter()
            .filter(|a| !a.starts_with("needs no capabilities"))
        {
            out += &format!("  {a}\n");
        }
    } else {
        for a in &p.advice {
            out += &format!("  {a}\n");
        }
    }
    out
}

/// One section per container the command started.
fn containers(p: &Profile) -> String {
    let mut out = String::new();
    if !p.containers.is_empty() {
        out += &format!(
            "\ncontainers started by the command: {}\n",
            p.containers.len()
        );
    }
    for c in &p.containers {
        out += &format!("\ncontainer {}", printable(&c.label()));
        if let Some(image) = &c.image {
            out += &format!(", image {}", printable(image));
        }
        if let Some(service) = &c.service {
            out += &format!(", compose service {}", printable(service));
        }
        out += "\n";
        let (own, runtime): (Vec<Check>, Vec<Check>) = c
            .checks
            .iter()
            .cloned()
            .partition(|k| k.origin.is_workload());
        out += &checks_table(&own);
        if !runtime.is_empty() {
            let mut caps: Vec<String> = runtime.iter().map(|k| k.cap.name()).collect();
            caps.sort();
            caps.dedup();
            out += &format!(
                "  the runtime's own work in its cgroup (runc init, borrowed credentials; never the container's): {}\n",
                caps.join(", ")
            );
        }
        for d in &c.denied {
            out += &format!(
                "  wanted but not granted: {} denied {}x in {} by {}\n",
                d.cap,
                d.count,
                d.syscall.as_deref().unwrap_or("-"),
                printable(d.comm.as_deref().unwrap_or("?"))
            );
        }
        if let Some(granted) = &c.granted {
            let unused = granted.iter().filter(|g| !c.cap_add.contains(g)).count();
            out += &format!(
                "  granted {} capabilities, used {}: drop {unused}\n",
                granted.len(),
                c.cap_add.len()
            );
        }
        out += &format!("  {}\n", printable(&sets::run_flags(c)));
    }
    out
}

fn errno_name(ret: i64) -> String {
    nix::errno::Errno::from_raw((-ret) as i32).to_string()
}
