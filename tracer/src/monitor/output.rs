//! What `monitor` shows a person: the live table and the exit summary.
use std::collections::BTreeMap;

use comfy_table::{Table, presets::NOTHING};

use super::{CgroupStats, Summary};
use crate::{
    capability::Cap, container::resolve::Attribution, escape::printable, namespaces,
    profile::Losses,
};

fn names(caps: &[Cap]) -> String {
    if caps.is_empty() {
        "-".to_string()
    } else {
        caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
    }
}

/// One row per cgroup, busiest first.
pub fn render_table(
    stats: &BTreeMap<u64, CgroupStats>,
    who: &BTreeMap<u64, Attribution>,
    losses: Losses,
) -> String {
    let mut rows: Vec<(&u64, &CgroupStats)> = stats.iter().collect();
    rows.sort_by(|a, b| b.1.per_second.total_cmp(&a.1.per_second).then(a.0.cmp(b.0)));
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "CONTAINER",
        "CAPABILITIES USED",
        "CHECKS/S",
        "CHECKS",
        "DENIALS",
        "NAMESPACES",
    ]);
    for (id, s) in rows {
        let label = who
            .get(id)
            .map(|a| printable(&a.label()).into_owned())
            .unwrap_or_else(|| format!("cgroup {id}"));
        let ns = namespaces::summarize(s.workload_ns_calls());
        let ns = if ns.created.is_empty() && ns.joined.is_empty() {
            "-".to_string()
        } else {
            namespaces::describe(&ns)
        };
        table.add_row([
            label,
            names(&s.used()),
            format!("{:.0}", s.per_second),
            s.total.to_string(),
            s.denials().to_string(),
            ns,
        ]);
    }
    let mut out = table.to_string();
    for line in losses.lines() {
        out += "\n";
        out += &line;
    }
    out
}

/// "docker web (3f4e8a6c2b1d): grants 14, used 1: --cap-drop=ALL --cap-add=CHOWN"
pub fn summary_lines(s: &Summary) -> Vec<String> {
    let flags: String = std::iter::once("--cap-drop=ALL".to_string())
        .chain(s.used.iter().map(|c| format!("--cap-add={c}")))
        .collect::<Vec<_>>()
        .join(" ");
    let grants = match &s.grants {
        Some(g) => format!("grants {}", g.len()),
        None => "grants ? (exited)".to_string(),
    };
    let mut out = vec![format!(
        "{}: {grants}, used {}: {flags}",
        printable(&s.container.label()),
        s.used.len()
    )];
    if !s.can_drop.is_empty() {
        out.push(format!(
            "  can drop {}: {}",
            s.can_drop.len(),
            names(&s.can_drop).replace(',', ", ")
        ));
    }
    if s.denials > 0 {
        out.push(format!("  {} audited checks were denied", s.denials));
    }
    if !s.namespaces.created.is_empty() || !s.namespaces.joined.is_empty() {
        out.push(format!(
            "  namespace activity inside the container: {}",
            namespaces::describe(&s.namespaces)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capability::docker_defaults,
        container::{ContainerRef, Runtime},
        profile::Namespaces,
    };

    #[test]
    fn summary_says_what_a_default_container_can_drop() {
        let mut container = ContainerRef::new(Runtime::Docker);
        container.id = Some("3f4e8a6c2b1d".repeat(5) + "abcd");
        let grants: Vec<Cap> = docker_defaults().collect();
        let s = Summary {
            container: Attribution {
                container,
                name: Some("web".into()),
                cgroup: "/docker/x".into(),
                verified: true,
            },
            used: vec![Cap(0)],
            can_drop: grants.iter().copied().filter(|c| *c != Cap(0)).collect(),
            grants: Some(grants),
            denials: 0,
            namespaces: Namespaces::default(),
        };
        let lines = summary_lines(&s);
        assert_eq!(
            lines[0],
            "docker web (3f4e8a6c2b1d): grants 14, used 1: --cap-drop=ALL --cap-add=CHOWN"
        );
        assert!(
            lines[1].starts_with("  can drop 13: DAC_OVERRIDE, FOWNER"),
            "{}",
            lines[1]
        );
    }
}
