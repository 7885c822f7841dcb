//! `captrace diff BASE NEW`: which capabilities a new profile's set adds to a base profile's,
//! with the process and syscall that first used each, and which it no longer needs. Exits 0
//! when the sets are equal and 1 when they differ, like `diff`.
use std::io::{self, Write};

use anyhow::Context;

use crate::{
    cli::DiffArgs,
    compare::{self, Diff},
    profile::Profile,
};

pub fn run(args: &DiffArgs) -> anyhow::Result<u8> {
    let read = |path| {
        Profile::read(path)
            .context("cannot diff (it compares profiles written by `captrace record -o FILE`)")
    };
    let base = read(&args.base)?;
    let new = read(&args.new)?;
    let diff = compare::diff(&base, &new);
    io::stdout()
        .lock()
        .write_all(render(&diff, args.json).as_bytes())
        .context("cannot write the diff to stdout")?;
    Ok(if diff.equal { 0 } else { 1 })
}

/// `+ CHOWN: first used by chown[42] in fchownat` per added capability, `- NET_RAW` per
/// removed one (nothing when equal); or one JSON object. Ends with a newline unless empty.
pub fn render(diff: &Diff, json: bool) -> String {
    if json {
        let mut text = serde_json::to_string_pretty(diff).expect("a diff always serialises");
        text.push('\n');
        return text;
    }
    let mut text = String::new();
    for added in &diff.added {
        text.push_str(&format!("+ {}: {}\n", added.cap, added.describe()));
    }
    for removed in &diff.removed {
        text.push_str(&format!("- {removed}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Cap;

    fn profile(caps: &[u8]) -> Profile {
        let mut p = Profile::new();
        p.cap_add = caps.iter().copied().map(Cap).collect();
        p
    }

    #[test]
    fn lines_say_added_and_removed() {
        let d = compare::diff(&profile(&[13]), &profile(&[0]));
        assert_eq!(
            render(&d, false),
            "+ CHOWN: no check of it in the profile\n- NET_RAW\n"
        );
        assert_eq!(
            render(&compare::diff(&profile(&[0]), &profile(&[0])), false),
            ""
        );
    }

    #[test]
    fn json_has_equal_added_and_removed() {
        let d = compare::diff(&profile(&[13]), &profile(&[0]));
        let v: serde_json::Value = serde_json::from_str(&render(&d, true)).unwrap();
        assert_eq!(v["equal"], false);
        assert_eq!(v["added"][0]["cap"], "CHOWN");
        assert_eq!(v["added"][0]["pid"], serde_json::Value::Null);
        assert_eq!(v["removed"], serde_json::json!(["NET_RAW"]));
    }

    #[test]
    fn a_bad_profile_is_a_profile_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        let good = dir.path().join("good.json");
        profile(&[0]).write(&good).unwrap();
        let args = DiffArgs {
            base: good,
            new: bad.clone(),
            json: false,
        };
        let err = run(&args).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 3);
        let message = format!("{err:#}");
        assert!(message.contains(&bad.display().to_string()), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
