//! What kind of failure ended captrace, and the exit status of each kind. Library modules
//! return their own error types; this is the one place that maps them to exit codes.
use std::error::Error as StdError;

use crate::{
    container::{NotRunning, resolve::NoCgroup2},
    launch::ExecError,
    loader::LoadError,
    profile::ProfileError,
    safe_file::NoOutputDir,
};

/// captrace's own failure when no class below fits.
pub const EXIT_FAILURE: u8 = Class::Failure as u8;

/// Bad usage found after parsing (unknown capability or namespace, conflicting flags): exit 2
/// like clap's own usage errors, before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What kind of failure ended captrace; each kind has its own exit status, so scripts can tell
/// "fix the command line" from "fix the profile", "run as root" and "this kernel cannot".
/// 2, 125, 126 and 127 mean what they mean for `docker run` and `env`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// Bad usage: flags, capability, namespace, user or container names, an empty command.
    Usage = 2,
    /// A bad input file: a profile that cannot be read, is too large, or is not valid.
    Input = 3,
    /// captrace lacks the privileges it needs (root, or CAP_BPF and CAP_PERFMON).
    Privileges = 4,
    /// The kernel lacks something captrace needs (BTF, the hook, a mounted cgroup v2).
    Kernel = 5,
    /// Any other failure of captrace itself.
    Failure = 125,
    /// The command was found but cannot be executed.
    CannotExecute = 126,
    /// The command was not found.
    NotFound = 127,
}

/// The class of the first error in the chain that has one (outermost first), else `Failure`.
pub fn classify(err: &anyhow::Error) -> Class {
    err.chain().find_map(class_of).unwrap_or(Class::Failure)
}

/// The exit status for a failure of captrace.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    classify(err) as u8
}

fn class_of(err: &(dyn StdError + 'static)) -> Option<Class> {
    if err.is::<UsageError>() || err.is::<NotRunning>() || err.is::<NoOutputDir>() {
        return Some(Class::Usage);
    }
    if err.is::<NoCgroup2>() {
        return Some(Class::Kernel);
    }
    if let Some(e) = err.downcast_ref::<ProfileError>() {
        return Some(match e {
            ProfileError::Read { .. }
            | ProfileError::NotRegular { .. }
            | ProfileError::TooLarge { .. }
            | ProfileError::Parse { .. }
            | ProfileError::Version { .. } => Class::Input,
            ProfileError::Write { .. } => Class::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<ExecError>() {
        return Some(match e {
            ExecError::NotFound(_) => Class::NotFound,
            ExecError::NotExecutable(..) => Class::CannotExecute,
            ExecError::Empty => Class::Usage,
            ExecError::NotPermitted(..) => Class::Privileges,
            ExecError::Setup(..) => Class::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<LoadError>() {
        // Exhaustive on purpose: a new way to fail to load must be given a class here.
        return Some(match e {
            LoadError::NotPrivileged | LoadError::UserNamespace => Class::Privileges,
            LoadError::NoHook(_) | LoadError::NoEnforcement(_) | LoadError::Btf(_) => Class::Kernel,
            LoadError::NoObject | LoadError::Map { .. } | LoadError::Thread(_) => Class::Failure,
            LoadError::TasksCapacity(_) | LoadError::UsageCacheSlots(_) => Class::Usage,
            LoadError::Ebpf(_) | LoadError::Program { .. } => kernel_refusal(e),
        });
    }
    None
}

/// The kernel refused a map or program: for lack of privileges (EPERM, EACCES, e.g. an LSM
/// or a user namespace), for lack of a feature (any other errno), or not at all (captrace's own
/// object is bad).
fn kernel_refusal(err: &(dyn StdError + 'static)) -> Class {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => Class::Privileges,
                _ => Class::Kernel,
            };
        }
        cause = e.source();
    }
    Class::Failure
}

#[cfg(test)]
mod tests {
    use std::io;

    use anyhow::Context as _;

    use super::*;

    fn perm() -> io::Error {
        io::Error::from_raw_os_error(libc::EPERM)
    }

    #[test]
    fn each_error_type_has_its_class_through_context() {
        let usage = anyhow::Error::from(UsageError("x".into())).context("while doing y");
        assert_eq!(exit_code(&usage), 2);
        let profile = Err::<(), _>(ProfileError::TooLarge {
            path: "p".into(),
            size: 1,
        })
        .context("cannot recommend")
        .unwrap_err();
        assert_eq!(exit_code(&profile), 3);
        let write = anyhow::Error::from(ProfileError::Write {
            path: "p".into(),
            source: perm(),
        });
        assert_eq!(exit_code(&write), 125);
        assert_eq!(exit_code(&LoadError::NotPrivileged.into()), 4);
        assert_eq!(exit_code(&LoadError::UserNamespace.into()), 4);
        assert_eq!(exit_code(&LoadError::Btf("gone".into()).into()), 5);
        let no_hook = LoadError::NoHook(crate::hook::Refusals(vec![(
            crate::hook::Hook::Tracepoint,
            "absent".into(),
        )]));
        assert_eq!(exit_code(&no_hook.into()), 5);
        assert_eq!(
            exit_code(&LoadError::NoEnforcement("no bpf in lsm=".into()).into()),
            5
        );
        assert_eq!(exit_code(&LoadError::NoObject.into()), 125);
        assert_eq!(exit_code(&NoCgroup2.into()), 5);
        assert_eq!(exit_code(&ExecError::Empty.into()), 2);
        assert_eq!(exit_code(&ExecError::NotFound("x".into()).into()), 127);
        let not_exec = ExecError::NotExecutable("x".into(), "y".into());
        assert_eq!(exit_code(&not_exec.into()), 126);
        assert_eq!(exit_code(&ExecError::NotPermitted("unshare").into()), 4);
        assert_eq!(
            exit_code(&ExecError::Setup("unshare", "y".into()).into()),
            125
        );
        assert_eq!(exit_code(&anyhow::anyhow!("anything else")), 125);
    }

    #[test]
    fn the_help_lists_every_class() {
        for class in [
            Class::Usage,
            Class::Input,
            Class::Privileges,
            Class::Kernel,
            Class::Failure,
            Class::CannotExecute,
            Class::NotFound,
        ] {
            let code = format!("\n  {:<5}", class as u8);
            assert!(
                crate::cli::EXIT_CODES_HELP.contains(&code),
                "{class:?} ({code:?}) missing from the help"
            );
        }
    }

    #[test]
    fn a_kernel_refusal_is_classed_by_its_errno() {
        let program = |errno| LoadError::Program {
            name: "p",
            source: aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_prog_load",
                io_error: io::Error::from_raw_os_error(errno),
            }),
        };
        assert_eq!(exit_code(&program(libc::EPERM).into()), 4);
        assert_eq!(exit_code(&program(libc::EACCES).into()), 4);
        assert_eq!(exit_code(&program(libc::EINVAL).into()), 5);
        let unparsable = LoadError::Program {
            name: "p",
            source: aya::programs::ProgramError::NotLoaded,
        };
        assert_eq!(exit_code(&unparsable.into()), 125);
    }
}
