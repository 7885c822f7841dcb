//! `captrace recommend`: a recorded profile's capability set in another syntax.
use std::io::{self, Write};

use anyhow::Context;

use crate::{
    cli::RecommendArgs,
    container::sets,
    error::UsageError,
    formats::{self, Format},
    output,
    profile::Profile,
};

pub fn run(args: &RecommendArgs) -> anyhow::Result<u8> {
    write(args, &mut io::stdout().lock())?;
    Ok(0)
}

fn write(args: &RecommendArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let profile = Profile::read(&args.profile)
        .context("cannot recommend (it reads a profile written by `captrace record -o FILE`)")?;
    let text = match &args.container {
        Some(key) => {
            let Some(c) = profile.containers.iter().find(|c| c.is(key)) else {
                let known: Vec<String> = profile.containers.iter().map(|c| c.label()).collect();
                return Err(UsageError(format!(
                    "no container {key} in {}: it has {}",
                    args.profile.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
                .into());
            };
            formats::render_set(&c.cap_add, args.format)
        }
        // Compose services each get their own keys: an override file for all of them.
        None if args.format == Format::Compose => sets::compose_override(&profile.containers)
            .unwrap_or_else(|| formats::render(&profile, args.format)),
        None if args.prefer_alternatives => {
            let (text, notes) = formats::render_alternatives(&profile, args.format);
            for n in notes {
                output::note(n);
            }
            text
        }
        None => formats::render(&profile, args.format),
    };
    out.write_all(text.as_bytes())
        .context("cannot write the recommendation to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capability::Cap, formats::Format};

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
                container: None,
                prefer_alternatives: false,
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
            container: None,
            prefer_alternatives: false,
        };
        let err = write(&args, &mut Vec::new()).unwrap_err();
        let message = format!("{err:#}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("captrace record -o"), "{message}");
    }
}
