//! What is checked before anything loads: the object, the privileges, the user namespace.
use super::{LoadError, OBJECT};

fn has_effective(cap: caps::Capability) -> bool {
    caps::has_cap(None, caps::CapSet::Effective, cap).unwrap_or(false)
}

pub(super) fn preflight() -> Result<(), LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    use caps::Capability::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
    if !(has_effective(CAP_SYS_ADMIN) || (has_effective(CAP_BPF) && has_effective(CAP_PERFMON))) {
        return Err(LoadError::NotPrivileged);
    }
    if in_child_user_namespace() {
        return Err(LoadError::UserNamespace);
    }
    Ok(())
}

/// bpf() checks capabilities against the initial user namespace (`bpf_capable`,
/// `perfmon_capable` use `capable`), whose proc inode number is fixed (`PROC_USER_INIT_INO`).
fn in_child_user_namespace() -> bool {
    const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/user").is_ok_and(|m| m.ino() != PROC_USER_INIT_INO)
}
