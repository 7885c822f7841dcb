//! The capability set a command line asks for: a profile's set or Docker's defaults, with
//! `--cap-drop` and `--cap-add` applied, bounded by what captrace itself holds. `run` and
//! `enforce` build their sets here; `minimize` asks what captrace holds.
use std::{collections::BTreeSet, path::Path};

use crate::{
    capability::{self, Cap},
    error::UsageError,
    profile::Profile,
};

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The starting set (a profile's, or Docker's defaults) with --cap-drop and --cap-add applied.
pub fn capability_set(
    start: &[Cap],
    drop: &[String],
    add: &[String],
    own: &BTreeSet<Cap>,
) -> anyhow::Result<Vec<Cap>> {
    let mut set: BTreeSet<Cap> = start.iter().copied().collect();
    let parse = |name: &str| Cap::parse(name).map_err(|e| usage(e.to_string()));
    for name in drop {
        if name.eq_ignore_ascii_case("all") {
            set.clear();
        } else {
            set.remove(&parse(name)?);
        }
    }
    for name in add {
        if name.eq_ignore_ascii_case("all") {
            set.extend(own.iter().copied());
        } else {
            set.insert(parse(name)?);
        }
    }
    let missing: Vec<String> = set.difference(own).map(|c| c.name()).collect();
    if !missing.is_empty() {
        return Err(usage(format!(
            "captrace itself does not hold {}: it cannot grant what its own bounding set lacks",
            missing.join(", ")
        )));
    }
    Ok(set.into_iter().collect())
}

/// The capability set a profile (or Docker's defaults) with --cap-drop/--cap-add gives.
pub fn requested_set(
    profile: Option<&Path>,
    drop: &[String],
    add: &[String],
    own: &BTreeSet<Cap>,
) -> anyhow::Result<Vec<Cap>> {
    let start: Vec<Cap> = match profile {
        Some(p) => Profile::read(p)?.cap_add,
        None => capability::docker_defaults().collect(),
    };
    capability_set(&start, drop, add, own)
}

/// The capabilities captrace itself holds in `set` (its bounding set bounds what `run` can
/// grant; its effective set is what a recording ran with).
pub fn own(set: caps::CapSet) -> BTreeSet<Cap> {
    caps::read(None, set)
        .map(|s| s.iter().map(|c| Cap(c.index())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Cap]) -> Vec<String> {
        v.iter().map(|c| c.name()).collect()
    }

    fn all() -> BTreeSet<Cap> {
        (0..=40).map(Cap).filter(|c| c.0 != 24).collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn drop_all_then_add() {
        let defaults: Vec<Cap> = capability::docker_defaults().collect();
        let set = capability_set(
            &defaults,
            &s(&["ALL"]),
            &s(&["chown", "CAP_NET_BIND_SERVICE"]),
            &all(),
        )
        .unwrap();
        assert_eq!(names(&set), ["CHOWN", "NET_BIND_SERVICE"]);
        let set = capability_set(&defaults, &s(&["KILL"]), &[], &all()).unwrap();
        assert_eq!(set.len(), 13);
    }

    #[test]
    fn unknown_names_are_usage_errors_with_a_suggestion() {
        let e = capability_set(&[], &[], &s(&["CHWON"]), &all()).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert_eq!(
            e.to_string(),
            "unknown capability \"CHWON\" (did you mean CHOWN?)"
        );
    }

    #[test]
    fn cannot_grant_what_captrace_lacks() {
        let e = capability_set(&[], &[], &s(&["SYS_RESOURCE"]), &all()).unwrap_err();
        assert!(e.to_string().contains("does not hold SYS_RESOURCE"), "{e}");
        let set = capability_set(&[], &[], &s(&["ALL"]), &all()).unwrap();
        assert_eq!(set.len(), 40);
    }
}
