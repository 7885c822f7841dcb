//! `captrace doctor`: what this kernel and this process offer, and what captrace will use.
use std::{collections::BTreeMap, fs, io::Write as _, path::Path};

use aya::{
    programs::{LsmAttachType, ProgramType},
    sys::is_program_supported,
};
use nix::sys::statfs::{FsType, TRACEFS_MAGIC, statfs};
use serde::Serialize;

use crate::{
    cli::DoctorArgs,
    container::{self, resolve::cgroup2_root},
    kernel_btf::{self, Kind},
    loader::{Options, Tracer},
};

/// What doctor says when tracefs is not mounted.
pub const TRACEFS_MISSING: &str = "captrace works without it, but where fexit is refused it \
     then watches namespace calls at every syscall's exit, which costs every syscall of the host \
     more: mount -t tracefs nodev /sys/kernel/tracing";

/// Everything `doctor` found.
#[derive(Debug, Serialize)]
pub struct Findings {
    pub kernel: String,
    pub root: bool,
    /// CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON, in the effective set.
    pub bpf_privileges: bool,
    pub btf: bool,
    /// The `capability:cap_capable` tracepoint (Linux >= 6.14).
    pub cap_capable_tracepoint: bool,
    /// Program types this kernel loads (probed with a trivial program).
    pub program_types: BTreeMap<String, bool>,
    pub kprobes: bool,
    /// The active LSMs (`/sys/kernel/security/lsm`), when securityfs is mounted.
    pub lsm: Option<String>,
    pub lockdown: Option<String>,
    pub cgroup2: Option<String>,
    /// Where tracefs is mounted. captrace works without it (raw tracepoints attach by name),
    /// but the per-syscall tracepoints for namespace calls are found through it.
    pub tracefs: Option<String>,
    pub kallsyms_addresses: bool,
    /// The hook captrace uses for capability checks, or why none.
    pub hook: Result<String, String>,
    /// How that hook's program reads each check's syscall number (`Tracer::syscall_read`).
    pub syscall_read: Option<String>,
    /// Whether in-kernel enforcement could run here, and why not.
    pub enforcement: Result<String, String>,
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The first mount point of file system type `fstype` that statfs confirms (a mount listed in
/// mountinfo may be hidden under another).
fn mounted(mountinfo: &str, fstype: &str, magic: FsType) -> Option<String> {
    container::mounts(mountinfo)
        .filter(|m| m.fstype == fstype)
        .map(|m| m.mount_point)
        .find(|p| statfs(p).is_ok_and(|s| s.filesystem_type() == magic))
        .map(|p| p.display().to_string())
}

fn probe(t: ProgramType) -> bool {
    is_program_supported(t).unwrap_or(false)
}

pub fn findings() -> Findings {
    let btf = Path::new(kernel_btf::VMLINUX).exists();
    let tracepoint = btf
        && kernel_btf::scan_vmlinux(&[("btf_trace_cap_capable", Kind::Typedef)])
            .is_ok_and(|f| f.id("btf_trace_cap_capable", Kind::Typedef).is_some());
    let types = [
        ("raw_tracepoint", ProgramType::RawTracePoint),
        ("tracepoint", ProgramType::TracePoint),
        ("kprobe", ProgramType::KProbe),
        ("tracing (fentry/fexit)", ProgramType::Tracing),
        ("lsm", ProgramType::Lsm(LsmAttachType::Mac)),
    ];
    let program_types: BTreeMap<String, bool> = types
        .iter()
        .map(|(n, t)| (n.to_string(), probe(*t)))
        .collect();
    let supported = |name: &str| program_types.get(name).copied().unwrap_or(false);
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let lsm = read("/sys/kernel/security/lsm");
    let has = |c| caps::has_cap(None, caps::CapSet::Effective, c).unwrap_or(false);
    let bpf_privileges = has(caps::Capability::CAP_SYS_ADMIN)
        || (has(caps::Capability::CAP_BPF) && has(caps::Capability::CAP_PERFMON));
    // The final word is the kernel's: load and attach what `record` and `run --enforce` would.
    let (hook, syscall_read) = match Tracer::load(Options::default()) {
        Ok(t) => (
            Ok(t.hook_point().unwrap_or_default().to_string()),
            t.syscall_read().map(str::to_string),
        ),
        Err(e) => (Err(e.to_string()), None),
    };
    let enforcement = match (&lsm, supported("lsm")) {
        (Some(_), false) => {
            Err("BPF LSM is active but this kernel refuses lsm programs (BPF_PROG_LOAD)".into())
        }
        _ => match Tracer::load(Options {
            hook: None,
            enforce: true,
            ..Options::default()
        }) {
            Ok(_) => Ok("BPF LSM available: run --enforce and enforce work here".into()),
            Err(e) => Err(e.to_string()),
        },
    };
    // Per-CPU symbols sit at address 0 even when addresses are shown: look at text symbols.
    let kallsyms_addresses = fs::read_to_string("/proc/kallsyms").is_ok_and(|t| {
        t.lines()
            .filter(|l| l.contains(" T ") || l.contains(" t "))
            .take(100)
            .any(|l| !l.starts_with("0000000000000000"))
    });
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Findings {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        root: nix::unistd::geteuid().is_root(),
        bpf_privileges,
        btf,
        cap_capable_tracepoint: tracepoint,
        program_types,
        kprobes,
        lsm,
        lockdown: read("/sys/kernel/security/lockdown"),
        cgroup2: cgroup2_root().ok().map(|p| p.display().to_string()),
        tracefs: mounted(&mountinfo, "tracefs", TRACEFS_MAGIC),
        kallsyms_addresses,
        hook,
        syscall_read,
        enforcement,
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The human report.
pub fn render(f: &Findings) -> String {
    let mut out = format!("kernel {}\n", f.kernel);
    out += &format!(
        "root: {}; BPF privileges (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN): {}\n",
        yes(f.root),
        yes(f.bpf_privileges)
    );
    out += &format!("BTF (/sys/kernel/btf/vmlinux): {}\n", yes(f.btf));
    out += &format!(
        "capability:cap_capable tracepoint: {}\n",
        yes(f.cap_capable_tracepoint)
    );
    for (name, ok) in &f.program_types {
        out += &format!("program type {name}: {}\n", yes(*ok));
    }
    out += &format!("kprobes (CONFIG_KPROBES): {}\n", yes(f.kprobes));
    out += &format!(
        "LSMs: {}\n",
        f.lsm
            .as_deref()
            .unwrap_or("unknown (securityfs not mounted)")
    );
    out += &format!("lockdown: {}\n", f.lockdown.as_deref().unwrap_or("unknown"));
    out += &format!(
        "cgroup v2: {}\n",
        f.cgroup2
            .as_deref()
            .unwrap_or("not mounted (record and run work; monitor needs it)")
    );
    out += &match f.tracefs.as_deref() {
        Some(p) => format!(
            "tracefs: mounted at {p} (where fexit is refused, namespace calls are watched on \
             the per-syscall exit tracepoints it names)\n"
        ),
        None => format!("tracefs: not mounted ({TRACEFS_MISSING})\n"),
    };
    out += &format!(
        "kernel addresses in /proc/kallsyms: {}\n",
        yes(f.kallsyms_addresses)
    );
    match &f.hook {
        Ok(h) => {
            out += &format!("captrace will trace with: {h}\n");
            if let Some(how) = &f.syscall_read {
                out += &format!("syscall number of each check read by: {how}\n");
            }
        }
        Err(e) => out += &format!("captrace cannot trace here: {e}\n"),
    }
    match &f.enforcement {
        Ok(e) => out += &format!("enforcement: {e}\n"),
        Err(e) => out += &format!("enforcement: unavailable: {e}\n"),
    }
    out
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<u8> {
    let f = findings();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&f)?)?;
    } else {
        write!(out, "{}", render(&f))?;
    }
    Ok(if f.hook.is_ok() { 0 } else { 1 })
}
