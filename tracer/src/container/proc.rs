//! Parsers for the `/proc` text attribution needs (a task's cgroups, its status, the mounts),
//! and the few live reads of a process `enforce` needs.
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The v1 controllers whose path is used when the v2 one says nothing, in order of preference.
const V1_CONTROLLERS: [&str; 3] = ["name=systemd", "pids", "memory"];

/// The cgroup path that says the most about a task, from the text of `/proc/PID/cgroup`.
///
/// The `0::` (cgroup v2) line when it is not `/`. Otherwise (v1-only hosts, and hybrid hosts
/// like this project's where nothing manages the v2 tree) the deepest path among the
/// `name=systemd`, `pids` and `memory` lines; on equal depth the first in that order: systemd's
/// named hierarchy mirrors its units, and every runtime puts a container in pids and memory.
/// Then the deepest of any other controller, then the v2 `/`. `None` when no line parses.
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    let mut v2 = None;
    let mut preferred: [Option<&str>; 3] = [None; 3];
    let mut other: Option<&str> = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // proc_cgroup_show() appends " (deleted)" to the path of a removed cgroup.
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if hierarchy.is_empty()
            || !hierarchy.bytes().all(|b| b.is_ascii_digit())
            || !path.starts_with('/')
        {
            continue;
        }
        if hierarchy == "0" && controllers.is_empty() {
            v2 = Some(path);
            continue;
        }
        let mut is_preferred = false;
        for controller in controllers.split(',') {
            if let Some(i) = V1_CONTROLLERS.iter().position(|c| *c == controller) {
                preferred[i].get_or_insert(path);
                is_preferred = true;
            }
        }
        if !is_preferred {
            other = deeper(other, path);
        }
    }
    if let Some(path) = v2.filter(|p| *p != "/") {
        return Some(path.to_owned());
    }
    let v1 = preferred
        .iter()
        .flatten()
        .fold(None, |best, path| deeper(best, path));
    v1.filter(|p| *p != "/")
        .or(other.filter(|p| *p != "/"))
        .or(v2)
        .or(v1)
        .or(other)
        .map(str::to_owned)
}

/// `path` if it has more levels than `best`; ties keep `best`.
fn deeper<'a>(best: Option<&'a str>, path: &'a str) -> Option<&'a str> {
    let depth = |p: &str| p.split('/').filter(|c| !c.is_empty()).count();
    match best {
        Some(b) if depth(b) >= depth(path) => Some(b),
        _ => Some(path),
    }
}

/// What attribution needs from `/proc/PID/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub name: Option<String>,
    /// Real uid (the first of `Uid:`).
    pub uid: Option<u32>,
    /// Effective capabilities (`CapEff:`), bit N for capability N.
    pub cap_eff: Option<u64>,
    /// `NSpid:`: the PID in each PID namespace from the reader's (the procfs mount's) down to
    /// the task's own. `4567 1` is a container's init: 4567 on the host, 1 inside.
    pub nspid: Vec<u32>,
}

impl ProcStatus {
    /// The PID as the procfs that was read sees it: the host PID when that is the host's /proc.
    pub fn host_pid(&self) -> Option<u32> {
        self.nspid.first().copied()
    }

    /// The PID inside the task's own (innermost) PID namespace.
    pub fn inner_pid(&self) -> Option<u32> {
        self.nspid.last().copied()
    }
}

/// Parses the text of `/proc/PID/status`; lines that do not parse are skipped. Hand-written
/// rather than procfs-core's `Status` (0.18), which cuts a name at its first colon (a runtime's
/// `runc:[2:INIT]` became `runc`), trims names, and refuses a status without any of ~20
/// fields this does not need.
pub fn parse_status(text: &str) -> ProcStatus {
    let mut status = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            // The name may contain spaces: only the tab after the colon is a separator.
            "Name" => {
                status.name = Some(
                    value
                        .strip_prefix('\t')
                        .unwrap_or(value.trim_start())
                        .to_owned(),
                )
            }
            "Uid" => {
                if let Some(uid) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    status.uid = Some(uid);
                }
            }
            "CapEff" => {
                if let Ok(caps) = u64::from_str_radix(value.trim(), 16) {
                    status.cap_eff = Some(caps);
                }
            }
            "NSpid" => {
                if let Ok(pids) = value
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
                {
                    status.nspid = pids;
                }
            }
            _ => {}
        }
    }
    status
}

/// One line of `/proc/PID/mountinfo`: what attribution and `doctor` need of a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The directory of the file system that is the root of this mount (`/` for all of it).
    pub root: OsString,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// The mounts listed in the text of a `mountinfo` file, in order; lines that do not parse are
/// skipped. Hand-written rather than procfs-core's `MountInfos` (0.18), which leaves the octal
/// escapes in mount points (`/mnt/my\040cgroup`) and fails the whole file on one bad line.
pub fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount> + '_ {
    mountinfo.lines().filter_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
        Some(Mount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: (*fields.get(dash + 1)?).to_owned(),
        })
    })
}

/// Where the cgroup v2 hierarchy is mounted, from the text of `/proc/self/mountinfo`:
/// `/sys/fs/cgroup` on most distributions, `/sys/fs/cgroup/unified` on hybrid hosts. A mount
/// of the hierarchy's root (`/` in the fourth field) wins over a bind mount of a sub-tree.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for mount in mounts(mountinfo).filter(|m| m.fstype == "cgroup2") {
        if mount.root == "/" {
            return Some(mount.mount_point);
        }
        subtree.get_or_insert(mount.mount_point);
    }
    subtree
}

/// [`cgroup2_mount`] of captrace's own mount namespace (`/proc/self/mountinfo`).
pub fn own_cgroup2_mount() -> Option<PathBuf> {
    cgroup2_mount(&fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// Undoes mountinfo's octal escapes (`\040` for a space: show_mountinfo() uses mangle_path).
fn unescape(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'))) {
            Some(n) if n <= 0xff => {
                out.push(n as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// Whether thread `tid` is running (not exited, not a zombie waiting to be reaped).
pub fn alive(tid: u32) -> bool {
    fs::read_to_string(format!("/proc/{tid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// The command name of `pid` (`/proc/PID/comm`), empty if it is gone.
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerRef, Runtime, parse_cgroup_path};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/cgroups/",
                $name
            ))
        };
    }
    const ID: &str = "3f4e8a6c2b1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";

    #[test]
    fn proc_cgroup_v2_only_host() {
        let path = parse_proc_cgroup(fixture!("proc-cgroup-v2-kubernetes.txt")).expect("v2 path");
        assert_eq!(
            path,
            format!(
                "/kubepods.slice/kubepods-burstable.slice/\
                 kubepods-burstable-pod0b8a4f5e_7c21_4d3a_9e6f_1a2b3c4d5e6f.slice/cri-containerd-{ID}.scope"
            )
        );
        let r = parse_cgroup_path(&path);
        assert_eq!(
            (r.runtime, r.id.as_deref()),
            (Runtime::Kubernetes, Some(ID))
        );
        assert_eq!(
            r.pod_uid.as_deref(),
            Some("0b8a4f5e-7c21-4d3a-9e6f-1a2b3c4d5e6f")
        );
        assert_eq!(parse_proc_cgroup("0::/\n").as_deref(), Some("/"));
    }

    #[test]
    fn proc_cgroup_hybrid_hosts() {
        // This project's host: nothing in v2, name=systemd at /, memory deeper.
        assert_eq!(
            parse_proc_cgroup(fixture!("proc-cgroup-hybrid.txt")).as_deref(),
            Some("/process_api/0b2fdb54d9e40c53a569a72fc467235a")
        );
        // docker under this host's dockerd: every v1 controller at /docker/<id>, v2 at /.
        let path = parse_proc_cgroup(fixture!("proc-cgroup-hybrid-docker.txt")).expect("v1 path");
        assert_eq!(
            parse_cgroup_path(&path),
            ContainerRef {
                id: Some(ID.into()),
                ..ContainerRef::new(Runtime::Docker)
            }
        );
        // Ubuntu 20.04 with systemd: the v2 line mirrors the unit and is taken as is.
        let path = parse_proc_cgroup(fixture!("proc-cgroup-hybrid-systemd.txt")).expect("v2 path");
        assert_eq!(path, format!("/system.slice/docker-{ID}.scope"));
        // Read live: whatever this host is, the answer is an absolute path.
        let live = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
        let path = parse_proc_cgroup(&live).expect("a path for this process");
        assert!(path.starts_with('/'), "{path:?} from {live:?}");
    }

    #[test]
    fn proc_cgroup_v1_only_host() {
        let path = parse_proc_cgroup(fixture!("proc-cgroup-v1-kubernetes.txt")).expect("v1 path");
        assert_eq!(
            path,
            format!("/kubepods/besteffort/pod0b8a4f5e-7c21-4d3a-9e6f-1a2b3c4d5e6f/{ID}")
        );
        // Ties go to name=systemd, then pids, then memory; deeper wins over the order.
        assert_eq!(
            parse_proc_cgroup("3:memory:/m\n2:pids:/p\n1:name=systemd:/s\n").as_deref(),
            Some("/s")
        );
        assert_eq!(
            parse_proc_cgroup("3:memory:/m\n2:pids:/p\n").as_deref(),
            Some("/p")
        );
        assert_eq!(
            parse_proc_cgroup("3:memory:/a/b\n1:name=systemd:/s\n").as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            parse_proc_cgroup("4:cpu,cpuacct:/x/y\n3:memory:/\n0::/\n").as_deref(),
            Some("/x/y")
        );
        assert_eq!(
            parse_proc_cgroup("3:memory:/\n1:name=systemd:/\n").as_deref(),
            Some("/")
        );
    }

    #[test]
    fn proc_cgroup_malformed() {
        for text in [
            "",
            "\n\n",
            "garbage",
            "x:y",
            "a:memory:/x",
            "0::relative",
            ":memory:/x",
            "\0\u{fffd}:::",
        ] {
            assert_eq!(parse_proc_cgroup(text), None, "{text:?}");
        }
        assert_eq!(
            parse_proc_cgroup("junk\n5:memory:/docker/x (deleted)\n::").as_deref(),
            Some("/docker/x")
        );
    }

    #[test]
    fn status_crafted_and_live() {
        let text = "Name:\tweb worker\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4567\nPid:\t4567\n\
                    PPid:\t4500\nUid:\t1000\t1001\t1002\t1003\nGid:\t1000\t1000\t1000\t1000\n\
                    NStgid:\t4567\t1\nNSpid:\t4567\t1\nCapInh:\t0000000000000000\n\
                    CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n";
        let status = parse_status(text);
        assert_eq!(
            status,
            ProcStatus {
                name: Some("web worker".into()),
                uid: Some(1000),
                cap_eff: Some(0xa80425fb),
                nspid: vec![4567, 1]
            }
        );
        assert_eq!(
            (status.host_pid(), status.inner_pid()),
            (Some(4567), Some(1))
        );

        let bad = "Name\nUid:\tx\t0\nCapEff:\tzz\nNSpid:\t45x\t1\n:::\n\0garbage";
        assert_eq!(parse_status(bad), ProcStatus::default());
        assert_eq!(parse_status("").inner_pid(), None);

        let live = parse_status(
            &std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status"),
        );
        assert!(
            live.name.as_deref().is_some_and(|n| !n.is_empty()),
            "{live:?}"
        );
        assert_eq!(live.uid, Some(nix::unistd::getuid().as_raw()));
        assert_eq!(live.host_pid(), Some(std::process::id()));
        assert!(live.cap_eff.is_some(), "{live:?}");
    }

    #[test]
    fn names_keep_their_colons_and_spaces() {
        let status = parse_status("Name:\trunc:[2:INIT]\nUid:\t0\t0\t0\t0\n");
        assert_eq!(status.name.as_deref(), Some("runc:[2:INIT]"));
        assert_eq!(status.uid, Some(0));
        let status = parse_status("Name:\t a b \n");
        assert_eq!(status.name.as_deref(), Some(" a b "));
    }

    #[test]
    fn mounts_are_listed_unescaped_and_bad_lines_skipped() {
        let text = "bad line\n\
            22 1 0:21 / /sys/kernel/tracing rw - tracefs tracefs rw\n\
            23 1 0:22 /sub /mnt/a\\040b rw shared:1 - ext4 /dev/x rw\n";
        let found: Vec<Mount> = mounts(text).collect();
        assert_eq!(
            found,
            vec![
                Mount {
                    root: "/".into(),
                    mount_point: "/sys/kernel/tracing".into(),
                    fstype: "tracefs".into(),
                },
                Mount {
                    root: "/sub".into(),
                    mount_point: "/mnt/a b".into(),
                    fstype: "ext4".into(),
                },
            ]
        );
    }

    #[test]
    fn cgroup2_mount_crafted() {
        let mounts = fixture!("mountinfo.txt");
        assert_eq!(cgroup2_mount(mounts), Some(PathBuf::from("/sys/fs/cgroup")));
        // Only a bind mount of a sub-tree (a container without a cgroup namespace), escaped.
        let subtree =
            "1 0 0:29 /docker/abc /mnt/my\\040cgroup rw shared:1 master:2 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(subtree),
            Some(PathBuf::from("/mnt/my cgroup"))
        );
        // v1 only, and garbage.
        assert_eq!(
            cgroup2_mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
        assert_eq!(cgroup2_mount("- cgroup2\n1 2 - cgroup2\n\\\\\\0\n"), None);
        assert_eq!(
            unescape("a\\134b\\0\\999\\"),
            OsString::from("a\\b\\0\\999\\")
        );
    }

    #[test]
    #[ignore = "needs a cgroup2 mount on this host (cargo xtask test runs it)"]
    fn finds_this_hosts_cgroup2_mount() {
        let mount = own_cgroup2_mount().expect("a cgroup2 mount on this host");
        assert!(
            mount.join("cgroup.procs").exists(),
            "{mount:?} is not a cgroup2 root"
        );
    }
}
