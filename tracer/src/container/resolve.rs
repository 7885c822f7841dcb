//! Attribution of a cgroup (v2 id, as the kernel programs see it) to its container: cgroup
//! path, runtime and id, name, and the container's init process. Everything here reads /proc,
//! the cgroup file system or runtime metadata, so it runs once per new cgroup and is cached.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    ContainerRef, Runtime, docker_name, own_cgroup2_mount, parse_cgroup_path, parse_proc_cgroup,
    parse_status,
};

/// No cgroup v2 hierarchy is mounted where captrace can see it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cgroup v2 is not mounted, and monitor tells containers apart by their cgroup v2 id: mount it (mount -t cgroup2 none /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host; in a pod, mount the host's /sys/fs/cgroup)"
)]
pub struct NoCgroup2;

/// Where the cgroup v2 hierarchy is mounted, checked with statfs: mountinfo still lists a
/// mount that another one hides.
pub fn cgroup2_root() -> Result<PathBuf, NoCgroup2> {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
    let root = own_cgroup2_mount().ok_or(NoCgroup2)?;
    match statfs(&root) {
        Ok(s) if s.filesystem_type() == CGROUP2_SUPER_MAGIC => Ok(root),
        _ => Err(NoCgroup2),
    }
}

/// Who a cgroup belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    #[serde(flatten)]
    pub container: ContainerRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The cgroup v2 path.
    pub cgroup: String,
    /// The runtime's own records confirm the container (docker's config on disk, `podman
    /// inspect`), or the cgroup claims no container (host, systemd). Any process that can make
    /// a cgroup can name it `docker/<64 hex>`: such an attribution is the path's word alone.
    pub verified: bool,
}

/// Whether `container` (named `name` by its runtime's records, if found) is confirmed.
pub fn verified(container: &ContainerRef, name: Option<&str>) -> bool {
    match container.runtime {
        Runtime::Host | Runtime::Systemd => true,
        Runtime::Docker | Runtime::Podman => name.is_some(),
        // containerd, CRI-O, Kubernetes and captrace's own: the cgroup path is all there is.
        Runtime::Containerd | Runtime::CriO | Runtime::Kubernetes => false,
    }
}

impl Attribution {
    /// `docker web (3f4e8a6c2b1d)`, `host`, `systemd nginx.service`.
    pub fn label(&self) -> String {
        let label = match (&self.name, self.container.short_id()) {
            (Some(n), Some(id)) if n != id => {
                format!("{} {n} ({id})", self.container.runtime.as_str())
            }
            _ => self.container.to_string(),
        };
        if self.verified {
            label
        } else {
            label + " (unverified)"
        }
    }
}

/// How long an attribution that may still change (a cgroup not found, a container whose
/// runtime has no record of it yet) is reused before it is looked up again: a hand-made
/// `docker/<hex>` cgroup must not cost a tree walk or a `podman inspect` at every refresh.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct Resolver {
    cgroup2: Option<PathBuf>,
    docker_root: PathBuf,
    /// Each attribution, and until when it holds (`None`: for good).
    cache: HashMap<u64, (Attribution, Option<Instant>)>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub fn new() -> Self {
        Resolver {
            cgroup2: own_cgroup2_mount(),
            docker_root: PathBuf::from("/var/lib/docker"),
            cache: HashMap::new(),
        }
    }

    /// The cgroup v2 path of a cgroup id: from a process known to be in it, else by walking
    /// the cgroup file system for the directory whose inode is the id.
    fn path_of(&self, cgroup_id: u64, pid: Option<u32>) -> Option<String> {
        if let Some(pid) = pid
            && let Some(path) = pid_cgroup_path(pid)
            && self.id_of_path(&path) == Some(cgroup_id)
        {
            return Some(path);
        }
        let root = self.cgroup2.as_ref()?;
        find_inode(root, root, cgroup_id, 0)
    }

    /// The cgroup id of a v2 path (the inode of its directory).
    pub fn id_of_path(&self, path: &str) -> Option<u64> {
        let dir = self.cgroup2.as_ref()?.join(path.trim_start_matches('/'));
        fs::metadata(dir).ok().map(|m| m.ino())
    }

    /// Cached attribution of `cgroup_id`; `pid` is a process seen in it, if any.
    pub fn resolve(&mut self, cgroup_id: u64, pid: Option<u32>) -> Attribution {
        let now = Instant::now();
        // A path not found is looked up again whenever a process of the cgroup is known: that
        // costs one read of /proc/PID/cgroup, not a walk of the tree.
        if let Some((a, until)) = self.cache.get(&cgroup_id)
            && until.is_none_or(|t| now < t)
            && !(pid.is_some() && a.cgroup.starts_with("cgroup-id:"))
        {
            return a.clone();
        }
        let cgroup = self
            .path_of(cgroup_id, pid)
            .unwrap_or_else(|| format!("cgroup-id:{cgroup_id}"));
        let container = parse_cgroup_path(&cgroup);
        let name = container_name(&self.docker_root, &container);
        let a = Attribution {
            verified: verified(&container, name.as_deref()),
            container,
            name,
            cgroup,
        };
        // Only a resolved path is final: a cgroup that could not be found may be found later,
        // and a container seen while its runtime is still creating it may not have its name on
        // disk yet. Those are kept for RETRY_AFTER.
        let named = a.name.is_some()
            || !matches!(a.container.runtime, Runtime::Docker | Runtime::Podman)
            || a.container.id.is_none();
        let until = (a.cgroup.starts_with("cgroup-id:") || !named).then(|| now + RETRY_AFTER);
        self.cache.insert(cgroup_id, (a.clone(), until));
        a
    }

    /// A resolver reading docker's records under `docker_root` (tests).
    pub fn with_docker_root(docker_root: PathBuf) -> Self {
        Resolver {
            docker_root,
            ..Self::new()
        }
    }

    /// The processes of a cgroup.
    pub fn procs(&self, path: &str) -> Vec<u32> {
        let Some(root) = &self.cgroup2 else {
            return Vec::new();
        };
        fs::read_to_string(root.join(path.trim_start_matches('/')).join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The container's init: the process that is PID 1 in its PID namespace, else the oldest.
    pub fn init_pid(&self, path: &str) -> Option<u32> {
        let procs = self.procs(path);
        procs
            .iter()
            .copied()
            .find(|p| status(*p).and_then(|s| s.inner_pid()) == Some(1))
            .or_else(|| procs.iter().copied().min())
    }
}

/// `/proc/PID/status`, parsed.
pub fn status(pid: u32) -> Option<super::ProcStatus> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .map(|s| parse_status(&s))
}

/// The cgroup v2 path of a process.
pub fn pid_cgroup_path(pid: u32) -> Option<String> {
    parse_proc_cgroup(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The cgroup v2 path of a process (the `0::` line), whatever v1 hierarchies it is also in:
/// the path whose id `bpf_get_current_cgroup_id` returns.
pub fn pid_cgroup2_path(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.strip_suffix(" (deleted)").unwrap_or(p).to_string())
}

/// Namespace inode numbers of a process (`pid`, `mnt`, `user`, `net`).
pub fn namespaces(pid: u32) -> BTreeMap<String, u64> {
    ["pid", "mnt", "user", "net"]
        .iter()
        .filter_map(|ns| {
            let link = fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()?;
            let text = link.to_string_lossy().into_owned();
            let inode = text
                .split_once(":[")?
                .1
                .trim_end_matches(']')
                .parse()
                .ok()?;
            Some((ns.to_string(), inode))
        })
        .collect()
}

fn find_inode(root: &Path, dir: &Path, inode: u64, depth: usize) -> Option<String> {
    if depth > 16 {
        return None;
    }
    if fs::metadata(dir).ok()?.ino() == inode {
        let rel = dir.strip_prefix(root).ok()?;
        return Some(format!("/{}", rel.display()));
    }
    for entry in fs::read_dir(dir).ok()?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(found) = find_inode(root, &entry.path(), inode, depth + 1)
        {
            return Some(found);
        }
    }
    None
}

/// The name the runtime gave the container: docker's on-disk config, or `podman inspect`.
fn container_name(docker_root: &Path, c: &ContainerRef) -> Option<String> {
    let id = c.id.as_deref()?;
    match c.runtime {
        Runtime::Docker => docker_name(docker_root, id),
        Runtime::Podman => inspect("podman", id).map(|i| i.name),
        Runtime::Containerd => Some(id.to_string()),
        _ => None,
    }
}

/// A running container as its runtime describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub id: String,
    pub name: String,
    pub pid: u32,
}

/// Asks a runtime's CLI about a container by id or name.
pub fn inspect(runtime: &str, id_or_name: &str) -> Option<Inspected> {
    let out = Command::new(runtime)
        .args([
            "inspect",
            "--format",
            "{{.Id}} {{.Name}} {{.State.Pid}}",
            id_or_name,
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_inspect(&String::from_utf8_lossy(&out.stdout))
}

/// `<id> <name> <pid>` as the inspect format above prints it (docker prefixes names with /).
pub fn parse_inspect(text: &str) -> Option<Inspected> {
    let mut it = text.split_whitespace();
    let id = it.next()?.to_string();
    let name = it.next()?.trim_start_matches('/').to_string();
    let pid = it.next()?.parse().ok().filter(|p| *p > 0)?;
    Some(Inspected { id, name, pid })
}

/// Finds a running container by id or name with docker, then podman.
pub fn find_container(id_or_name: &str) -> Option<Inspected> {
    ["docker", "podman"]
        .iter()
        .find_map(|rt| inspect(rt, id_or_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inspect_output() {
        let id = "3f4e8a6c2b1d".repeat(5) + "abcd";
        let i = parse_inspect(&format!("{id} /web 4567\n")).unwrap();
        assert_eq!(
            i,
            Inspected {
                id,
                name: "web".into(),
                pid: 4567
            }
        );
        assert_eq!(parse_inspect("abc /stopped 0"), None);
        assert_eq!(parse_inspect(""), None);
    }

    #[test]
    fn resolves_this_process_cgroup() {
        let r = Resolver::new();
        let path = pid_cgroup_path(std::process::id()).expect("this process has a cgroup");
        if let Some(id) = r.id_of_path(&path) {
            let root = r.cgroup2.clone().unwrap();
            assert_eq!(
                find_inode(&root, &root, id, 0).as_deref(),
                Some(path.as_str())
            );
        }
        assert!(namespaces(std::process::id()).contains_key("pid"));
    }

    #[test]
    fn a_docker_path_without_docker_records_is_unverified() {
        let id = "ab".repeat(32);
        let c = parse_cgroup_path(&format!("/docker/{id}"));
        assert_eq!(c.runtime, Runtime::Docker);
        assert!(!verified(&c, None));
        assert!(verified(&c, Some("web")));
        assert!(verified(&parse_cgroup_path("/"), None));
        let a = Attribution {
            container: c,
            name: None,
            cgroup: format!("/docker/{id}"),
            verified: false,
        };
        assert!(a.label().ends_with(" (unverified)"), "{}", a.label());
    }

    #[test]
    fn an_unresolvable_cgroup_is_cached_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Resolver::with_docker_root(dir.path().to_path_buf());
        let missing = u64::MAX - 7;
        let a = r.resolve(missing, None);
        assert_eq!(a.cgroup, format!("cgroup-id:{missing}"));
        let (_, until) = r.cache.get(&missing).expect("cached");
        let until = until.expect("for RETRY_AFTER, not for good");
        assert!(until > Instant::now() + RETRY_AFTER - Duration::from_secs(5));
        // Served from the cache: no second walk of the cgroup tree.
        assert_eq!(r.resolve(missing, None).cgroup, a.cgroup);
    }
}
