//! The recommendation: observed checks in, minimal capability set and advice out. Pure logic.
use std::collections::BTreeSet;

use crate::{
    capability::{self, Cap},
    profile::{Added, Audit, Check, Namespaces, Scope, Verdict},
};

/// A denied check that the kernel retries with another capability, which is enough
/// on its own. (denied, sufficient instead, kernel function)
pub const FALLBACKS: &[(u8, u8, &str)] = &[
    // fs/namei.c: generic_permission() tries CAP_DAC_READ_SEARCH before CAP_DAC_OVERRIDE for
    // directory search and read-only opens; either grants the access.
    (2, 1, "fs/namei.c: generic_permission"),
];

/// A capability that another one covers on the same call path: (covered, by, frame that must be
/// on every call path of the covered one, kernel source).
pub const SUBSUMED: &[(u8, u8, &str, &str)] = &[
    // fs/namei.c: generic_permission() grants read and search with DAC_READ_SEARCH, and read,
    // write and search with DAC_OVERRIDE; a workload that needs DAC_OVERRIDE anyway does not need
    // DAC_READ_SEARCH for these checks (it still does for open_by_handle_at).
    (2, 1, "generic_permission", "fs/namei.c: generic_permission"),
];

/// How deep in a call path the `SUBSUMED` frame is looked for.
const SUBSUMED_DEPTH: usize = 6;

/// Capabilities the kernel tests as bits, without `cap_capable`, on an event captrace traces.
/// (namespace created, capability, kernel function)
pub const NAMESPACE_RULES: &[(&str, u8, &str)] = &[
    // kernel/user_namespace.c: create_user_ns() stores cap_raised(cred->cap_effective,
    // CAP_SETFCAP) in parent_could_setfcap; verify_root_map() later refuses a uid_map that maps
    // root, written by another process, unless it was set. No cap_capable call shows it.
    (
        "user",
        31,
        "kernel/user_namespace.c: create_user_ns (parent_could_setfcap)",
    ),
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recommendation {
    pub cap_add: Vec<Cap>,
    /// Audited checks against the host that were denied (wanted but not granted).
    pub denied: Vec<Check>,
    /// Used only inside user namespaces the workload owns.
    pub nested_userns: Vec<Cap>,
    /// Added by kernel rules, with the reason.
    pub never_checked: Vec<Added>,
    pub advice: Vec<String>,
}

/// Audited checks count; noaudit ones and probes never do.
fn counts(a: Audit) -> bool {
    matches!(a, Audit::Audited | Audit::Unknown)
}

/// Counts as use: granted, audited (or unknown: a lost call path never hides a need), and
/// checked against the host's user namespace (or an unknown one).
pub fn is_use(c: &Check) -> bool {
    c.verdict == Verdict::Granted && counts(c.audit) && c.scope != Scope::Nested
}

pub fn recommend(checks: &[Check], ns: &Namespaces) -> Recommendation {
    recommend_with(checks, ns, &[])
}

/// The same, with capabilities already known to be needed although no check shows them (a
/// replay proved them: `record --minimize`); they are kept in `never_checked` with their
/// reason unless a check shows them.
pub fn recommend_with(checks: &[Check], ns: &Namespaces, known: &[Added]) -> Recommendation {
    let own: Vec<Check> = checks
        .iter()
        .filter(|c| c.origin.is_workload())
        .cloned()
        .collect();
    let checks = own.as_slice();
    let mut needed: BTreeSet<Cap> = checks.iter().filter(|c| is_use(c)).map(|c| c.cap).collect();

    let denied: Vec<Check> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Denied && counts(c.audit) && c.scope != Scope::Nested)
        .filter(|c| !satisfied_by_fallback(c, checks))
        .cloned()
        .collect();

    let nested_userns: Vec<Cap> = checks
        .iter()
        .filter(|c| {
            c.scope == Scope::Nested && c.verdict == Verdict::Granted && c.audit != Audit::Noaudit
        })
        .map(|c| c.cap)
        .filter(|c| !needed.contains(c))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut never_checked = Vec::new();
    for (kind, cap, source) in NAMESPACE_RULES {
        let cap = Cap(*cap);
        if ns.created.iter().any(|k| k == kind) && needed.insert(cap) {
            never_checked.push(Added {
                cap,
                reason: format!("created a {kind} namespace: {source}"),
            });
        }
    }

    for added in known {
        if needed.insert(added.cap) {
            never_checked.push(added.clone());
        }
    }

    let mut covered = Vec::new();
    for (cap, by, frame, source) in SUBSUMED {
        let (cap, by) = (Cap(*cap), Cap(*by));
        let uses: Vec<&Check> = checks
            .iter()
            .filter(|c| c.cap == cap && is_use(c))
            .collect();
        // Only checks can be covered: a capability needed without one (a replay proved it)
        // stays.
        let all_there = !uses.is_empty()
            && uses.iter().all(|c| {
                !c.call_paths.is_empty()
                    && c.call_paths
                        .iter()
                        .all(|p| p.frames.iter().take(SUBSUMED_DEPTH).any(|f| f == frame))
            });
        if needed.contains(&by) && needed.contains(&cap) && all_there {
            needed.remove(&cap);
            covered.push(format!(
                "{cap} left out: {by}, needed anyway, covers every check of it ({source})"
            ));
        }
    }

    let cap_add: Vec<Cap> = needed.into_iter().collect();
    let mut advice = advice(&cap_add, ns);
    advice.extend(covered);
    advice.extend(user_change(checks, &cap_add));
    Recommendation {
        cap_add,
        denied,
        nested_userns,
        never_checked,
        advice,
    }
}

/// The system calls that change a process's user or groups.
const USER_CHANGE_SYSCALLS: &[&str] = &[
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
];

/// SETUID and SETGID used only to change user (a daemon started as root dropping to its
/// service user): say so, and give the shape that needs neither.
pub fn user_change(checks: &[Check], cap_add: &[Cap]) -> Option<String> {
    const SETGID: Cap = Cap(6);
    const SETUID: Cap = Cap(7);
    let ids: Vec<Cap> = [SETGID, SETUID]
        .into_iter()
        .filter(|c| cap_add.contains(c))
        .collect();
    let uses: Vec<&Check> = checks
        .iter()
        .filter(|c| ids.contains(&c.cap) && is_use(c))
        .collect();
    if uses.is_empty()
        || !uses.iter().all(|c| {
            c.syscall
                .as_deref()
                .is_some_and(|s| USER_CHANGE_SYSCALLS.contains(&s))
        })
    {
        return None;
    }
    let mut calls: Vec<&str> = uses.iter().filter_map(|c| c.syscall.as_deref()).collect();
    calls.sort_unstable();
    calls.dedup();
    let by = uses
        .iter()
        .find_map(|c| Some(format!("{}[{}]", c.comm.as_deref()?, c.pid?)))
        .unwrap_or_else(|| "the command".into());
    let names: Vec<String> = ids.iter().map(|c| c.name()).collect();
    let rest: Vec<String> = cap_add
        .iter()
        .filter(|c| !ids.contains(c))
        .map(|c| c.name())
        .collect();
    let rest = if rest.is_empty() {
        "no capability at all".to_string()
    } else {
        format!("only {} (as ambient capabilities)", rest.join(", "))
    };
    Some(format!(
        "{}: used by {by} only in {} to change user: where the program can start as that user, run it so (docker run --user, USER in the Dockerfile, systemd User=) with {rest}; `record --minimize --as-user NAME` proves it",
        names.join(", "),
        calls.join("/")
    ))
}

/// Every audited check that was denied, in any user namespace, less the kernel's fallbacks:
/// what `run --audit` reports.
pub fn denials(checks: &[Check]) -> Vec<Check> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Denied && counts(c.audit) && c.origin.is_workload())
        .filter(|c| !satisfied_by_fallback(c, checks))
        .cloned()
        .collect()
}

fn satisfied_by_fallback(denied: &Check, checks: &[Check]) -> bool {
    FALLBACKS.iter().any(|(d, instead, _)| {
        denied.cap == Cap(*d)
            && checks
                .iter()
                .any(|c| c.cap == Cap(*instead) && c.syscall == denied.syscall && is_use(c))
    })
}

/// Advice for people: non-root, Docker's default set, --privileged, seccomp.
pub fn advice(cap_add: &[Cap], ns: &Namespaces) -> Vec<String> {
    let mut out = Vec::new();
    let defaults = capability::docker_default_count();
    if cap_add.is_empty() {
        out.push(
            "needs no capabilities: run it as a non-root user (docker run --user 1000, or USER 1000 in the Dockerfile)"
                .to_string(),
        );
    }
    let in_default = cap_add.iter().filter(|c| c.docker_default()).count();
    out.push(format!(
        "needs {in_default} of Docker's {defaults} default capabilities; drop {}",
        defaults - in_default
    ));
    let extra: Vec<String> = cap_add
        .iter()
        .filter(|c| !c.docker_default())
        .map(|c| c.name())
        .collect();
    if !extra.is_empty() {
        out.push(format!(
            "needs {} beyond Docker's defaults: add explicitly, never with --privileged",
            extra.join(", ")
        ));
    }
    if cap_add.len() < 8 {
        out.push("--privileged is never needed for this workload".to_string());
    }
    if !ns.created.is_empty() || !ns.joined.is_empty() {
        out.push(
            "it creates or joins namespaces: Docker's default seccomp profile allows unshare/setns/clone(CLONE_NEW*) only with SYS_ADMIN; prefer a custom seccomp profile over adding SYS_ADMIN"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setuid_and_setgid_only_to_change_user_are_explained() {
        let use_in = |cap: u8, syscall: &str| Check {
            pid: Some(123),
            comm: Some("nginx".into()),
            ..Check::granted(cap, syscall)
        };
        let checks = vec![
            use_in(6, "setgroups"),
            use_in(6, "setgid"),
            use_in(7, "setuid"),
            use_in(10, "bind"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        let line = r
            .advice
            .iter()
            .find(|a| a.starts_with("SETGID, SETUID: used by nginx[123] only in setgid/setgroups/setuid to change user"))
            .unwrap_or_else(|| panic!("{:?}", r.advice));
        assert!(
            line.ends_with("with only NET_BIND_SERVICE (as ambient capabilities); `record --minimize --as-user NAME` proves it"),
            "{line}"
        );
        // SETUID asked elsewhere (e.g. kill of another user's process) is no user change.
        let mut other = checks.clone();
        other.push(use_in(7, "kill"));
        let r = recommend(&other, &Namespaces::default());
        assert!(!r.advice.iter().any(|a| a.contains("to change user")));
    }

    fn check(cap: u8, verdict: Verdict, audit: Audit, scope: Scope, syscall: &str) -> Check {
        Check {
            verdict,
            audit,
            scope,
            ..Check::granted(cap, syscall)
        }
    }

    use Audit::{Audited, Noaudit};
    use Scope::{Host, Nested};
    use Verdict::*;

    #[test]
    fn noaudit_sys_admin_is_not_needed() {
        let checks = [
            check(21, Granted, Noaudit, Host, "mmap"),
            check(0, Granted, Audited, Host, "fchownat"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        assert_eq!(r.cap_add, vec![Cap(0)]);
        assert!(r.denied.is_empty());
    }

    #[test]
    fn probes_are_neither_use_nor_wanted() {
        let checks = [
            check(8, Granted, Audit::Probe, Host, "capset"),
            check(8, Denied, Audit::Probe, Host, "capset"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        assert!(r.cap_add.is_empty());
        assert!(r.denied.is_empty());
    }

    #[test]
    fn unknown_call_paths_count_as_use() {
        let r = recommend(
            &[check(10, Granted, Audit::Unknown, Host, "bind")],
            &Namespaces::default(),
        );
        assert_eq!(r.cap_add, vec![Cap(10)]);
    }

    #[test]
    fn nested_checks_are_reported_apart() {
        let checks = [
            check(21, Granted, Audited, Nested, "sethostname"),
            check(21, Denied, Audited, Nested, "mount"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        assert!(r.cap_add.is_empty());
        assert_eq!(r.nested_userns, vec![Cap(21)]);
        assert!(r.denied.is_empty());
    }

    #[test]
    fn denied_audited_checks_are_wanted_but_not_granted() {
        let checks = [
            check(22, Denied, Audited, Host, "reboot"),
            check(21, Denied, Noaudit, Host, "mmap"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        assert!(r.cap_add.is_empty());
        assert_eq!(r.denied.len(), 1);
        assert_eq!(r.denied[0].cap, Cap(22));
    }

    #[test]
    fn dac_read_search_denial_is_a_fallback_when_dac_override_granted() {
        let checks = [
            check(2, Denied, Audited, Host, "openat"),
            check(1, Granted, Audited, Host, "openat"),
        ];
        let r = recommend(&checks, &Namespaces::default());
        assert_eq!(r.cap_add, vec![Cap(1)]);
        assert!(r.denied.is_empty());
        let alone = [check(2, Denied, Audited, Host, "openat")];
        assert_eq!(recommend(&alone, &Namespaces::default()).denied.len(), 1);
    }

    fn with_path(mut c: Check, frames: &[&str]) -> Check {
        c.call_paths = vec![crate::profile::CallPath {
            frames: frames.iter().map(|f| f.to_string()).collect(),
            audit: Audited,
            rule: String::new(),
        }];
        c
    }

    #[test]
    fn dac_override_covers_dac_read_search_in_generic_permission() {
        let path = [
            "security_capable",
            "capable_wrt_inode_uidgid",
            "generic_permission",
            "inode_permission",
        ];
        let read = with_path(check(2, Granted, Audited, Host, "openat"), &path);
        let write = with_path(check(1, Granted, Audited, Host, "openat"), &path);
        let r = recommend(&[read.clone(), write.clone()], &Namespaces::default());
        assert_eq!(r.cap_add, vec![Cap(1)]);
        assert!(
            r.advice
                .iter()
                .any(|a| a.starts_with("DAC_READ_SEARCH left out: DAC_OVERRIDE")),
            "{:?}",
            r.advice
        );
        // Alone, or on another path (open_by_handle_at), DAC_READ_SEARCH stays.
        assert_eq!(
            recommend(&[read], &Namespaces::default()).cap_add,
            vec![Cap(2)]
        );
        let handle = with_path(
            check(2, Granted, Audited, Host, "open_by_handle_at"),
            &["security_capable", "capable", "do_handle_open"],
        );
        assert_eq!(
            recommend(&[handle, write], &Namespaces::default()).cap_add,
            vec![Cap(1), Cap(2)]
        );
    }

    #[test]
    fn creating_a_user_namespace_adds_setfcap() {
        let ns = Namespaces {
            created: vec!["user".into()],
            ..Default::default()
        };
        let r = recommend(&[], &ns);
        assert_eq!(r.cap_add, vec![Cap(31)]);
        assert_eq!(r.never_checked[0].cap, Cap(31));
        assert!(r.never_checked[0].reason.contains("create_user_ns"));
    }

    #[test]
    fn known_capabilities_are_kept_unless_a_check_shows_them() {
        let replay = |cap| Added {
            cap: Cap(cap),
            reason: "replay".into(),
        };
        let checks = [check(0, Granted, Audited, Host, "fchownat")];
        let r = recommend_with(&checks, &Namespaces::default(), &[replay(0), replay(12)]);
        assert_eq!(r.cap_add, vec![Cap(0), Cap(12)]);
        assert_eq!(r.never_checked, vec![replay(12)]);
        // DAC_OVERRIDE covers DAC_READ_SEARCH's checks, not a replay's proof of it.
        let write = check(1, Granted, Audited, Host, "openat");
        let r = recommend_with(&[write], &Namespaces::default(), &[replay(2)]);
        assert_eq!(r.cap_add, vec![Cap(1), Cap(2)]);
        assert_eq!(r.never_checked, vec![replay(2)]);
    }

    #[test]
    fn advice_for_an_empty_set_is_non_root() {
        let a = advice(&[], &Namespaces::default());
        assert!(a[0].contains("--user 1000"), "{a:?}");
        assert!(
            a.iter()
                .any(|l| l == "needs 0 of Docker's 14 default capabilities; drop 14")
        );
        assert!(a.iter().any(|l| l.contains("--privileged is never needed")));
    }

    #[test]
    fn advice_names_capabilities_beyond_docker_defaults() {
        let a = advice(&[Cap(0), Cap(21)], &Namespaces::default());
        assert!(
            a.iter()
                .any(|l| l == "needs 1 of Docker's 14 default capabilities; drop 13"),
            "{a:?}"
        );
        assert!(
            a.iter().any(|l| l.starts_with("needs SYS_ADMIN beyond")),
            "{a:?}"
        );
    }
}
