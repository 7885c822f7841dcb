//! The host's apt sources, read at run time to find its Debian mirrors (never written here), and
//! the private `sources.list` built from them for another Debian release.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::kernel::field;

/// Keyring used when the host's source entry names none.
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// One `deb` entry of the host's apt sources.
#[derive(Debug, PartialEq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    signed_by: Option<String>,
}

/// The private `sources.list` for `release`: the host's Debian mirror and security mirror
/// (as configured for the host's own release) with `release`'s suites (`release` + `suffixes`).
pub fn private_sources(release: &str, suffixes: &[&str]) -> anyhow::Result<String> {
    let codename = host_codename()?;
    let sources = host_sources()?;
    let lines = mirror_lines(&sources, &codename, release, suffixes);
    if lines.is_empty() {
        bail!(
            "no Debian mirror for {codename} in /etc/apt/sources.list or /etc/apt/sources.list.d"
        );
    }
    Ok(lines.join("\n") + "\n")
}

fn mirror_lines(
    sources: &[Source],
    codename: &str,
    release: &str,
    suffixes: &[&str],
) -> Vec<String> {
    let security = |s: &str| s.ends_with("-security") || s.ends_with("/updates");
    let find = |is_security: bool| {
        sources.iter().find(|src| {
            src.suites
                .iter()
                .any(|s| s.split(['-', '/']).next() == Some(codename) && security(s) == is_security)
        })
    };
    let line = |src: &Source, suite: String| {
        let keyring = src.signed_by.clone().or_else(|| {
            Path::new(DEFAULT_KEYRING)
                .exists()
                .then(|| DEFAULT_KEYRING.to_owned())
        });
        let signed_by = keyring
            .map(|k| format!(" signed-by={k}"))
            .unwrap_or_default();
        format!(
            "deb [arch=amd64 lang=none target=Packages{signed_by}] {} {suite} main",
            src.uri
        )
    };
    suffixes
        .iter()
        .filter_map(|suffix| {
            let suite = format!("{release}{suffix}");
            find(security(&suite)).map(|src| line(src, suite))
        })
        .collect()
}

fn host_codename() -> anyhow::Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .context("no VERSION_CODENAME in /etc/os-release")
}

fn host_sources() -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        sources.extend(parse_one_line(&text));
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let parse = match path.extension().and_then(|e| e.to_str()) {
            Some("list") => parse_one_line,
            Some("sources") => parse_deb822,
            _ => continue,
        };
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        sources.extend(parse(&text));
    }
    Ok(sources)
}

/// `deb [options] uri suite components...` lines.
fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            let (options, rest) = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?,
                None => ("", rest),
            };
            let mut words = rest.split_whitespace();
            let (uri, suite) = (words.next()?, words.next()?);
            let signed_by = options
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_owned);
            Some(Source {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
                signed_by,
            })
        })
        .collect()
}

/// deb822 `.sources` stanzas.
fn parse_deb822(text: &str) -> Vec<Source> {
    let uncommented: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    uncommented
        .split("\n\n")
        .filter_map(|stanza| {
            let types = field(stanza, "Types")?;
            let enabled = field(stanza, "Enabled").is_none_or(|e| e != "no");
            if !enabled || !types.split_whitespace().any(|t| t == "deb") {
                return None;
            }
            let uri = field(stanza, "URIs")?.split_whitespace().next()?.to_owned();
            let suites = field(stanza, "Suites")?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            // An inline key cannot be passed on a one-line entry; keep paths only.
            let signed_by = field(stanza, "Signed-By").filter(|k| k.starts_with('/'));
            Some(Source {
                uri,
                suites,
                signed_by,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/k.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://other.example/x
Suites: stuff
Enabled: no
";

    #[test]
    fn parses_deb822_sources() {
        let sources = parse_deb822(DEB822);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].uri, "http://mirror.example/debian");
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            sources[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/k.gpg")
        );
        assert_eq!(sources[1].signed_by, None);
    }

    #[test]
    fn parses_one_line_sources() {
        let text = "# deb http://commented.example/ x main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n\
                    deb-src http://m.example/debian bookworm main\n\
                    deb http://s.example/debian-security bookworm-security main # c\n";
        let sources = parse_one_line(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(sources[1].uri, "http://s.example/debian-security");
        assert_eq!(sources[1].suites, ["bookworm-security"]);
    }

    #[test]
    fn builds_private_lines_from_the_host_mirrors() {
        let mut sources = parse_one_line("deb http://third.example/apt cloud-sdk-bookworm main\n");
        sources.extend(parse_deb822(DEB822));
        let suffixes = ["", "-backports", "-security"];
        let lines = mirror_lines(&sources, "bookworm", "trixie", &suffixes);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "deb [arch=amd64 lang=none target=Packages signed-by=/usr/share/keyrings/k.gpg] \
             http://mirror.example/debian trixie main"
        );
        assert!(lines[1].ends_with("http://mirror.example/debian trixie-backports main"));
        assert!(lines[2].ends_with("http://mirror.example/debian-security trixie-security main"));
        assert!(mirror_lines(&sources, "trixie", "trixie", &suffixes).is_empty());
    }
}
