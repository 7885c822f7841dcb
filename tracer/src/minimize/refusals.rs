//! Silent refusals: checks the kernel refused in the replay that proved the set, while the
//! command's outcome stayed the recording's. Each is listed with what the refusal does, as far
//! as the kernel source tells, so a user can decide that the outcome is not all that matters.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    capability::Cap,
    classifier,
    profile::{Audit, Check, Scope, SilentRefusal, Verdict},
};

const FSETID_SGID: &str =
    "set-group-ID bits are cleared instead; keep FSETID if files must keep them";

/// Known effects of a refusal: (capability, a caller frame on its path, effect, kernel source).
pub const EFFECTS: &[(u8, &str, &str, &str)] = &[
    // fs/attr.c: in_group_or_capable() -> `mode &= ~S_ISGID`, called by setattr_prepare,
    // setattr_copy and setattr_should_drop_sgid; it tail-calls capable_wrt_inode_uidgid(), so
    // on 6.18 its callers are what the stack shows.
    (
        4,
        "in_group_or_capable",
        FSETID_SGID,
        "fs/attr.c: in_group_or_capable",
    ),
    (
        4,
        "setattr_prepare",
        FSETID_SGID,
        "fs/attr.c: in_group_or_capable",
    ),
    (
        4,
        "setattr_copy",
        FSETID_SGID,
        "fs/attr.c: in_group_or_capable",
    ),
    (
        4,
        "setattr_should_drop_sgid",
        FSETID_SGID,
        "fs/attr.c: in_group_or_capable",
    ),
    // fs/inode.c: file_remove_privs() -> setattr_should_drop_suidgid() on write and truncate.
    (
        4,
        "setattr_should_drop_suidgid",
        "set-user-ID and set-group-ID bits are cleared on write instead; keep FSETID if files must keep them",
        "fs/attr.c: setattr_should_drop_suidgid",
    ),
    // net/core/sock.c: sk_setsockopt() -> sockopt_capable(CAP_NET_ADMIN) for SO_RCVBUFFORCE,
    // SO_SNDBUFFORCE, SO_MARK, SO_PRIORITY above 6 and SO_RCVMARK: -EPERM.
    (
        12,
        "sk_setsockopt",
        "a privileged socket option (SO_RCVBUFFORCE, SO_SNDBUFFORCE, SO_MARK, SO_PRIORITY > 6) failed with EPERM; socket buffers stay within net.core.rmem_max/wmem_max",
        "net/core/sock.c: sk_setsockopt",
    ),
    // fs/attr.c: setattr_prepare() -> chown_ok()/chgrp_ok(): -EPERM, the owner stays.
    (
        0,
        "setattr_prepare",
        "the ownership change failed with EPERM: files keep their owner and group",
        "fs/attr.c: setattr_prepare",
    ),
    // fs/namei.c: generic_permission(): -EACCES.
    (
        1,
        "generic_permission",
        "a file access beyond its permission bits failed with EACCES",
        "fs/namei.c: generic_permission",
    ),
    (
        2,
        "generic_permission",
        "a read or directory search beyond its permission bits failed with EACCES",
        "fs/namei.c: generic_permission",
    ),
    // kernel/sched/syscalls.c: can_nice() / user_check_sched_setscheduler(): -EPERM.
    (
        23,
        "can_nice",
        "raising the priority (lower nice value) failed with EPERM: it runs at its current priority",
        "kernel/sched/syscalls.c: can_nice",
    ),
];

/// Said when no entry of [`EFFECTS`] matches.
pub const UNKNOWN_EFFECT: &str = "the command's outcome did not change; what it lost is not known to captrace: keep it if its result matters";

/// The effect of refusing `cap` on a path with these callers (innermost first).
pub fn effect(cap: Cap, callers: &[String]) -> String {
    EFFECTS
        .iter()
        .find(|(c, frame, _, _)| {
            Cap(*c) == cap && callers.iter().any(|f| f.split('.').next() == Some(*frame))
        })
        .map_or_else(
            || UNKNOWN_EFFECT.to_string(),
            |(_, _, effect, source)| format!("{effect} ({source})"),
        )
}

/// The refusals in `replayed` (the proving replay's checks) of capabilities outside `set`:
/// audited denials and probes, host scope, the workload's own. The recording's own denials
/// (`recorded_denied`, captrace lacks them too) are not refusals of the set.
pub fn silent_refusals(
    replayed: &[Check],
    set: &BTreeSet<Cap>,
    recorded_denied: &BTreeSet<Cap>,
) -> Vec<SilentRefusal> {
    let mut by_key: BTreeMap<(Cap, Option<String>), SilentRefusal> = BTreeMap::new();
    for c in replayed {
        let counts = matches!(c.audit, Audit::Audited | Audit::Unknown | Audit::Probe);
        if c.verdict != Verdict::Denied
            || !counts
            || c.scope == Scope::Nested
            || !c.origin.is_workload()
            || set.contains(&c.cap)
            || recorded_denied.contains(&c.cap)
        {
            continue;
        }
        // A DAC_READ_SEARCH denial answered by a granted DAC_OVERRIDE is the kernel's fallback
        // (fs/namei.c: generic_permission), not a refusal.
        if replayed.iter().any(|g| {
            crate::recommendation::FALLBACKS
                .iter()
                .any(|(d, instead, _)| {
                    c.cap == Cap(*d)
                        && g.cap == Cap(*instead)
                        && g.verdict == Verdict::Granted
                        && g.syscall == c.syscall
                })
        }) {
            continue;
        }
        let callers: &[String] = c.call_paths.first().map_or(&[], |p| &p.frames);
        let entry = by_key
            .entry((c.cap, c.syscall.clone()))
            .or_insert_with(|| SilentRefusal {
                cap: c.cap,
                comm: c.comm.clone(),
                syscall: c.syscall.clone(),
                count: 0,
                kernel_path: classifier::short_path(callers, 3),
                effect: effect(c.cap, callers),
            });
        entry.count += c.count;
    }
    by_key.into_values().collect()
}

/// One line for the report:
/// `FSETID refused 2x in fchmodat by chmod (in_group_or_capable <- setattr_prepare): ...`.
pub fn line(r: &SilentRefusal) -> String {
    let path = if r.kernel_path.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.kernel_path)
    };
    format!(
        "{} refused {}x in {} by {}{path}: {}",
        r.cap,
        r.count,
        r.syscall.as_deref().unwrap_or("-"),
        r.comm.as_deref().unwrap_or("?"),
        r.effect
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{CallPath, Origin};

    fn denied(cap: u8, audit: Audit, syscall: &str, frames: &[&str]) -> Check {
        Check {
            cap: Cap(cap),
            verdict: Verdict::Denied,
            audit,
            scope: Scope::Host,
            syscall: Some(syscall.into()),
            count: 2,
            pid: Some(1),
            comm: Some("chmod".into()),
            call_paths: vec![CallPath {
                frames: frames.iter().map(|f| f.to_string()).collect(),
                audit,
                rule: String::new(),
            }],
            origin: Origin::Workload,
            first_seen_ms: None,
            last_seen_ms: None,
        }
    }

    const CHMOD: &[&str] = &[
        "security_capable",
        "capable_wrt_inode_uidgid",
        "in_group_or_capable",
        "setattr_prepare",
        "ext4_setattr",
    ];

    #[test]
    fn fsetid_in_chmod_is_listed_with_its_effect() {
        let r = silent_refusals(
            &[denied(4, Audit::Probe, "fchmodat", CHMOD)],
            &[Cap(3)].into(),
            &BTreeSet::new(),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            line(&r[0]),
            "FSETID refused 2x in fchmodat by chmod (capable_wrt_inode_uidgid <- in_group_or_capable <- setattr_prepare): \
             set-group-ID bits are cleared instead; keep FSETID if files must keep them (fs/attr.c: in_group_or_capable)"
        );
    }

    #[test]
    fn members_of_the_set_noaudit_checks_and_recorded_denials_are_not_refusals() {
        let checks = [
            denied(4, Audit::Probe, "fchmodat", CHMOD),
            denied(21, Audit::Noaudit, "mmap", &[]),
            denied(24, Audit::Audited, "setrlimit", &[]),
        ];
        let r = silent_refusals(&checks, &[Cap(4)].into(), &[Cap(24)].into());
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn an_unknown_effect_says_so() {
        let r = silent_refusals(
            &[denied(
                9,
                Audit::Audited,
                "ioctl",
                &["security_capable", "capable", "x"],
            )],
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(r[0].effect, UNKNOWN_EFFECT);
    }
}
