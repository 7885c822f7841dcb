//! `cargo xtask vm-test`: run a command, or the kernel-tier test suite (`suite`), on real Debian
//! kernels (6.1, 6.12 and the newest of trixie) in qemu, to test the hooks this host's kernel
//! refuses (kprobe, fentry, BPF LSM).
//!
//! Recipe (see shared/VM.md): qemu with TCG (the machine's KVM is nested and unusable); the
//! kernel packages from Debian's archive, resolved and downloaded by apt through private lists
//! (`kernel`, `sources`), extracted into the cache outside the clone (`cache`,
//! `$CAPTRACE_VM_CACHE`, default `/var/cache/captrace/vm`) and booted uncompressed through their
//! PVH entry (`vmlinux`); a 1.4 MB busybox initramfs (`initramfs`); the host's root file system
//! shared read-only over 9p under a tmpfs overlay, so the guest sees every binary and file of
//! the host and forgets its writes; a second, writable 9p share carries the job script, its
//! output (copied to stdout as it grows) and its exit status (`guest`).
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cmd::header;

mod cache;
mod guest;
mod initramfs;
mod kernel;
pub mod packages;
mod sources;
pub mod suite;
mod vmlinux;

use guest::{Machine, Outcome};
use kernel::{Origin, SPECS, Spec};

const DEFAULT_JOB: &str = "uname -r\n\
    bpftool feature probe kernel | grep -E \"program_type (tracing|lsm|kprobe)\"\n\
    ./target/release/captrace caps | head -3\n";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask vm-test\n  \
    cargo xtask vm-test --kernel 6.12 -- sh -c 'uname -r; bpftool feature probe kernel'\n  \
    cargo xtask vm-test --kernel trixie -- ./target/release/captrace caps\n\n\
The command runs as root in the guest, in the host's current directory, on the host's root file \
system (read-only 9p under a tmpfs overlay: writes succeed and are forgotten). Its output goes \
to stdout; the guest's console to target/vm/<kernel>.log. Kernels and initramfs images are \
cached in $CAPTRACE_VM_CACHE (default /var/cache/captrace/vm).

--suite builds the kernel-tier tests (cargo test --release --no-run -p tracer --test record, and \
--test enforce if tracer/tests/enforce.rs exists), boots each kernel once and runs in it the \
record tests once per hook of that kernel (CAPTRACE_HOOK=<hook>), then the enforce tests; it \
prints a summary per kernel, hook and binary and fails if any of them failed.")]
pub struct VmArgs {
    /// Kernel to boot (repeatable; default: all three, in turn). trixie = the newest trixie or
    /// trixie-backports kernel (>= 6.14).
    #[arg(long = "kernel", value_name = "NAME", value_enum)]
    kernels: Vec<KernelName>,
    /// Resolve the kernels, show their versions and whether they are cached, and exit.
    #[arg(long)]
    list: bool,
    /// Seconds a guest may run before it is killed (and counted as failed); with --suite, each
    /// test binary's limit in the guest.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Extra kernel command line parameters (appended: they override the defaults).
    #[arg(long, value_name = "PARAMS")]
    append: Option<String>,
    /// Refresh the private apt lists (in the cache) even if they are recent.
    #[arg(long)]
    refresh: bool,
    /// Do not install missing Debian packages (qemu-system-x86, kmod, cpio, ...).
    #[arg(long)]
    no_apt: bool,
    /// Run the kernel-tier test suite on each kernel instead of a command.
    #[arg(long, conflicts_with_all = ["command", "list"])]
    suite: bool,
    /// The command to run in the guest (default: uname, bpftool's program types, captrace caps).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum KernelName {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    #[value(name = "trixie")]
    Trixie,
}

impl KernelName {
    fn spec(self) -> Spec {
        let name = match self {
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
            Self::Trixie => "trixie",
        };
        *SPECS
            .iter()
            .find(|s| s.name == name)
            .expect("every name has a spec")
    }
}

pub fn run(args: &VmArgs) -> anyhow::Result<()> {
    let specs: Vec<Spec> = if args.kernels.is_empty() {
        SPECS.to_vec()
    } else {
        args.kernels.iter().map(|k| k.spec()).collect()
    };
    let cache = cache::dir()?;

    if args.list {
        println!("cache: {}", cache.display());
        for spec in specs {
            let k = kernel::resolve(spec, &cache, args.refresh)?;
            let state = if k.vmlinuz().is_some() {
                "cached"
            } else {
                "not downloaded"
            };
            println!(
                "{:<7} {:<24} {} {} ({}): {state}",
                spec.name, k.release, spec.meta, k.version, k.suite
            );
        }
        return Ok(());
    }

    header("vm-test: host packages");
    if args.no_apt {
        println!("skipped (--no-apt)");
    } else {
        packages::install()?;
    }
    let runs = cache::runs_dir()?;
    guest::remove_stale_shares(&runs);
    println!("cache: {} (${})", cache.display(), cache::ENV);
    let mut machine = Machine {
        cache,
        runs,
        cwd: std::env::current_dir().context("no current directory")?,
        timeout: Duration::from_secs(args.timeout),
        append: args.append.clone(),
        refresh: args.refresh,
    };
    if args.suite {
        return suite::run(&mut machine, &specs);
    }

    let job = match args.command.as_slice() {
        [] => DEFAULT_JOB.to_owned(),
        words => {
            words
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        }
    };
    let outcomes: Vec<Outcome> = specs
        .into_iter()
        .map(|spec| machine.kernel(spec, &job))
        .collect();

    header("vm-test: summary");
    for o in &outcomes {
        let status = match &o.result {
            Ok(()) => "ok".to_owned(),
            // The first line: details (such as the console's last lines) were shown above.
            Err(e) => format!("FAILED: {}", first_line(e)),
        };
        println!("{}  job: {status}", kernel_line(o));
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} kernels failed", outcomes.len());
    }
    Ok(())
}

/// A kernel's name, release, origin, boot and total times, and boots if more than one.
fn kernel_line(o: &Outcome) -> String {
    let origin = match o.origin {
        Some(Origin::Cache) => "cached",
        Some(Origin::Downloaded) => "downloaded",
        None => "-",
    };
    let boots = if o.attempts > 1 {
        format!(" (boots: {})", o.attempts)
    } else {
        String::new()
    };
    format!(
        "{:<7} {:<24} {origin:<10} boot {:>7}  total {:>7}{boots}",
        o.name,
        o.release.as_deref().unwrap_or("?"),
        secs(o.boot),
        secs(o.total),
    )
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_owned()
}

/// `word` quoted for sh.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_sh() {
        assert_eq!(
            shell_quote("./target/release/captrace"),
            "./target/release/captrace"
        );
        assert_eq!(shell_quote("uname -r; x"), "'uname -r; x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: VmArgs,
    }

    #[test]
    fn parses_kernels_and_the_command() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "vm-test", "--kernel", "6.1", "--kernel", "trixie", "--", "sh", "-c", "false",
        ])
        .unwrap();
        assert_eq!(cli.args.kernels, [KernelName::V6_1, KernelName::Trixie]);
        assert_eq!(cli.args.command, ["sh", "-c", "false"]);
        assert_eq!(cli.args.timeout, 600);
        assert!(Cli::try_parse_from(["vm-test", "--kernel", "5.10"]).is_err());
    }

    #[test]
    fn every_kernel_name_has_a_spec() {
        use clap::ValueEnum as _;
        for name in KernelName::value_variants() {
            let spec = name.spec();
            let shown = name.to_possible_value().unwrap();
            assert_eq!(shown.get_name(), spec.name);
        }
    }
}
