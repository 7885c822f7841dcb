//! Drains the ring buffer and reads the maps into the checks of one workload.
//! Counts come from the `USAGE` map (exact); events only add who made a check first and the
//! namespace calls, so a full ring buffer loses detail but never a count.
use std::collections::{BTreeMap, HashMap};

use aya::maps::{MapData, RingBuf};
use tracer_common::{CapCheck, Event, NsCall, PathKey, UsageKey, kind, scope, verdict};

use crate::{
    capability::Cap,
    classifier,
    loader::{LoadError, Tracer},
    namespaces,
    profile::{Audit, CallPath, Check, NsCallRecord, Scope, Verdict},
    symbolizer::Symbolizer,
    syscall,
};

/// What the events said, per workload.
#[derive(Default)]
pub struct Collector {
    /// The process that first made each (key, path).
    first: HashMap<PathKey, (u32, String)>,
    ns_calls: Vec<(u64, NsCallRecord)>,
}

fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn read_event<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>()).then(|| {
        // SAFETY: the kernel wrote a `T` (checked by kind and length); read_unaligned copes with
        // the ring buffer's 8-byte alignment.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}

impl Collector {
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            let bytes: &[u8] = &item;
            let Some(kind) = read_event::<u32>(bytes) else {
                continue;
            };
            match kind {
                kind::CAP_CHECK => {
                    if let Some(ev) = read_event::<Event<CapCheck>>(bytes) {
                        self.first
                            .entry(ev.data.path)
                            .or_insert((ev.header.tgid, comm(&ev.header.comm)));
                    }
                }
                kind::NS_CALL => {
                    if let Some(ev) = read_event::<Event<NsCall>>(bytes) {
                        let link = std::fs::read_link(format!(
                            "/proc/{}/fd/{}",
                            ev.header.tid, ev.data.fd
                        ))
                        .ok()
                        .map(|p| p.display().to_string());
                        let rec = namespaces::record(
                            &ev.data,
                            ev.header.tgid,
                            comm(&ev.header.comm),
                            link,
                        );
                        self.ns_calls.push((ev.data.workload, rec));
                    }
                }
                _ => {}
            }
        }
    }

    pub fn ns_calls(&self, workload: u64) -> Vec<NsCallRecord> {
        self.ns_calls
            .iter()
            .filter(|(w, _)| *w == workload)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn to_verdict(v: u8) -> Verdict {
    if v == verdict::GRANTED {
        Verdict::Granted
    } else {
        Verdict::Denied
    }
}

fn to_scope(s: u8) -> Scope {
    match s {
        scope::INIT_USERNS => Scope::Host,
        scope::NESTED_USERNS => Scope::Nested,
        _ => Scope::Unknown,
    }
}

/// Every distinct check of `workload`, with its exact count, first process and call paths.
pub fn checks(
    tracer: &Tracer,
    collector: &Collector,
    symbolizer: &Symbolizer,
    workload: u64,
) -> Result<Vec<Check>, LoadError> {
    let mut paths: HashMap<UsageKey, Vec<PathKey>> = HashMap::new();
    for p in tracer.paths()? {
        if p.usage.workload == workload {
            paths.entry(p.usage).or_default().push(p);
        }
    }
    let mut stacks: HashMap<i64, Vec<String>> = HashMap::new();
    let mut out: BTreeMap<UsageKey, Check> = BTreeMap::new();
    for (key, count) in tracer.usage()? {
        if key.workload != workload {
            continue;
        }
        let mut call_paths = Vec::new();
        let mut first: Option<(u32, String)> = None;
        let mut key_paths = paths.remove(&key).unwrap_or_default();
        key_paths.sort_by_key(|p| p.stack_id);
        for p in &key_paths {
            if first.is_none() {
                first = collector.first.get(p).cloned();
            }
            let frames = stacks.entry(p.stack_id).or_insert_with(|| {
                tracer
                    .stack(p.stack_id)
                    .map(|a| symbolizer.frames(&a))
                    .unwrap_or_default()
            });
            let c = classifier::classify(frames);
            let cp = CallPath {
                frames: c.callers,
                audit: c.audit,
                rule: c.rule,
            };
            if !call_paths.contains(&cp) {
                call_paths.push(cp);
            }
        }
        out.insert(
            key,
            Check {
                cap: Cap(key.cap),
                verdict: to_verdict(key.verdict),
                audit: combined_audit(&call_paths),
                scope: to_scope(key.scope),
                syscall: syscall::name(key.syscall),
                count,
                pid: first.as_ref().map(|f| f.0),
                comm: first.map(|f| f.1),
                call_paths,
            },
        );
    }
    Ok(out.into_values().collect())
}

/// A key is audited when any of its paths is, noaudit when all are; unknown paths count as
/// audited, so a lost stack never hides a need.
pub fn combined_audit(paths: &[CallPath]) -> Audit {
    if paths.iter().any(|p| p.audit == Audit::Audited) {
        Audit::Audited
    } else if !paths.is_empty() && paths.iter().all(|p| p.audit == Audit::Probe) {
        Audit::Probe
    } else if !paths.is_empty()
        && paths
            .iter()
            .all(|p| matches!(p.audit, Audit::Noaudit | Audit::Probe))
    {
        Audit::Noaudit
    } else {
        Audit::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(audit: Audit) -> CallPath {
        CallPath {
            frames: vec![],
            audit,
            rule: String::new(),
        }
    }

    #[test]
    fn any_audited_path_makes_the_key_audited() {
        assert_eq!(
            combined_audit(&[path(Audit::Noaudit), path(Audit::Audited)]),
            Audit::Audited
        );
        assert_eq!(
            combined_audit(&[path(Audit::Noaudit), path(Audit::Noaudit)]),
            Audit::Noaudit
        );
        assert_eq!(
            combined_audit(&[path(Audit::Noaudit), path(Audit::Unknown)]),
            Audit::Unknown
        );
        assert_eq!(combined_audit(&[]), Audit::Unknown);
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut raw = [0u8; 16];
        raw[..5].copy_from_slice(b"chown");
        assert_eq!(comm(&raw), "chown");
    }
}
