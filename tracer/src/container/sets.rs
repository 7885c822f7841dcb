//! The answer of a recording that followed containers: each container's set is its own, the
//! top-level set is their union, and the client's own capability use (docker, podman) is never
//! a container's. Also the per-runtime flags and the compose override that apply each set.
use std::collections::BTreeSet;

use crate::{
    capability::Cap,
    formats,
    formats::Format,
    profile::{ContainerProfile, Namespaces, Profile},
    recommendation,
};

/// What the report says when a container client ran and no container was seen.
pub const NONE_SEEN: &str = "no container was seen while it ran (daemon unreachable, an error, or nothing started): this is no recommendation for any container";

/// Puts the containers into the profile and makes the top-level set their union.
pub fn apply(profile: &mut Profile, containers: Vec<ContainerProfile>) {
    profile.follows_containers = true;
    if containers.is_empty() {
        profile.advice = vec![NONE_SEEN.to_string()];
        profile.containers = containers;
        return;
    }
    let union: BTreeSet<Cap> = containers
        .iter()
        .flat_map(|c| c.cap_add.iter().copied())
        .collect();
    profile.cap_add = union.into_iter().collect();
    let mut advice = vec![format!(
        "the union of the sets of the {} container(s) it started; the client's own checks (the table above) are not a container's",
        containers.len()
    )];
    advice.extend(recommendation::advice(
        &profile.cap_add,
        &Namespaces::default(),
    ));
    profile.advice = advice;
    profile.containers = containers;
}

/// The command line that runs the container with exactly its set, for the runtime that ran it.
pub fn run_flags(c: &ContainerProfile) -> String {
    let (cli, format) = match c.runtime.as_str() {
        "podman" => ("podman run", Format::Podman),
        _ => ("docker run", Format::Docker),
    };
    let flags = formats::render_set(&c.cap_add, format);
    let image = c.image.as_deref().unwrap_or("IMAGE");
    format!("{cli} {} {image}", flags.trim_end())
}

/// A `docker-compose.override.yml` giving each service its own set (`-f docker-compose.yml -f
/// override.yml`); None when no container came from compose.
pub fn compose_override(containers: &[ContainerProfile]) -> Option<String> {
    let mut services: Vec<(&str, BTreeSet<Cap>)> = Vec::new();
    for c in containers {
        let Some(s) = c.service.as_deref() else {
            continue;
        };
        // Replicas of one service share its keys: the union of their sets.
        match services.iter_mut().find(|(name, _)| *name == s) {
            Some((_, set)) => set.extend(c.cap_add.iter().copied()),
            None => services.push((s, c.cap_add.iter().copied().collect())),
        }
    }
    if services.is_empty() {
        return None;
    }
    services.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("services:\n");
    for (name, set) in services {
        out += &format!("  {name}:\n");
        let caps: Vec<Cap> = set.into_iter().collect();
        for line in formats::render_set(&caps, Format::Compose).lines() {
            out += &format!("    {line}\n");
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, service: Option<&str>, caps: &[&str]) -> ContainerProfile {
        ContainerProfile {
            runtime: "docker".into(),
            id: "3f4e8a6c2b1d".repeat(5) + "abcd",
            name: Some(name.into()),
            image: Some("bb:latest".into()),
            service: service.map(Into::into),
            cap_add: caps.iter().map(|c| Cap::parse(c).unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_top_level_set_is_the_union_and_no_container_is_said_plainly() {
        let mut p = Profile::new();
        apply(
            &mut p,
            vec![
                container("a", None, &["CHOWN"]),
                container("b", None, &["NET_BIND_SERVICE", "CHOWN"]),
            ],
        );
        assert_eq!(p.cap_add.len(), 2);
        assert!(p.advice[0].contains("2 container(s)"));

        let mut p = Profile::new();
        apply(&mut p, vec![]);
        assert!(p.follows_containers);
        assert_eq!(p.advice, [NONE_SEEN]);
    }

    #[test]
    fn flags_name_the_runtime_and_image() {
        let mut c = container("a", None, &["CHOWN"]);
        assert_eq!(
            run_flags(&c),
            "docker run --cap-drop=ALL --cap-add=CHOWN bb:latest"
        );
        c.runtime = "podman".into();
        assert!(run_flags(&c).starts_with("podman run --cap-drop=ALL"));
    }

    #[test]
    fn compose_override_has_a_block_per_service() {
        let yaml = compose_override(&[
            container("p_web_1", Some("web"), &["NET_BIND_SERVICE"]),
            container("p_db_1", Some("db"), &["CHOWN", "SETUID"]),
            container("p_web_2", Some("web"), &["CHOWN"]),
            container("x", None, &["SYS_ADMIN"]),
        ])
        .unwrap();
        assert_eq!(
            yaml,
            "services:\n  db:\n    cap_drop:\n      - ALL\n    cap_add:\n      - CHOWN\n      - SETUID\n  web:\n    cap_drop:\n      - ALL\n    cap_add:\n      - CHOWN\n      - NET_BIND_SERVICE\n"
        );
        assert_eq!(compose_override(&[container("x", None, &[])]), None);
    }
}
