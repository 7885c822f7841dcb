//! The load-time configuration handed to the programs: struct offsets from the kernel's BTF,
//! the architecture's registers and syscall numbers, and what to trace.
use syscalls::Sysno;
use tracer_common::{Config, kfunc};

use super::{ATTACH_TARGETS, LoadError, Options};
use crate::{
    kernel_btf::{self, Found, Kind},
    syscall,
};

/// Everything captrace reads from the kernel's BTF, in one pass (or from this boot's cache).
pub(super) fn kernel_btf() -> Result<Found, LoadError> {
    let lookups: Vec<(String, Kind)> = STRUCTS
        .iter()
        .map(|s| (s.to_string(), Kind::Struct))
        .chain(ATTACH_TARGETS.iter().map(|t| t.lookup()))
        .chain([(kfunc::RDONLY_CAST.to_string(), Kind::Func)])
        .collect();
    let wanted: Vec<(&str, Kind)> = lookups.iter().map(|(n, k)| (n.as_str(), *k)).collect();
    let (found, source) = kernel_btf::cache::found(&wanted).map_err(LoadError::Btf)?;
    tracing::debug!(?source, "kernel BTF facts");
    Ok(found)
}

/// The structs whose member offsets the programs need.
const STRUCTS: &[&str] = &[
    "task_struct",
    "user_namespace",
    "pid",
    "mm_struct",
    "file",
    "inode",
    "super_block",
    "linux_binprm",
    "pt_regs",
];

pub(super) fn config(btf: &Found, opts: &Options) -> Result<Config, LoadError> {
    let regs = syscall::REGS;
    let off = |s: &str, m: &str| btf.member_offset(s, m).map_err(LoadError::Btf);
    let task_pid_off = off("task_struct", "pid")?;
    let task_tgid_off = off("task_struct", "tgid")?;
    let task_real_cred_off = off("task_struct", "real_cred")?;
    let task_comm_off = off("task_struct", "comm")?;
    let task_thread_pid_off = off("task_struct", "thread_pid")?;
    let userns_level_off = off("user_namespace", "level")?;
    let pid_level_off = off("pid", "level")?;
    let pid_numbers_off = off("pid", "numbers")?;
    let inode_ino_off = off("inode", "i_ino")?;
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
        nr_bind: Sysno::bind.id() as u32,
        home_cgroup: opts.follow_cgroups_outside.unwrap_or(0),
        regs_arg2_off: regs.arg2,
        nr_socket: Sysno::socket.id() as u32,
        task_mm_off: off("task_struct", "mm")?,
        mm_exe_file_off: off("mm_struct", "exe_file")?,
        file_inode_off: off("file", "f_inode")?,
        inode_ino_off,
        inode_sb_off: off("inode", "i_sb")?,
        sb_dev_off: off("super_block", "s_dev")?,
        inode_nlink_off: nlink_off(btf.member_offset("inode", "i_nlink").ok(), inode_ino_off),
        bprm_file_off: off("linux_binprm", "file")?,
        task_tgid_off,
        task_stack_off: off("task_struct", "stack")?,
        // The loader clears it when the object carries no cast to patch (`loader::kfunc`).
        regs_btf_id: btf
            .id(kfunc::RDONLY_CAST, Kind::Func)
            .and(btf.id("pt_regs", Kind::Struct))
            .unwrap_or(0),
        _pad_end: 0,
    })
}

/// `inode.i_nlink`, unless its offset is not one a `const unsigned int` can have (0 tells the
/// programs it is unknown: an unlinked executable is then never told apart, and a runtime
/// that re-executes itself from a memfd counts as its container; nothing is hidden).
fn nlink_off(found: Option<u32>, ino_off: u32) -> u32 {
    match found {
        Some(off) if off > 0 && off % 4 == 0 && off != ino_off => off,
        _ => 0,
    }
}
