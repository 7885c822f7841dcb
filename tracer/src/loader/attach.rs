//! Attaching each program, and the hook choice.
use aya::{
    Btf, Ebpf,
    programs::{
        BtfTracePoint, FExit, KProbe, Lsm, ProgramError, RawTracePoint, TracePoint, links::FdLink,
    },
};
use tracer_common::names;

use super::{AttachBtf, CAP_CAPABLE, LoadError, NS_FEXITS, PROGRAMS, Tracer};
use crate::hook::{Hook, HookChoice, Refusals};

impl Tracer {
    /// The program watching capability checks, as the report names it
    /// (`tp_btf/cap_capable`), if any.
    pub fn hook_point(&self) -> Option<&'static str> {
        self.hook.map(|(_, point)| point)
    }

    /// How the attached hook's program reads the syscall number of each check (part of its
    /// key), for `doctor`: without a helper call where it holds a BTF-typed task (tp_btf,
    /// fexit) and the kernel has `bpf_rdonly_cast` (>= 6.2), else through `bpf_task_pt_regs`.
    pub fn syscall_read(&self) -> Option<&'static str> {
        let (hook, point) = self.hook?;
        let typed = hook == Hook::Fentry || point == Hook::Tracepoint.attach_point();
        Some(if typed && self.regs_by_cast {
            "task->stack cast with bpf_rdonly_cast (no helper call)"
        } else {
            "the bpf_task_pt_regs helper (one call more per check)"
        })
    }

    /// Attaches the first hook of `choice` that this kernel accepts (fentry is not tried when
    /// `fexit_refused` says why the kernel refuses every fexit program: `fexit_probe`).
    pub(super) fn attach_hook(
        &mut self,
        choice: HookChoice,
        has_tracepoint: bool,
        btf: &AttachBtf,
        fexit_refused: Option<&str>,
    ) -> Result<(), LoadError> {
        let mut refusals = Refusals::default();
        for &hook in choice.candidates() {
            let attached = match hook {
                Hook::Fentry => match fexit_refused {
                    Some(why) => Err(why.to_string()),
                    None => btf
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|b| self.attach_fexit(b).map_err(describe))
                        .map(|()| hook.attach_point()),
                },
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

    /// Where namespace calls are watched, as the report names it, if they are.
    pub fn ns_point(&self) -> Option<&'static str> {
        self.ns_point
    }

    /// The namespace-call program: on the exit tracepoints of the four namespace syscalls,
    /// which cost other syscalls no program run, or, where those cannot be attached, on every
    /// syscall's return.
    pub(super) fn attach_ns_calls(
        &mut self,
        btf: &AttachBtf,
        fexit_refused: Option<&str>,
    ) -> Result<(), LoadError> {
        if let Some(why) = fexit_refused {
            tracing::debug!(%why, "fexit on the namespace syscalls not tried");
        } else if let Ok(b) = btf {
            match self.attach_ns_fexits(b) {
                Ok(()) => {
                    self.ns_point = Some("fexit/sys_{unshare,setns,clone,clone3}");
                    return Ok(());
                }
                Err(e) => {
                    let why = describe(e);
                    tracing::debug!(%why, "fexit on the namespace syscalls refused");
                }
            }
        }
        match self.attach_syscall_tracepoints() {
            Ok(()) => {
                self.ns_point = Some("tracepoint/syscalls:sys_exit_{unshare,setns,clone,clone3}");
                return Ok(());
            }
            Err(e) => {
                let why = describe(e);
                tracing::debug!(%why, "per-syscall tracepoints refused, using sys_exit");
                self.slow_links.clear();
            }
        }
        self.attach_sys_exit(btf)?;
        self.ns_point = Some("raw_tracepoint/sys_exit");
        Ok(())
    }

    /// fexit on each namespace syscall's function: no program on any other syscall. All four
    /// or none (links made before a failure are dropped).
    fn attach_ns_fexits(&mut self, btf: &Btf) -> Result<(), ProgramError> {
        let mut links: Vec<Box<dyn Send>> = Vec::new();
        for (name, function) in NS_FEXITS {
            let p: &mut FExit = program(&mut self.ebpf, name)?;
            p.load(function, btf)?;
            let id = p.attach()?;
            links.push(Box::new(p.take_link(id)?));
        }
        self.links.extend(links);
        Ok(())
    }

    /// `syscalls:sys_exit_NAME` for each namespace syscall, as BPF links (kernels >= 5.15)
    /// whose detach can be handed off.
    fn attach_syscall_tracepoints(&mut self) -> Result<(), ProgramError> {
        let p: &mut TracePoint = program(&mut self.ebpf, names::PROG_NS_SYSCALL_EXIT)?;
        p.load()?;
        for syscall in NS_SYSCALLS {
            let id = p.attach("syscalls", &format!("sys_exit_{syscall}"))?;
            let link = FdLink::try_from(p.take_link(id)?).map_err(|e| {
                ProgramError::IOError(std::io::Error::other(format!(
                    "no BPF link for a perf tracepoint on this kernel: {e}"
                )))
            })?;
            self.slow_links.push(link);
        }
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

    pub(super) fn attach_lsm(
        &mut self,
        btf: &Btf,
        has_uring_lsm: bool,
    ) -> Result<(), ProgramError> {
        let p: &mut Lsm = program(&mut self.ebpf, names::PROG_ENFORCE_CAPABLE)?;
        p.load("capable", btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        // Children of confined tasks entered in `CONFINED_CHILDREN` before they exist, forks
        // refused when it has no room (tracer-ebpf/src/fork.rs). `task_free` first, so that
        // every entry made is removed with its task.
        let p: &mut Lsm = program(&mut self.ebpf, names::PROG_ENFORCE_TASK_FREE)?;
        p.load("task_free", btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        let p: &mut Lsm = program(&mut self.ebpf, names::PROG_ENFORCE_TASK_ALLOC)?;
        p.load("task_alloc", btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        if !has_uring_lsm {
            return Ok(());
        }
        // io_uring personalities (tracer-ebpf/src/uring.rs).
        let p: &mut Lsm = program(&mut self.ebpf, names::PROG_ENFORCE_URING_CREDS)?;
        p.load("uring_override_creds", btf)?;
        let id = p.attach()?;
        self.links.push(Box::new(p.take_link(id)?));
        Ok(())
    }

    /// Attaches the process-following programs as raw tracepoints: those detach at once, where
    /// each perf tracepoint waits for an RCU grace period (perf_trace_event_unreg, ~70 ms
    /// here). On error the links made so far are dropped with `self`.
    pub(super) fn attach_followers(&mut self) -> Result<(), LoadError> {
        for (name, point) in PROGRAMS {
            self.attach_raw_tp(name, point)
                .map_err(|source| LoadError::Program { name, source })?;
        }
        Ok(())
    }
}

/// The syscalls whose exit tracepoint the namespace-call program watches.
const NS_SYSCALLS: [&str; 4] = ["unshare", "setns", "clone", "clone3"];

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
pub(super) fn describe(e: ProgramError) -> String {
    use std::error::Error as _;
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        let log = verifier_log.to_string();
        tracing::debug!("the verifier's log:\n{log}");
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
