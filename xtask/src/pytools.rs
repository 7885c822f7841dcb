//! Python tools the tests use, from PyPI, in a virtual environment of their own under the
//! target directory (`target/tools/py`): Debian's Python stays untouched (no
//! `--break-system-packages`), and a second run finds the tools and installs nothing.
use std::{path::PathBuf, process::Command};

use crate::cmd::{self, succeeds};

/// (package, version constraint, a command it installs that answers `--version`).
const TOOLS: &[(&str, &str, &str)] = &[("kubernetes-validate", ">=1.31,<2", "kubernetes-validate")];

/// `target/tools/py` (or under `$CARGO_TARGET_DIR`): the tests look for the tools there.
pub fn venv() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::workspace_root().join("target"))
        .join("tools/py")
}

pub fn install() -> anyhow::Result<()> {
    let venv = venv();
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        // Debian's python3 (pyenv's shim on PATH is for root's interactive use).
        cmd::run(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
        )?;
    }
    for (package, version, command) in TOOLS {
        if succeeds(Command::new(bin.join(command)).arg("--version")) {
            println!("{package}: present in {}", venv.display());
            continue;
        }
        cmd::run(
            Command::new(bin.join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("{package}{version}")),
        )?;
    }
    Ok(())
}
