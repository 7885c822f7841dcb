//! Development tasks for captrace: `cargo xtask setup`, `cargo xtask test` and
//! `cargo xtask bench`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cmd;
mod dist;
mod layout;
mod pytools;
mod setup;
mod test;
mod vm;

#[derive(Parser)]
#[command(about = "captrace development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (nightly + rust-src, bpf-linker, Debian packages, qemu
    /// for vm-test) and mount tracefs/securityfs. Idempotent: checks before installing.
    Setup(setup::SetupArgs),
    /// Run setup, build, the tests (serially), the tests on Debian kernels in qemu, clippy and
    /// rustfmt: what CI runs.
    Test(test::TestArgs),
    /// Measure what tracing costs (hook overhead against an empty program and bpftrace,
    /// start-up, fork storm, a real workload); writes target/bench/report.json.
    Bench(bench::BenchArgs),
    /// Load generator the bench runs (sethostname/setuid loops, fork storm, paced callers).
    #[command(hide = true)]
    BenchLoad(bench::load::LoadArgs),
    /// Run a command on real Debian kernels (6.1, 6.12, newest trixie) in qemu: the hooks this
    /// host's kernel refuses (kprobe, fentry, BPF LSM); `--suite` runs the kernel-tier tests on
    /// each kernel's hooks. Kernels are cached in $CAPTRACE_VM_CACHE (/var/cache/captrace/vm).
    VmTest(vm::VmArgs),
    /// Build the release binary, its man pages and shell completions into target/dist/ (a
    /// prefix layout); `--install /usr/local` copies them there.
    Dist(dist::DistArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup(args) => setup::run(&args),
        Task::Test(args) => test::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::BenchLoad(args) => bench::load::run(&args),
        Task::VmTest(args) => vm::run(&args),
        Task::Dist(args) => dist::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn passes_everything_after_double_dash() {
        let cli =
            super::Cli::try_parse_from(["xtask", "test", "--no-apt", "--", "-p", "x", "--", "-q"])
                .unwrap();
        let super::Task::Test(args) = cli.task else {
            panic!("not test")
        };
        assert_eq!(args.extra, ["-p", "x", "--", "-q"]);
        assert!(args.setup.no_apt);
        assert!(!args.no_vm, "CI runs the VM stage unless told not to");
    }

    #[test]
    fn the_vm_stage_can_be_skipped_locally() {
        let cli = super::Cli::try_parse_from(["xtask", "test", "--no-vm"]).unwrap();
        let super::Task::Test(args) = cli.task else {
            panic!("not test")
        };
        assert!(args.no_vm);
    }
}
