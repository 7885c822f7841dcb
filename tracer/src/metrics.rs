//! `monitor --metrics ADDR`: the exact counters in the OpenMetrics text format (rendered by
//! `prometheus-client`, which escapes label values and writes HELP/TYPE), served by hyper over
//! HTTP/1 (`GET /metrics`).
//!
//! The server is built to stay up when anyone who can reach the port misbehaves: each request
//! must send its headers within [`Limits::header_read`] and be done within [`Limits::request`];
//! at most [`Limits::max_connections`] are open at once (derived from `RLIMIT_NOFILE`, so the
//! sockets never take the fds the monitor needs), and when that many are open a new one evicts
//! the oldest that has not sent a request yet (idle sockets cannot starve a scraper); accept
//! errors (EMFILE, ENFILE, ENOBUFS) back off instead of spinning.
use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::{net::TcpListener, sync::oneshot};

use crate::{
    container::resolve::Attribution,
    monitor::CgroupStats,
    profile::{Losses, Verdict},
};

/// The content type of [`render`]'s text (it ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The exposition text for the current counts.
pub fn render(
    stats: &BTreeMap<u64, CgroupStats>,
    who: &BTreeMap<u64, Attribution>,
    losses: Losses,
) -> String {
    let mut registry = Registry::default();
    let checks = Family::<Labels, Counter>::default();
    for (id, s) in stats {
        let Some(a) = who.get(id) else { continue };
        for c in &s.checks {
            let verdict = if c.verdict == Verdict::Granted {
                "granted"
            } else {
                "denied"
            };
            let labels = vec![
                ("runtime", a.container.runtime.as_str().to_string()),
                ("container_id", a.container.id.clone().unwrap_or_default()),
                ("container_name", a.name.clone().unwrap_or_default()),
                ("cgroup", a.cgroup.clone()),
                ("capability", c.cap.name()),
                ("verdict", verdict.to_string()),
                ("audit", format!("{:?}", c.audit).to_lowercase()),
                ("origin", format!("{:?}", c.origin).to_lowercase()),
            ];
            checks.get_or_create(&labels).inc_by(c.count);
        }
    }
    // The registry appends `_total` to a counter's name and a full stop to its help.
    registry.register(
        "captrace_capability_checks",
        "Capability checks seen by the kernel, per container, capability, verdict and audit class",
        checks,
    );
    counter(
        &mut registry,
        "captrace_events_lost",
        "Detail events the ring buffer could not take (counts stay exact)",
        losses.events,
    );
    counter(
        &mut registry,
        "captrace_stacks_lost",
        "Kernel stack walks that failed (those checks have an unknown call path)",
        losses.stacks,
    );
    counter(
        &mut registry,
        "captrace_map_full",
        "Inserts a full kernel map refused (checks or processes not counted)",
        losses.map_full,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time from accept (or the previous response) to a request's complete headers.
    pub header_read: Duration,
    /// Time a connection may live in all (reading, answering, a slow reader of the answer).
    pub request: Duration,
}

impl Limits {
    /// Half the fds this process may still open, at most 64: the monitor keeps the rest for
    /// /proc, cgroup directories and `podman inspect`.
    pub fn for_this_process() -> Self {
        let mut lim = libc::rlimit {
            rlim_cur: 1024,
            rlim_max: 1024,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            1024
        };
        let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
        let free = soft.saturating_sub(open);
        Self {
            max_connections: (free / 2).clamp(1, 64) as usize,
            header_read: Duration::from_secs(5),
            request: Duration::from_secs(10),
        }
    }
}

/// An open connection: whether it has sent a request, and how to close it.
struct Slot {
    asked: Arc<AtomicBool>,
    evict: oneshot::Sender<()>,
}

/// Takes a slot for a new connection, or `None` when every slot is serving a request.
fn admit(
    slots: &mut VecDeque<Slot>,
    max: usize,
) -> Option<(Arc<AtomicBool>, oneshot::Receiver<()>)> {
    // A finished connection dropped its receiver.
    slots.retain(|s| !s.evict.is_closed());
    if slots.len() >= max {
        let idle = slots
            .iter()
            .position(|s| !s.asked.load(Ordering::Relaxed))?;
        if let Some(old) = slots.remove(idle) {
            let _ = old.evict.send(());
        }
    }
    let asked = Arc::new(AtomicBool::new(false));
    let (evict, evicted) = oneshot::channel();
    slots.push_back(Slot {
        asked: asked.clone(),
        evict,
    });
    Some((asked, evicted))
}

fn answer(req: &Request<hyper::body::Incoming>, text: &Mutex<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics" | "/") => {
            let body = text.lock().map(|t| t.clone()).unwrap_or_default();
            *resp.body_mut() = Full::new(Bytes::from(body));
            if let Ok(v) = CONTENT_TYPE.parse() {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
        }
        (&Method::GET, _) => *resp.status_mut() = StatusCode::NOT_FOUND,
        _ => *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED,
    }
    resp
}

/// Serves `text` (updated by the monitor loop) until the task is dropped.
pub async fn serve(listener: TcpListener, text: Arc<Mutex<String>>) {
    serve_with(listener, text, Limits::for_this_process()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with(listener: TcpListener, text: Arc<Mutex<String>>, limits: Limits) {
    let mut slots = VecDeque::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => {
                backoff = Duration::from_millis(10);
                sock
            }
            Err(e) => {
                // EMFILE and kin stay until something closes: retrying at once would spin.
                tracing::debug!("metrics: accept: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some((asked, evicted)) = admit(&mut slots, limits.max_connections) else {
            // Every connection is being answered: this one waits for none of them.
            drop(sock);
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                asked.store(true, Ordering::Relaxed);
                let resp = answer(&req, &text);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), service);
            tokio::select! {
                _ = tokio::time::timeout(limits.request, conn) => {}
                _ = evicted => {}
            }
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
                verified: true,
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
        assert!(text.contains("\ncaptrace_map_full_total 4\n"), "{text}");
        assert!(
            text.contains("# HELP captrace_capability_checks Capability checks seen by the kernel, per container, capability, verdict and audit class.\n# TYPE captrace_capability_checks counter\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
