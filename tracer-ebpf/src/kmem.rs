//! Reading the kernel: the load-time configuration, and how a program reads kernel memory and
//! the current task's fields.
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf,
    bpf_probe_read_kernel, bpf_task_pt_regs,
};
use tracer_common::{Config, scope};

/// Written by the loader before the programs are loaded.
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    task_pid_off: 0,
    userns_level_off: 0,
    task_real_cred_off: 0,
    task_comm_off: 0,
    task_thread_pid_off: 0,
    pid_level_off: 0,
    pid_numbers_off: 0,
    regs_syscall_off: 0,
    regs_arg0_off: 0,
    regs_arg1_off: 0,
    nr_unshare: 0,
    nr_setns: 0,
    nr_clone: 0,
    nr_clone3: 0,
    self_tgid: 0,
    trace_all: 0,
    filter_cgroups: 0,
    enforce_cgroups: 0,
    follow_cgroups: 0,
    nr_bind: 0,
    home_cgroup: 0,
    regs_arg2_off: 0,
    nr_socket: 0,
    task_mm_off: 0,
    mm_exe_file_off: 0,
    file_inode_off: 0,
    inode_ino_off: 0,
    inode_sb_off: 0,
    sb_dev_off: 0,
    inode_nlink_off: 0,
    bprm_file_off: 0,
    task_tgid_off: 0,
    task_stack_off: 0,
    regs_btf_id: 0,
    _pad_end: 0,
};

/// `task_pt_regs(task) - task->stack` on this boot, 0 until a program has learnt it
/// (`Typed::user_regs`).
#[unsafe(no_mangle)]
static mut REGS_FROM_STACK: u64 = 0;

/// Learns `REGS_FROM_STACK` from the helper, on the first run that needs it. The probe read
/// is of this program's own stack and does not fail; if it did, that one check would read its
/// syscall number from the wrong place and the next run would learn again.
#[inline(always)]
fn regs_from_stack(task: *const u8, stack: u64) -> u64 {
    // SAFETY: `task` is the trusted pointer `bpf_get_current_task_btf` returned.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) as *const u8 };
    // Both values as plain numbers, copied from this program's own stack: the verifier types
    // them as pointers (`task->stack` too, from 7.x: untrusted memory) and refuses arithmetic
    // between two pointers, or between a pointer and an unbounded number (6.12). A shared
    // scratch slot instead could hold another task's pointer.
    // SAFETY: probe reads of locals; the helper cannot fault.
    let (Ok(regs_addr), Ok(stack_addr)) = (unsafe {
        (
            bpf_probe_read_kernel(core::ptr::addr_of!(regs) as *const u64),
            bpf_probe_read_kernel(core::ptr::addr_of!(stack)),
        )
    }) else {
        return 0;
    };
    let from_stack = regs_addr.wrapping_sub(stack_addr);
    // SAFETY: a .bss global; the distance is the same for every task of this boot
    // (`task_pt_regs`, arch/x86/include/asm/processor.h), so racing writers agree.
    unsafe { core::ptr::write_volatile(&raw mut REGS_FROM_STACK, from_stack) };
    from_stack
}

/// `bpf_rdonly_cast(addr, btf_id)`: `addr` as a read-only pointer to the kernel type `btf_id`
/// (a constant from `CONFIG`). The call is a placeholder the loader patches
/// (`tracer_common::kfunc`); the verifier turns it into a register move.
#[inline(always)]
fn rdonly_cast(addr: u64, btf_id: u32) -> *const u8 {
    #[cfg(target_arch = "bpf")]
    {
        let out: u64;
        // SAFETY: a kfunc call as the kernel's calling convention has it: arguments in r1 and
        // r2, result in r0, r1-r5 clobbered; it reads and writes no memory of the program.
        unsafe {
            core::arch::asm!(
                ".quad {insn}",
                insn = const tracer_common::kfunc::call_insn(
                    tracer_common::kfunc::RDONLY_CAST_PLACEHOLDER
                ),
                inlateout("r1") addr => _,
                inlateout("r2") u64::from(btf_id) => _,
                lateout("r0") out,
                lateout("r3") _,
                lateout("r4") _,
                lateout("r5") _,
                options(nostack, nomem, preserves_flags),
            );
        }
        out as *const u8
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        let _ = btf_id;
        addr as *const u8
    }
}

/// The configuration, read field by field where a program uses it (each a load from the frozen
/// .rodata map, whose values the verifier knows: it drops the branches they rule out).
#[inline(always)]
pub(crate) fn config() -> Cfg {
    // SAFETY: CONFIG lives in .rodata, which the loader fills before load. Only its address is
    // read volatile, so the compiler cannot fold the zero initialiser into the fields it reads,
    // and it no longer copies the whole struct per call (issue 17).
    Cfg(unsafe { &*core::ptr::read_volatile(&(&raw const CONFIG)) })
}

/// The configuration as `config()` gives it: used as a `Config` (`&cfg`, `cfg.field`).
#[derive(Clone, Copy)]
pub(crate) struct Cfg(&'static Config);

impl core::ops::Deref for Cfg {
    type Target = Config;

    #[inline(always)]
    fn deref(&self) -> &Config {
        self.0
    }
}

/// `task->thread_pid->numbers[task->thread_pid->level].nr`: the thread's id as its own PID
/// namespace sees it (include/linux/pid.h). Only read for events, never per check.
#[inline(always)]
pub(crate) fn current_ns_pid(cfg: &Config) -> u32 {
    // SAFETY: probe reads along BTF offsets; a failed read gives 0.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(pid) =
            bpf_probe_read_kernel(task.add(cfg.task_thread_pid_off as usize) as *const u64)
        else {
            return 0;
        };
        let pid = pid as *const u8;
        let level =
            bpf_probe_read_kernel(pid.add(cfg.pid_level_off as usize) as *const u32).unwrap_or(0);
        let upid = pid.add(cfg.pid_numbers_off as usize + (level.min(31) as usize) * 16);
        bpf_probe_read_kernel(upid as *const i32)
            .map(|n| n as u32)
            .unwrap_or(0)
    }
}

/// How a program reads kernel memory. Programs whose arguments are BTF-typed pointers (tp_btf,
/// fexit, lsm) load fields directly: the verifier makes each load fault-safe inline. Raw
/// tracepoints and kprobes see plain numbers and must call the probe-read helper, which costs
/// tens of nanoseconds per read (measured: the raw sys_exit program added ~170 ns to every
/// syscall of the host, its tp_btf twin ~80).
pub(crate) trait Kmem {
    /// The current task.
    fn current_task() -> *const u8;
    /// The `T` at `base + off`, or None when it cannot be read.
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T>;
    /// The saved user registers of the current task, `task` as `current_task` gave it.
    fn user_regs(task: *const u8) -> *const u8;
    /// `bpf_get_current_pid_tgid()`: the current process id << 32 | thread id, `task` as
    /// `current_task` gave it.
    fn current_pid_tgid(cfg: &Config, task: *const u8) -> u64;
}

/// Direct loads through BTF-typed pointers.
pub(crate) struct Typed;

/// `bpf_probe_read_kernel`, for pointers the verifier knows only as numbers.
pub(crate) struct Probed;

impl Kmem for Typed {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: helper without preconditions; the result is a trusted task pointer.
        unsafe { bpf_get_current_task_btf() as *const u8 }
    }

    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` is a BTF-typed kernel pointer and `off` a constant from CONFIG (a
        // frozen map): the verifier checks the field against BTF and turns the load into one
        // that cannot fault.
        Some(unsafe { core::ptr::read(base.add(off as usize) as *const T) })
    }

    /// Where the kernel has `bpf_rdonly_cast` (`Config::regs_btf_id`), `task->stack` plus the
    /// boot's constant distance to the saved registers, cast to `struct pt_regs`: loads and a
    /// register move, instead of the `bpf_task_pt_regs` helper call on every check (issue 17).
    /// The distance (THREAD_SIZE less the stack's top padding and the size of pt_regs, which
    /// depend on the kernel's build) is learnt from the helper by the first run.
    #[inline(always)]
    fn user_regs(task: *const u8) -> *const u8 {
        let cfg = config();
        let btf_id = cfg.regs_btf_id;
        if btf_id != 0 {
            let Some(stack) = Self::read::<u64>(task, cfg.task_stack_off) else {
                return core::ptr::null();
            };
            // SAFETY: a .bss global; a torn or stale read is impossible for an aligned u64,
            // and every writer writes the same value.
            let mut from_stack = unsafe { core::ptr::read_volatile(&raw const REGS_FROM_STACK) };
            if from_stack == 0 {
                from_stack = regs_from_stack(task, stack);
            }
            // Both ways end in the cast, so the verifier walks the rest of the program once (a
            // trusted pointer on one way and a cast one on the other made the load of the
            // cap_capable program 7 ms slower; this way it is 1-3 ms slower than with the
            // helper alone).
            return rdonly_cast(stack.wrapping_add(from_stack), btf_id);
        }
        // SAFETY: `task` is the trusted pointer `bpf_get_current_task_btf` returned; pt_regs
        // sits at a fixed place on its kernel stack (task_pt_regs) and the result is a
        // BTF-typed pointer.
        unsafe { bpf_task_pt_regs(task as *mut _) as *const u8 }
    }

    /// `task->tgid << 32 | task->pid`: loads instead of the `bpf_get_current_pid_tgid`
    /// helper call (each helper call returns through the kernel's return thunk where
    /// return-stack mitigations are on, as here).
    #[inline(always)]
    fn current_pid_tgid(cfg: &Config, task: *const u8) -> u64 {
        let pid = Self::read::<i32>(task, cfg.task_pid_off).unwrap_or(0) as u32;
        let tgid = Self::read::<i32>(task, cfg.task_tgid_off).unwrap_or(0) as u32;
        (u64::from(tgid) << 32) | u64::from(pid)
    }
}

impl Kmem for Probed {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: helper without preconditions.
        unsafe { bpf_get_current_task() as *const u8 }
    }

    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        // SAFETY: a probe read cannot fault; a bad address gives an error.
        unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.ok()
    }

    #[inline(always)]
    fn user_regs(_task: *const u8) -> *const u8 {
        // SAFETY: as `Typed::user_regs`; the helper needs the BTF-typed task pointer, which
        // `bpf_get_current_task` does not give.
        unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8 }
    }

    /// The helper: a probe read of `task->pid` would cost a helper call too.
    #[inline(always)]
    fn current_pid_tgid(_cfg: &Config, _task: *const u8) -> u64 {
        bpf_get_current_pid_tgid()
    }
}

/// Whether the checked credentials are not the task's own (overlayfs and other kernel code
/// act with borrowed credentials through override_creds).
#[inline(always)]
pub(crate) fn borrowed<M: Kmem>(cfg: &Config, cred: u64) -> bool {
    borrowed_by::<M>(cfg, M::current_task(), cred)
}

/// `borrowed`, for the current task's pointer as `M::current_task` gave it.
#[inline(always)]
pub(crate) fn borrowed_by<M: Kmem>(cfg: &Config, task: *const u8, cred: u64) -> bool {
    let real = M::read::<u64>(task, cfg.task_real_cred_off).unwrap_or(cred);
    real != cred
}

/// The syscall the current task is in, read from its saved user registers.
#[inline(always)]
pub(crate) fn current_syscall<M: Kmem>(cfg: &Config) -> i32 {
    syscall_of::<M>(cfg, M::current_task())
}

/// `current_syscall`, for the current task's pointer as `M::current_task` gave it (one helper
/// call fewer per check when the caller needs the task anyway).
#[inline(always)]
pub(crate) fn syscall_of<M: Kmem>(cfg: &Config, task: *const u8) -> i32 {
    M::read::<i64>(M::user_regs(task), cfg.regs_syscall_off)
        .map(|nr| nr as i32)
        .unwrap_or(-1)
}

#[inline(always)]
pub(crate) fn userns_scope<M: Kmem>(cfg: &Config, ns: u64) -> u8 {
    if ns == 0 {
        return scope::UNKNOWN;
    }
    match M::read::<i32>(ns as *const u8, cfg.userns_level_off) {
        Some(0) => scope::INIT_USERNS,
        Some(_) => scope::NESTED_USERNS,
        None => scope::UNKNOWN,
    }
}

/// `task->pid` (the thread id) of a task pointer a raw tracepoint handed us.
#[inline(always)]
pub(crate) fn task_pid(cfg: &Config, task: u64) -> Option<u32> {
    // SAFETY: probe read at the BTF offset of `pid`; cannot fault.
    unsafe {
        bpf_probe_read_kernel((task as *const u8).add(cfg.task_pid_off as usize) as *const i32)
    }
    .ok()
    .map(|p| p as u32)
}
