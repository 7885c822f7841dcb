//! `captrace check PROFILE --allow CAP,... | --allow-from BASE`: exits 1 when the profile's set
//! holds a capability beyond the allowed one, with a line naming each and the process and
//! syscall that first used it; 0 when it is within.
use std::{
    collections::BTreeSet,
    io::{self, Write},
    path::PathBuf,
};

use anyhow::Context;
use serde::Serialize;

use crate::{
    capability::Cap,
    cli::CheckArgs,
    compare::{self, FirstUse},
    error::UsageError,
    profile::Profile,
};

pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let allowed = allowed_set(&args.allow, &args.allow_from)?;
    let profile = Profile::read(&args.profile)
        .context("cannot check (it reads a profile written by `captrace record -o FILE`)")?;
    let beyond = compare::beyond(&profile, &allowed);
    io::stdout()
        .lock()
        .write_all(render(&allowed, &beyond, args.json).as_bytes())
        .context("cannot write the check to stdout")?;
    Ok(if beyond.is_empty() { 0 } else { 1 })
}

/// The union of `--allow` names (empty ones skipped: `--allow ''` allows none) and the sets of
/// the `--allow-from` profiles. Names are checked before any profile is read.
pub fn allowed_set(names: &[String], profiles: &[PathBuf]) -> anyhow::Result<BTreeSet<Cap>> {
    let mut allowed = BTreeSet::new();
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let cap = Cap::parse(name).map_err(|e| UsageError(format!("--allow: {e}")))?;
        allowed.insert(cap);
    }
    for path in profiles {
        let base = Profile::read(path)
            .context("cannot read --allow-from (a profile written by `captrace record -o FILE`)")?;
        allowed.extend(base.cap_add);
    }
    Ok(allowed)
}

#[derive(Serialize)]
struct Report<'a> {
    within: bool,
    allowed: &'a BTreeSet<Cap>,
    beyond: &'a [FirstUse],
}

/// `CHOWN beyond the allowed set: first used by chown[42] in fchownat` per capability
/// (nothing when within); or one JSON object.
pub fn render(allowed: &BTreeSet<Cap>, beyond: &[FirstUse], json: bool) -> String {
    if json {
        let report = Report {
            within: beyond.is_empty(),
            allowed,
            beyond,
        };
        let mut text = serde_json::to_string_pretty(&report).expect("a report always serialises");
        text.push('\n');
        return text;
    }
    beyond
        .iter()
        .map(|b| format!("{} beyond the allowed set: {}\n", b.cap, b.describe()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_are_parsed_like_everywhere_else() {
        let set = allowed_set(&s(&["chown", "CAP_NET_RAW", "", "KILL"]), &[]).unwrap();
        assert_eq!(set, BTreeSet::from([Cap(0), Cap(5), Cap(13)]));
        assert!(allowed_set(&s(&[""]), &[]).unwrap().is_empty());
        let err = allowed_set(&s(&["CHWON"]), &[]).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert_eq!(
            format!("{err:#}"),
            "--allow: unknown capability \"CHWON\" (did you mean CHOWN?)"
        );
    }

    #[test]
    fn allow_from_adds_a_profiles_set_and_a_bad_one_is_a_profile_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.json");
        let mut p = Profile::new();
        p.cap_add = vec![Cap(10)];
        p.write(&base).unwrap();
        let set = allowed_set(&s(&["CHOWN"]), &[base]).unwrap();
        assert_eq!(set, BTreeSet::from([Cap(0), Cap(10)]));
        let err = allowed_set(&[], &[dir.path().join("missing.json")]).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 3);
    }

    #[test]
    fn one_line_per_capability_beyond() {
        let mut p = Profile::new();
        p.cap_add = vec![Cap(0), Cap(21)];
        let allowed = BTreeSet::from([Cap(0)]);
        let beyond = compare::beyond(&p, &allowed);
        assert_eq!(
            render(&allowed, &beyond, false),
            "SYS_ADMIN beyond the allowed set: no check of it in the profile\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&allowed, &beyond, true)).unwrap();
        assert_eq!(v["within"], false);
        assert_eq!(v["allowed"], serde_json::json!(["CHOWN"]));
        assert_eq!(v["beyond"][0]["cap"], "SYS_ADMIN");
    }
}
