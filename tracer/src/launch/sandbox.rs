//! Namespaces and the file system view of a `captrace run` workload: which namespaces to
//! create, and the set-up done inside them (private mounts, fresh /proc, a root file system,
//! hostname, loopback). Runs in the child between fork and exec.
use std::{
    ffi::CString,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::CloneFlags,
};

use super::harden;

/// The namespaces a workload gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsSet {
    pub user: bool,
    pub pid: bool,
    pub mnt: bool,
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    pub cgroup: bool,
}

pub const NS_NAMES: &[&str] = &["user", "pid", "mnt", "uts", "ipc", "net", "cgroup"];

impl NsSet {
    /// `user,pid,mnt,uts,ipc,net,cgroup` or `all` (or `none`).
    pub fn parse(list: &str) -> Result<NsSet, String> {
        let mut ns = NsSet::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => {
                    ns = NsSet {
                        user: true,
                        pid: true,
                        mnt: true,
                        uts: true,
                        ipc: true,
                        net: true,
                        cgroup: true,
                    }
                }
                "none" => {}
                "user" => ns.user = true,
                "pid" => ns.pid = true,
                "mnt" | "mount" => ns.mnt = true,
                "uts" => ns.uts = true,
                "ipc" => ns.ipc = true,
                "net" | "network" => ns.net = true,
                "cgroup" => ns.cgroup = true,
                other => {
                    return Err(format!(
                        "unknown namespace {other:?}: use a comma-separated list of {} or all",
                        NS_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(ns)
    }

    pub fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        for (on, flag) in [
            (self.user, CloneFlags::CLONE_NEWUSER),
            (self.pid, CloneFlags::CLONE_NEWPID),
            (self.mnt, CloneFlags::CLONE_NEWNS),
            (self.uts, CloneFlags::CLONE_NEWUTS),
            (self.ipc, CloneFlags::CLONE_NEWIPC),
            (self.net, CloneFlags::CLONE_NEWNET),
            (self.cgroup, CloneFlags::CLONE_NEWCGROUP),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.clone_flags().is_empty()
    }
}

/// Where a set-up step failed, for the message the parent prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Exec = 0,
    Unshare,
    UserMap,
    Fork,
    Mount,
    Rootfs,
    Hostname,
    Loopback,
    Privileges,
    Session,
    Seccomp,
    Sysctl,
}

impl Stage {
    pub fn from_u8(v: u8) -> Stage {
        use Stage::*;
        [
            Exec, Unshare, UserMap, Fork, Mount, Rootfs, Hostname, Loopback, Privileges, Session,
            Seccomp, Sysctl,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Exec)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stage::Exec => "exec",
            Stage::Unshare => "creating the namespaces (unshare)",
            Stage::UserMap => "mapping ids into the user namespace",
            Stage::Fork => "starting the PID namespace (fork)",
            Stage::Mount => "setting up mounts (/proc, private propagation)",
            Stage::Rootfs => "switching to the root file system (pivot_root)",
            Stage::Hostname => "setting the hostname",
            Stage::Loopback => "bringing up loopback",
            Stage::Privileges => "applying the user and capability sets",
            Stage::Session => "starting a session of its own (setsid)",
            Stage::Seccomp => "installing the seccomp filter",
            Stage::Sysctl => "setting a sysctl of its network namespace",
        }
    }
}

pub type StepResult = Result<(), (Stage, i32)>;

fn fail(stage: Stage) -> impl Fn(nix::errno::Errno) -> (Stage, i32) {
    move |e| (stage, e as i32)
}

fn io_fail(stage: Stage) -> impl Fn(std::io::Error) -> (Stage, i32) {
    move |e| (stage, e.raw_os_error().unwrap_or(libc::EIO))
}

#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    pub ns: NsSet,
    pub hostname: Option<String>,
    pub rootfs: Option<PathBuf>,
    /// Host uid/gid that root inside a new user namespace maps to (65536 ids from there).
    pub userns_base: u32,
    /// Host gid root's group maps to, when it is not `userns_base` (`/etc/subgid`).
    pub userns_gid_base: Option<u32>,
    /// Network sysctls set inside its own network namespace, as `docker run --sysctl` does
    /// (`net.ipv4.ip_unprivileged_port_start`, `80`): written before the privileges drop.
    pub sysctls: Vec<(String, String)>,
}

/// Ids mapped into a new user namespace.
pub const USERNS_SIZE: u32 = 65_536;

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

impl Sandbox {
    /// `uid_map`/`gid_map` contents: root and the 65535 ids after it onto unprivileged host ids.
    pub fn id_map(&self) -> String {
        format!("0 {} {USERNS_SIZE}\n", self.userns_base)
    }

    fn gid_map(&self) -> String {
        let base = self.userns_gid_base.unwrap_or(self.userns_base);
        format!("0 {base} {USERNS_SIZE}\n")
    }

    /// Written by the parent once the child has unshared its user namespace.
    pub fn write_id_maps(&self, pid: i32) -> std::io::Result<()> {
        fs::write(format!("/proc/{pid}/uid_map"), self.id_map())?;
        fs::write(format!("/proc/{pid}/gid_map"), self.gid_map())
    }

    /// Inside every namespace (and, with a PID namespace, as its first process).
    pub fn setup_inside(&self) -> StepResult {
        if self.ns.mnt {
            // Nothing mounted here propagates back to the host.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(fail(Stage::Mount))?;
        }
        match &self.rootfs {
            Some(root) => self.enter_rootfs(root)?,
            None if self.ns.pid && self.ns.mnt => {
                mount_proc(Path::new("/proc"))?;
                harden::mask_proc(Path::new("/proc"))?;
            }
            None => {}
        }
        if let Some(name) = &self.hostname {
            nix::unistd::sethostname(name).map_err(fail(Stage::Hostname))?;
        }
        if self.ns.net {
            loopback_up().map_err(|e| (Stage::Loopback, e))?;
            // /proc/sys/net shows the network namespace of whoever opens it.
            for (key, value) in &self.sysctls {
                let path = Path::new("/proc/sys").join(key.replace('.', "/"));
                fs::write(path, value).map_err(io_fail(Stage::Sysctl))?;
            }
        }
        Ok(())
    }

    fn enter_rootfs(&self, root: &Path) -> StepResult {
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(Some(root), root, None::<&str>, bind, None::<&str>).map_err(fail(Stage::Rootfs))?;
        harden::nodev(root)?;
        let proc_dir = mount_point(root, "proc")?;
        if self.ns.pid {
            mount_proc(&proc_dir)?;
        } else {
            mount(Some("/proc"), &proc_dir, None::<&str>, bind, None::<&str>)
                .map_err(fail(Stage::Mount))?;
        }
        harden::mask_proc(&proc_dir)?;
        let dev = mount_point(root, "dev")?;
        // nodev: only the allowlist below, each a bind mount of its own, opens a device.
        mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755,size=64k"),
        )
        .map_err(fail(Stage::Mount))?;
        for d in DEVICES {
            let target = dev.join(d);
            fs::write(&target, b"").map_err(io_fail(Stage::Mount))?;
            mount(
                Some(Path::new("/dev").join(d).as_path()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(fail(Stage::Mount))?;
        }
        for (link, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            symlink(to, dev.join(link)).map_err(io_fail(Stage::Mount))?;
        }
        // pivot_root(".", "."): the old root is stacked under the new one and detached at
        // once, with no directory to create in a root file system the namespace may not own.
        nix::unistd::chdir(root).map_err(fail(Stage::Rootfs))?;
        nix::unistd::pivot_root(".", ".").map_err(fail(Stage::Rootfs))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(fail(Stage::Rootfs))?;
        nix::unistd::chdir("/").map_err(fail(Stage::Rootfs))?;
        Ok(())
    }
}

/// `root/name` as a directory to mount on, resolved as it will be seen from inside the root:
/// a symlink there is followed with `openat2(RESOLVE_IN_ROOT)`, so `proc -> /srv` means the
/// root's own `/srv`, never the host's (resolved against the host's root before pivot_root,
/// captrace would mount on a host path and the workload would see whatever the link's author
/// placed at its /proc). A link that leads nowhere inside the root, or to the root itself, is
/// refused; a missing entry is created.
fn mount_point(root: &Path, name: &str) -> Result<PathBuf, (Stage, i32)> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
    use std::os::fd::AsRawFd as _;

    let path = root.join(name);
    let real_root = fs::canonicalize(root).map_err(io_fail(Stage::Mount))?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dir = open(&real_root, flags, nix::sys::stat::Mode::empty()).map_err(fail(Stage::Mount))?;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, name, how) {
        Ok(fd) => fd,
        // Nothing there at all: a directory of captrace's own. A link to nothing stays refused.
        Err(nix::errno::Errno::ENOENT) if fs::symlink_metadata(&path).is_err() => {
            return fs::create_dir(&path)
                .map(|()| path)
                .map_err(io_fail(Stage::Mount));
        }
        Err(nix::errno::Errno::ENOENT) => return Err((Stage::Mount, libc::ELOOP)),
        Err(e) => return Err((Stage::Mount, e as i32)),
    };
    // The directory the fd names, as a path captrace can mount on.
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(io_fail(Stage::Mount))?;
    if real == real_root || !real.starts_with(&real_root) {
        return Err((Stage::Mount, libc::ELOOP));
    }
    Ok(real)
}

fn mount_proc(target: &Path) -> StepResult {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), target, Some("proc"), flags, None::<&str>).map_err(fail(Stage::Mount))
}

/// `ip link set lo up`, with the SIOCSIFFLAGS ioctl.
fn loopback_up() -> Result<(), i32> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq whose name is NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(nix::errno::Errno::last_raw());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        let name = CString::new("lo").expect("no NUL");
        for (i, b) in name.as_bytes_with_nul().iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = nix::errno::Errno::last_raw();
        libc::close(fd);
        if rc != 0 { Err(err) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_lists() {
        let ns = NsSet::parse("pid,uts").unwrap();
        assert!(ns.pid && ns.uts && !ns.user && !ns.net);
        assert_eq!(
            ns.clone_flags(),
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS
        );
        let all = NsSet::parse("all").unwrap();
        assert!(all.user && all.pid && all.mnt && all.uts && all.ipc && all.net && all.cgroup);
        assert!(NsSet::parse("").unwrap().is_empty());
        let e = NsSet::parse("pid,time").unwrap_err();
        assert!(e.contains("unknown namespace \"time\""), "{e}");
    }

    #[test]
    fn maps_root_to_an_unprivileged_range() {
        let sb = Sandbox {
            userns_base: 100_000,
            userns_gid_base: None,
            ..Default::default()
        };
        assert_eq!(sb.id_map(), "0 100000 65536\n");
    }

    #[test]
    fn stages_round_trip() {
        for s in [
            Stage::Exec,
            Stage::Unshare,
            Stage::Rootfs,
            Stage::Privileges,
            Stage::Session,
        ] {
            assert_eq!(Stage::from_u8(s as u8), s);
        }
    }
}
