//! Loads and attaches the kernel programs, after checking that this kernel and this process
//! can run them. Dropping the `Tracer` detaches everything; nothing is pinned, so a captrace
//! that dies leaves nothing attached either (the kernel drops links with their last fd).
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
        StackTraceMap,
    },
    programs::RawTracePoint,
    util::nr_cpus,
};
use syscalls::Sysno;
use tracer_common::{Config, PathKey, UsageKey, names, stat};

use crate::syscall;

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// The hook this loader uses for capability checks.
pub const HOOK: &str = "raw_tracepoint/cap_capable";

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Every program and the raw tracepoint it attaches to.
const PROGRAMS: &[(&str, &str)] = &[
    (names::PROG_CAP_CAPABLE_RAW_TP, "cap_capable"),
    (names::PROG_FORK, "sched_process_fork"),
    (names::PROG_EXIT, "sched_process_exit"),
    (names::PROG_EXEC, "sched_process_exec"),
    (names::PROG_SYS_ENTER, "sys_enter"),
    (names::PROG_SYS_EXIT, "sys_exit"),
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
    /// The kernel has no `capability:cap_capable` tracepoint.
    #[error(
        "this kernel has no capability:cap_capable tracepoint (added in Linux 6.14); captrace cannot trace capability checks here yet"
    )]
    NoTracepoint,
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
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Every process on the host, by cgroup (monitor) instead of registered workloads.
    pub trace_all: bool,
    /// With `trace_all`: only these cgroup (v2) ids; empty for all.
    pub cgroups: Vec<u64>,
}

/// Loaded and attached programs and their maps.
pub struct Tracer {
    ebpf: Ebpf,
    nr_cpus: usize,
    /// Owned links; dropping one detaches it.
    links: Vec<Box<dyn Send>>,
}

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
        let btf = kernel_btf()?;
        if btf
            .resolve_ids_by_name("btf_trace_cap_capable")
            .map_or(true, |ids| ids.is_empty())
        {
            return Err(LoadError::NoTracepoint);
        }
        let config = config(&btf, &opts)?;
        tracing::debug!(elapsed = ?t.elapsed(), "config read");
        // The programs use no CO-RE relocations (offsets come from CONFIG), so aya need not
        // parse the kernel's BTF a second time.
        let ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(names::GLOBAL_CONFIG, &config, true)
            .load(OBJECT)?;
        tracing::debug!(elapsed = ?t.elapsed(), "programs loaded");
        let nr_cpus = nr_cpus().map_err(|(_, e)| LoadError::Btf(e.to_string()))?;
        let mut tracer = Tracer {
            ebpf,
            nr_cpus,
            links: Vec::new(),
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
        tracer.attach()?;
        tracing::debug!(elapsed = ?t.elapsed(), "programs attached");
        Ok(tracer)
    }

    /// Attaches every program as a raw tracepoint: those detach at once, where each perf
    /// tracepoint waits for an RCU grace period (perf_trace_event_unreg, ~70 ms here). On
    /// error the links made so far are dropped with `self`.
    fn attach(&mut self) -> Result<(), LoadError> {
        for (name, point) in PROGRAMS {
            let err = |source| LoadError::Program { name, source };
            let p: &mut RawTracePoint = self
                .ebpf
                .program_mut(name)
                .expect("program in object")
                .try_into()
                .map_err(err)?;
            p.load().map_err(err)?;
            let id = p.attach(point).map_err(err)?;
            self.links.push(Box::new(p.take_link(id).map_err(err)?));
        }
        Ok(())
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
        let map: PerCpuHashMap<_, UsageKey, u64> =
            PerCpuHashMap::try_from(self.ebpf.map(names::MAP_USAGE).expect("USAGE map"))
                .map_err(map_err("USAGE"))?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, v) = item.map_err(map_err("USAGE"))?;
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

    /// The return addresses of stack `id`, innermost first.
    pub fn stack(&self, id: i64) -> Option<Vec<u64>> {
        let map = StackTraceMap::try_from(self.ebpf.map(names::MAP_STACKS)?).ok()?;
        let trace = map.get(&u32::try_from(id).ok()?, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
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

fn kernel_btf() -> Result<btf_rs::Btf, LoadError> {
    // mmap parses lazily (kernels >= 6.15 allow mapping vmlinux BTF); the cached backend
    // parses everything up front and costs a few hundred milliseconds.
    btf_rs::Btf::from_file_with_backend(BTF_VMLINUX, btf_rs::Backend::Mmap)
        .or_else(|_| btf_rs::Btf::from_file(BTF_VMLINUX))
        .map_err(|e| LoadError::Btf(e.to_string()))
}

fn config(btf: &btf_rs::Btf, opts: &Options) -> Result<Config, LoadError> {
    let regs = syscall::REGS;
    Ok(Config {
        task_pid_off: btf_member_offset(btf, "task_struct", "pid")?,
        userns_level_off: btf_member_offset(btf, "user_namespace", "level")?,
        task_real_cred_off: btf_member_offset(btf, "task_struct", "real_cred")?,
        task_thread_pid_off: btf_member_offset(btf, "task_struct", "thread_pid")?,
        pid_level_off: btf_member_offset(btf, "pid", "level")?,
        pid_numbers_off: btf_member_offset(btf, "pid", "numbers")?,
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
    })
}

/// Byte offset of `member` in `struct name`, from the kernel's BTF.
fn btf_member_offset(btf: &btf_rs::Btf, name: &str, member: &str) -> Result<u32, LoadError> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|e| LoadError::Btf(e.to_string()))?;
    for ty in types {
        if let btf_rs::Type::Struct(s) = ty {
            for m in &s.members {
                if btf.resolve_name(m).is_ok_and(|n| n == member) {
                    return Ok(m.bit_offset() / 8);
                }
            }
        }
    }
    Err(LoadError::Btf(format!(
        "struct {name} has no member {member}"
    )))
}
