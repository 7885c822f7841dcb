//! `captrace report PROFILE [--html FILE]`: a recorded profile as the report `record` prints,
//! or as one self-contained HTML page (`html.rs`); `record --html FILE` writes the same page.
use std::io::{self, Write};

use anyhow::Context;

use crate::{cli::ReportArgs, color, html, profile::Profile, report};

pub fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    if let Some(out) = &args.html {
        html::check_output(out)?;
    }
    let profile = Profile::read(&args.profile)
        .context("cannot report (it reads a profile written by `captrace record -o FILE`)")?;
    match &args.html {
        Some(out) => {
            html::write(&profile, out)?;
            eprintln!("captrace: wrote {}", out.display());
        }
        None => io::stdout()
            .lock()
            .write_all(color::report(&report::render(&profile), color::stdout()).as_bytes())
            .context("cannot write the report to stdout")?,
    }
    Ok(0)
}
