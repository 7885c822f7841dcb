//! The event decoder: drains the ring buffer and reads the maps into the checks of one workload.
//! Counts come from the `USAGE` map (exact); events only add who made a check first and the
//! namespace calls, so a full ring buffer loses detail but never a count.
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use aya::maps::{MapData, RingBuf};
use tracer_common::{
    CapCheck, Denial, Event, MAX_FRAMES, NsCall, PathKey, STACK_LOST, UsageKey, kind, opts, scope,
    verdict,
};

use crate::{
    capability::Cap,
    classifier::{self, Classified},
    enforce::DenialRecord,
    loader::{LoadError, Tracer},
    namespaces,
    profile::{Audit, CallPath, Check, NsCallRecord, Origin, Scope, Verdict},
    symbolizer::Symbolizer,
    syscall,
    timeline::Timeline,
};

/// Something an event told for the first time.
#[derive(Clone, Debug)]
pub enum Decoded {
    /// A new (key, call path), first made by process `tgid`.
    Check {
        path: PathKey,
        tgid: u32,
        /// The thread's id in its own PID namespace (0 if unknown).
        ns_pid: u32,
        comm: String,
    },
    /// A namespace syscall returned.
    Ns {
        workload: u64,
        ns_pid: u32,
        record: NsCallRecord,
    },
    /// The enforcer refused (or reported) a capability.
    Denial { workload: u64, record: DenialRecord },
}

impl Decoded {
    /// The enforcer's denial, if this is one.
    pub fn into_denial(self) -> Option<DenialRecord> {
        match self {
            Decoded::Denial { record, .. } => Some(record),
            _ => None,
        }
    }
}

/// What the events said, per workload, and the classified call path of every stack seen (the
/// frames travel in the events, keyed by their hash).
#[derive(Default)]
pub struct Collector {
    /// Return addresses of each call path, innermost first, by `PathKey::stack_hash`.
    frames: HashMap<u64, Vec<u64>>,
    classified: RefCell<HashMap<u64, Classified>>,
    /// The process that first made each (key, path), and the order its event arrived in.
    first: HashMap<PathKey, (usize, u32, String)>,
    ns_calls: Vec<(u64, NsCallRecord)>,
    /// When each check was first and last seen (`record` and `run` workloads).
    pub timeline: Timeline,
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
    /// Reads every pending event; returns them in arrival order.
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Vec<Decoded> {
        let mut fresh = Vec::new();
        while let Some(item) = ring.next() {
            let bytes: &[u8] = &item;
            let Some(kind) = read_event::<u32>(bytes) else {
                continue;
            };
            match kind {
                kind::CAP_CHECK => {
                    if let Some(ev) = read_event::<Event<CapCheck>>(bytes) {
                        let (tgid, comm) = (ev.header.tgid, comm(&ev.header.comm));
                        let n = (ev.data.nr_frames as usize).min(MAX_FRAMES);
                        if ev.data.path.stack_hash != STACK_LOST {
                            self.frames
                                .entry(ev.data.path.stack_hash)
                                .or_insert_with(|| ev.data.frames[..n].to_vec());
                        }
                        self.timeline.event(ev.data.path.usage, Instant::now());
                        let order = self.first.len();
                        self.first
                            .entry(ev.data.path)
                            .or_insert((order, tgid, comm.clone()));
                        fresh.push(Decoded::Check {
                            path: ev.data.path,
                            tgid,
                            ns_pid: ev.header.ns_pid,
                            comm,
                        });
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
                        self.ns_calls.push((ev.data.workload, rec.clone()));
                        fresh.push(Decoded::Ns {
                            workload: ev.data.workload,
                            ns_pid: ev.header.ns_pid,
                            record: rec,
                        });
                    }
                }
                kind::DENIAL => {
                    if let Some(ev) = read_event::<Event<Denial>>(bytes) {
                        fresh.push(Decoded::Denial {
                            workload: ev.data.workload,
                            record: DenialRecord::new(
                                &ev.data,
                                ev.header.tgid,
                                comm(&ev.header.comm),
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        fresh
    }

    /// The classified call path of a stack, symbolized once; the capability refines it
    /// (`classifier::PROBE_PATHS`). A path whose frames never arrived (walk failed, or its
    /// event was lost) classifies as unknown.
    pub fn classify(&self, symbolizer: &Symbolizer, stack_hash: u64, cap: Cap) -> Classified {
        let c = self
            .classified
            .borrow_mut()
            .entry(stack_hash)
            .or_insert_with(|| {
                let frames = self
                    .frames
                    .get(&stack_hash)
                    .map(|a| symbolizer.frames(a))
                    .unwrap_or_default();
                classifier::classify(&frames)
            })
            .clone();
        classifier::refine(cap, c)
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
    let mut all = checks_where(tracer, collector, symbolizer, |w| w == workload)?;
    Ok(all.remove(&workload).unwrap_or_default())
}

/// Every distinct check, per workload (monitor: per cgroup).
pub fn all_checks(
    tracer: &Tracer,
    collector: &Collector,
    symbolizer: &Symbolizer,
) -> Result<BTreeMap<u64, Vec<Check>>, LoadError> {
    checks_where(tracer, collector, symbolizer, |_| true)
}

fn checks_where(
    tracer: &Tracer,
    collector: &Collector,
    symbolizer: &Symbolizer,
    wanted: impl Fn(u64) -> bool,
) -> Result<BTreeMap<u64, Vec<Check>>, LoadError> {
    let mut paths: HashMap<UsageKey, Vec<PathKey>> = HashMap::new();
    for p in tracer.paths()? {
        if wanted(p.usage.workload) {
            paths.entry(p.usage).or_default().push(p);
        }
    }
    let mut out: BTreeMap<u64, BTreeMap<UsageKey, Check>> = BTreeMap::new();
    for (key, count) in tracer.check_counts()? {
        if !wanted(key.workload) {
            continue;
        }
        let mut call_paths = Vec::new();
        let mut first: Option<(u32, String)> = None;
        let mut key_paths = paths.remove(&key).unwrap_or_default();
        // In the order their events arrived (paths without an event last): the first one names
        // the process that made the check first.
        key_paths.sort_by_key(|p| collector.first.get(p).map_or(usize::MAX, |f| f.0));
        // A path is entered in PATHS only once its event is reserved, and sent right after: a
        // path whose event never arrived was taken after the last drain, once the recording had
        // ended (a daemon left running by --no-follow-daemons). It would read as a path of
        // unknown audit and make a memory-accounting probe look needed; it only stands in when
        // no path of the key arrived.
        if key_paths.iter().any(|p| collector.first.contains_key(p)) {
            key_paths.retain(|p| collector.first.contains_key(p));
        }
        // A lost walk says nothing about the path: it only stands in when no path is known.
        if key_paths.iter().any(|p| p.stack_hash != STACK_LOST) {
            key_paths.retain(|p| p.stack_hash != STACK_LOST);
        }
        for p in &key_paths {
            if first.is_none() {
                first = collector.first.get(p).map(|f| (f.1, f.2.clone()));
            }
            let c = collector.classify(symbolizer, p.stack_hash, Cap(key.cap));
            let cp = CallPath {
                frames: c.callers,
                audit: c.audit,
                rule: c.rule,
            };
            if !call_paths.contains(&cp) {
                call_paths.push(cp);
            }
        }
        let (first_seen_ms, last_seen_ms) = collector.timeline.stamp(&key);
        out.entry(key.workload).or_default().insert(
            key,
            Check {
                cap: Cap(key.cap),
                verdict: to_verdict(key.verdict),
                audit: key_audit(key.opts, &call_paths),
                scope: to_scope(key.scope),
                syscall: syscall::name(i32::from(key.syscall)),
                count,
                pid: first.as_ref().map(|f| f.0),
                comm: first.map(|f| f.1),
                origin: own_unless_borrowed(
                    Origin::from_kernel(key.origin),
                    call_paths.iter().map(|p| p.frames.as_slice()),
                ),
                call_paths,
                first_seen_ms,
                last_seen_ms,
            },
        );
    }
    Ok(out
        .into_iter()
        .map(|(w, checks)| (w, checks.into_values().collect()))
        .collect())
}

/// Checks against credentials that are not the task's own count as the task's unless kernel
/// code known to borrow credentials (overlayfs) made them: an io_uring personality is
/// credentials the task registered itself. One key can hold both (a personality's openat on an
/// overlay makes overlayfs' own check with the personality and the layer's with the mounter):
/// one path outside the borrowers makes it the task's. A key with no known path stays as the
/// kernel said.
pub fn own_unless_borrowed<'a>(
    origin: Origin,
    paths: impl IntoIterator<Item = &'a [String]>,
) -> Origin {
    let paths: Vec<&[String]> = paths.into_iter().filter(|p| !p.is_empty()).collect();
    if origin == Origin::Borrowed && paths.iter().any(|p| !classifier::borrows_credentials(p)) {
        Origin::Workload
    } else {
        origin
    }
}

/// The check a key describes, with `count` and no call path yet.
pub fn check_of(key: &UsageKey, count: u64) -> Check {
    Check {
        cap: Cap(key.cap),
        verdict: to_verdict(key.verdict),
        audit: key_audit(key.opts, &[]),
        scope: to_scope(key.scope),
        syscall: syscall::name(i32::from(key.syscall)),
        count,
        pid: None,
        comm: None,
        call_paths: Vec::new(),
        origin: Origin::from_kernel(key.origin),
        first_seen_ms: None,
        last_seen_ms: None,
    }
}

/// The audit class of a key: from the kernel's `opts` when the hook read them (fentry, kprobe),
/// with probes still told by call path; from the call paths alone otherwise (tracepoint).
pub fn key_audit(raw: u8, paths: &[CallPath]) -> Audit {
    if raw & opts::KNOWN == 0 {
        return combined_audit(paths);
    }
    if raw & opts::NOAUDIT != 0 {
        Audit::Noaudit
    } else if !paths.is_empty() && paths.iter().all(|p| p.audit == Audit::Probe) {
        Audit::Probe
    } else {
        Audit::Audited
    }
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

    #[test]
    fn a_borrowed_key_with_one_path_outside_the_borrowers_is_the_workloads() {
        let frames = |s: &str| s.split(" <- ").map(String::from).collect::<Vec<_>>();
        let own = frames("capable_wrt_inode_uidgid <- generic_permission <- ovl_permission");
        let layer = frames(
            "capable_wrt_inode_uidgid <- generic_permission <- inode_permission <- ovl_permission",
        );
        let (own, layer) = (own.as_slice(), layer.as_slice());
        let b = Origin::Borrowed;
        assert_eq!(own_unless_borrowed(b, [layer]), Origin::Borrowed);
        assert_eq!(own_unless_borrowed(b, [layer, own]), Origin::Workload);
        assert_eq!(own_unless_borrowed(b, []), Origin::Borrowed);
        assert_eq!(
            own_unless_borrowed(Origin::Workload, [layer]),
            Origin::Workload
        );
    }

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
    fn kernel_opts_decide_audit_when_the_hook_read_them() {
        let known = opts::KNOWN;
        // A path the classifier does not know is audited when the kernel says so...
        assert_eq!(key_audit(known, &[path(Audit::Unknown)]), Audit::Audited);
        assert_eq!(key_audit(known, &[]), Audit::Audited);
        // ...and noaudit whatever the path looks like.
        assert_eq!(
            key_audit(known | opts::NOAUDIT, &[path(Audit::Audited)]),
            Audit::Noaudit
        );
        // Probes (audited checks whose answer is never needed) are still told by call path.
        assert_eq!(key_audit(known, &[path(Audit::Probe)]), Audit::Probe);
        // Without opts, the paths decide.
        assert_eq!(key_audit(0, &[path(Audit::Noaudit)]), Audit::Noaudit);
        assert_eq!(key_audit(0, &[]), Audit::Unknown);
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut raw = [0u8; 16];
        raw[..5].copy_from_slice(b"chown");
        assert_eq!(comm(&raw), "chown");
    }
}
