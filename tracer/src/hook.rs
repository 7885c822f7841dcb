//! Where captrace hooks capability checks, chosen at run time: fentry (fexit on `cap_capable`,
//! which also reads `opts`), then the `capability:cap_capable` tracepoint (Linux >= 6.14), then
//! kprobe/kretprobe (kernels without BPF trampolines).
use std::fmt;

use serde::Serialize;

/// One way of seeing `cap_capable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// fexit on `cap_capable`: arguments, `opts` and verdict in one program.
    Fentry,
    /// The `capability:cap_capable` tracepoint (raw): no `opts`, audit told by call path.
    Tracepoint,
    /// kprobe + kretprobe on `cap_capable`.
    Kprobe,
}

/// `--hook`: a hook, or the best one this kernel offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// fentry, else the tracepoint, else kprobe.
    #[default]
    Auto,
    Fentry,
    Tracepoint,
    Kprobe,
}

impl Hook {
    /// Best first.
    pub const ALL: [Hook; 3] = [Hook::Fentry, Hook::Tracepoint, Hook::Kprobe];

    /// Short name, as `--hook` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Fentry => "fentry",
            Hook::Tracepoint => "tracepoint",
            Hook::Kprobe => "kprobe",
        }
    }

    /// What the report and the profile call it (the tracepoint is `raw_tracepoint/cap_capable`
    /// instead when the kernel's BTF could not serve a tp_btf program).
    pub fn attach_point(self) -> &'static str {
        match self {
            Hook::Fentry => "fexit/cap_capable",
            Hook::Tracepoint => "tp_btf/cap_capable",
            Hook::Kprobe => "kprobe/cap_capable",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attach_point())
    }
}

impl HookChoice {
    /// The hooks to try, in order.
    pub fn candidates(self) -> &'static [Hook] {
        match self {
            HookChoice::Auto => &Hook::ALL,
            HookChoice::Fentry => &[Hook::Fentry],
            HookChoice::Tracepoint => &[Hook::Tracepoint],
            HookChoice::Kprobe => &[Hook::Kprobe],
        }
    }
}

/// Why no hook could be attached: each hook tried and what the kernel said.
#[derive(Debug, Default)]
pub struct Refusals(pub Vec<(Hook, String)>);

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(h, why)| format!("{}: {why}", h.name()))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_best_first() {
        assert_eq!(
            HookChoice::Auto.candidates(),
            [Hook::Fentry, Hook::Tracepoint, Hook::Kprobe]
        );
        assert_eq!(HookChoice::Kprobe.candidates(), [Hook::Kprobe]);
    }

    #[test]
    fn refusals_name_every_hook() {
        let r = Refusals(vec![
            (Hook::Fentry, "Operation not permitted".into()),
            (Hook::Kprobe, "no kprobes".into()),
        ]);
        assert_eq!(
            r.to_string(),
            "fentry: Operation not permitted; kprobe: no kprobes"
        );
    }
}
