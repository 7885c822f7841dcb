//! `captrace generate-docs DIR` (hidden; run by `cargo xtask dist`): man pages and shell
//! completions generated from the clap definitions, so they never drift from `--help`.
//! Layout under DIR is that of a prefix such as /usr/local:
//! `share/man/man1/captrace.1`, `captrace-SUBCOMMAND.1` (`man captrace-record`, as git's pages),
//! and the completions where bash-completion, zsh and fish look for them.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::{Cli, DocsArgs};

/// Where each shell's completion file goes under the prefix, and its name.
const COMPLETIONS: &[(Shell, &str, &str)] = &[
    (Shell::Bash, "share/bash-completion/completions", "captrace"),
    (Shell::Zsh, "share/zsh/site-functions", "_captrace"),
    (
        Shell::Fish,
        "share/fish/vendor_completions.d",
        "captrace.fish",
    ),
];

pub fn run(args: &DocsArgs) -> anyhow::Result<u8> {
    let written = generate(&args.out)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

fn write(path: PathBuf, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Every man page and completion file under `out`; the paths written.
pub fn generate(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    let man = out.join("share/man/man1");
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    written.push(write(man.join("captrace.1"), &page)?);
    // clap's own `help` subcommand needs no page: `--help` is on every page.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // The page's NAME and SYNOPSIS say `captrace-record`, as git's and cargo's pages do.
        // clap names are `&'static str` without its `string` feature; this runs once per page.
        let name: &'static str = Box::leak(format!("captrace-{}", sub.get_name()).into_boxed_str());
        let bin: &'static str = Box::leak(format!("captrace {}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).bin_name(bin);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        written.push(write(man.join(format!("{name}.1")), &page)?);
    }
    for (shell, dir, file) in COMPLETIONS {
        let mut text = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "captrace", &mut text);
        written.push(write(out.join(dir).join(file), &text)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_visible_subcommand_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "captrace.1",
            "captrace-record.1",
            "captrace-report.1",
            "captrace-doctor.1",
            "captrace",
            "_captrace",
            "captrace.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("generate-docs") || n == "captrace-help.1")
        );
        let record =
            fs::read_to_string(dir.path().join("share/man/man1/captrace-record.1")).unwrap();
        assert!(record.contains("Examples:"), "{record}");
    }
}
