//! Container attribution: which container (or systemd unit, or the host) a task belongs to.
//!
//! The kernel gives `captrace monitor` the cgroup v2 id and host PID of each capability check;
//! everything here turns the text the kernel and the runtimes leave behind (`/proc/PID/cgroup`,
//! `/proc/PID/status`, `/proc/self/mountinfo`, docker's `config.v2.json`) into a [`ContainerRef`].
//! The parsers are pure (inputs come in as strings or injected paths, so they are tested without
//! root); `resolve` and `running` read the live system and ask `docker`/`podman inspect`, and
//! `follow` watches the runtimes' events.
mod cgroup;
pub mod follow;
mod proc;
pub mod resolve;
mod running;
pub mod runtime_exe;
pub mod sets;

use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use cgroup::parse_cgroup_path;
pub use proc::{
    Mount, ProcStatus, alive, cgroup2_mount, comm, mounts, own_cgroup2_mount, parse_proc_cgroup,
    parse_status,
};
pub use running::{NotRunning, cgroup_dir, container_cgroup};

/// Who manages the cgroup a task is in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Podman,
    /// containerd itself (`ctr`, nerdctl, or CRI outside a Kubernetes pod cgroup).
    Containerd,
    CriO,
    /// Any container under a `kubepods` cgroup, whichever CRI engine runs it.
    Kubernetes,
    /// A systemd service or scope that is not a container.
    Systemd,
    /// The root cgroup, `init.scope`, login sessions, and any path no rule recognises.
    Host,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "crio",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Systemd => "systemd",
            Runtime::Host => "host",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cgroup path says about the workload in it.
///
/// `id: None` with a container runtime means the cgroup is in that runtime's tree but is not one
/// container: podman's or CRI-O's `conmon` monitor, a pod or QoS cgroup, docker's `/docker` itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The full 64-hex container id; for containerd and captrace (which have no such id), the
    /// container's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Kubernetes pod UID, with dashes (systemd slice names carry it with underscores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The systemd service or scope the workload runs in, when systemd manages its cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// containerd namespace (`k8s.io` for everything the CRI plugin starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kubernetes QoS class: `guaranteed`, `burstable` or `besteffort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
}

impl ContainerRef {
    pub fn new(runtime: Runtime) -> Self {
        ContainerRef {
            runtime,
            id: None,
            pod_uid: None,
            unit: None,
            namespace: None,
            qos: None,
        }
    }

    pub fn host() -> Self {
        Self::new(Runtime::Host)
    }

    /// A workload in a container (or pod) rather than on the host or in a plain systemd unit.
    pub fn is_container(&self) -> bool {
        !matches!(self.runtime, Runtime::Host | Runtime::Systemd) && self.id.is_some()
    }

    /// The 12-character id `docker ps` shows. Names (containerd, captrace) are returned whole:
    /// cutting a name does not make it unique.
    pub fn short_id(&self) -> Option<&str> {
        let id = self.id.as_deref()?;
        Some(if is_hex64(id) { &id[..12] } else { id })
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.runtime.as_str())?;
        if let Some(ns) = &self.namespace {
            write!(f, ":{ns}")?;
        }
        if let Some(pod) = &self.pod_uid {
            write!(f, ":pod{pod}")?;
        }
        match (self.short_id(), &self.unit) {
            (Some(id), _) => write!(f, ":{id}"),
            (None, Some(unit)) => write!(f, ":{unit}"),
            (None, None) => Ok(()),
        }
    }
}

/// The name docker gave a container, from `<data_root>/containers/<id>/config.v2.json`
/// (`data_root` is `/var/lib/docker` unless dockerd runs with `--data-root`). `None` when the
/// id is not a full 64-hex id, the file is missing or unreadable, or has no `Name`.
pub fn docker_name(data_root: &Path, id: &str) -> Option<String> {
    docker_config(data_root, id).and_then(|c| c.name)
}

/// What docker's on-disk config says of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub name: Option<String>,
    pub image: Option<String>,
    /// The compose service (label `com.docker.compose.service`), if compose started it.
    pub service: Option<String>,
}

/// `<data_root>/containers/<id>/config.v2.json`, read without asking the daemon (it is there
/// from `create` until the container is removed).
pub fn docker_config(data_root: &Path, id: &str) -> Option<DockerConfig> {
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "Image", default)]
        image: Option<String>,
        #[serde(rename = "Labels", default)]
        labels: Option<std::collections::HashMap<String, String>>,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Config", default)]
        config: Option<Inner>,
    }
    // The id becomes a path component: anything but 64 hex could walk out of the directory.
    if !is_hex64(id) {
        return None;
    }
    let path = data_root.join("containers").join(id).join("config.v2.json");
    let config: Config = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let name = config.name.strip_prefix('/').unwrap_or(&config.name);
    let inner = config.config;
    Some(DockerConfig {
        name: (!name.is_empty()).then(|| name.to_owned()),
        image: inner.as_ref().and_then(|c| c.image.clone()),
        service: inner
            .and_then(|c| c.labels)
            .and_then(|mut l| l.remove("com.docker.compose.service")),
    })
}

/// A full container id as docker, podman, containerd's CRI plugin and CRI-O write them.
fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a6c2b1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";

    #[test]
    fn short_id_cuts_hex_ids_only() {
        let mut r = ContainerRef::new(Runtime::Docker);
        assert_eq!(r.short_id(), None);
        r.id = Some(ID.into());
        assert_eq!(r.short_id(), Some("3f4e8a6c2b1d"));
        r.id = Some("a-long-containerd-name".into());
        assert_eq!(r.short_id(), Some("a-long-containerd-name"));
    }

    #[test]
    fn serializes_lower_case_and_skips_empty_fields() {
        let mut r = ContainerRef::new(Runtime::CriO);
        r.id = Some(ID.into());
        let json = serde_json::to_string(&r).expect("serialize");
        assert_eq!(json, format!(r#"{{"runtime":"crio","id":"{ID}"}}"#));
        assert_eq!(
            serde_json::from_str::<ContainerRef>(&json).expect("deserialize"),
            r
        );
        assert_eq!(r.to_string(), "crio:3f4e8a6c2b1d");
        assert!(r.is_container());
        assert!(!ContainerRef::host().is_container());
    }

    #[test]
    fn docker_name_reads_config_v2() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("containers").join(ID);
        fs::create_dir_all(&dir).expect("mkdir");
        // Trimmed from a real config.v2.json written by docker 20.10.
        let config = format!(
            r#"{{"StreamConfig":{{}},"State":{{"Running":true,"Pid":4567}},"ID":"{ID}",
               "Created":"2024-05-01T10:00:00Z","Path":"sh","Args":["-c","sleep 1000"],
               "Config":{{"Hostname":"3f4e8a6c2b1d","Image":"bb"}},"Name":"/admiring_turing",
               "Driver":"overlay2","RestartCount":0}}"#
        );
        fs::write(dir.join("config.v2.json"), config).expect("write config");
        assert_eq!(
            docker_name(root.path(), ID).as_deref(),
            Some("admiring_turing")
        );
        let c = docker_config(root.path(), ID).unwrap();
        assert_eq!(c.image.as_deref(), Some("bb"));
        assert_eq!(c.service, None);
        fs::write(
            dir.join("config.v2.json"),
            r#"{"Name":"/p_web_1","Config":{"Image":"bb:latest","Labels":{"com.docker.compose.service":"web"}}}"#,
        )
        .expect("write");
        let c = docker_config(root.path(), ID).unwrap();
        assert_eq!(c.service.as_deref(), Some("web"));
        assert_eq!(c.name.as_deref(), Some("p_web_1"));

        let other = ID.replace('3', "4");
        assert_eq!(docker_name(root.path(), &other), None, "no such container");
        assert_eq!(docker_name(root.path(), "../../etc"), None, "not an id");
        fs::write(dir.join("config.v2.json"), "{not json").expect("write");
        assert_eq!(docker_name(root.path(), ID), None, "corrupt config");
        fs::write(dir.join("config.v2.json"), r#"{"Name":"/"}"#).expect("write");
        assert_eq!(docker_name(root.path(), ID), None, "empty name");
    }
}
