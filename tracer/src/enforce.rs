//! In-kernel enforcement with BPF LSM: the policy of a workload, whether this kernel can run the
//! enforcer, and what a denial looks like to the user.
use std::{
    collections::{BTreeMap, HashSet},
    fs,
};

use serde::Serialize;
use tracer_common::{Denial, Policy, UsageKey, mode, opts, refused, verdict};

use crate::{
    capability::{self, Cap},
    escape::printable,
    output::{self, To},
    profile::{Check, Losses},
    syscall,
};

/// `--enforce[=MODE]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse every capability outside the set (EPERM) and report it.
    #[default]
    Enforce,
    /// Allow it and report it.
    Complain,
}

impl Mode {
    fn raw(self) -> u8 {
        match self {
            Mode::Enforce => mode::ENFORCE,
            Mode::Complain => mode::COMPLAIN,
        }
    }
}

const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Whether BPF LSM is active here, and if not, why and what to do. The program load itself is
/// the final word; this reads what the kernel says it booted with.
pub fn available() -> Result<(), String> {
    let list = match fs::read_to_string(LSM_LIST) {
        Ok(l) => l.trim().to_string(),
        Err(_) => {
            return Err(format!(
                "securityfs is not mounted (no {LSM_LIST}): mount -t securityfs none /sys/kernel/security"
            ));
        }
    };
    if !list.split(',').any(|l| l == "bpf") {
        return Err(format!(
            "the kernel runs the LSMs {list} without bpf; boot with lsm={list},bpf"
        ));
    }
    Ok(())
}

/// The policy allowing exactly `caps`; `armed` from the start (enforce) or at the workload's
/// first exec (run).
pub fn policy(caps: &[Cap], mode: Mode, armed: bool) -> Policy {
    Policy {
        allowed: capability::to_mask(caps),
        mode: mode.raw(),
        armed: u8::from(armed),
        _pad: [0; 6],
    }
}

/// One denial as it happened, for the live report.
#[derive(Clone, Debug, Serialize)]
pub struct DenialRecord {
    pub pid: u32,
    pub comm: String,
    pub syscall: Option<String>,
    /// None when what was refused is an io_uring personality (`io_uring_personality`).
    pub capability: Option<Cap>,
    /// The workload asked io_uring to run a request with credentials it registered earlier
    /// (IORING_REGISTER_PERSONALITY): refused to confined tasks whatever they hold.
    pub io_uring_personality: bool,
    /// A fork refused because captrace's task map was full: the child could not have been
    /// confined (`refused::UNTRACKABLE_TASK`).
    pub fork_refused: bool,
    /// "denied" (refused with EPERM) or "allowed" (complain mode: reported only).
    pub verdict: &'static str,
    pub nested_userns: bool,
}

impl DenialRecord {
    pub fn new(d: &Denial, pid: u32, comm: String) -> DenialRecord {
        DenialRecord {
            pid,
            comm,
            syscall: syscall::name(d.syscall),
            capability: (d.what == refused::CAPABILITY).then_some(Cap(d.cap)),
            io_uring_personality: d.what == refused::URING_PERSONALITY,
            fork_refused: d.what == refused::UNTRACKABLE_TASK,
            verdict: if d.mode == mode::ENFORCE {
                "denied"
            } else {
                "allowed"
            },
            nested_userns: d.scope == tracer_common::scope::NESTED_USERNS,
        }
    }

    /// "chown[1234]: fchownat: CHOWN denied (outside the allowed set)"
    pub fn line(&self) -> String {
        if self.fork_refused {
            return format!(
                "{}[{}]: {}: fork refused: captrace's task map is full; the child could not be \
                 confined (the workload sees EAGAIN)",
                printable(&self.comm),
                self.pid,
                self.syscall.as_deref().unwrap_or("-"),
            );
        }
        let Some(capability) = self.capability else {
            let why = if self.verdict == "denied" {
                "the request fails with EPERM"
            } else {
                "--enforce would refuse it"
            };
            return format!(
                "{}[{}]: {}: io_uring personality {} (credentials registered earlier, not the \
                 task's own; {why})",
                printable(&self.comm),
                self.pid,
                self.syscall.as_deref().unwrap_or("-"),
                self.verdict
            );
        };
        let why = if self.verdict == "denied" {
            "outside the allowed set"
        } else {
            "outside the allowed set; --enforce would deny it"
        };
        let ns = if self.nested_userns {
            ", in a user namespace of its own"
        } else {
            ""
        };
        format!(
            "{}[{}]: {}: {} {} ({why}{ns})",
            crate::escape::printable(&self.comm),
            self.pid,
            self.syscall.as_deref().unwrap_or("-"),
            capability,
            self.verdict
        )
    }
}

/// The exact totals of one workload at the end: "CHOWN in fchownat: denied 3x".
pub fn summary(counts: &[(UsageKey, u64)], workload: u64) -> Vec<String> {
    let mut totals: BTreeMap<(Cap, Option<String>, bool, bool), u64> = BTreeMap::new();
    for (k, n) in counts.iter().filter(|(k, _)| k.workload == workload) {
        let noaudit = k.opts & opts::NOAUDIT != 0;
        *totals
            .entry((
                Cap(k.cap),
                syscall::name(i32::from(k.syscall)),
                k.verdict == verdict::DENIED,
                noaudit,
            ))
            .or_default() += n;
    }
    totals
        .into_iter()
        .map(|((cap, sys, refused, noaudit), n)| {
            format!(
                "{cap} in {}: {} {n}x{}",
                sys.as_deref().unwrap_or("-"),
                if refused { "denied" } else { "allowed" },
                if noaudit {
                    " (noaudit probes: the caller copes without it)"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// Distinct denial lines printed live, at most: past them, and for a line already printed,
/// only the exact totals at exit count the denial.
pub const LIVE_LINES: usize = 1000;

/// The live report of denials. A workload that retries a refused operation in a loop would
/// print a line per attempt, and a reader that does not keep up would stall captrace (its
/// output is a pipe): so each distinct line is printed once, and at most `LIVE_LINES` of
/// them. The exact totals come at exit (`summary`, `exit_lines`).
#[derive(Debug, Default)]
pub struct LiveDenials {
    shown: HashSet<String>,
    held_back: u64,
}

impl LiveDenials {
    /// Reports denials as they come (`Decoded::into_denial` of what the events told), one
    /// line each on `to` (see [`output::denial`]), but not a repeat of a line printed before.
    pub fn print(&mut self, records: impl IntoIterator<Item = DenialRecord>, to: To) {
        for record in records {
            let line = record.line();
            if self.shown.len() >= LIVE_LINES || self.shown.contains(&line) {
                self.held_back += 1;
                continue;
            }
            output::denial(to, &line);
            self.shown.insert(line);
        }
    }

    /// Denials not printed live.
    pub fn held_back(&self) -> u64 {
        self.held_back
    }
}

/// The lines `enforce` and `run --enforce` end with when the kernel side lost something or
/// refused forks for want of room (nothing when all is well).
pub fn exit_lines(losses: &Losses, forks_refused: u64, live: &LiveDenials) -> Vec<String> {
    let mut out = losses.lines();
    if live.held_back > 0 {
        out.push(format!(
            "{} denials were not printed live (repeats of a line above, or past the first {}              lines); the totals count them",
            live.held_back, LIVE_LINES
        ));
    }
    if forks_refused > 0 {
        out.push(format!(
            "{forks_refused} forks refused (EAGAIN): captrace's task map was full, and a child it \
             cannot track could not be confined"
        ));
    }
    out
}

/// `run --audit`'s lines for the denied checks of a workload:
/// "mknod[42]: mknodat: MKNOD denied 1x; add --cap-add MKNOD"
pub fn denial_lines(denied: &[Check]) -> Vec<String> {
    denied
        .iter()
        .map(|d| {
            format!(
                "{}[{}]: {}: {} denied {}x; add --cap-add {}",
                printable(d.comm.as_deref().unwrap_or("?")),
                d.pid.unwrap_or(0),
                d.syscall.as_deref().unwrap_or("-"),
                d.cap,
                d.count,
                d.cap
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_exactly_the_set() {
        let p = policy(&[Cap(0), Cap(10)], Mode::Enforce, false);
        assert!(p.allows(0) && p.allows(10));
        assert!(!p.allows(1) && !p.allows(21) && !p.allows(64));
        assert_eq!(p.mode, mode::ENFORCE);
        assert_eq!(p.armed, 0);
        assert_eq!(policy(&[], Mode::Complain, true).allowed, 0);
    }

    #[test]
    fn a_denial_names_process_syscall_and_capability() {
        let d = Denial {
            workload: 1,
            syscall: 92,
            cap: 0,
            scope: tracer_common::scope::INIT_USERNS,
            mode: mode::ENFORCE,
            opts: opts::KNOWN,
            ..Denial::default()
        };
        assert_eq!(
            DenialRecord::new(&d, 42, "chown".into()).line(),
            "chown[42]: chown: CHOWN denied (outside the allowed set)"
        );
        let c = Denial {
            mode: mode::COMPLAIN,
            ..d
        };
        assert!(
            DenialRecord::new(&c, 42, "chown".into())
                .line()
                .ends_with("CHOWN allowed (outside the allowed set; --enforce would deny it)")
        );
    }

    /// A clone (syscall 56) refused because the child could not be confined.
    fn fork_refusal() -> Denial {
        Denial {
            workload: 1,
            syscall: 56,
            mode: mode::ENFORCE,
            what: refused::UNTRACKABLE_TASK,
            ..Denial::default()
        }
    }

    #[test]
    fn a_refused_fork_says_why_and_names_no_capability() {
        let d = fork_refusal();
        let r = DenialRecord::new(&d, 42, "sh".into());
        assert_eq!(r.capability, None);
        assert!(!r.io_uring_personality);
        assert_eq!(
            r.line(),
            "sh[42]: clone: fork refused: captrace's task map is full; the child could not be \
             confined (the workload sees EAGAIN)"
        );
    }

    #[test]
    fn a_denial_repeated_in_a_loop_is_printed_once_and_counted_at_exit() {
        let mut live = LiveDenials::default();
        let d = fork_refusal();
        let same = || DenialRecord::new(&d, 42, "sh".into());
        live.print([same(), same(), same()], To::Stderr);
        live.print([DenialRecord::new(&d, 43, "sh".into())], To::Stderr);
        assert_eq!(live.shown.len(), 2);
        assert_eq!(live.held_back(), 2);
        let lines = exit_lines(&Losses::default(), 0, &live);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("2 denials were not printed live"),
            "{lines:?}"
        );
    }

    #[test]
    fn past_the_live_limit_new_lines_are_held_back_too() {
        let mut live = LiveDenials::default();
        let d = fork_refusal();
        let n = u32::try_from(LIVE_LINES).unwrap() + 5;
        live.print(
            (0..n).map(|pid| DenialRecord::new(&d, pid, "sh".into())),
            To::Stderr,
        );
        assert_eq!(live.shown.len(), LIVE_LINES);
        assert_eq!(live.held_back(), 5);
    }

    #[test]
    fn exit_lines_report_losses_and_refused_forks_only_when_there_are_some() {
        let live = LiveDenials::default();
        assert!(exit_lines(&Losses::default(), 0, &live).is_empty());
        let full = Losses {
            map_full: 3,
            ..Losses::default()
        };
        let lines = exit_lines(&full, 2, &live);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("a full kernel map refused 3 entries"));
        assert!(lines[1].starts_with("2 forks refused (EAGAIN)"));
    }

    #[test]
    fn a_refused_io_uring_personality_names_no_capability() {
        let d = Denial {
            workload: 1,
            syscall: 426,
            cap: 0,
            mode: mode::ENFORCE,
            what: refused::URING_PERSONALITY,
            ..Denial::default()
        };
        let r = DenialRecord::new(&d, 42, "openat".into());
        assert_eq!(r.capability, None);
        assert_eq!(
            r.line(),
            "openat[42]: io_uring_enter: io_uring personality denied (credentials registered \
             earlier, not the task's own; the request fails with EPERM)"
        );
    }

    #[test]
    fn summary_totals_per_capability_and_syscall() {
        let key = |syscall, verdict, opts| UsageKey {
            workload: 7,
            syscall,
            cap: 0,
            verdict,
            opts,
            ..UsageKey::default()
        };
        let counts = [
            (key(92, verdict::DENIED, opts::KNOWN), 2),
            (key(92, verdict::DENIED, opts::KNOWN), 1),
            (key(9, verdict::DENIED, opts::KNOWN | opts::NOAUDIT), 5),
            (UsageKey::default(), 9),
        ];
        assert_eq!(
            summary(&counts, 7),
            [
                "CHOWN in chown: denied 3x",
                "CHOWN in mmap: denied 5x (noaudit probes: the caller copes without it)"
            ]
        );
    }
}
