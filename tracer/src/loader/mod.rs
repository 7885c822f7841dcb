//! Loads and attaches the kernel programs, after checking that this kernel and this process
//! can run them. Dropping the `Tracer` detaches everything; nothing is pinned, so a captrace
//! that dies leaves nothing attached either (the kernel drops links with their last fd).

mod attach;
mod aya_loader;
mod config;
mod detach;
mod fexit_probe;
mod kfunc;
mod maps;
mod preflight;
mod runtime;

use aya::{Btf, Ebpf, maps::HashMap as BpfHashMap, programs::links::FdLink, util::nr_cpus};
use tracer_common::{capacity, names, usage_cache};

use crate::kernel_btf::Kind;

use self::{
    attach::describe,
    config::{config, kernel_btf},
    preflight::preflight,
};
use crate::{
    attach_btf::{self, Target},
    enforce,
    hook::{Hook, HookChoice, Refusals},
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
    Target::Function(URING_LSM),
    Target::Function("bpf_lsm_task_alloc"),
    Target::Function("bpf_lsm_task_free"),
    Target::Function(NS_FEXITS[0].1),
    Target::Function(NS_FEXITS[1].1),
    Target::Function(NS_FEXITS[2].1),
    Target::Function(NS_FEXITS[3].1),
];

/// The LSM hook of io_uring personalities (absent from kernels built without io_uring, which
/// then have nothing to refuse).
const URING_LSM: &str = "bpf_lsm_uring_override_creds";

/// The syscall wrapper functions the namespace-call fexit programs attach to (the
/// architecture's `SYSCALL_DEFINE` wrappers, taking the user registers).
const NS_FEXITS: [(&str, &str); 4] = [
    (names::PROG_NS_UNSHARE_FEXIT, sys_fn("unshare")),
    (names::PROG_NS_SETNS_FEXIT, sys_fn("setns")),
    (names::PROG_NS_CLONE_FEXIT, sys_fn("clone")),
    (names::PROG_NS_CLONE3_FEXIT, sys_fn("clone3")),
];

/// `__x64_sys_NAME` (x86_64) or `__arm64_sys_NAME` (aarch64).
const fn sys_fn(name: &'static str) -> &'static str {
    #[cfg(target_arch = "aarch64")]
    return match name.as_bytes() {
        b"unshare" => "__arm64_sys_unshare",
        b"setns" => "__arm64_sys_setns",
        b"clone" => "__arm64_sys_clone",
        _ => "__arm64_sys_clone3",
    };
    #[cfg(not(target_arch = "aarch64"))]
    match name.as_bytes() {
        b"unshare" => "__x64_sys_unshare",
        b"setns" => "__x64_sys_setns",
        b"clone" => "__x64_sys_clone",
        _ => "__x64_sys_clone3",
    }
}

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
    /// The kernel refused captrace a helper thread (EAGAIN: the task limit was reached).
    #[error(
        "the kernel refused captrace a thread ({0}): too many tasks (ulimit -u, the pids cgroup, kernel.threads-max); nothing was attached"
    )]
    Thread(std::io::Error),
    /// `CAPTRACE_TASKS_CAPACITY` is not a number of entries.
    #[error("CAPTRACE_TASKS_CAPACITY must be a number of threads from 1 to 4194304, not {0:?}")]
    TasksCapacity(String),
    /// `CAPTRACE_USAGE_CACHE_SLOTS` is not a power of two up to `usage_cache::SLOTS`.
    #[error("CAPTRACE_USAGE_CACHE_SLOTS must be a power of two from 1 to 256, not {0:?}")]
    UsageCacheSlots(String),
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
    /// Links whose detach waits for an RCU grace period (perf tracepoints): handed to an
    /// orphan on drop (`detach`).
    slow_links: Vec<FdLink>,
    /// Where namespace calls are watched (`tracepoint/syscalls:sys_exit_*`), if they are.
    ns_point: Option<&'static str>,
    /// The container runtime executables the kernel knows (`RUNTIME_EXES`), when it tells
    /// runtime checks apart (monitor, record of a container client).
    pub runtime_exes: Vec<std::path::PathBuf>,
    /// The hook watching capability checks and the program attached to it
    /// (`tp_btf/cap_capable`).
    hook: Option<(Hook, &'static str)>,
    /// Whether the programs reach a task's saved registers with `bpf_rdonly_cast` (the
    /// patched kfunc call, `kfunc`) rather than the `bpf_task_pt_regs` helper.
    regs_by_cast: bool,
}

/// The attach targets' BTF ids as aya looks them up (see `attach_btf`), or why there are none.
type AttachBtf = Result<Btf, String>;

impl Drop for Tracer {
    fn drop(&mut self) {
        let t = std::time::Instant::now();
        detach::hand_off(std::mem::take(&mut self.slow_links));
        self.links.clear();
        tracing::debug!(elapsed = ?t.elapsed(), "programs detached");
    }
}

pub(super) fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

impl Tracer {
    pub fn load(opts: Options) -> Result<Tracer, LoadError> {
        let t = std::time::Instant::now();
        preflight()?;
        if opts.enforce {
            enforce::available().map_err(LoadError::NoEnforcement)?;
        }
        // The loader, without aya's parse of the kernel's BTF (`aya_loader`), is made on
        // another thread while this one reads what captrace needs from the BTF (this boot's
        // cache, else a scan).
        let loader = spawn(aya_loader::without_kernel_btf)?;
        let btf = kernel_btf();
        // aya's one-time feature probes (bpf(2) calls) run beside the object's parse, once the
        // BTF is known to be there: a kernel without it is refused before any bpf() call.
        let features = btf
            .is_ok()
            .then(|| {
                spawn(|| {
                    aya::features();
                })
            })
            .transpose()?;
        let targets = btf
            .as_ref()
            .map(|btf| attach_btf::ids(btf, ATTACH_TARGETS))
            .unwrap_or_default();
        let has_tracepoint = targets
            .iter()
            .any(|(t, _)| *t == Target::Tracepoint(CAP_CAPABLE));
        let has_uring_lsm = targets
            .iter()
            .any(|(t, _)| *t == Target::Function(URING_LSM));
        // Unless fentry was asked for by name, a kernel that refuses every fexit program is not
        // asked again for each (`fexit_probe`).
        let fexit_refused = match opts.hook {
            Some(choice) if choice != HookChoice::Fentry => targets
                .iter()
                .find(|(t, _)| *t == Target::Function(CAP_CAPABLE))
                .and_then(|&(_, id)| fexit_probe::refused(id))
                .map(|e| format!("the kernel refused the program: {e}")),
            _ => None,
        };
        // The attach ids for aya (placeholders up to the highest id: ~3 ms for the tracepoints
        // alone here, ~8 ms with the fexit and lsm functions) are built on a third thread, while
        // the object loads and the process-following programs attach; only the ids of programs
        // that will be tried.
        let wanted = |t: &Target| match t {
            Target::Tracepoint(_) => true,
            Target::Function(f) if f.starts_with("bpf_lsm_") => opts.enforce,
            Target::Function(_) => fexit_refused.is_none(),
        };
        let for_aya: Vec<(Target, u32)> = targets.into_iter().filter(|(t, _)| wanted(t)).collect();
        let aya_btf = spawn(move || attach_btf::for_aya(&for_aya));
        let loader = loader
            .join()
            .map_err(|_| LoadError::Btf("the loader's thread panicked".into()));
        let (btf, (mut loader, parse_avoided), aya_btf) = (btf?, loader?, aya_btf?);
        tracing::debug!(elapsed = ?t.elapsed(), parse_avoided, "kernel BTF read");
        let mut config = config(&btf, &opts)?;
        // The call is made real exactly where the programs will take the cast (`config`).
        let cast = (config.regs_btf_id != 0)
            .then(|| btf.id(tracer_common::kfunc::RDONLY_CAST, Kind::Func))
            .flatten();
        let (object, casts) = kfunc::patched(OBJECT, cast);
        if casts == 0 {
            config.regs_btf_id = 0;
        }
        drop(btf);
        // The programs use no CO-RE relocations (offsets come from CONFIG), so aya need not
        // parse the kernel's BTF a second time.
        if let Some(n) = tasks_capacity(std::env::var(capacity::TASKS_ENV).ok().as_deref())? {
            loader.map_max_entries(names::MAP_TASKS, n);
            loader.map_max_entries(names::MAP_CONFINED_CHILDREN, n);
        }
        let cache_mask = usage_cache_slots(std::env::var(usage_cache::SLOTS_ENV).ok().as_deref())?
            .unwrap_or(usage_cache::SLOTS)
            - 1;
        let ebpf = loader
            .btf(None)
            .override_global(names::GLOBAL_CONFIG, &config, true)
            .override_global(names::GLOBAL_USAGE_CACHE_MASK, &cache_mask, true)
            .load(&object);
        let ebpf = ebpf?;
        tracing::debug!(elapsed = ?t.elapsed(), "programs loaded");
        let nr_cpus = nr_cpus().map_err(|(_, e)| LoadError::Btf(e.to_string()))?;
        let mut tracer = Tracer {
            ebpf,
            nr_cpus,
            links: Vec::new(),
            slow_links: Vec::new(),
            ns_point: None,
            hook: None,
            runtime_exes: Vec::new(),
            regs_by_cast: config.regs_btf_id != 0,
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
        if opts.trace_all || opts.follow_cgroups_outside.is_some() {
            let found = crate::container::runtime_exe::on_host();
            let ids: Vec<_> = found.iter().map(|(_, id)| *id).collect();
            tracer.set_runtime_exes(&ids)?;
            tracer.runtime_exes = found.into_iter().map(|(path, _)| path).collect();
        }
        tracer.attach_followers()?;
        if let Some(f) = features {
            let _ = f.join();
        }
        let aya_btf: AttachBtf = aya_btf
            .join()
            .unwrap_or_else(|_| Err("the attach BTF builder panicked".into()));
        // Namespace calls are reported by the tracing commands only; the enforcer alone does not
        // need a program on every syscall of the host.
        if opts.hook.is_some() {
            tracer.attach_ns_calls(&aya_btf, fexit_refused.as_deref())?;
        }
        if let Some(choice) = opts.hook {
            tracer.attach_hook(choice, has_tracepoint, &aya_btf, fexit_refused.as_deref())?;
        }
        if opts.enforce {
            let btf = aya_btf.as_ref().map_err(|e| LoadError::Btf(e.clone()))?;
            tracer.attach_lsm(btf, has_uring_lsm).map_err(|e| {
                LoadError::NoEnforcement(format!("the BPF LSM programs: {}", describe(e)))
            })?;
        }
        tracing::debug!(elapsed = ?t.elapsed(), hook = ?tracer.hook, "programs attached");
        Ok(tracer)
    }
}

/// The capacity of `TASKS` asked for in the environment (`capacity::TASKS_ENV`), if any: a
/// smaller map lets a test fill it; the default is `capacity::TASKS`.
fn tasks_capacity(value: Option<&str>) -> Result<Option<u32>, LoadError> {
    let Some(v) = value else {
        return Ok(None);
    };
    match v.trim().parse::<u32>() {
        // PID_MAX_LIMIT: more threads cannot exist.
        Ok(n @ 1..=4_194_304) => Ok(Some(n)),
        _ => Err(LoadError::TasksCapacity(v.to_owned())),
    }
}

/// The slots of the per-CPU count cache asked for in the environment (`usage_cache::SLOTS_ENV`),
/// if any: fewer slots let a test make keys share one; the default is `usage_cache::SLOTS`.
fn usage_cache_slots(value: Option<&str>) -> Result<Option<u32>, LoadError> {
    let Some(v) = value else {
        return Ok(None);
    };
    match v.trim().parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= usage_cache::SLOTS => Ok(Some(n)),
        _ => Err(LoadError::UsageCacheSlots(v.to_owned())),
    }
}

/// `std::thread::spawn` without its panic when the kernel refuses a thread.
fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, LoadError> {
    std::thread::Builder::new()
        .spawn(f)
        .map_err(LoadError::Thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_cache_slots_come_from_the_environment_or_are_refused() {
        assert_eq!(usage_cache_slots(None).unwrap(), None);
        assert_eq!(usage_cache_slots(Some("1")).unwrap(), Some(1));
        assert_eq!(usage_cache_slots(Some("256")).unwrap(), Some(256));
        for bad in ["0", "3", "512", "-1", "all", ""] {
            let e = usage_cache_slots(Some(bad)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("CAPTRACE_USAGE_CACHE_SLOTS must be a power of two"),
                "{e}"
            );
        }
        assert_eq!(usage_cache::SLOTS, 256, "the message above names it");
    }

    #[test]
    fn tasks_capacity_comes_from_the_environment_or_is_refused() {
        assert_eq!(tasks_capacity(None).unwrap(), None);
        assert_eq!(tasks_capacity(Some("8")).unwrap(), Some(8));
        for bad in ["0", "-1", "many", "", "4194305"] {
            let e = tasks_capacity(Some(bad)).unwrap_err();
            assert!(
                e.to_string().starts_with("CAPTRACE_TASKS_CAPACITY must be"),
                "{e}"
            );
        }
    }
}
