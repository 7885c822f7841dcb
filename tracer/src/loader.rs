//! Loads and attaches the kernel programs, after checking that this kernel and this process
//! can run them. Dropping the `Tracer` detaches everything; nothing is pinned, so a captrace
//! that dies leaves nothing attached either (the kernel drops links with their last fd).

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf},
    programs::{BtfTracePoint, FExit, KProbe, Lsm, ProgramError, RawTracePoint},
    util::nr_cpus,
};
use syscalls::Sysno;
use tracer_common::{Config, PathKey, Policy, UsageKey, names, stat};

use crate::{
    attach_btf::{self, Target},
    enforce,
    hook::{Hook, HookChoice, Refusals},
    kernel_btf::{self, Found, Kind},
    profile::Losses,
    syscall,
};

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel function every hook watches.
const CAP_CAPABLE: &str = "cap_capable";

/// What the tp_btf, fexit and lsm programs attach to.
const ATTACH_TARGETS: &[Target] = &[
    Target::Tracepoint(CAP_CAPABLE),
    Target::Tracepoint("sys_exit"),
    Target::Function(CAP_CAPABLE),
    Target::Function("bpf_lsm_capable"),
];

/// The programs that follow processes, and the raw tracepoint each attaches to (present on
/// every kernel captrace supports).
const PROGRAMS: &[(&str, &str)] = &[
    (names::PROG_FORK, "task_newtask"),
    (names::PROG_EXIT, "sched_process_exit"),
    (names::PROG_EXEC, "sched_process_exec"),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// captrace lacks the privileges to load BPF.
    #[error(
        "root (or CAP_BPF and CAP_PERFMON) is needed to load the kernel programs: run captrace with sudo"
    )]
    NotPrivileged,
    /// captrace runs in a user namespace other than the host's: its capabilities there do
    /// not reach BPF, which checks them against the initial user namespace.
    #[error(
        "running inside a user namespace (rootless container, unshare --user), where no capability allows loading BPF: run captrace as root on the host"
    )]
    UserNamespace,
    /// The binary was built without its eBPF object.
    #[error(
        "this captrace was built with AYA_BUILD_SKIP=1 and carries no kernel programs; rebuild it without that variable"
    )]
    NoObject,
    /// No hook on `cap_capable` could be attached.
    #[error(
        "no way to watch capability checks works on this kernel ({0}); `captrace doctor` shows what it offers"
    )]
    NoHook(Refusals),
    /// In-kernel enforcement was asked for where BPF LSM cannot run.
    #[error(
        "in-kernel enforcement needs BPF LSM, which is unavailable here: {0}; nothing was started"
    )]
    NoEnforcement(String),
    /// BTF is missing or lacks a needed member.
    #[error(
        "cannot read kernel type information from {BTF_VMLINUX} ({0}); captrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Btf(String),
    /// The kernel refused the object (maps or programs).
    #[error("the kernel refused captrace's BPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    /// The kernel refused one program.
    #[error("the kernel refused program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// What to trace.
#[derive(Clone, Debug)]
pub struct Options {
    /// Every process on the host, by cgroup (monitor) instead of registered workloads.
    pub trace_all: bool,
    /// With `trace_all`: only these cgroup (v2) ids; empty for all.
    pub cgroups: Vec<u64>,
    /// How to watch capability checks; None: do not (the enforcer alone).
    pub hook: Option<HookChoice>,
    /// Load the BPF LSM enforcer (policies are set per workload afterwards).
    pub enforce: bool,
    /// Cgroup (v2) id → workload id: cgroups the enforcer confines as a whole.
    pub enforce_cgroups: Vec<(u64, u64)>,
    /// The cgroup v2 id captrace runs in: every thread outside it is counted by cgroup
    /// (workload `CGROUP_WORKLOAD | id`), so containers the recorded command starts are seen.
    pub follow_cgroups_outside: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            trace_all: false,
            cgroups: Vec::new(),
            hook: Some(HookChoice::Auto),
            enforce: false,
            enforce_cgroups: Vec::new(),
            follow_cgroups_outside: None,
        }
    }
}

/// Loaded and attached programs and their maps.
pub struct Tracer {
    ebpf: Ebpf,
    nr_cpus: usize,
    /// Owned links; dropping one detaches it.
    links: Vec<Box<dyn Send>>,
    /// The hook watching capability checks and the program attached to it
    /// (`tp_btf/cap_capable`).
    hook: Option<(Hook, &'static str)>,
}

/// The attach targets' BTF ids as aya looks them up (see `attach_btf`), or why there are none.
type AttachBtf = Result<Btf, String>;

impl Drop for Tracer {
    fn drop(&mut self) {
        let t = std::time::Instant::now();
        self.links.clear();
        tracing::debug!(elapsed = ?t.elapsed(), "programs detached");
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

impl Tracer {
    pub fn load(opts: Options) -> Result<Tracer, LoadError> {
        let t = std::time::Instant::now();
        preflight()?;
        if opts.enforce {
            enforce::available().map_err(LoadError::NoEnforcement)?;
        }
        // aya 0.14's EbpfLoader::new() parses the kernel's whole BTF (~20 ms here; later aya
        // versions do it lazily, but need a newer rustc) even though captrace then tells it
        // not to use it: done on another thread while this one scans the BTF for what
        // captrace does need.
        let loader = std::thread::spawn(EbpfLoader::new);
        let btf = kernel_btf();
        let loader = loader
            .join()
            .map_err(|_| LoadError::Btf("the BTF parser panicked".into()));
        let (btf, mut loader) = (btf?, loader?);
        tracing::debug!(elapsed = ?t.elapsed(), "kernel BTF read");
        let config = config(&btf, &opts)?;
        let targets = attach_btf::ids(&btf, ATTACH_TARGETS);
        let has_tracepoint = targets
            .iter()
            .any(|(t, _)| *t == Target::Tracepoint(CAP_CAPABLE));
        drop(btf);
        // Its parse (~15 ms: placeholders up to the highest id) runs while aya loads the object.
        let aya_btf = std::thread::spawn(move || attach_btf::for_aya(&targets));
        // The programs use no CO-RE relocations (offsets come from CONFIG), so aya need not
        // parse the kernel's BTF a second time.
        let ebpf = loader
            .btf(None)
            .override_global(names::GLOBAL_CONFIG, &config, true)
            .load(OBJECT);
        let aya_btf: AttachBtf = aya_btf
            .join()
            .unwrap_or_else(|_| Err("the attach BTF builder panicked".into()));
        let ebpf = ebpf?;
        tracing::debug!(elapsed = ?t.elapsed(), "programs loaded");
        let nr_cpus = nr_cpus().map_err(|(_, e)| LoadError::Btf(e.to_string()))?;
        let mut tracer = Tracer {
            ebpf,
            nr_cpus,
            links: Vec::new(),
            hook: None,
        };
        let mut cgroups: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(
            tracer
                .ebpf
                .map_mut(names::MAP_CGROUPS)
                .expect("CGROUPS map"),
        )
        .map_err(map_err("CGROUPS"))?;
        for id in &opts.cgroups {
            cgroups.insert(id, 1, 0).map_err(map_err("CGROUPS"))?;
        }
        let mut enforced: BpfHashMap<_, u64, u64> = BpfHashMap::try_from(
            tracer
                .ebpf
                .map_mut(names::MAP_ENFORCE_CGROUPS)
                .expect("ENFORCE_CGROUPS map"),
        )
        .map_err(map_err("ENFORCE_CGROUPS"))?;
        for (cgroup, workload) in &opts.enforce_cgroups {
            enforced
                .insert(cgroup, workload, 0)
                .map_err(map_err("ENFORCE_CGROUPS"))?;
        }
        // Namespace calls are reported by the tracing commands only; the enforcer alone does not
        // need a program on every syscall of the host.
        tracer.attach()?;
        if opts.hook.is_some() {
            tracer.attach_sys_exit(&aya_btf)?;
        }
        if let Some(choice) = opts.hook {
            tracer.attach_hook(choice, has_tracepoint, &aya_btf)?;
        }
        if opts.enforce {
            let btf = aya_btf.as_ref().map_err(|e| LoadError::Btf(e.clone()))?;
            tracer.attach_lsm(btf).map_err(|e| {
                LoadError::NoEnforcement(format!("the lsm/capable program: {}", describe(e)))
            })?;
        }
        tracing::debug!(elapsed = ?t.elapsed(), hook = ?tracer.hook, "programs attached");
        Ok(tracer)
    }

    /// The program watching capability checks, as the report names it
    /// (`tp_btf/cap_capable`), if any.
    pub fn hook_point(&self) -> Option<&'static str> {
        self.hook.map(|(_, point)| point)
    }

    /// Attaches the first hook of `choice` that this kernel accepts.
    fn attach_hook(
        &mut self,
        choice: HookChoice,
        has_tracepoint: bool,
        btf: &AttachBtf,
    ) -> Result<(), LoadError> {
        let mut refusals = Refusals::default();
        for &hook in choice.candidates() {
            let attached = match hook {
                Hook::Fentry => btf
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|b| self.attach_fexit(b).map_err(describe))
                    .map(|()| hook.attach_point()),
                Hook::Tracepoint if !has_tracepoint => Err(
                    "this kernel has no capability:cap_capable tracepoint (added in Linux 6.14)"
                        .to_string(),
                ),
                Hook::Tracepoint => self
                    .attach_tracepoint(
                        btf,
                        names::PROG_CAP_CAPABLE_TP_BTF,
                        names::PROG_CAP_CAPABLE_RAW_TP,
                        CAP_CAPABLE,
                    )
                    .map_err(describe)
                    .map(|btf| {
                        if btf {
                            hook.attach_point()
                        } else {
                            "raw_tracepoint/cap_capable"
                        }
                    }),
                Hook::Kprobe => self
                    .attach_kprobes()
                    .map_err(describe)
                    .map(|()| hook.attach_point()),
            };
            match attached {
                Ok(point) => {
                    self.hook = Some((hook, point));
                    return Ok(());
                }
                Err(why) => {
                    tracing::debug!(hook = hook.name(), %why, "hook refused");
                    refusals.0.push((hook, why));
                }
            }
        }
        Err(LoadError::NoHook(refusals))
    }

    /// Attaches `typed` as a tp_btf program on `point` (its arguments are BTF pointers, read
    /// without helper calls), or `raw` as a raw tracepoint when the kernel's BTF cannot serve.
    /// True when the typed one runs.
    fn attach_tracepoint(
        &mut self,
        btf: &AttachBtf,
        typed: &str,
        raw: &str,
        point: &str,
    ) -> Result<bool, ProgramError> {
        let why = match btf {
            Ok(b) => match self.attach_tp_btf(b, typed, point) {
                Ok(()) => return Ok(true),
                Err(e) => describe(e),
            },
            Err(e) => e.clone(),
        };
        tracing::debug!(program = typed, %why, "tp_btf refused, using the raw tracepoint");
        self.attach_raw_tp(raw, point)?;
        Ok(false)
    }

    fn attach_tp_btf(&mut self, btf: &Btf, name: &str, point: &str) -> Result<(), ProgramError> {
        let p: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
        p.load(point, btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        Ok(())
    }

    /// The namespace-call program, on every syscall's return.
    fn attach_sys_exit(&mut self, btf: &AttachBtf) -> Result<(), LoadError> {
        self.attach_tracepoint(
            btf,
            names::PROG_SYS_EXIT_TP_BTF,
            names::PROG_SYS_EXIT,
            "sys_exit",
        )
        .map(|_| ())
        .map_err(|source| LoadError::Program {
            name: names::PROG_SYS_EXIT,
            source,
        })
    }

    fn attach_raw_tp(&mut self, name: &str, point: &str) -> Result<(), ProgramError> {
        let p: &mut RawTracePoint = program(&mut self.ebpf, name)?;
        p.load()?;
        let id = p.attach(point)?;
        self.links.push(Box::new(p.take_link(id)?));
        Ok(())
    }

    fn attach_fexit(&mut self, btf: &Btf) -> Result<(), ProgramError> {
        let p: &mut FExit = program(&mut self.ebpf, names::PROG_CAP_CAPABLE_FEXIT)?;
        p.load(CAP_CAPABLE, btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        Ok(())
    }

    fn attach_kprobes(&mut self) -> Result<(), ProgramError> {
        for name in [
            names::PROG_CAP_CAPABLE_KRETPROBE,
            names::PROG_CAP_CAPABLE_KPROBE,
        ] {
            let p: &mut KProbe = program(&mut self.ebpf, name)?;
            p.load()?;
            let id = p.attach(CAP_CAPABLE, 0)?;
            self.links.push(Box::new(p.take_link(id)?));
        }
        Ok(())
    }

    fn attach_lsm(&mut self, btf: &Btf) -> Result<(), ProgramError> {
        let p: &mut Lsm = program(&mut self.ebpf, names::PROG_ENFORCE_CAPABLE)?;
        p.load("capable", btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        Ok(())
    }

    /// Attaches the process-following programs as raw tracepoints: those detach at once, where
    /// each perf tracepoint waits for an RCU grace period (perf_trace_event_unreg, ~70 ms
    /// here). On error the links made so far are dropped with `self`.
    fn attach(&mut self) -> Result<(), LoadError> {
        for (name, point) in PROGRAMS {
            self.attach_raw_tp(name, point)
                .map_err(|source| LoadError::Program { name, source })?;
        }
        Ok(())
    }

    /// Sets the enforcer's policy of `workload` (its threads are registered separately).
    pub fn set_policy(&mut self, workload: u64, policy: Policy) -> Result<(), LoadError> {
        let mut map: BpfHashMap<_, u64, Policy> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(names::MAP_POLICIES)
                .expect("POLICIES map"),
        )
        .map_err(map_err("POLICIES"))?;
        map.insert(workload, policy, 0).map_err(map_err("POLICIES"))
    }

    /// Adds running threads to `workload` (no live count: `enforce` polls `tasks_of`).
    pub fn adopt(&mut self, tids: &[u32], workload: u64) -> Result<(), LoadError> {
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        for tid in tids {
            tasks.insert(tid, workload, 0).map_err(map_err("TASKS"))?;
        }
        Ok(())
    }

    /// Stops following these threads.
    pub fn forget(&mut self, tids: &[u32]) -> Result<(), LoadError> {
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        for tid in tids {
            let _ = tasks.remove(tid);
        }
        Ok(())
    }

    /// Exact counts of what the enforcer refused (verdict denied) or only reported (granted).
    pub fn denials(&self) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        self.per_cpu_counts(names::MAP_DENIALS, "DENIALS")
    }

    /// Starts tracing thread `tid` (and everything it forks) as part of `workload`.
    pub fn register(&mut self, tid: u32, workload: u64) -> Result<(), LoadError> {
        let mut live: PerCpuHashMap<_, u64, i64> =
            PerCpuHashMap::try_from(self.ebpf.map_mut(names::MAP_LIVE).expect("LIVE map"))
                .map_err(map_err("LIVE"))?;
        let mut counts = vec![0i64; self.nr_cpus];
        counts[0] = 1;
        let values = PerCpuValues::try_from(counts).expect("one value per CPU");
        live.insert(workload, values, 0).map_err(map_err("LIVE"))?;
        let mut tasks: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.ebpf.map_mut(names::MAP_TASKS).expect("TASKS map"))
                .map_err(map_err("TASKS"))?;
        tasks.insert(tid, workload, 0).map_err(map_err("TASKS"))
    }

    /// Threads of `workload` still alive (forks minus exits seen by the kernel).
    pub fn live(&self, workload: u64) -> i64 {
        let Ok(live) = PerCpuHashMap::<_, u64, i64>::try_from(
            self.ebpf.map(names::MAP_LIVE).expect("LIVE map"),
        ) else {
            return 0;
        };
        live.get(&workload, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Threads of `workload` still tracked.
    pub fn tasks_of(&self, workload: u64) -> Vec<u32> {
        let Ok(tasks) = BpfHashMap::<_, u32, u64>::try_from(
            self.ebpf.map(names::MAP_TASKS).expect("TASKS map"),
        ) else {
            return Vec::new();
        };
        tasks
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, w)| *w == workload)
            .map(|(t, _)| t)
            .collect()
    }

    /// The ring buffer of detail events. Call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map(names::MAP_EVENTS).expect("EVENTS map");
        RingBuf::try_from(map).map_err(map_err("EVENTS"))
    }

    /// Exact counts per key, summed over CPUs.
    pub fn usage(&self) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        self.per_cpu_counts(names::MAP_USAGE, "USAGE")
    }

    fn per_cpu_counts(
        &self,
        map: &str,
        label: &'static str,
    ) -> Result<Vec<(UsageKey, u64)>, LoadError> {
        let map: PerCpuHashMap<_, UsageKey, u64> =
            PerCpuHashMap::try_from(self.ebpf.map(map).expect("counter map"))
                .map_err(map_err(label))?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, v) = item.map_err(map_err(label))?;
            out.push((k, v.iter().sum()));
        }
        Ok(out)
    }

    /// Every sampled call path.
    pub fn paths(&self) -> Result<Vec<PathKey>, LoadError> {
        let map: BpfHashMap<_, PathKey, u64> =
            BpfHashMap::try_from(self.ebpf.map(names::MAP_PATHS).expect("PATHS map"))
                .map_err(map_err("PATHS"))?;
        map.keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("PATHS"))
    }

    /// What the kernel side could not record.
    pub fn losses(&self) -> Losses {
        let s = self.stats();
        Losses {
            events: s[stat::EVENTS_LOST as usize],
            stacks: s[stat::STACKS_LOST as usize],
            map_full: s[stat::MAP_FULL as usize],
        }
    }

    /// The `stat::*` counters summed over CPUs.
    pub fn stats(&self) -> [u64; stat::COUNT as usize] {
        let mut out = [0; stat::COUNT as usize];
        if let Some(map) = self.ebpf.map(names::MAP_STATS)
            && let Ok(arr) = PerCpuArray::<_, u64>::try_from(map)
        {
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = arr.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
            }
        }
        out
    }
}

/// A program of the object, as its type (every name is in the object `build.rs` made).
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .expect("program in object")
        .try_into()
}

/// A program error in one line: for a refused load, the errno and the verifier's last word.
fn describe(e: ProgramError) -> String {
    use std::error::Error as _;
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        let log = verifier_log.to_string();
        return match log.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(last) => format!("the kernel refused the program: {io_error} (verifier: {last})"),
            None => format!("the kernel refused the program: {io_error}"),
        };
    }
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out += &format!(": {s}");
        source = s.source();
    }
    out
}

fn has_effective(cap: caps::Capability) -> bool {
    caps::has_cap(None, caps::CapSet::Effective, cap).unwrap_or(false)
}

fn preflight() -> Result<(), LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    use caps::Capability::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
    if !(has_effective(CAP_SYS_ADMIN) || (has_effective(CAP_BPF) && has_effective(CAP_PERFMON))) {
        return Err(LoadError::NotPrivileged);
    }
    if in_child_user_namespace() {
        return Err(LoadError::UserNamespace);
    }
    Ok(())
}

/// bpf() checks capabilities against the initial user namespace (`bpf_capable`,
/// `perfmon_capable` use `capable`), whose proc inode number is fixed (`PROC_USER_INIT_INO`).
fn in_child_user_namespace() -> bool {
    const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/user").is_ok_and(|m| m.ino() != PROC_USER_INIT_INO)
}

/// Everything captrace reads from the kernel's BTF, in one pass.
fn kernel_btf() -> Result<Found, LoadError> {
    let lookups: Vec<(String, Kind)> = STRUCTS
        .iter()
        .map(|s| (s.to_string(), Kind::Struct))
        .chain(ATTACH_TARGETS.iter().map(|t| t.lookup()))
        .collect();
    let wanted: Vec<(&str, Kind)> = lookups.iter().map(|(n, k)| (n.as_str(), *k)).collect();
    kernel_btf::scan_vmlinux(&wanted).map_err(LoadError::Btf)
}

/// The structs whose member offsets the programs need.
const STRUCTS: &[&str] = &["task_struct", "user_namespace", "pid"];

fn config(btf: &Found, opts: &Options) -> Result<Config, LoadError> {
    let regs = syscall::REGS;
    let off = |s: &str, m: &str| btf.member_offset(s, m).map_err(LoadError::Btf);
    let task_pid_off = off("task_struct", "pid")?;
    let task_real_cred_off = off("task_struct", "real_cred")?;
    let task_comm_off = off("task_struct", "comm")?;
    let task_thread_pid_off = off("task_struct", "thread_pid")?;
    let userns_level_off = off("user_namespace", "level")?;
    let pid_level_off = off("pid", "level")?;
    let pid_numbers_off = off("pid", "numbers")?;
    Ok(Config {
        task_pid_off,
        userns_level_off,
        task_real_cred_off,
        task_comm_off,
        task_thread_pid_off,
        pid_level_off,
        pid_numbers_off,
        regs_syscall_off: regs.syscall,
        regs_arg0_off: regs.arg0,
        regs_arg1_off: regs.arg1,
        nr_unshare: Sysno::unshare.id() as u32,
        nr_setns: Sysno::setns.id() as u32,
        nr_clone: Sysno::clone.id() as u32,
        nr_clone3: Sysno::clone3.id() as u32,
        self_tgid: std::process::id(),
        trace_all: u32::from(opts.trace_all),
        filter_cgroups: u32::from(!opts.cgroups.is_empty()),
        enforce_cgroups: u32::from(!opts.enforce_cgroups.is_empty()),
        follow_cgroups: u32::from(opts.follow_cgroups_outside.is_some()),
        _pad: 0,
        home_cgroup: opts.follow_cgroups_outside.unwrap_or(0),
    })
}
