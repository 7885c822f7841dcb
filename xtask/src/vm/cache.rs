//! Where the VM's downloads live: outside the clone, so that CI (a fresh clone each time) and
//! every worktree share one copy of the kernels (about 850 MB unpacked) instead of fetching them
//! again. Layout: `apt/<release>/` (private apt lists and archives), `kernels/<release>/` (the
//! extracted packages and the unpacked `vmlinux`), `initramfs-<release>.cpio.gz` (+ `.stamp`).
//!
//! What belongs to one run (the guests' consoles and job shares) stays under the clone's
//! `target/vm`, so that runs from two clones never write the same file.
use std::{ffi::OsString, fs, path::PathBuf};

use anyhow::Context as _;

use crate::cmd;

/// Environment variable naming the cache directory.
pub const ENV: &str = "CAPTRACE_VM_CACHE";

/// The cache directory when `CAPTRACE_VM_CACHE` is unset or empty.
pub const DEFAULT_DIR: &str = "/var/cache/captrace/vm";

/// The cache directory (created if missing).
pub fn dir() -> anyhow::Result<PathBuf> {
    let dir = choose(std::env::var_os(ENV));
    fs::create_dir_all(&dir).with_context(|| {
        format!(
            "creating the VM cache {} (set {ENV} to another directory)",
            dir.display()
        )
    })?;
    Ok(dir)
}

fn choose(env: Option<OsString>) -> PathBuf {
    env.filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// The directory of this clone's runs: consoles (`<kernel>.log`) and job shares.
pub fn runs_dir() -> anyhow::Result<PathBuf> {
    let dir = cmd::workspace_root().join("target/vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn defaults_outside_the_clone() {
        assert_eq!(choose(None), Path::new(DEFAULT_DIR));
        assert_eq!(choose(Some("".into())), Path::new(DEFAULT_DIR));
        assert_eq!(choose(Some("/tmp/c".into())), Path::new("/tmp/c"));
    }
}
