//! One module per output syntax of a profile's capability set. Every renderer returns complete
//! lines, each ending in `\n`, ready to print or write to a file.
use clap::ValueEnum;

use crate::{capability::Cap, profile::Profile};

mod bwrap;
mod compose;
mod docker;
mod json;
mod k8s;
mod oci;
mod podman;
mod preferred;
mod setpriv;
mod systemd;

/// The syntaxes a set renders in (`recommend -f`, `merge -f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Docker,
    Compose,
    Podman,
    K8s,
    Oci,
    Systemd,
    Bwrap,
    Setpriv,
    Json,
}

/// Renders the profile's `cap_add` set in the given syntax.
pub fn render(profile: &Profile, format: Format) -> String {
    render_set(&profile.cap_add, format)
}

/// Renders the profile's set with its alternatives in place of the capabilities they replace
/// (`--prefer-alternatives`), and a note per alternative the syntax has no equivalent for.
pub fn render_alternatives(profile: &Profile, format: Format) -> (String, Vec<String>) {
    preferred::render(profile, format)
}

/// `render_alternatives` without the notes.
pub fn render_preferring(profile: &Profile, format: Format) -> String {
    preferred::render(profile, format).0
}

/// Renders a capability set in the given syntax.
pub fn render_set(caps: &[Cap], format: Format) -> String {
    let caps = sorted_unique(caps);
    match format {
        Format::Docker => docker::render(&caps),
        Format::Compose => compose::render(&caps),
        Format::Podman => podman::render(&caps),
        Format::K8s => k8s::render(&caps),
        Format::Oci => oci::render(&caps),
        Format::Systemd => systemd::render(&caps),
        Format::Bwrap => bwrap::render(&caps),
        Format::Setpriv => setpriv::render(&caps),
        Format::Json => json::render(&caps),
    }
}

/// The set in capability-number order without duplicates, so every syntax lists it the same way
/// whatever order the profile was written in.
fn sorted_unique(caps: &[Cap]) -> Vec<Cap> {
    let mut caps = caps.to_vec();
    caps.sort_unstable();
    caps.dedup();
    caps
}

/// Renders `names` (any spelling, any order, duplicates allowed) as `captrace recommend` would.
#[cfg(test)]
fn render_names(format: Format, names: &[&str]) -> String {
    let mut profile = Profile::new();
    profile.cap_add = names
        .iter()
        .map(|n| Cap::parse(n).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    render(&profile, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_sorts_by_number_and_dedups() {
        let caps = sorted_unique(&[Cap(21), Cap(0), Cap(21), Cap(10), Cap(0)]);
        assert_eq!(caps, vec![Cap(0), Cap(10), Cap(21)]);
    }
}
