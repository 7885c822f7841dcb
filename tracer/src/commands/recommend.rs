//! `captrace recommend`: a recorded profile's capability set in another syntax.
use std::io::{self, Write};

use anyhow::Context;

use crate::{cli::RecommendArgs, formats, profile::Profile};

pub fn run(args: &RecommendArgs) -> anyhow::Result<u8> {
    write(args, &mut io::stdout().lock())?;
    Ok(0)
}

fn write(args: &RecommendArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let profile = Profile::read(&args.profile)
        .context("cannot recommend (it reads a profile written by `captrace record -o FILE`)")?;
    out.write_all(formats::render(&profile, args.format).as_bytes())
        .context("cannot write the recommendation to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capability::Cap, cli::Format};

    #[test]
    fn renders_a_recorded_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let mut profile = Profile::new();
        profile.cap_add = vec![Cap(10), Cap(0)];
        profile.write(&path).unwrap();
        let mut out = Vec::new();
        write(
            &RecommendArgs {
                profile: path,
                format: Format::Docker,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE\n"
        );
    }

    #[test]
    fn a_missing_profile_is_a_one_line_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.json");
        let args = RecommendArgs {
            profile: path.clone(),
            format: Format::Json,
        };
        let err = write(&args, &mut Vec::new()).unwrap_err();
        let message = format!("{err:#}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("captrace record -o"), "{message}");
    }
}
