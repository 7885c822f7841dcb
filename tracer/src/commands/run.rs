//! `captrace run [...] -- CMD...`: launch a workload with exactly its capabilities.
use std::{fs, path::Path};

use anyhow::Context as _;
use nix::unistd::Pid;

use crate::{
    capability::Cap,
    capability_set::{self, requested_set},
    cli::RunArgs,
    enforce::{self, Mode},
    error::UsageError,
    launch::{self, NsSet, Privileges, Sandbox, Spec, privileges, seccomp},
    loader::Options,
    output, recommendation,
    recording::{Session, Wait},
    safe_file,
};

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The environment: captrace's own (less its CAPTRACE_* variables), or in a root file system
/// a minimal one as docker gives; then each --env.
fn environment(args: &RunArgs, user_home: &str) -> anyhow::Result<Option<Vec<String>>> {
    let mut env: Vec<String> = if args.rootfs.is_some() {
        let mut e = vec![
            format!("PATH={}", launch::DEFAULT_PATH),
            format!("HOME={user_home}"),
        ];
        if let Some(h) = &args.hostname {
            e.push(format!("HOSTNAME={h}"));
        }
        if let Ok(t) = std::env::var("TERM") {
            e.push(format!("TERM={t}"));
        }
        e
    } else if args.env.is_empty() {
        return Ok(None);
    } else {
        std::env::vars()
            .filter(|(k, _)| !k.starts_with("CAPTRACE_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    };
    for kv in &args.env {
        let entry = match kv.split_once('=') {
            Some(_) => kv.clone(),
            None => match std::env::var(kv) {
                Ok(v) => format!("{kv}={v}"),
                Err(_) => continue,
            },
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        if key.is_empty() {
            return Err(usage(format!("bad --env {kv:?}: use KEY=VALUE")));
        }
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    Ok(Some(env))
}

/// The set the flags ask for: the workload's capabilities, and the enforcer's allowed set.
fn allowed_set(args: &RunArgs) -> anyhow::Result<Vec<Cap>> {
    requested_set(
        args.profile.as_deref(),
        &args.cap_drop,
        &args.cap_add,
        &capability_set::own(caps::CapSet::Bounding),
    )
}

/// Raw flags and the allowed set to a launch spec; every check happens here, before anything
/// starts.
pub fn spec(args: &RunArgs, allowed: &[Cap]) -> anyhow::Result<Spec> {
    // Complain mode reports what the set would refuse: the workload must still hold it.
    let caps: Vec<Cap> = if args.enforce == Some(Mode::Complain) {
        capability_set::own(caps::CapSet::Bounding)
            .into_iter()
            .collect()
    } else {
        allowed.to_vec()
    };
    let mut ns = match &args.ns {
        Some(list) => NsSet::parse(list).map_err(usage)?,
        None => NsSet::default(),
    };
    if let Some(root) = &args.rootfs {
        if !root.join("bin").is_dir() && !root.join("usr").is_dir() {
            return Err(usage(format!(
                "--rootfs {}: not a root file system (no bin/ or usr/)",
                root.display()
            )));
        }
        ns.mnt = true;
    }
    ns.uts |= args.hostname.is_some();
    ns.pid |= args.init;
    // A PID namespace gets its own /proc, which needs a mount namespace.
    ns.mnt |= ns.pid;
    let etc = args.rootfs.as_deref().unwrap_or(Path::new("/")).join("etc");
    // The root file system is the workload's: its passwd may be a FIFO or a link to
    // /dev/zero, which must not stall or exhaust captrace.
    let read = |f: &str| {
        safe_file::read_regular(&etc.join(f), 1 << 20)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let user = match &args.user {
        Some(u) => Some(privileges::parse_user(u, &read("passwd"), &read("group")).map_err(usage)?),
        None => None,
    };
    let home = match &user {
        Some(u) if u.uid != 0 => "/".to_string(),
        _ => "/root".to_string(),
    };
    let (userns_base, userns_gid_base) = match args.userns_base {
        Some(b) => (b, None),
        None => {
            let (u, g) = launch::subid::bases(Path::new("/"));
            (u, Some(g))
        }
    };
    let sandbox = (!ns.is_empty()).then(|| Sandbox {
        ns,
        hostname: args.hostname.clone(),
        rootfs: args
            .rootfs
            .as_ref()
            .map(|r| r.canonicalize().unwrap_or(r.clone())),
        userns_base,
        userns_gid_base,
        ..Default::default()
    });
    let seccomp = seccomp_programs(&args.seccomp, &caps)?;
    Ok(Spec {
        argv: args.command.clone(),
        env: environment(args, &home)?,
        privileges: Some(Privileges {
            caps,
            user,
            no_new_privs: true,
            inherit_groups: false,
        }),
        sandbox,
        init: args.init,
        quiet: false,
        // `run --audit` reports what the sandbox and privileges setup asks too.
        privileges_first: false,
        new_session: true,
        seccomp,
    })
}

/// `--seccomp`: compiled before fork, so a bad profile starts nothing (exit 2).
fn seccomp_programs(choice: &str, caps: &[Cap]) -> anyhow::Result<Vec<seccompiler::BpfProgram>> {
    let text = match choice {
        "unconfined" => return Ok(Vec::new()),
        "default" => seccomp::DEFAULT_PROFILE.to_string(),
        file => safe_file::read_regular(Path::new(file), 1 << 20)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| usage(format!("--seccomp {file}: {e}")))?,
    };
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    seccomp::compile(&text, caps, &release).map_err(|e| usage(format!("--seccomp {choice}: {e}")))
}

/// Capabilities that make a workload root on the host whatever namespaces (but a user
/// namespace) it is in: SYS_ADMIN (mount, and most administration), SYS_MODULE (kernel
/// modules), SYS_RAWIO (I/O ports, raw device access), SYS_PTRACE (other processes' memory
/// without a PID namespace, and kernel checks that stand in for root), DAC_READ_SEARCH
/// (open_by_handle_at opens any file of a host file system, the "shocker" escape), BPF
/// (kernel programs).
pub const ROOT_EQUIVALENT: &[&str] = &[
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "BPF",
];

/// The one-line warning for a set that holds root-equivalent capabilities, if it does. In
/// a user namespace of its own the workload holds them only there, and the host's checks
/// (made against the initial user namespace) refuse them.
pub fn root_equivalent_warning(set: &[Cap], userns: bool) -> Option<String> {
    if userns {
        return None;
    }
    let held: Vec<String> = set
        .iter()
        .map(|c| c.name())
        .filter(|n| ROOT_EQUIVALENT.contains(&n.as_str()))
        .collect();
    (!held.is_empty()).then(|| {
        format!(
            "warning: {} each give the workload root on the host, whatever its namespaces; add --ns user to hold them only there",
            held.join(", ")
        )
    })
}

fn show_pids(pid: Pid, levels: usize) {
    let host = launch::workload_pid(pid, levels);
    let status = fs::read_to_string(format!("/proc/{}/status", host.as_raw())).unwrap_or_default();
    let inside = crate::container::parse_status(&status)
        .inner_pid()
        .map_or_else(|| "?".into(), |p| p.to_string());
    output::note(format_args!(
        "the workload is PID {inside} in its PID namespace and PID {} on the host",
        host.as_raw()
    ));
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let allowed = allowed_set(&args)?;
    let spec = spec(&args, &allowed)?;
    let userns = spec.sandbox.as_ref().is_some_and(|s| s.ns.user);
    if let Some(warning) = root_equivalent_warning(&allowed, userns) {
        output::note(warning);
    }
    let levels = launch::supervisors(&spec);
    let status = if args.audit || args.enforce.is_some() {
        let mut session = Session::new(Options {
            hook: Some(args.hook.hook),
            enforce: args.enforce.is_some(),
            ..Options::default()
        })?;
        if let Some(mode) = args.enforce {
            session.enforce(enforce::policy(&allowed, mode, false));
        }
        let run = session.run(
            &spec,
            Wait {
                follow_daemons: false,
                deadline: None,
            },
            &mut |pid| {
                if args.show_pids {
                    show_pids(pid, levels)
                }
            },
        )?;
        let checks = session.checks(run.workload)?;
        let denied = recommendation::denials(&checks);
        if denied.is_empty() {
            output::note("audit: no capability check was denied");
        }
        for line in enforce::denial_lines(&denied) {
            output::note(format_args!("audit: {line}"));
        }
        if args.enforce.is_some() {
            let summary = session.denial_summary(run.workload)?;
            if summary.is_empty() {
                output::note("enforce: nothing outside the allowed set was asked for");
            }
            for line in summary {
                output::note(format_args!("enforce: total: {line}"));
            }
        }
        // What the kernel side lost or refused for want of room, with `--audit` too.
        for line in enforce::exit_lines(
            &session.losses(),
            session.forks_refused(),
            session.live_denials(),
        ) {
            output::note(line);
        }
        run.exit_status
    } else {
        launch::block_supervised_signals();
        let child = launch::spawn_suspended(&spec)?;
        let pid = child.resume().context("starting the workload")?;
        if args.show_pids {
            show_pids(pid, levels);
        }
        launch::supervise(pid)
    };
    Ok((status & 0xff) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability;

    #[test]
    fn root_equivalent_capabilities_are_named_unless_in_a_user_namespace() {
        let set = [Cap(0), Cap(19), Cap(21)];
        let w = root_equivalent_warning(&set, false).unwrap();
        assert!(w.starts_with("warning: SYS_PTRACE, SYS_ADMIN each"), "{w}");
        assert!(!w.contains('\n'));
        assert_eq!(root_equivalent_warning(&set, true), None);
        let defaults: Vec<Cap> = capability::docker_defaults().collect();
        assert_eq!(root_equivalent_warning(&defaults, false), None);
    }
}
