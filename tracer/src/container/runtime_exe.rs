//! The executables of container runtimes on this host, as the kernel identifies files (device
//! and inode): `RUNTIME_EXES`, from which the kernel decides that a task is a runtime's
//! (`tracer-ebpf/src/runtime.rs`). A task's name says nothing (a workload renames itself
//! `runc:[2:INIT]` with one prctl); a host binary's inode is out of a container's reach unless
//! the binary itself is mounted into it.
use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use tracer_common::RuntimeExe;

/// The programs whose processes act as a runtime: OCI runtimes (their `init` holds the
/// runtime's privileges until it execs the workload), and the daemons and shims that start
/// them.
pub const PROGRAMS: &[&str] = &[
    "runc",
    "crun",
    "youki",
    "runsc",
    "conmon",
    "containerd-shim-runc-v2",
    "containerd-shim",
    "containerd",
    "dockerd",
    "podman",
    "crio",
];

/// Where packages install them, besides `PATH` (podman's helpers are not on it).
pub const DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/libexec/podman",
    "/usr/lib/podman",
    "/usr/libexec/docker",
    "/usr/libexec/crio",
];

/// The identity the kernel gives the file `path` (after symlinks), if it is a regular file.
pub fn identity(path: &Path) -> Option<RuntimeExe> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let dev = m.dev();
    Some(RuntimeExe::from_stat(
        libc::major(dev),
        libc::minor(dev),
        m.ino(),
    ))
}

/// Every runtime program found in the directories of `path_env` (a `PATH` value) and `dirs`,
/// each file once (links and aliases such as /usr/bin/runc → /usr/sbin/runc share one
/// identity).
pub fn find(path_env: Option<&str>, dirs: &[&str]) -> Vec<(PathBuf, RuntimeExe)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let from_path = path_env.into_iter().flat_map(|p| p.split(':'));
    for dir in from_path.chain(dirs.iter().copied()) {
        if !dir.starts_with('/') {
            continue;
        }
        for program in PROGRAMS {
            let file = Path::new(dir).join(program);
            if let Some(id) = identity(&file)
                && seen.insert(id)
            {
                out.push((file, id));
            }
        }
    }
    out
}

/// The runtime programs of this host.
pub fn on_host() -> Vec<(PathBuf, RuntimeExe)> {
    find(std::env::var("PATH").ok().as_deref(), DIRS)
}

/// The identity of the executable process `pid` runs now (`/proc/PID/exe`, which still
/// opens when the file was deleted or is a memfd).
pub fn of_process(pid: u32) -> Option<RuntimeExe> {
    identity(Path::new(&format!("/proc/{pid}/exe")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_runtime_file_once_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("runc"), "").unwrap();
        std::fs::write(a.join("conmon"), "").unwrap();
        std::fs::write(a.join("sh"), "").unwrap();
        // An alias of the same file, and a directory named like a runtime.
        std::os::unix::fs::symlink(a.join("runc"), b.join("runc")).unwrap();
        std::fs::create_dir(b.join("crun")).unwrap();
        let path_env = format!("{}:relative", b.display());
        let found = find(Some(&path_env), &[a.to_str().unwrap()]);
        let names: Vec<&str> = found
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["runc", "conmon"], "{found:?}");
        assert_eq!(found[0].0, b.join("runc"));
        assert_eq!(Some(found[0].1), identity(&a.join("runc")));
        assert_ne!(found[0].1, found[1].1);
    }

    #[test]
    fn identities_use_the_kernels_device_encoding() {
        // /dev/vda (254:0) and a device whose minor needs more than 8 bits.
        assert_eq!(RuntimeExe::from_stat(254, 0, 7).dev, 254 << 20);
        assert_eq!(RuntimeExe::from_stat(0, 300, 7).dev, 300);
        let me = of_process(std::process::id()).unwrap();
        assert_eq!(Some(me), identity(&std::env::current_exe().unwrap()));
    }
}
