//! What captrace found in the kernel's BTF, cached for the rest of the boot
//! (`/run/captrace/btf`, under `boot_cache`'s rules): the next start reads a few KiB instead
//! of scanning 5 MB (~7 ms of start-up here).
//!
//! The kernel's BTF cannot change while it runs, so the key is the boot id, the size of
//! /sys/kernel/btf/vmlinux and the questions asked (a captrace that asks for another member
//! scans again). The answers matter: the offsets are where the programs read the kernel's
//! structs, and an attach id names the function a program is attached to; so a cache anyone
//! but root could have written is never used, and one that does not parse whole is scanned
//! over.
use std::{fmt::Write as _, path::Path};

use super::{Found, Kind};
use crate::boot_cache;

const CACHE_FILE: &str = "/run/captrace/btf";
const MAGIC: &str = "captrace kernel BTF cache 1\n";
/// Far above what captrace asks for (~8 KiB).
const MAX: u64 = 1 << 20;

/// Where the facts came from, for the debug log and the tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Cache,
    /// Scanned; the reason the cache was not used.
    Scanned(&'static str),
}

/// `wanted` in the kernel's BTF: from this boot's cache, else scanned (and then cached).
pub fn found(wanted: &[(&str, Kind)]) -> Result<(Found, Source), String> {
    found_at(
        wanted,
        Path::new(CACHE_FILE),
        Path::new(super::VMLINUX),
        boot_cache::boot_id(),
    )
}

fn found_at(
    wanted: &[(&str, Kind)],
    cache: &Path,
    vmlinux: &Path,
    boot_id: Option<Vec<u8>>,
) -> Result<(Found, Source), String> {
    let size = std::fs::metadata(vmlinux).map(|m| m.len()).ok();
    let key = match (boot_id, size) {
        (Some(boot), Some(size)) => Some(key(&boot, size, wanted)),
        _ => None,
    };
    let why = match &key {
        None => "no boot id",
        Some(key) => match boot_cache::read(cache, MAX) {
            Err(boot_cache::Untrusted::Dir) => "its directory is missing or not root's alone",
            Err(boot_cache::Untrusted::File) => "missing, or not a file only root can write",
            Ok(data) => match decode(&data, key) {
                Some(found) => return Ok((found, Source::Cache)),
                None => "another boot, another question, or not whole",
            },
        },
    };
    let found = super::scan_file(vmlinux, wanted)?;
    if let Some(key) = key
        && let Some(text) = encode(&found, &key)
        && let Err(e) = boot_cache::write(cache, text.as_bytes())
    {
        tracing::debug!("kernel BTF facts not cached: {e}");
    }
    Ok((found, Source::Scanned(why)))
}

/// The header a cache for these questions on this boot starts with.
fn key(boot_id: &[u8], size: u64, wanted: &[(&str, Kind)]) -> String {
    let mut key = String::from(MAGIC);
    let boot = String::from_utf8_lossy(boot_id);
    let _ = writeln!(key, "boot {}", boot.trim());
    let _ = writeln!(key, "size {size}");
    for (name, kind) in wanted {
        let _ = writeln!(key, "want {} {name}", kind_name(*kind));
    }
    key.push_str("facts\n");
    key
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Struct => "struct",
        Kind::Typedef => "typedef",
        Kind::Func => "func",
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    [Kind::Struct, Kind::Typedef, Kind::Func]
        .into_iter()
        .find(|&k| kind_name(k) == name)
}

/// `key`, then `id KIND NAME ID` and `member STRUCT MEMBER OFFSET` lines, then `end`. None
/// when a name could not be read back (BTF names are C identifiers; nothing else is cached).
fn encode(found: &Found, key: &str) -> Option<String> {
    let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    let mut ids: Vec<_> = found.ids.iter().collect();
    ids.sort();
    let mut members: Vec<_> = found.members.iter().collect();
    members.sort();
    let mut text = key.to_string();
    for ((name, kind), id) in ids {
        if !plain(name) {
            return None;
        }
        let _ = writeln!(text, "id {} {name} {id}", kind_name(*kind));
    }
    for ((s, m), off) in members {
        if !plain(s) || !plain(m) {
            return None;
        }
        let _ = writeln!(text, "member {s} {m} {off}");
    }
    text.push_str("end\n");
    Some(text)
}

/// The facts of a cache made with `key`, if it is one, whole.
fn decode(data: &[u8], key: &str) -> Option<Found> {
    let text = std::str::from_utf8(data).ok()?;
    let body = text.strip_prefix(key)?.strip_suffix("end\n")?;
    let mut found = Found::default();
    for line in body.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["id", kind, name, id] => {
                found
                    .ids
                    .insert((name.to_string(), kind_of(kind)?), id.parse().ok()?);
            }
            ["member", s, m, off] => {
                found
                    .members
                    .insert((s.to_string(), m.to_string()), off.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::DirBuilderExt as _};

    use super::*;

    const WANTED: &[(&str, Kind)] = &[
        ("task_struct", Kind::Struct),
        ("cap_capable", Kind::Func),
        ("btf_trace_cap_capable", Kind::Typedef),
    ];

    fn facts(found: &Found) -> (Vec<String>, Vec<String>) {
        let mut ids: Vec<String> = found.ids.iter().map(|x| format!("{x:?}")).collect();
        let mut members: Vec<String> = found.members.iter().map(|x| format!("{x:?}")).collect();
        ids.sort();
        members.sort();
        (ids, members)
    }

    /// A cache directory as captrace makes it, and the cache's path in it.
    fn cache() -> (tempfile::TempDir, std::path::PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("captrace");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        (top, dir.join("btf"))
    }

    #[test]
    fn the_second_start_of_a_boot_reads_what_the_first_scanned() {
        let vmlinux = Path::new(crate::kernel_btf::VMLINUX);
        let (_top, path) = cache();
        let boot = Some(b"boot-1\n".to_vec());
        let (first, source) = found_at(WANTED, &path, vmlinux, boot.clone()).unwrap();
        assert_eq!(
            source,
            Source::Scanned("missing, or not a file only root can write")
        );
        assert!(first.member_offset("task_struct", "pid").is_ok());
        assert!(first.id("cap_capable", Kind::Func).is_some());
        let (second, source) = found_at(WANTED, &path, vmlinux, boot).unwrap();
        assert_eq!(source, Source::Cache);
        assert_eq!(facts(&second), facts(&first));
        // Another boot, or another question: scanned again.
        let (_, source) = found_at(WANTED, &path, vmlinux, Some(b"boot-2\n".to_vec())).unwrap();
        assert!(matches!(source, Source::Scanned(_)), "{source:?}");
        let (_, source) =
            found_at(&WANTED[..2], &path, vmlinux, Some(b"boot-2\n".to_vec())).unwrap();
        assert!(matches!(source, Source::Scanned(_)), "{source:?}");
    }

    #[test]
    fn a_cache_cut_short_or_not_in_the_format_is_not_used() {
        let mut found = Found::default();
        found.ids.insert(("cap_capable".into(), Kind::Func), 69309);
        found
            .members
            .insert(("task_struct".into(), "pid".into()), 2464);
        let key = key(b"b\n", 5, WANTED);
        let text = encode(&found, &key).unwrap();
        assert_eq!(
            facts(&decode(text.as_bytes(), &key).unwrap()),
            facts(&found)
        );
        let cut = &text[..text.len() - 4];
        assert!(decode(cut.as_bytes(), &key).is_none(), "no end");
        for bad in [
            "id func cap_capable x\n",
            "id union x 1\n",
            "member task_struct pid\n",
            "note\n",
        ] {
            let forged = format!("{key}{bad}end\n");
            assert!(decode(forged.as_bytes(), &key).is_none(), "{bad}");
        }
        // A name no BTF has is not cached.
        found.ids.insert(("two words".into(), Kind::Func), 1);
        assert!(encode(&found, &key).is_none());
    }

    #[test]
    fn a_cache_in_a_directory_others_can_write_is_neither_used_nor_written() {
        let vmlinux = Path::new(crate::kernel_btf::VMLINUX);
        let (_top, path) = cache();
        let boot = Some(b"boot-1\n".to_vec());
        found_at(WANTED, &path, vmlinux, boot.clone()).unwrap();
        let dir = path.parent().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        let (_, source) = found_at(WANTED, &path, vmlinux, boot).unwrap();
        assert_eq!(
            source,
            Source::Scanned("its directory is missing or not root's alone")
        );
    }
}
