//! Which host ids a user namespace of `run` maps root and the 65535 ids after it onto: the
//! range `/etc/subuid` and `/etc/subgid` give a dedicated `captrace` entry, else root's (by
//! name or as uid 0), as `newuidmap` would for root. Without one, 100000 (where the first user's
//! range usually starts: their files then belong to the workload's root, so add an entry).
use std::path::Path;

use super::sandbox::USERNS_SIZE;

/// Used when neither file has an entry for captrace or root.
pub const FALLBACK_BASE: u32 = 100_000;

/// Owners whose ranges captrace may use, in order of preference.
pub const OWNERS: &[&str] = &["captrace", "root", "0"];

/// The start of the first range in `text` (subuid(5) format: `owner:start:count`) of the first
/// owner in `OWNERS` that has one with at least `USERNS_SIZE` ids. Malformed lines, comments
/// and smaller ranges are skipped.
pub fn parse(text: &str) -> Option<u32> {
    let ranges: Vec<(&str, u32)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() {
                return None;
            }
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            // The whole range must fit in 32-bit ids (u32::MAX is never a valid id).
            (count >= USERNS_SIZE && start.checked_add(USERNS_SIZE).is_some())
                .then_some((owner.trim(), start))
        })
        .collect();
    OWNERS
        .iter()
        .find_map(|o| ranges.iter().find(|(owner, _)| owner == o).map(|(_, s)| *s))
}

/// The uid and gid bases from `etc/subuid` and `etc/subgid` under `root`.
pub fn bases(root: &Path) -> (u32, u32) {
    let read = |f: &str| {
        std::fs::read_to_string(root.join("etc").join(f))
            .ok()
            .and_then(|t| parse(&t))
            .unwrap_or(FALLBACK_BASE)
    };
    (read("subuid"), read("subgid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captrace_entry_wins_then_root_by_name_or_number() {
        let t = "user:100000:65536\nroot:200000:65536\ncaptrace:300000:65536\n";
        assert_eq!(parse(t), Some(300_000));
        assert_eq!(
            parse("user:100000:65536\nroot:200000:65536\n"),
            Some(200_000)
        );
        assert_eq!(parse("user:100000:65536\n0:400000:100000\n"), Some(400_000));
        assert_eq!(parse("user:100000:65536\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn malformed_small_and_overflowing_ranges_are_skipped() {
        let t = "# comment\nroot:x:65536\nroot:500000\nroot:1:2:3\nroot:600000:1000\n\
                 root:4294967000:65536\nroot:700000:65536\n";
        assert_eq!(parse(t), Some(700_000));
        assert_eq!(parse(" root : 800000 : 65536 "), Some(800_000));
    }

    #[test]
    fn files_under_a_root_directory_give_both_bases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        assert_eq!(bases(dir.path()), (FALLBACK_BASE, FALLBACK_BASE));
        std::fs::write(dir.path().join("etc/subuid"), "root:231072:65536\n").unwrap();
        std::fs::write(dir.path().join("etc/subgid"), "captrace:300000:65536\n").unwrap();
        assert_eq!(bases(dir.path()), (231_072, 300_000));
    }
}
