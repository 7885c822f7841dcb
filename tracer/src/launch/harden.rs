//! What keeps a root workload in a `--rootfs` from reaching the host through device nodes
//! and /proc, as Docker does: the root file system is nodev (only the small /dev allowlist,
//! bind-mounted, opens devices: a node made with MKNOD for the host's disk does not), and in
//! each /proc captrace mounts the files that act on the whole machine are hidden or
//! read-only. A uid 0 without capabilities still passes DAC checks on root-owned files, and
//! /proc/sys and /proc/sysrq-trigger check nothing more (`proc_sys_permission`,
//! `write_sysrq_trigger`).
use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use nix::mount::{MsFlags, mount};

use super::sandbox::{Stage, StepResult};

/// Docker's masked paths under /proc (moby `oci/defaults.go`): replaced by an empty file or
/// directory.
pub const PROC_MASKED: &[&str] = &[
    "asound",
    "acpi",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];

/// Docker's read-only paths under /proc.
pub const PROC_READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NODEV: u64 = 0x4;

fn cpath(path: &Path) -> Result<CString, (Stage, i32)> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| (Stage::Mount, libc::EINVAL))
}

/// Adds `attr` (MOUNT_ATTR_*) to the mount at `path` and every mount below it. Only sets
/// bits, so flags a user namespace may not clear (locked nosuid, noexec) stay as they are.
/// Kernels before 5.12 lack mount_setattr: there the top mount is remounted with its
/// current flags plus the new one.
fn add_attr(path: &Path, attr: u64, stage: Stage) -> StepResult {
    let c = cpath(path)?;
    let set = MountAttr {
        attr_set: attr,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &set as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = nix::errno::Errno::last();
    if err != nix::errno::Errno::ENOSYS {
        return Err((stage, err as i32));
    }
    // SAFETY: statvfs into a zeroed struct with a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err((stage, nix::errno::Errno::last_raw()));
    }
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (st_flag, ms) in [
        (libc::ST_RDONLY, MsFlags::MS_RDONLY),
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms;
        }
    }
    if attr & MOUNT_ATTR_NODEV != 0 {
        flags |= MsFlags::MS_NODEV;
    }
    if attr & MOUNT_ATTR_RDONLY != 0 {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>).map_err(|e| (stage, e as i32))
}

/// The root file system, before anything is mounted inside it: no device node in it opens.
pub fn nodev(root: &Path) -> StepResult {
    add_attr(root, MOUNT_ATTR_NODEV, Stage::Rootfs)
}

/// Hides and write-protects Docker's list under a /proc just mounted at `proc_dir`.
pub fn mask_proc(proc_dir: &Path) -> StepResult {
    for name in PROC_MASKED {
        let path = proc_dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let done = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                &path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=555"),
            )
        } else {
            mount(
                Some("/dev/null"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        done.map_err(|e| (Stage::Mount, e as i32))?;
    }
    for name in PROC_READ_ONLY {
        let path = proc_dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| (Stage::Mount, e as i32))?;
        add_attr(&path, MOUNT_ATTR_RDONLY, Stage::Mount)?;
    }
    Ok(())
}
