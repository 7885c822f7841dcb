//! Namespace syscalls (unshare, setns, clone, clone3) as the report shows them.
use tracer_common::{NsCall, clone_flags as cf, ns_syscall};

use crate::profile::{Namespaces, NsCallRecord};

/// Namespace kinds by their CLONE_* bit, in the order `lsns` prints them.
pub const KINDS: &[(u64, &str)] = &[
    (cf::NEWNS, "mnt"),
    (cf::NEWUTS, "uts"),
    (cf::NEWIPC, "ipc"),
    (cf::NEWPID, "pid"),
    (cf::NEWNET, "net"),
    (cf::NEWUSER, "user"),
    (cf::NEWCGROUP, "cgroup"),
    (cf::NEWTIME, "time"),
];

pub fn kinds(flags: u64) -> Vec<String> {
    KINDS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

pub fn syscall_name(syscall: u32) -> &'static str {
    match syscall {
        ns_syscall::UNSHARE => "unshare",
        ns_syscall::SETNS => "setns",
        ns_syscall::CLONE => "clone",
        ns_syscall::CLONE3 => "clone3",
        _ => "unknown",
    }
}

/// The namespace kind of a `setns` file descriptor from its `/proc/PID/fd` link
/// (`uts:[4026531838]`), for setns calls made with nstype 0.
pub fn kind_of_ns_link(link: &str) -> Option<String> {
    let (kind, rest) = link.split_once(":[")?;
    rest.ends_with(']').then(|| kind.to_string())
}

/// One report line for a namespace syscall. `fd_link` resolves a setns fd when nstype is 0.
pub fn record(call: &NsCall, pid: u32, comm: String, fd_link: Option<String>) -> NsCallRecord {
    let mut namespaces = kinds(call.flags);
    if call.syscall == ns_syscall::SETNS && namespaces.is_empty() {
        namespaces = fd_link
            .as_deref()
            .and_then(kind_of_ns_link)
            .into_iter()
            .collect();
    }
    NsCallRecord {
        syscall: syscall_name(call.syscall).to_string(),
        namespaces,
        ret: call.ret,
        pid,
        comm,
        origin: crate::profile::Origin::from_kernel(call.origin),
    }
}

/// Successful calls summed up as created and joined kinds.
pub fn summarize(calls: Vec<NsCallRecord>) -> Namespaces {
    let mut created = Vec::new();
    let mut joined = Vec::new();
    for c in calls.iter().filter(|c| c.ret >= 0) {
        let into = if c.syscall == "setns" {
            &mut joined
        } else {
            &mut created
        };
        for k in &c.namespaces {
            if !into.contains(k) {
                into.push(k.clone());
            }
        }
    }
    Namespaces {
        created,
        joined,
        calls,
    }
}

/// "created: uts, mnt; joined: none"
pub fn describe(ns: &Namespaces) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "created: {}; joined: {}",
        list(&ns.created),
        list(&ns.joined)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(syscall: u32, flags: u64, ret: i64) -> NsCall {
        NsCall {
            workload: 1,
            syscall,
            fd: 3,
            flags,
            ret,
            origin: 0,
            _pad: [0; 7],
        }
    }

    #[test]
    fn names_the_namespaces_of_clone_flags() {
        assert_eq!(kinds(cf::NEWUTS | cf::NEWNS | 0x11), vec!["mnt", "uts"]);
        assert!(kinds(0x11).is_empty());
    }

    #[test]
    fn setns_with_nstype_zero_uses_the_fd() {
        let r = record(
            &call(ns_syscall::SETNS, 0, 0),
            7,
            "x".into(),
            Some("net:[4026531840]".into()),
        );
        assert_eq!(r.namespaces, vec!["net"]);
        assert_eq!(kind_of_ns_link("/dev/null"), None);
    }

    #[test]
    fn summary_counts_only_successes() {
        let calls = vec![
            record(
                &call(ns_syscall::UNSHARE, cf::NEWUTS, 0),
                1,
                "a".into(),
                None,
            ),
            record(
                &call(ns_syscall::CLONE3, cf::NEWPID | cf::NEWUTS, 42),
                1,
                "a".into(),
                None,
            ),
            record(
                &call(ns_syscall::UNSHARE, cf::NEWNET, -1),
                1,
                "a".into(),
                None,
            ),
            record(&call(ns_syscall::SETNS, cf::NEWIPC, 0), 1, "a".into(), None),
        ];
        let ns = summarize(calls);
        assert_eq!(describe(&ns), "created: uts, pid; joined: ipc");
        assert_eq!(ns.calls.len(), 4);
        assert_eq!(
            describe(&Namespaces::default()),
            "created: none; joined: none"
        );
    }
}
