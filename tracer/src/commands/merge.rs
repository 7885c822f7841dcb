//! `captrace merge A.json B.json ... [-o ALL.json]`: the profiles of several runs as one
//! (`merge.rs` says how each field is merged), written to FILE or stdout.
use std::io::{self, Write};

use anyhow::Context;

use crate::{
    cli::MergeArgs, error::UsageError, formats, formats::Format, merge, output, profile::Profile,
};

pub fn run(args: &MergeArgs) -> anyhow::Result<u8> {
    crate::profile::check_output_dir(args.output.as_deref())?;
    let profiles = args
        .profiles
        .iter()
        .map(|p| Profile::read(p))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot merge (it reads profiles written by `captrace record -o FILE`)")?;
    let merged = merge::merge(&profiles)
        .ok_or_else(|| UsageError("merge: give at least one profile".into()))?;
    match &args.output {
        Some(out) => {
            merged.write(out)?;
            output::note(format_args!(
                "merged {} profiles into {}: {}",
                profiles.len(),
                out.display(),
                formats::render(&merged, Format::Docker).trim_end()
            ));
        }
        None => {
            let mut text = merged.to_json();
            text.push('\n');
            io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("cannot write the merged profile to stdout")?;
        }
    }
    Ok(0)
}
