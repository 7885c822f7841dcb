//! aya 0.14's `EbpfLoader`, made without its parse of the kernel's BTF.
//!
//! `EbpfLoader::new()` (and its `Default`, and `Ebpf::load`) reads /sys/kernel/btf/vmlinux and
//! parses every type in it (aya-0.14.0/src/bpf.rs: `btf: Btf::from_sys_fs().ok()`): 25-40 ms
//! of start-up here and 17 MB of memory, most of it the kernel zeroing fresh pages. captrace
//! then tells it `.btf(None)`: its programs carry no CO-RE relocations (offsets come from
//! `Config`) and the attach ids come from `attach_btf`. aya 0.14 has no constructor without
//! the parse (its fields are private; aya >= 0.15 reads lazily but needs rustc 1.98).
//!
//! So the loader is made on a short-lived thread that cannot open files: a seccomp filter of
//! that thread alone (no TSYNC; no_new_privs is per thread too) answers ENOENT to open,
//! openat and openat2. `Btf::from_sys_fs` then fails at its first call and the loader starts
//! with no BTF, which is what `.btf(None)` gives it anyway. Where the filter cannot be
//! installed (a kernel without seccomp filters), the loader is made the ordinary way.
use std::collections::BTreeMap;

use aya::EbpfLoader;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// A loader with no kernel BTF, and whether aya's parse was avoided (false: it was made by
/// `EbpfLoader::new()`, because the filter could not be installed).
pub(super) fn without_kernel_btf() -> (EbpfLoader<'static>, bool) {
    // The thread's hash keys come from getrandom(2), or /dev/urandom on kernels before 3.17:
    // drawn before files are refused.
    let _ = std::collections::hash_map::RandomState::new();
    match no_open_filter().map(|p| seccompiler::apply_filter(&p)) {
        Ok(Ok(())) => (EbpfLoader::new(), true),
        Ok(Err(why)) => {
            tracing::debug!(%why, "cannot refuse files to the loader's thread");
            (EbpfLoader::new(), false)
        }
        Err(why) => {
            tracing::debug!(%why, "cannot build the loader thread's filter");
            (EbpfLoader::new(), false)
        }
    }
}

/// open, openat, openat2 → ENOENT; every other call allowed.
fn no_open_filter() -> Result<BpfProgram, String> {
    #[cfg(target_arch = "aarch64")]
    let (arch, calls) = (
        TargetArch::aarch64,
        [libc::SYS_openat, libc::SYS_openat2].as_slice(),
    );
    #[cfg(not(target_arch = "aarch64"))]
    let (arch, calls) = (
        TargetArch::x86_64,
        [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2].as_slice(),
    );
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        calls.iter().map(|&nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOENT as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX: &str = crate::kernel_btf::VMLINUX;

    /// Made on a thread of its own, as the loader does: the filter stays on that thread.
    fn made_on_a_thread() -> (EbpfLoader<'static>, bool) {
        std::thread::spawn(without_kernel_btf).join().unwrap()
    }

    #[test]
    fn the_loader_has_no_btf_and_the_other_threads_still_open_files() {
        if !std::path::Path::new(VMLINUX).exists() {
            panic!("{VMLINUX} is missing: this test needs a kernel with BTF");
        }
        // What aya does by itself: the whole kernel BTF, parsed.
        let parsed = format!("{:?}", EbpfLoader::new());
        assert!(
            parsed.starts_with("EbpfLoader { btf: Some("),
            "{:.80}",
            parsed
        );
        let (loader, avoided) = made_on_a_thread();
        assert!(avoided, "the filter was not installed");
        let shown = format!("{loader:?}");
        assert!(shown.starts_with("EbpfLoader { btf: None"), "{:.80}", shown);
        // This thread (and any other) was never filtered.
        std::fs::File::open(VMLINUX).expect("the test thread opens files");
    }
}
