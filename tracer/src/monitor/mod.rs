//! Host-wide monitoring: every capability check and namespace call on the host, aggregated in
//! the kernel per cgroup, attributed to containers here. Detail events drive the line output;
//! the exact counts in the maps drive the table, the metrics and the summary.
mod output;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use serde::Serialize;

pub use output::{render_table, summary_lines};

use crate::{
    capability::Cap,
    container::resolve::{self, Attribution, Resolver},
    events::{self, Collector, Decoded},
    hook::HookChoice,
    loader::{Options, Tracer},
    namespaces,
    profile::{Audit, Check, Losses, Namespaces, NsCallRecord, Origin, Scope, Verdict},
    recommendation,
    symbolizer::Symbolizer,
};

/// One line of `monitor` output (JSON, one object per line).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Check {
        container: Attribution,
        pid: u32,
        pid_in_container: Option<u32>,
        comm: String,
        cap: Cap,
        verdict: Verdict,
        audit: Audit,
        scope: Scope,
        syscall: Option<String>,
        namespaces: BTreeMap<String, u64>,
        #[serde(skip_serializing_if = "Origin::is_workload")]
        origin: Origin,
    },
    Namespace {
        container: Attribution,
        pid: u32,
        pid_in_container: Option<u32>,
        comm: String,
        syscall: String,
        namespaces: Vec<String>,
        ret: i64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        runtime: bool,
        /// Set when a container creates or joins namespaces: how escapes look.
        #[serde(skip_serializing_if = "Option::is_none")]
        flag: Option<String>,
    },
}

/// Per-cgroup state between refreshes.
#[derive(Clone, Debug, Default)]
pub struct CgroupStats {
    pub checks: Vec<Check>,
    pub ns_calls: Vec<NsCallRecord>,
    pub total: u64,
    pub per_second: f64,
}

impl CgroupStats {
    /// The workload's own checks: without those of a container runtime's init.
    pub fn workload_checks(&self) -> Vec<Check> {
        self.checks
            .iter()
            .filter(|c| c.origin.is_workload())
            .cloned()
            .collect()
    }

    /// The workload's own namespace calls.
    pub fn workload_ns_calls(&self) -> Vec<NsCallRecord> {
        self.ns_calls
            .iter()
            .filter(|c| c.origin != Origin::Runtime)
            .cloned()
            .collect()
    }

    /// Capabilities used (the same rule as `record`: audited, granted, host).
    pub fn used(&self) -> Vec<Cap> {
        recommendation::recommend(&self.workload_checks(), &Namespaces::default()).cap_add
    }

    pub fn denials(&self) -> u64 {
        recommendation::denials(&self.workload_checks())
            .iter()
            .map(|c| c.count)
            .sum()
    }
}

/// What to watch and show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these capabilities in the line output (empty: all).
    pub caps: Vec<Cap>,
    /// Print each (container, capability, verdict) once.
    pub unique: bool,
}

pub struct Monitor {
    tracer: Tracer,
    ring: RingBuf<MapData>,
    collector: Collector,
    symbolizer: Symbolizer,
    pub resolver: Resolver,
    filter: Filter,
    printed: HashSet<(u64, Cap, Verdict)>,
    /// cgroup id → stats at the last refresh.
    pub stats: BTreeMap<u64, CgroupStats>,
    last_refresh: Option<Instant>,
    /// Last effective set read from each container's init (kept after it exits).
    grants: HashMap<u64, u64>,
}

impl Monitor {
    pub fn start(cgroups: Vec<u64>, filter: Filter, hook: HookChoice) -> anyhow::Result<Monitor> {
        // Checks are counted per cgroup v2 id; without the hierarchy none can be attributed.
        resolve::cgroup2_root()?;
        let mut tracer = Tracer::load(Options {
            trace_all: true,
            cgroups,
            hook: Some(hook),
            ..Options::default()
        })?;
        let ring = tracer.take_events()?;
        let symbolizer = Symbolizer::from_kallsyms()?;
        symbolizer.start()?;
        Ok(Monitor {
            tracer,
            ring,
            collector: Collector::default(),
            symbolizer,
            resolver: Resolver::new(),
            filter,
            printed: HashSet::new(),
            stats: BTreeMap::new(),
            last_refresh: None,
            grants: HashMap::new(),
        })
    }

    /// New detail since the last call, as output lines.
    pub fn poll(&mut self) -> Vec<Line> {
        let fresh = self.collector.drain(&mut self.ring);
        let mut lines = Vec::new();
        for f in fresh {
            match f {
                Decoded::Check {
                    path,
                    tgid,
                    ns_pid,
                    comm,
                } => {
                    let cap = Cap(path.usage.cap);
                    if !self.filter.caps.is_empty() && !self.filter.caps.contains(&cap) {
                        continue;
                    }
                    let check = events::check_of(&path.usage, 0);
                    if self.filter.unique
                        && !self
                            .printed
                            .insert((path.usage.workload, cap, check.verdict))
                    {
                        continue;
                    }
                    let classified =
                        self.collector
                            .classify(&self.symbolizer, path.stack_hash, cap);
                    lines.push(Line::Check {
                        container: self.resolver.resolve(path.usage.workload, Some(tgid)),
                        pid: tgid,
                        pid_in_container: (ns_pid != 0).then_some(ns_pid),
                        comm,
                        cap,
                        verdict: check.verdict,
                        audit: classified.audit,
                        scope: check.scope,
                        syscall: check.syscall,
                        namespaces: resolve::namespaces(tgid),
                        origin: events::own_unless_borrowed(
                            check.origin,
                            [classified.callers.as_slice()],
                        ),
                    });
                }
                Decoded::Denial { .. } => {}
                Decoded::Ns {
                    workload,
                    ns_pid,
                    record,
                } => {
                    let container = self.resolver.resolve(workload, Some(record.pid));
                    // The kernel's verdict, not the name (which the workload chooses).
                    let runtime = record.origin == Origin::Runtime;
                    // Attempts count as much as successes: joining or creating namespaces from
                    // inside a container is how escapes look.
                    let flag = (container.container.is_container() && !runtime).then(|| {
                        let result = if record.ret < 0 {
                            format!(
                                " failed: {}",
                                nix::errno::Errno::from_raw((-record.ret) as i32)
                            )
                        } else {
                            String::new()
                        };
                        format!(
                            "namespace activity inside container {}: {}({}){result}",
                            container.label(),
                            record.syscall,
                            record.namespaces.join("|")
                        )
                    });
                    lines.push(Line::Namespace {
                        pid_in_container: (ns_pid != 0).then_some(ns_pid),
                        container,
                        pid: record.pid,
                        comm: record.comm,
                        syscall: record.syscall,
                        namespaces: record.namespaces,
                        ret: record.ret,
                        runtime,
                        flag,
                    });
                }
            }
        }
        lines
    }

    /// Re-reads the exact counts per cgroup.
    pub fn refresh(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let elapsed = self
            .last_refresh
            .map(|t| now.duration_since(t))
            .unwrap_or(Duration::ZERO);
        self.last_refresh = Some(now);
        let all = events::all_checks(&self.tracer, &self.collector, &self.symbolizer)?;
        let mut next = BTreeMap::new();
        for (cgroup, checks) in all {
            let total: u64 = checks.iter().map(|c| c.count).sum();
            let before = self.stats.get(&cgroup).map_or(total, |s| s.total);
            let per_second = if elapsed.is_zero() {
                0.0
            } else {
                (total - before.min(total)) as f64 / elapsed.as_secs_f64()
            };
            let ns_calls = self.collector.ns_calls(cgroup);
            next.insert(
                cgroup,
                CgroupStats {
                    checks,
                    ns_calls,
                    total,
                    per_second,
                },
            );
        }
        self.stats = next;
        for (id, a) in self.attributions() {
            if !a.container.is_container() {
                continue;
            }
            // The runtime's init still holds the runtime's privileges: read the workload's.
            if let Some(pid) = self.resolver.init_pid(&a.cgroup)
                && let Some(status) = resolve::status(pid)
                && !self
                    .tracer
                    .is_runtime_task(pid, status.name.as_deref().unwrap_or_default())
                && let Some(eff) = status.cap_eff
            {
                self.grants.insert(id, eff);
            }
        }
        Ok(())
    }

    /// Attribution of every cgroup seen so far.
    pub fn attributions(&mut self) -> BTreeMap<u64, Attribution> {
        let ids: Vec<u64> = self.stats.keys().copied().collect();
        let mut out = BTreeMap::new();
        for id in ids {
            let pid = self.stats[&id].checks.iter().find_map(|c| c.pid);
            out.insert(id, self.resolver.resolve(id, pid));
        }
        out
    }

    /// Whether the kernel knows a container runtime executable: without one, no check is the
    /// runtime's.
    pub fn knows_runtimes(&self) -> bool {
        !self.tracer.runtime_exes.is_empty()
    }

    pub fn hook_point(&self) -> Option<&'static str> {
        self.tracer.hook_point()
    }

    pub fn losses(&self) -> Losses {
        self.tracer.losses()
    }
}

/// The per-container summary at exit: what it used against what it holds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub container: Attribution,
    pub used: Vec<Cap>,
    /// The effective set of the container's init process (None once it is gone).
    pub grants: Option<Vec<Cap>>,
    /// Granted but never used.
    pub can_drop: Vec<Cap>,
    pub denials: u64,
    pub namespaces: Namespaces,
}

pub fn summarize(monitor: &mut Monitor) -> Vec<Summary> {
    let attributions = monitor.attributions();
    let mut by_container: HashMap<String, (Attribution, CgroupStats, Option<u64>)> = HashMap::new();
    for (id, a) in attributions {
        if !a.container.is_container() {
            continue;
        }
        let stats = monitor.stats[&id].clone();
        let grants = monitor.grants.get(&id).copied();
        let entry = by_container
            .entry(a.container.id.clone().unwrap_or_default())
            .or_insert((a, CgroupStats::default(), None));
        entry.1.checks.extend(stats.workload_checks());
        entry.1.ns_calls.extend(stats.workload_ns_calls());
        entry.2 = entry.2.or(grants);
    }
    let mut out: Vec<Summary> = by_container
        .into_values()
        .map(|(a, stats, grants)| {
            let used = stats.used();
            let grants = grants.map(crate::capability::from_mask);
            let used_set: BTreeSet<Cap> = used.iter().copied().collect();
            let can_drop = grants
                .iter()
                .flatten()
                .filter(|c| !used_set.contains(c))
                .copied()
                .collect();
            Summary {
                denials: stats.denials(),
                namespaces: namespaces::summarize(stats.ns_calls.clone()),
                container: a,
                used,
                grants,
                can_drop,
            }
        })
        .collect();
    out.sort_by_key(|s| s.container.label());
    out
}
