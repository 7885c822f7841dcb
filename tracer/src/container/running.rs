//! A container named on the command line (`--container ID|NAME`) as the kernel knows it: the
//! id of its cgroup v2 (what `monitor` filters and `enforce` confines by) and that cgroup's
//! directory.
use std::path::PathBuf;

use anyhow::Context as _;

use super::resolve::{self, Resolver};

/// No running docker or podman container has that id or name (bad usage: exit 2).
#[derive(Debug, thiserror::Error)]
#[error("no running docker or podman container {0:?}")]
pub struct NotRunning(pub String);

/// The cgroup id of a running docker or podman container.
pub fn container_cgroup(id_or_name: &str) -> anyhow::Result<(u64, resolve::Inspected)> {
    resolve::cgroup2_root()?;
    let found =
        resolve::find_container(id_or_name).ok_or_else(|| NotRunning(id_or_name.to_owned()))?;
    let path = resolve::pid_cgroup_path(found.pid).with_context(|| {
        format!(
            "reading the cgroup of container {id_or_name} (PID {})",
            found.pid
        )
    })?;
    let id = Resolver::new().id_of_path(&path).with_context(|| {
        format!("container {id_or_name} is in cgroup {path}, which has no cgroup v2 directory")
    })?;
    Ok((id, found))
}

/// The directory of a cgroup v2 path (for noticing that the cgroup is gone).
pub fn cgroup_dir(path: &str) -> PathBuf {
    super::own_cgroup2_mount()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
        .join(path.trim_start_matches('/'))
}
