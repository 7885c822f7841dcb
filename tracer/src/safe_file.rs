//! Files captrace writes for the user (`record -o`) and reads from the user (`--profile`),
//! handled so that whatever already sits at the path cannot redirect, stall or exhaust
//! captrace: it often runs as root in directories other users can write.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// Why an input file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The kernel refused to open or read it.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A FIFO, a device, a socket or a directory: reading it could block forever or never end.
    #[error("it is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the limit (its size, or the limit + 1 when it grew while being read).
    #[error("{0} bytes is over the limit")]
    TooLarge(u64),
}

fn kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads a regular file of at most `limit` bytes. Symlinks are followed (a profile may be
/// linked), but what they lead to must be a regular file: that is checked before opening (so
/// a device is never opened, which can have effects) and again on the open file (so a swap
/// in between is caught). Opened non-blocking, so a FIFO swapped in cannot stall the open.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(meta.len()));
    }
    // One byte more than allowed tells a file that grew after fstat from one at the limit.
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(ReadError::TooLarge(data.len() as u64));
    }
    Ok(data)
}

/// Replaces `path` with `bytes`: written to a new file beside it, then renamed over it.
/// The new file is created with O_EXCL and O_NOFOLLOW, so a symlink planted at `path` or at
/// the temporary name never makes captrace write through it (rename replaces the link
/// itself), and a reader never sees half a file.
/// `mode` is that of the new file, less the umask.
pub fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
    let mut last = io::Error::from_raw_os_error(libc::EEXIST);
    for _ in 0..16 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp: PathBuf = dir.join(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp);
        let mut file: File = match file {
            Ok(f) => f,
            // Someone else's file (or link) at that name: take another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        return written;
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let out = dir.path().join("out.json");
        symlink(&victim, &out).unwrap();
        write_replacing(&out, b"new", 0o666).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&out).unwrap(), "new");
        // Nothing is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn reads_only_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        assert!(matches!(read_regular(&f, 4), Err(ReadError::TooLarge(5))));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 5),
            Err(ReadError::NotRegular("character device"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 5),
            Err(ReadError::NotRegular("directory"))
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read_regular(&fifo, 5),
            Err(ReadError::NotRegular("FIFO"))
        ));
    }
}

/// An output file (`-o FILE`, `--html FILE`) names a directory that does not exist (bad usage:
/// found before anything starts).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} {}: directory {} does not exist", .path.display(), .dir.display())]
pub struct NoOutputDir {
    /// What the file would have held ("profile", "the HTML report").
    pub what: &'static str,
    pub path: std::path::PathBuf,
    pub dir: std::path::PathBuf,
}

/// Checks that `out` can be created before anything starts: its directory must exist.
pub fn check_parent_dir(what: &'static str, out: &Path) -> Result<(), NoOutputDir> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.is_dir() {
        return Ok(());
    }
    Err(NoOutputDir {
        what,
        path: out.to_owned(),
        dir: dir.to_owned(),
    })
}
