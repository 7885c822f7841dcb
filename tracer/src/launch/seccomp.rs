//! The seccomp filter of a `run` workload: Docker's default by default, a profile in Docker's
//! JSON format (`--seccomp FILE`), or none (`--seccomp unconfined`).
//!
//! Compiled with `seccompiler` before fork; the child only installs the programs (after
//! no_new_privs, right before exec). seccompiler gives one filter one match action, so a
//! profile becomes one filter per action: first the allow list (mismatch: the default action),
//! then one filter per other action (mismatch: allow). The kernel runs every filter and keeps
//! the most severe action, and between equal actions the newest filter's
//! (`seccomp_run_filters`): so `clone3`'s ENOSYS wins over the allow list's EPERM.
use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

use crate::capability::Cap;

/// What `--seccomp` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Docker's default profile.
    Default,
    /// No filter.
    Unconfined,
    /// A profile in Docker's JSON format (the text of the file).
    Profile(String),
}

/// Why a profile could not become a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not JSON of Docker's seccomp format.
    #[error("not a seccomp profile in Docker's format: {0}")]
    Json(#[from] serde_json::Error),
    /// An action captrace does not install.
    #[error("unsupported seccomp action {0}")]
    Action(String),
    /// An argument comparison that is not one of libseccomp's.
    #[error("unsupported seccomp comparison {0}")]
    Op(String),
    /// seccompiler refused the filter.
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// seccompiler refused to compile it.
    #[error("cannot compile the seccomp filter: {0}")]
    Compile(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Syscalls>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscalls {
    #[serde(default)]
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Docker's default profile, as Docker's documentation describes it, in Docker's format:
/// everything allowed but the syscalls it blocks, each allowed again with the capability
/// that Docker ties it to. Docker's own profile is an allow list; this is the same line drawn
/// as a deny list, so a syscall newer than this table is allowed (use `--seccomp FILE` with
/// Docker's or podman's JSON, e.g. `/usr/share/containers/seccomp.json`, for an allow list).
pub const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// Per syscall number: the rules (any may match), or `None` for "always".
type RulesBySyscall = BTreeMap<i64, Option<Vec<SeccompRule>>>;

const EPERM: u32 = libc::EPERM as u32;

fn action(
    name: &str,
    errno: Option<u32>,
    default_errno: u32,
) -> Result<SeccompAction, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(default_errno)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        other => return Err(SeccompError::Action(other.into())),
    })
}

fn condition(a: &Arg) -> Result<SeccompCondition, SeccompError> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        // libseccomp: (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(SeccompError::Op(other.into())),
    };
    Ok(SeccompCondition::new(
        a.index,
        SeccompCmpArgLen::Qword,
        op,
        value,
    )?)
}

/// Docker's name for this machine's architecture.
fn this_arch() -> (&'static str, TargetArch) {
    #[cfg(target_arch = "aarch64")]
    return ("arm64", TargetArch::aarch64);
    #[cfg(not(target_arch = "aarch64"))]
    ("amd64", TargetArch::x86_64)
}

/// `6.18.44-foo` (a kernel release, `uname -r`) as (6, 18).
pub fn version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn holds(caps: &[Cap], name: &str) -> bool {
    Cap::parse(name).is_ok_and(|c| caps.contains(&c))
}

/// The programs to install, in order, for `profile` given the workload's capability set and
/// the kernel release (`uname -r`). Syscalls this architecture lacks are skipped, as Docker
/// (libseccomp) does.
pub fn compile(
    profile: &str,
    caps: &[Cap],
    release: &str,
) -> Result<Vec<BpfProgram>, SeccompError> {
    let p: Profile = serde_json::from_str(profile)?;
    let default_errno = p.default_errno_ret.unwrap_or(EPERM);
    let default = action(&p.default_action, None, default_errno)?;
    let (arch_name, arch) = this_arch();
    let kernel = version(release);
    let mut by_action: Vec<(SeccompAction, RulesBySyscall)> = Vec::new();
    for s in &p.syscalls {
        let inc = &s.includes;
        let applies = inc.caps.iter().all(|c| holds(caps, c))
            && !s.excludes.caps.iter().any(|c| holds(caps, c))
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch_name))
            && !s.excludes.arches.iter().any(|a| a == arch_name)
            && inc
                .min_kernel
                .as_deref()
                .is_none_or(|m| kernel >= version(m));
        if !applies {
            continue;
        }
        let act = action(&s.action, s.errno_ret, default_errno)?;
        if act == default {
            continue;
        }
        let conds = s
            .args
            .iter()
            .flatten()
            .map(condition)
            .collect::<Result<Vec<_>, _>>()?;
        let rule = if conds.is_empty() {
            None
        } else {
            Some(SeccompRule::new(conds)?)
        };
        let i = match by_action.iter().position(|(a, _)| *a == act) {
            Some(i) => i,
            None => {
                by_action.push((act, BTreeMap::new()));
                by_action.len() - 1
            }
        };
        for name in &s.names {
            let Ok(nr) = name.parse::<syscalls::Sysno>() else {
                continue;
            };
            let entry = by_action[i]
                .1
                .entry(nr.id() as i64)
                .or_insert(Some(Vec::new()));
            match (entry.as_mut(), &rule) {
                (Some(rules), Some(r)) => rules.push(r.clone()),
                (_, None) => *entry = None,
                (None, Some(_)) => {}
            }
        }
    }
    // The allow list first, then the other actions (see the module comment).
    by_action.sort_by_key(|(a, _)| *a != SeccompAction::Allow);
    let mut programs = Vec::new();
    for (act, rules) in by_action {
        let rules = rules
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let (mismatch, matched) = if act == SeccompAction::Allow {
            (default.clone(), act)
        } else {
            (SeccompAction::Allow, act)
        };
        let filter = SeccompFilter::new(rules, mismatch, matched, arch)?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| SeccompError::Compile(e.to_string()))?;
        programs.push(program);
    }
    Ok(programs)
}

/// In the child, after no_new_privs: installs `programs`. Returns the errno of a failure.
pub fn install(programs: &[BpfProgram]) -> Result<(), i32> {
    for p in programs {
        seccompiler::apply_filter(p).map_err(|e| match e {
            seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(libc::EINVAL),
            _ => libc::EINVAL,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_with_and_without_capabilities() {
        let none = compile(DEFAULT_PROFILE, &[], "6.18.0").unwrap();
        // Deny EPERM, and clone3's ENOSYS.
        assert_eq!(none.len(), 2);
        let all: Vec<Cap> = (0..41).map(Cap).collect();
        // Every gated syscall allowed again, clone3 too: nothing left to filter but the
        // syscalls no capability unlocks.
        assert_eq!(compile(DEFAULT_PROFILE, &all, "6.18.0").unwrap().len(), 1);
    }

    #[test]
    fn docker_format_rules_follow_caps_arches_and_kernel() {
        let p = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","write","no_such_syscall"],"action":"SCMP_ACT_ALLOW"},
            {"names":["chroot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_CHROOT"]}},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
            {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.0"}},
            {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38}
        ]}"#;
        assert_eq!(compile(p, &[], "6.18").unwrap().len(), 2);
        assert!(compile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, &[], "6.1").is_err());
        assert!(compile("[]", &[], "6.1").is_err());
        let bad_op = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#;
        assert!(matches!(
            compile(bad_op, &[], "6.1"),
            Err(SeccompError::Op(_))
        ));
    }

    #[test]
    fn kernel_versions_compare_as_numbers() {
        assert!(version("6.18.44-cloud") >= version("4.8"));
        assert!(version("4.14") > version("4.8"));
        assert_eq!(version("garbage"), (0, 0));
    }
}
