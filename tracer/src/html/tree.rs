//! The process tree of a recording: the recorded command, the processes seen making checks
//! (each with the capabilities it used and how each counted), and one branch per container.
//! A profile keeps, per distinct check, the first process seen making it (not parent PIDs),
//! so under the command the processes are listed by PID; a PID that exec'd (runc's init
//! becoming the container's shell, a shell exec'ing its last command) is listed once per name.
use std::collections::{BTreeMap, BTreeSet};

use super::{escape::html, flags};
use crate::{
    capability::Cap,
    profile::{Check, ContainerProfile, Profile},
};

/// One process and what it used.
#[derive(Default)]
struct Proc {
    comm: String,
    /// Each capability with the flags of its checks (`counted`, `noaudit`, `denied`, ...).
    caps: BTreeMap<Cap, BTreeSet<&'static str>>,
    /// Namespace calls it made (`unshare(mnt)`).
    ns: Vec<String>,
}

/// Processes keyed by PID and name: the same PID under another name after an exec.
type Procs = BTreeMap<(u32, String), Proc>;

fn processes<'a>(checks: impl Iterator<Item = &'a Check>) -> Procs {
    let mut procs = Procs::new();
    for c in checks {
        let key = (
            c.pid.unwrap_or(0),
            c.comm.clone().unwrap_or_else(|| "?".into()),
        );
        let p = procs.entry(key.clone()).or_default();
        p.comm = key.1;
        p.caps.entry(c.cap).or_default().extend(flags(c));
    }
    procs
}

fn render_procs(procs: &Procs, out: &mut String) {
    if procs.is_empty() {
        out.push_str("<p class=\"none\">no capability checks</p>\n");
        return;
    }
    out.push_str("<ul class=\"procs\">\n");
    for ((pid, _), p) in procs {
        let pid_text = if *pid == 0 {
            "?".to_string()
        } else {
            pid.to_string()
        };
        out.push_str(&format!(
            "<li class=\"proc\" data-pid=\"{pid_text}\"><span class=\"comm\">{}</span> <span class=\"pid\">[{pid_text}]</span>",
            html(&p.comm)
        ));
        for (cap, fl) in &p.caps {
            // Counted once is needed: shown as counted, with what else its checks were.
            let counted = fl.contains("counted");
            let notes: Vec<&str> = fl.iter().copied().filter(|f| *f != "counted").collect();
            let classes = if counted {
                "counted".to_string()
            } else {
                notes.join(" ")
            };
            let small = match (counted, notes.is_empty()) {
                (_, true) => String::new(),
                (true, false) => format!(" <small>also {}</small>", notes.join(" ")),
                (false, false) => format!(" <small>{}</small>", notes.join(" ")),
            };
            let title = if counted {
                "counted: the workload needs it".to_string()
            } else {
                notes.join(", ")
            };
            out.push_str(&format!(
                " <span class=\"cap {classes}\" title=\"{title}\">{}{small}</span>",
                cap.name()
            ));
        }
        for ns in &p.ns {
            out.push_str(&format!(" <span class=\"ns\">{}</span>", html(ns)));
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
}

/// The container's branch: its label, image and processes.
fn container(c: &ContainerProfile, index: usize, out: &mut String) {
    out.push_str(&format!(
        "<li class=\"node container\"><details open><summary><span class=\"badge container\">container</span> <a href=\"#container-{index}\">{}</a>{}</summary>\n",
        html(&c.label()),
        c.image
            .as_deref()
            .map(|i| format!(" <span class=\"image\">{}</span>", html(i)))
            .unwrap_or_default()
    ));
    render_procs(&processes(c.checks.iter().chain(&c.denied)), out);
    out.push_str("</details></li>\n");
}

/// The whole tree, as a `<section id="tree">`.
pub fn render(p: &Profile) -> String {
    let mut procs = processes(p.checks.iter().chain(&p.denied));
    for call in &p.namespaces.calls {
        let entry = procs.entry((call.pid, call.comm.clone())).or_default();
        entry.comm = call.comm.clone();
        entry.ns.push(format!(
            "{}({}){}",
            call.syscall,
            call.namespaces.join("|"),
            if call.ret < 0 { " failed" } else { "" }
        ));
    }
    let mut out = String::from("<section id=\"tree\">\n<h2>Process tree</h2>\n");
    out.push_str(
        "<p class=\"hint\">Each process is listed with the capabilities it was checked for; \
         only <span class=\"cap counted\">counted</span> ones are needed. Click a branch to fold it.</p>\n",
    );
    out.push_str(&format!(
        "<ul class=\"tree\"><li class=\"node root\"><details open><summary><span class=\"badge\">command</span> <code class=\"command\">{}</code></summary>\n",
        html(&p.command.join(" "))
    ));
    render_procs(&procs, &mut out);
    if !p.containers.is_empty() {
        out.push_str("<ul class=\"containers\">\n");
        for (i, c) in p.containers.iter().enumerate() {
            container(c, i, &mut out);
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</details></li></ul>\n</section>\n");
    out
}
