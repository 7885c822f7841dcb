//! Development tasks for captrace: `cargo xtask setup` and `cargo xtask test`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod setup;
mod test;

#[derive(Parser)]
#[command(about = "captrace development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (nightly + rust-src, bpf-linker, Debian packages) and
    /// mount tracefs/securityfs. Idempotent: checks before installing.
    Setup(setup::SetupArgs),
    /// Run setup, build, the tests (serially), clippy and rustfmt: what CI runs.
    Test(test::TestArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup(args) => setup::run(&args),
        Task::Test(args) => test::run(&args),
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
    }
}
