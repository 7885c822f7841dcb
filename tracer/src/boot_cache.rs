//! Files captrace caches for the rest of a boot in `/run/captrace` (a tmpfs: gone at
//! reboot), and the rules that make one trusted. What is cached decides what captrace
//! reports (kernel function names the classifier reads, struct offsets and attach ids the
//! programs use), so a cache is used only if nobody but captrace's user (root) can have
//! written it: the directory is a real directory owned by that user and not writable by
//! group or others, and the file a regular file of the same kind, opened without following
//! a symlink. It is written to an O_EXCL|O_NOFOLLOW temporary file and renamed
//! (`safe_file::write_replacing`), so a reader never sees half of it.
use std::{
    fs,
    io::{self, Read as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

/// Where the caches live (`kernel_btf::cache`, `symbolizer`).
pub const DIR: &str = "/run/captrace";

/// This boot's id: what a cache of kernel facts is keyed by.
pub fn boot_id() -> Option<Vec<u8>> {
    fs::read("/proc/sys/kernel/random/boot_id").ok()
}

/// Whether a file of owner `uid` and `mode` can only have been written by user `me`.
fn trusted(uid: u32, mode: u32, me: u32) -> bool {
    uid == me && mode & 0o022 == 0
}

fn ours(meta: &fs::Metadata) -> bool {
    trusted(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
}

/// The cache directory, if it is a real directory (not a symlink) that is `ours`.
fn trusted_dir(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && ours(&m))
}

/// Why a cache was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum Untrusted {
    /// Its directory is missing, a symlink, or someone else's (or writable by others).
    Dir,
    /// The file is missing, a symlink, not a regular file, someone else's, writable by
    /// others, or larger than allowed.
    File,
}

/// The bytes of the cache at `path` (at most `max`), if it and its directory are trusted.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, Untrusted> {
    if !path.parent().is_some_and(trusted_dir) {
        return Err(Untrusted::Dir);
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|_| Untrusted::File)?;
    let meta = file.metadata().map_err(|_| Untrusted::File)?;
    if !meta.is_file() || !ours(&meta) || meta.len() > max {
        return Err(Untrusted::File);
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max)
        .read_to_end(&mut data)
        .map_err(|_| Untrusted::File)?;
    Ok(data)
}

/// Replaces the cache at `path` with `bytes` (mode 0600), creating its directory (0700) if
/// needed; refused when the directory is not trusted.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(DIR));
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if !trusted_dir(dir) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory only this user can write",
                dir.display()
            ),
        ));
    }
    crate::safe_file::write_replacing(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    #[test]
    fn only_the_users_own_files_not_writable_by_others_are_trusted() {
        assert!(trusted(0, 0o100600, 0));
        assert!(trusted(0, 0o040700, 0));
        assert!(trusted(0, 0o100644, 0), "readable by others is fine");
        assert!(!trusted(1000, 0o100600, 0), "another user's file");
        assert!(!trusted(0, 0o100620, 0), "writable by the group");
        assert!(!trusted(0, 0o100602, 0), "writable by others");
        assert!(
            !trusted(0, 0o041777, 0),
            "a sticky world-writable directory"
        );
    }

    /// A cache directory of the test's own, as captrace makes it.
    fn cache_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("captrace");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        (top, dir)
    }

    #[test]
    fn a_cache_written_here_is_read_back() {
        let (_top, dir) = cache_dir();
        let path = dir.join("c");
        write(&path, b"facts").unwrap();
        assert_eq!(read(&path, 100).unwrap(), b"facts");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&path, 4), Err(Untrusted::File), "over the limit");
    }

    #[test]
    fn a_cache_anyone_else_could_have_written_is_not_read() {
        let (_top, dir) = cache_dir();
        let path = dir.join("c");
        write(&path, b"facts").unwrap();
        // The file writable by others.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read(&path, 100), Err(Untrusted::File));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path, 100).unwrap(), b"facts");
        // The directory writable by the group.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(read(&path, 100), Err(Untrusted::Dir));
        assert!(write(&path, b"other").is_err(), "nor written there");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        // The cache a symlink to a file that would pass every other test.
        let real = dir.join("real");
        write(&real, b"forged").unwrap();
        fs::remove_file(&path).unwrap();
        symlink(&real, &path).unwrap();
        assert_eq!(read(&path, 100), Err(Untrusted::File));
        // The directory a symlink to a trusted one.
        let link = dir.parent().unwrap().join("link");
        symlink(&dir, &link).unwrap();
        assert_eq!(read(&link.join("real"), 100), Err(Untrusted::Dir));
        // A directory, not a file.
        fs::create_dir(dir.join("d")).unwrap();
        assert_eq!(read(&dir.join("d"), 100), Err(Untrusted::File));
    }

    /// Only root can give a file away (the rule itself is tested without root: `trusted`).
    #[test]
    #[ignore = "needs root (cargo xtask test runs it)"]
    fn another_users_cache_is_not_read() {
        assert!(nix::unistd::geteuid().is_root(), "run as root");
        let (_top, dir) = cache_dir();
        let path = dir.join("c");
        write(&path, b"facts").unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
        assert_eq!(read(&path, 100), Err(Untrusted::File));
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
        assert_eq!(read(&path, 100), Err(Untrusted::Dir));
    }
}
