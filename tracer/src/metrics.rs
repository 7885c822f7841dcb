//! `monitor --metrics ADDR`: the exact counters in the Prometheus text format, served over
//! plain HTTP (`GET /metrics`).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::{
    container::resolve::Attribution,
    monitor::CgroupStats,
    profile::{Losses, Verdict},
};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for the current counts.
pub fn render(
    stats: &BTreeMap<u64, CgroupStats>,
    who: &BTreeMap<u64, Attribution>,
    losses: Losses,
) -> String {
    let mut out = String::new();
    out += "# HELP captrace_capability_checks_total Capability checks seen by the kernel, per container, capability, verdict and audit class.\n";
    out += "# TYPE captrace_capability_checks_total counter\n";
    for (id, s) in stats {
        let Some(a) = who.get(id) else { continue };
        let mut per: BTreeMap<(String, &str, String, String), u64> = BTreeMap::new();
        for c in &s.checks {
            let verdict = if c.verdict == Verdict::Granted {
                "granted"
            } else {
                "denied"
            };
            let audit = format!("{:?}", c.audit).to_lowercase();
            let origin = format!("{:?}", c.origin).to_lowercase();
            *per.entry((c.cap.name(), verdict, audit, origin))
                .or_default() += c.count;
        }
        for ((cap, verdict, audit, origin), n) in per {
            let _ = writeln!(
                out,
                "captrace_capability_checks_total{{runtime=\"{}\",container_id=\"{}\",container_name=\"{}\",cgroup=\"{}\",capability=\"{cap}\",verdict=\"{verdict}\",audit=\"{audit}\",origin=\"{origin}\"}} {n}",
                a.container.runtime.as_str(),
                escape(a.container.id.as_deref().unwrap_or("")),
                escape(a.name.as_deref().unwrap_or("")),
                escape(&a.cgroup),
            );
        }
    }
    out += "# HELP captrace_events_lost_total Detail events the ring buffer could not take (counts stay exact).\n";
    out += "# TYPE captrace_events_lost_total counter\n";
    let _ = writeln!(out, "captrace_events_lost_total {}", losses.events);
    out += "# HELP captrace_stacks_lost_total Kernel stack walks that failed (those checks have an unknown call path).\n";
    out += "# TYPE captrace_stacks_lost_total counter\n";
    let _ = writeln!(out, "captrace_stacks_lost_total {}", losses.stacks);
    out += "# HELP captrace_map_full_total Inserts a full kernel map refused (checks or processes not counted).\n";
    out += "# TYPE captrace_map_full_total counter\n";
    let _ = writeln!(out, "captrace_map_full_total {}", losses.map_full);
    out
}

/// Serves `text` (updated by the monitor loop) until the task is dropped.
pub async fn serve(listener: TcpListener, text: Arc<Mutex<String>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while got < buf.len() {
                match sock.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let request = String::from_utf8_lossy(&buf[..got]);
            let response = match request.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["GET", "/metrics"] | ["GET", "/"] => {
                    let body = text.lock().map(|t| t.clone()).unwrap_or_default();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = sock.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capability::Cap,
        container::{ContainerRef, Runtime},
        profile::{Audit, Check, Scope},
    };

    #[test]
    fn renders_counters_with_labels() {
        let mut c = ContainerRef::new(Runtime::Docker);
        c.id = Some("ab".repeat(32));
        let who = BTreeMap::from([(
            7,
            Attribution {
                container: c,
                name: Some("we\"b".into()),
                cgroup: "/docker/x".into(),
            },
        )]);
        let check = Check {
            cap: Cap(0),
            verdict: Verdict::Granted,
            audit: Audit::Audited,
            scope: Scope::Host,
            syscall: Some("fchownat".into()),
            count: 3,
            pid: None,
            comm: None,
            call_paths: vec![],
            origin: crate::profile::Origin::Workload,
            first_seen_ms: None,
            last_seen_ms: None,
        };
        let stats = BTreeMap::from([(
            7,
            CgroupStats {
                checks: vec![check.clone(), check],
                ..Default::default()
            },
        )]);
        let losses = Losses {
            events: 2,
            stacks: 3,
            map_full: 4,
        };
        let text = render(&stats, &who, losses);
        assert!(
            text.contains(
                "capability=\"CHOWN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 6\n"
            ),
            "{text}"
        );
        assert!(text.contains("container_name=\"we\\\"b\""), "{text}");
        assert!(text.contains("\ncaptrace_events_lost_total 2\n"));
        assert!(text.contains("\ncaptrace_stacks_lost_total 3\n"));
        assert!(text.ends_with("\ncaptrace_map_full_total 4\n"));
    }
}
