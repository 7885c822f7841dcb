//! `cargo xtask dist [--install PREFIX]`: the release binary, its man pages and its shell
//! completions (generated from the clap definitions by `captrace generate-docs`) in
//! `target/dist/` laid out as a prefix; `--install /usr/local` copies that tree there.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::cmd::{self, cargo, header};

#[derive(clap::Args)]
pub struct DistArgs {
    /// Also copy the tree into this prefix (e.g. /usr/local): bin/captrace,
    /// share/man/man1/captrace*.1 and the bash, zsh and fish completions.
    #[arg(long, value_name = "PREFIX")]
    pub install: Option<PathBuf>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::workspace_root().join("target"))
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    header("dist: release build");
    cmd::run(cargo().args(["build", "--release", "-p", "tracer", "--bin", "captrace"]))?;
    let target = target_dir();
    let dist = target.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).with_context(|| format!("removing {}", dist.display()))?;
    }
    let bin = dist.join("bin/captrace");
    fs::create_dir_all(dist.join("bin"))?;
    fs::copy(target.join("release/captrace"), &bin)
        .with_context(|| format!("copying the binary to {}", bin.display()))?;
    header("dist: man pages and shell completions");
    cmd::run(Command::new(&bin).arg("generate-docs").arg(&dist))?;
    println!("dist: {}", dist.display());
    if let Some(prefix) = &args.install {
        header(&format!("dist: install into {}", prefix.display()));
        copy_tree(&dist, prefix)?;
        println!(
            "installed; `man captrace-record` and completion in a new shell (bash needs the bash-completion package)"
        );
    }
    Ok(())
}

/// Copies every file under `from` to the same relative path under `to`.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
            copy_tree(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest).with_context(|| format!("writing {}", dest.display()))?;
            println!("  {}", dest.display());
        }
    }
    Ok(())
}
