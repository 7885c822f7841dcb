//! The EXAMPLES section of each subcommand's `--help` (and of its man page), as the bcc tools
//! have: the commands people run first, each with what it does.

/// `Examples:` then `examples`, a blank line, then `rest` (the exit statuses).
pub fn after(examples: &[(&str, &str)], rest: &str) -> String {
    let mut out = String::from("Examples:\n");
    for (cmd, what) in examples {
        out.push_str(&format!("  {cmd}\n      {what}\n"));
    }
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}

pub const RECORD: &[(&str, &str)] = &[
    (
        "captrace record -- chown 1000 /tmp/f",
        "the capabilities chown needs, as --cap-drop=ALL --cap-add=...",
    ),
    (
        "captrace record -o web.json --html web.html -- nginx -g 'daemon off;'",
        "write the profile and a self-contained HTML report (Ctrl-C stops it)",
    ),
    (
        "captrace record --minimize --check 'test -s out' -- ./build.sh",
        "prove the set by replaying the command with each capability removed",
    ),
    (
        "captrace record -- docker run --rm myimage",
        "each container the command starts, with a set of its own",
    ),
    (
        "captrace record --container web -o web.json",
        "a running container, until it exits or Ctrl-C",
    ),
];

pub const RUN: &[(&str, &str)] = &[
    (
        "captrace run --cap-drop ALL --cap-add CHOWN -- chown 1000 /tmp/f",
        "run with exactly CHOWN",
    ),
    (
        "captrace run --profile web.json --audit -- nginx",
        "the recorded set, and every capability it was denied, with the fix",
    ),
    (
        "captrace run --ns all --rootfs ./rootfs --init -- /bin/sh",
        "new namespaces and a root file system, with a minimal init as PID 1",
    ),
    (
        "captrace run --enforce=complain --profile web.json -- nginx",
        "report live what the workload uses outside the set, refusing nothing",
    ),
];

pub const MONITOR: &[(&str, &str)] = &[
    (
        "captrace monitor",
        "every capability check on the host, per container, live",
    ),
    (
        "captrace monitor --container web --unique --json",
        "one JSON line per new (container, capability, verdict)",
    ),
    (
        "captrace monitor --duration 60 --summary",
        "a minute of checks, then per container what it can drop",
    ),
    (
        "captrace monitor --metrics 127.0.0.1:9464",
        "serve Prometheus metrics (see deploy/)",
    ),
];

pub const ENFORCE: &[(&str, &str)] = &[
    (
        "captrace enforce --container web --profile web.json",
        "refuse the container every capability outside its recorded set",
    ),
    (
        "captrace enforce --pid 4242 --cap-drop ALL --cap-add NET_BIND_SERVICE --mode complain",
        "report, without refusing, what a running process uses beyond NET_BIND_SERVICE",
    ),
];

pub const RECOMMEND: &[(&str, &str)] = &[
    ("captrace recommend web.json", "the set as docker run flags"),
    (
        "captrace recommend web.json --format k8s",
        "a Kubernetes securityContext",
    ),
    (
        "captrace recommend app.json --format compose --container db",
        "one container of a compose recording",
    ),
];

pub const REPORT: &[(&str, &str)] = &[
    ("captrace report web.json", "the report record printed"),
    (
        "captrace report web.json --html web.html",
        "one self-contained page: process tree, timeline, every format with a copy button",
    ),
];

pub const DIFF: &[(&str, &str)] = &[(
    "captrace diff committed.json new.json",
    "what the new run adds (with its first use) and no longer needs; exit 1 if they differ",
)];

pub const CHECK: &[(&str, &str)] = &[
    (
        "captrace check new.json --allow CHOWN,NET_BIND_SERVICE",
        "exit 1 and name each capability beyond those two",
    ),
    (
        "captrace check new.json --allow-from committed.json",
        "fail CI when a release needs more than the committed profile",
    ),
];

pub const MERGE: &[(&str, &str)] = &[(
    "captrace merge unit.json e2e.json -o all.json",
    "one profile (and set) for both test suites",
)];

pub const CAPS: &[(&str, &str)] = &[
    (
        "captrace caps",
        "every capability of this kernel, and what it allows",
    ),
    ("captrace caps --json", "the same as JSON"),
];

pub const DOCTOR: &[(&str, &str)] = &[(
    "captrace doctor",
    "which hook captrace will use here, and what is missing if none",
)];

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use crate::cli::Cli;

    #[test]
    fn every_subcommand_has_examples_of_itself() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.starts_with("Examples:\n"),
                "{}: {help}",
                sub.get_name()
            );
            assert!(
                help.contains(&format!("  captrace {} ", sub.get_name()))
                    || help.contains(&format!("  captrace {}\n", sub.get_name())),
                "{}: {help}",
                sub.get_name()
            );
        }
    }
}
