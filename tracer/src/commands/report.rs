//! `captrace report PROFILE [--html FILE]`: a recorded profile as the report `record` prints,
//! or as one self-contained HTML page (`html.rs`); `record --html FILE` writes the same page.
use std::{
    io::{self, Write},
    path::Path,
};

use anyhow::Context;

use crate::{app::UsageError, cli::ReportArgs, color, html, profile::Profile, report, safe_file};

pub fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    if let Some(out) = &args.html {
        check_dir(out)?;
    }
    let profile = Profile::read(&args.profile)
        .context("cannot report (it reads a profile written by `captrace record -o FILE`)")?;
    match &args.html {
        Some(out) => {
            write_html(&profile, out)?;
            eprintln!("captrace: wrote {}", out.display());
        }
        None => io::stdout()
            .lock()
            .write_all(color::report(&report::render(&profile), color::stdout()).as_bytes())
            .context("cannot write the report to stdout")?,
    }
    Ok(0)
}

/// `--html FILE` into a directory that does not exist is bad usage, found before anything starts.
pub fn check_dir(out: &Path) -> anyhow::Result<()> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "cannot write the HTML report {}: directory {} does not exist",
            out.display(),
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// Writes the page as `-o` writes a profile: never through a symlink planted at the path.
pub fn write_html(profile: &Profile, out: &Path) -> anyhow::Result<()> {
    safe_file::write_replacing(out, html::render(profile).as_bytes(), 0o644)
        .with_context(|| format!("cannot write the HTML report {}", out.display()))
}
