//! Kernel knowledge about capability checks, in tables, each entry with the kernel function it
//! comes from. The tracepoint has no `opts` argument, so whether a check is audited is told by
//! its call path (fentry and kprobe read `opts`; their paths still tell probes apart).
use crate::{capability::Cap, profile::Audit};

/// Callers that ask with `CAP_OPT_NOAUDIT`: a granted check there is the kernel probing, not
/// the program using a capability.
pub const NOAUDIT_CALLERS: &[(&str, &str)] = &[
    // security/security.c: security_vm_enough_memory_mm() -> cap_vm_enough_memory() asks
    // CAP_SYS_ADMIN with CAP_OPT_NOAUDIT on every mmap, brk and exec that commits memory
    // (cap_vm_enough_memory is inlined on 6.18; where it is not, this frame is one further up).
    (
        "security_vm_enough_memory_mm",
        "security/security.c: security_vm_enough_memory_mm",
    ),
];

/// Any caller named `*_noaudit` passes CAP_OPT_NOAUDIT: kernel/capability.c ns_capable_noaudit,
/// has_ns_capability_noaudit, has_capability_noaudit.
const NOAUDIT_SUFFIX: &str = "_noaudit";

/// Callers whose audited check is a probe: the syscall succeeds without the capability in
/// the common case, and fails visibly (EPERM) where it really needs it.
pub const PROBE_CALLERS: &[(&str, &str)] = &[
    // security/commoncap.c: cap_capset() -> cap_inh_is_capped() asks CAP_SETPCAP on every
    // capset; without it the new inheritable set must stay within inheritable | bounding, which
    // dropping capabilities always does.
    (
        "cap_capset",
        "security/commoncap.c: cap_capset (cap_inh_is_capped)",
    ),
];

/// Checks of one capability that are probes on one call path: (capability, callee, its caller,
/// kernel source). The capability matters: the same frames ask CAP_CHOWN where it is needed.
pub const PROBE_PATHS: &[(u8, &str, &str, &str)] = &[
    // fs/attr.c: in_group_or_capable() asks CAP_FSETID only to decide whether a new mode keeps
    // its S_ISGID bit (`mode &= ~S_ISGID` otherwise). setattr_prepare() and setattr_copy() call
    // it on every chmod of a file whose group the caller is not in, whatever the mode. The mode
    // argument is not in the event, so a chmod that sets no S_ISGID bit (the common case: it
    // succeeds the same without FSETID) cannot be told from one that does (the bit is then
    // silently cleared). Classed as a probe; `--minimize` lists its refusal with that effect,
    // and `--check` can insist on the bit. setattr_should_drop_sgid() calls it only for files
    // that already have S_ISGID: not a probe there. in_group_or_capable() tail-calls
    // capable_wrt_inode_uidgid(), so on 6.18 its own frame is not on the stack.
    (
        4,
        "capable_wrt_inode_uidgid",
        "setattr_prepare",
        "fs/attr.c: setattr_prepare (in_group_or_capable: keep S_ISGID)",
    ),
    (
        4,
        "capable_wrt_inode_uidgid",
        "setattr_copy",
        "fs/attr.c: setattr_copy (in_group_or_capable: keep S_ISGID)",
    ),
    (
        4,
        "in_group_or_capable",
        "setattr_prepare",
        "fs/attr.c: setattr_prepare (in_group_or_capable: keep S_ISGID)",
    ),
    (
        4,
        "in_group_or_capable",
        "setattr_copy",
        "fs/attr.c: setattr_copy (in_group_or_capable: keep S_ISGID)",
    ),
];

/// How many caller frames above `cap_capable` are searched for a known caller. Deeper frames
/// are unrelated syscall plumbing.
const CALLER_DEPTH: usize = 6;

/// Frames of the tracing machinery that sit above `cap_capable` in a stack taken from the
/// tracepoint.
const HOOK_FRAMES: &[&str] = &["cap_capable"];

/// Prefixes of frames that belong to the hook, not to the kernel's call path: the BPF program
/// and the fexit trampoline (`bpf_prog_<tag>_<name>`, `bpf_trampoline_<id>`).
const MACHINERY_PREFIXES: &[&str] = &["bpf_prog_", "bpf_trampoline_", "__bpf_trace_"];

/// A leading frame with no symbol is code made at run time (a BPF program or trampoline that
/// the cached symbol table cannot know): machinery too. Kernel text always has a symbol.
fn is_machinery(frame: &str) -> bool {
    MACHINERY_PREFIXES.iter().any(|p| frame.starts_with(p)) || frame.starts_with("0x")
}

/// The verdict on one call path, and the rule that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub audit: Audit,
    pub rule: String,
    /// The callers of `cap_capable`, innermost first.
    pub callers: Vec<String>,
}

/// Classifies a kernel stack (innermost first, as the stack map stores it).
pub fn classify(frames: &[String]) -> Classified {
    // After `cap_capable` when the stack has it (tracepoint), else after the hook's own frames
    // (fexit: program and trampoline; kretprobe stacks start at the caller).
    let start = frames
        .iter()
        .position(|f| HOOK_FRAMES.contains(&f.as_str()))
        .map_or_else(
            || frames.iter().take_while(|f| is_machinery(f)).count(),
            |i| i + 1,
        );
    let callers: Vec<String> = frames[start..].to_vec();
    if callers.is_empty() {
        return Classified {
            audit: Audit::Unknown,
            rule: "no call path".into(),
            callers,
        };
    }
    for frame in callers.iter().take(CALLER_DEPTH) {
        let name = strip_suffix(frame);
        if let Some((_, source)) = NOAUDIT_CALLERS.iter().find(|(f, _)| *f == name) {
            return Classified {
                audit: Audit::Noaudit,
                rule: format!("noaudit caller {source}"),
                callers,
            };
        }
        if let Some((_, source)) = PROBE_CALLERS.iter().find(|(f, _)| *f == name) {
            return Classified {
                audit: Audit::Probe,
                rule: format!("probe by {source}"),
                callers,
            };
        }
        if name.ends_with(NOAUDIT_SUFFIX) {
            return Classified {
                audit: Audit::Noaudit,
                rule: format!("noaudit caller {name}"),
                callers,
            };
        }
    }
    Classified {
        audit: Audit::Audited,
        rule: "audited (no noaudit caller)".into(),
        callers,
    }
}

/// Kernel code that acts with its own, borrowed credentials on the task's behalf: overlayfs
/// redoes each operation on the layers with its mounter's credentials (ovl_override_creds(),
/// fs/overlayfs/util.c). A check made with credentials that are not the task's `real_cred`
/// anywhere else (an io_uring personality the task registered, io_issue_sqe() ->
/// override_creds()) is the task's own.
const CREDENTIAL_BORROWERS: &[&str] = &["ovl_"];

/// The checks a borrower makes on its own inode with the caller's credentials, before it
/// borrows its mounter's for the layer below: ovl_permission() -> generic_permission() and
/// ovl_setattr() -> setattr_prepare() (fs/overlayfs/inode.c). Made right there, a check is the
/// caller's, whatever credentials it runs with (an io_uring personality on an overlay root, as
/// in every Docker container); the layer's own check comes through inode_permission() or
/// notify_change().
const OWN_CHECKS_OF_BORROWERS: &[&str] = &["generic_permission", "setattr_prepare"];

/// Whether a call path (nearest caller first) runs through kernel code that borrows
/// credentials.
pub fn borrows_credentials(callers: &[String]) -> bool {
    let Some(at) = callers
        .iter()
        .position(|f| CREDENTIAL_BORROWERS.iter().any(|b| f.starts_with(b)))
    else {
        return false;
    };
    // `.isra.0`, `.cold` and the like are the same function.
    let called = at
        .checked_sub(1)
        .map(|i| callers[i].split('.').next().unwrap_or_default());
    !called.is_some_and(|f| OWN_CHECKS_OF_BORROWERS.contains(&f))
}

/// Classifies the call path of a check of `cap`: [`classify`], then the probes of
/// [`PROBE_PATHS`], which depend on the capability.
pub fn classify_check(cap: Cap, frames: &[String]) -> Classified {
    refine(cap, classify(frames))
}

/// Applies [`PROBE_PATHS`] to a path [`classify`] found audited.
pub fn refine(cap: Cap, mut c: Classified) -> Classified {
    if c.audit != Audit::Audited {
        return c;
    }
    let near = &c.callers[..c.callers.len().min(CALLER_DEPTH)];
    let found = PROBE_PATHS.iter().find(|(n, callee, by, _)| {
        Cap(*n) == cap
            && near
                .windows(2)
                .any(|w| strip_suffix(&w[0]) == *callee && strip_suffix(&w[1]) == *by)
    });
    if let Some((_, _, _, source)) = found {
        c.audit = Audit::Probe;
        c.rule = format!("probe by {source}");
    }
    c
}

/// `foo.cold`, `foo.isra.0`, `foo.constprop.0` are compiler clones of `foo`.
fn strip_suffix(frame: &str) -> &str {
    frame.split('.').next().unwrap_or(frame)
}

/// Function names that say little in a short path: the capability plumbing itself.
const PLUMBING: &[&str] = &[
    "security_capable",
    "ns_capable",
    "ns_capable_common",
    "capable",
    "ns_capable_setid",
    "has_ns_capability",
    "file_ns_capable",
];

/// A short human path: the first callers that are not capability plumbing, outermost last.
pub fn short_path(callers: &[String], n: usize) -> String {
    callers
        .iter()
        .filter(|f| !PLUMBING.contains(&strip_suffix(f)))
        .filter(|f| !f.starts_with("0x"))
        .take(n)
        .cloned()
        .collect::<Vec<_>>()
        .join(" <- ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    /// Stacks recorded on Linux 6.18 from real workloads (chown, ls, ps, ping, nice, unshare,
    /// python bind, mknod, sysctl, /proc reads).
    const RECORDED: &str = include_str!("../tests/fixtures/stacks-linux-6.18.json");

    fn recorded() -> Vec<(String, Audit, Vec<String>)> {
        let v: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
        v["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let audit = serde_json::from_value(s["expect"].clone()).unwrap();
                let frames = serde_json::from_value(s["frames"].clone()).unwrap();
                (s["cap"].as_str().unwrap().to_string(), audit, frames)
            })
            .collect()
    }

    #[test]
    fn classifies_every_recorded_stack() {
        let stacks = recorded();
        assert!(stacks.len() >= 20);
        for (cap, expect, frames) in &stacks {
            // The recorded frames start above cap_capable; put it back as the stack map has it.
            let mut full = vec!["cap_capable".to_string()];
            full.extend(frames.iter().cloned());
            let cap = Cap::parse(cap).unwrap();
            assert_eq!(
                classify_check(cap, &full).audit,
                *expect,
                "{cap}: {frames:?}"
            );
        }
    }

    #[test]
    fn every_table_entry_is_seen_in_recorded_stacks() {
        let stacks = recorded();
        let seen = |name: &str| {
            stacks
                .iter()
                .any(|(_, _, f)| f.iter().take(CALLER_DEPTH).any(|x| strip_suffix(x) == name))
        };
        for (name, _) in NOAUDIT_CALLERS.iter().chain(PROBE_CALLERS) {
            assert!(seen(name), "{name} has no recorded stack");
        }
        // in_group_or_capable is tail-called away on 6.18: its entries cover other builds.
        for (cap, callee, by, _) in PROBE_PATHS.iter().filter(|p| p.1 != "in_group_or_capable") {
            let name = Cap(*cap).name();
            assert!(
                stacks.iter().any(|(c, a, f)| *c == name
                    && *a == Audit::Probe
                    && f.windows(2).any(|w| w[0] == *callee && w[1] == *by)),
                "{name} {callee} <- {by} has no recorded probe stack"
            );
        }
        assert!(
            stacks
                .iter()
                .any(|(_, a, f)| *a == Audit::Noaudit
                    && f.iter().any(|x| x.ends_with(NOAUDIT_SUFFIX)))
        );
        // The audited paths people care about are told apart from the noaudit SYS_ADMIN noise.
        for cap in ["CHOWN", "NET_BIND_SERVICE", "NET_RAW", "MKNOD", "SYS_NICE"] {
            assert!(
                stacks
                    .iter()
                    .any(|(c, a, _)| c == cap && *a == Audit::Audited),
                "{cap}"
            );
        }
    }

    #[test]
    fn unknown_without_frames() {
        assert_eq!(classify(&[]).audit, Audit::Unknown);
        assert_eq!(
            classify(&stack("bpf_trace_run5 cap_capable")).audit,
            Audit::Unknown
        );
    }

    #[test]
    fn strips_compiler_clone_suffixes() {
        let c = classify(&stack(
            "cap_capable security_vm_enough_memory_mm.isra.0 do_brk_flags",
        ));
        assert_eq!(c.audit, Audit::Noaudit);
        assert_eq!(
            strip_suffix("ns_capable_noaudit.cold"),
            "ns_capable_noaudit"
        );
    }

    #[test]
    fn fexit_stacks_start_after_the_program_and_trampoline() {
        // As taken on 7.3 by the fexit program (frames innermost first).
        let c = classify(&stack(
            "bpf_prog_66803a51709917ae_cap_capable_fexit bpf_trampoline_6442524968 \
             security_vm_enough_memory_mm __mmap_region",
        ));
        assert_eq!(c.audit, Audit::Noaudit);
        assert_eq!(c.callers[0], "security_vm_enough_memory_mm");
        // With a cached symbol table the program and trampoline have no name.
        let c = classify(&stack(
            "0xffffffffc0009010 0xffffffffc000b000 security_vm_enough_memory_mm __mmap_region",
        ));
        assert_eq!(c.audit, Audit::Noaudit);
        assert_eq!(c.callers[0], "security_vm_enough_memory_mm");
        // kretprobe stacks start at the caller already.
        let c = classify(&stack("capable_wrt_inode_uidgid setattr_prepare"));
        assert_eq!(c.callers[0], "capable_wrt_inode_uidgid");
    }

    #[test]
    fn only_overlayfs_borrows_credentials() {
        let path = |s: &str| s.split(" <- ").map(String::from).collect::<Vec<_>>();
        assert!(borrows_credentials(&path(
            "capable_wrt_inode_uidgid <- setattr_prepare <- ext4_setattr <- notify_change <- ovl_setattr"
        )));
        // Overlayfs checking its own inode with the caller's credentials, then the layer's
        // inode with its mounter's.
        assert!(!borrows_credentials(&path(
            "capable_wrt_inode_uidgid <- generic_permission <- ovl_permission <- inode_permission <- link_path_walk <- path_openat <- do_filp_open <- io_openat2 <- io_issue_sqe"
        )));
        assert!(!borrows_credentials(&path(
            "capable_wrt_inode_uidgid <- setattr_prepare <- ovl_setattr <- notify_change"
        )));
        assert!(borrows_credentials(&path(
            "capable_wrt_inode_uidgid <- generic_permission <- inode_permission <- ovl_permission"
        )));
        assert!(borrows_credentials(&path(
            "ns_capable <- xattr_permission <- vfs_getxattr <- ovl_xattr_get <- ovl_lookup"
        )));
        // An openat under a registered io_uring personality (override_creds in io_issue_sqe).
        assert!(!borrows_credentials(&path(
            "capable_wrt_inode_uidgid <- generic_permission <- inode_permission <- link_path_walk <- path_openat <- do_filp_open <- io_openat2 <- io_issue_sqe"
        )));
    }

    #[test]
    fn fsetid_in_chmod_is_a_probe_but_not_chown_there_nor_fsetid_when_dropping_sgid() {
        let chmod = stack(
            "cap_capable security_capable capable_wrt_inode_uidgid setattr_prepare \
             ext4_setattr notify_change chmod_common",
        );
        assert_eq!(classify_check(Cap(4), &chmod).audit, Audit::Probe);
        // chown_ok() is inlined into setattr_prepare: the same frames ask CAP_CHOWN.
        assert_eq!(classify_check(Cap(0), &chmod).audit, Audit::Audited);
        let copy = stack(
            "cap_capable security_capable capable_wrt_inode_uidgid in_group_or_capable \
             setattr_copy ext4_setattr",
        );
        assert_eq!(classify_check(Cap(4), &copy).audit, Audit::Probe);
        // The file already has S_ISGID: FSETID decides whether a chown or write keeps it.
        let drop = stack(
            "cap_capable security_capable capable_wrt_inode_uidgid setattr_should_drop_sgid \
             chown_common",
        );
        assert_eq!(classify_check(Cap(4), &drop).audit, Audit::Audited);
    }

    #[test]
    fn far_callers_do_not_count() {
        let c = classify(&stack("cap_capable a b c d e f g ns_capable_noaudit"));
        assert_eq!(c.audit, Audit::Audited);
    }

    #[test]
    fn short_path_skips_plumbing() {
        let callers = stack("security_capable ns_capable chown_ok chown_common do_fchownat");
        assert_eq!(short_path(&callers, 2), "chown_ok <- chown_common");
    }
}
