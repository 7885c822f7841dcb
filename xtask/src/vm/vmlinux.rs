//! The uncompressed kernel, booted through its PVH entry point: under TCG, the decompressor in a
//! bzImage takes seconds (about 5 s for 6.1's xz image on a busy machine; 1.5 s for zstd ones),
//! while qemu loads an ELF `vmlinux` with a PVH note directly.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::kernel::Kernel;

/// The image to give qemu's `-kernel`: `vmlinux` next to the extracted tree (made once), or the
/// bzImage itself if the kernel has no PVH entry or cannot be unpacked.
pub fn ensure(kernel: &Kernel) -> anyhow::Result<PathBuf> {
    let vmlinuz = kernel.vmlinuz().context("no kernel image")?;
    let vmlinux = kernel.dir.join("vmlinux");
    if vmlinux.is_file() {
        return Ok(vmlinux);
    }
    let pvh = kernel
        .config()
        .and_then(|c| fs::read_to_string(c).ok())
        .is_some_and(|c| c.lines().any(|l| l == "CONFIG_PVH=y"));
    if !pvh {
        println!("kernel has no PVH entry: booting the compressed image");
        return Ok(vmlinuz);
    }
    let partial = kernel
        .dir
        .join(format!("vmlinux.partial-{}", std::process::id()));
    match unpack(&vmlinuz, &partial) {
        Ok(()) => {
            fs::rename(&partial, &vmlinux)?;
            println!("kernel: unpacked {}", vmlinux.display());
            Ok(vmlinux)
        }
        Err(e) => {
            fs::remove_file(&partial).ok();
            eprintln!(
                "warning: cannot unpack {} ({e:#}): booting it as is",
                vmlinuz.display()
            );
            Ok(vmlinuz)
        }
    }
}

fn unpack(bzimage: &Path, out: &Path) -> anyhow::Result<()> {
    let data = fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let (stream, size) = payload(&data).context("not a bzImage with a payload")?;
    let tool = match stream {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x1f, 0x8b, ..] => "gzip",
        _ => bail!("unknown compression"),
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {tool}"))?;
    // The output goes to a file, so writing all the input first cannot deadlock.
    child.stdin.take().context("no stdin")?.write_all(stream)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("{tool} -dc failed ({status})");
    }
    let unpacked = fs::read(out)?;
    if unpacked.len() as u64 != u64::from(size) || !unpacked.starts_with(b"\x7fELF") {
        bail!("{tool} gave {} bytes, not an ELF of {size}", unpacked.len());
    }
    Ok(())
}

/// The compressed kernel inside a bzImage and its uncompressed size, from the setup header
/// (boot protocol 2.08+: `payload_offset`/`payload_length`; the build appends the size as 4
/// little-endian bytes).
fn payload(bzimage: &[u8]) -> Option<(&[u8], u32)> {
    let u32_at = |at: usize| {
        let bytes = bzimage.get(at..at + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    };
    if bzimage.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let setup_sects = match *bzimage.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + usize::try_from(u32_at(0x248)?).ok()?;
    let len = usize::try_from(u32_at(0x24c)?).ok()?;
    let data = bzimage.get(start..start + len)?;
    let (stream, size) = data.split_at(len.checked_sub(4)?);
    Some((stream, u32::from_le_bytes(size.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::payload;

    #[test]
    fn finds_the_payload_in_the_setup_header() {
        let mut image = vec![0u8; 4096];
        image[0x1f1] = 3; // protected-mode code at (3 + 1) * 512 = 2048
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&10u32.to_le_bytes());
        image[2148..2154].copy_from_slice(b"stream");
        image[2154..2158].copy_from_slice(&1234u32.to_le_bytes());
        assert_eq!(payload(&image), Some((&b"stream"[..], 1234)));
        image[0x24c..0x250].copy_from_slice(&100_000u32.to_le_bytes());
        assert_eq!(payload(&image), None);
        assert_eq!(payload(b"short"), None);
    }
}
