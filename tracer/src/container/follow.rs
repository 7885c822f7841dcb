//! Containers a recorded command starts (`record -- docker run ...`). The container is started
//! by dockerd, containerd or conmon, not by the recorded client, so it is followed by cgroup:
//! the kernel counts every thread outside captrace's own cgroup by its cgroup id from the
//! start (`Config::follow_cgroups`), and this module tells which of those cgroups are
//! containers created during the recording, names them while they run (`docker run --rm`
//! removes the name from disk at exit), and says when they are gone.
use std::{
    collections::{BTreeMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::Command,
};

use tracer_common::CGROUP_WORKLOAD;

use super::{
    Runtime, docker_config,
    resolve::{self, Attribution, Resolver},
};

/// Command names of container clients: recording one follows the containers it starts.
pub const CLIENTS: &[&str] = &[
    "docker",
    "podman",
    "nerdctl",
    "docker-compose",
    "podman-compose",
    "ctr",
];

/// Whether `argv0` names a container client (by its file name).
pub fn is_client(argv0: &str) -> bool {
    let name = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    CLIENTS.contains(&name)
}

/// A container seen during the recording.
#[derive(Clone, Debug)]
pub struct Followed {
    /// Its workload id in the kernel maps (`CGROUP_WORKLOAD | cgroup id`).
    pub workload: u64,
    pub attribution: Attribution,
    pub image: Option<String>,
    /// The compose service that started it.
    pub service: Option<String>,
    /// CapEff of its init, read while it ran (the workload's, never the runtime's init).
    pub granted: Option<u64>,
}

pub struct Follower {
    resolver: Resolver,
    /// Cgroups that existed before the recording: containers already running are not followed.
    existing: HashSet<u64>,
    /// Workload → the container, or None for a cgroup that is no new container.
    seen: BTreeMap<u64, Option<Followed>>,
}

impl Follower {
    /// Notes the cgroups that exist now; returns it with captrace's own cgroup id, which the
    /// kernel programs must leave to the per-process tracking.
    pub fn start() -> anyhow::Result<(Follower, u64)> {
        let root = resolve::cgroup2_root()?;
        let resolver = Resolver::new();
        let own = resolve::pid_cgroup2_path(std::process::id())
            .and_then(|p| resolver.id_of_path(&p))
            .ok_or_else(|| anyhow::anyhow!("cannot find captrace's own cgroup v2 id"))?;
        let mut existing = HashSet::new();
        walk_ids(&root, 0, &mut existing);
        Ok((
            Follower {
                resolver,
                existing,
                seen: BTreeMap::new(),
            },
            own,
        ))
    }

    /// A check or namespace call of `workload` made by process `pid`: resolves its cgroup the
    /// first time, while the container still runs.
    pub fn observe(&mut self, workload: u64, pid: u32) {
        if workload & CGROUP_WORKLOAD == 0 || matches!(self.seen.get(&workload), Some(Some(_))) {
            return;
        }
        let id = workload & !CGROUP_WORKLOAD;
        if self.existing.contains(&id) {
            self.seen.insert(workload, None);
            return;
        }
        let a = self.resolver.resolve(id, Some(pid));
        if a.cgroup.starts_with("cgroup-id:") {
            // Gone before it could be named: try again on its next event.
            return;
        }
        if !a.container.is_container() {
            self.seen.insert(workload, None);
            return;
        }
        let cid = a.container.id.clone().unwrap_or_default();
        let (image, service) = match a.container.runtime {
            Runtime::Docker => docker_config(Path::new("/var/lib/docker"), &cid)
                .map(|c| (c.image, c.service))
                .unwrap_or_default(),
            Runtime::Podman => (podman_image(&cid), None),
            _ => (None, None),
        };
        self.seen.insert(
            workload,
            Some(Followed {
                workload,
                attribution: a,
                image,
                service,
                granted: None,
            }),
        );
    }

    /// Reads the effective set of each running container's init (once it is the workload:
    /// the runtime's init still holds the runtime's privileges). `is_runtime(pid, name)` is
    /// the kernel's verdict (`Tracer::is_runtime_task`), not the name alone.
    pub fn refresh(&mut self, is_runtime: impl Fn(u32, &str) -> bool) {
        for f in self.seen.values_mut().flatten() {
            if let Some(pid) = self.resolver.init_pid(&f.attribution.cgroup)
                && let Some(status) = resolve::status(pid)
                && !is_runtime(pid, status.name.as_deref().unwrap_or_default())
                && let Some(eff) = status.cap_eff
            {
                f.granted = Some(eff);
            }
        }
    }

    /// The containers followed, in the order of their workload ids.
    pub fn containers(&self) -> Vec<Followed> {
        self.seen.values().flatten().cloned().collect()
    }

    /// Followed containers that still have processes.
    pub fn running(&self) -> Vec<Followed> {
        self.seen
            .values()
            .flatten()
            .filter(|f| !self.resolver.procs(&f.attribution.cgroup).is_empty())
            .cloned()
            .collect()
    }
}

/// Every cgroup id (directory inode) under `dir`.
fn walk_ids(dir: &Path, depth: usize, out: &mut HashSet<u64>) {
    if depth > 16 {
        return;
    }
    if let Ok(m) = fs::metadata(dir) {
        out.insert(m.ino());
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk_ids(&entry.path(), depth + 1, out);
        }
    }
}

fn podman_image(id: &str) -> Option<String> {
    let out = Command::new("podman")
        .args(["inspect", "--format", "{{.ImageName}}", id])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !image.is_empty()).then_some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_clients_are_known_by_file_name() {
        assert!(is_client("docker"));
        assert!(is_client("/usr/bin/podman"));
        assert!(is_client("docker-compose"));
        assert!(!is_client("dockerd"));
        assert!(!is_client("/usr/bin/docker-init"));
        assert!(!is_client("sh"));
    }
}
