//! Entry point behind `main`: parse, set up logging, dispatch, map errors to exit codes
//! (the classes live in [`crate::error`]).
use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    commands,
    error::exit_code,
    output,
};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`captrace caps | head -1`): nothing is wrong.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::note(format_args!("{err:#}"));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Record(args) => commands::record::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Enforce(args) => commands::enforce::run(args),
        Command::Recommend(args) => commands::recommend::run(&args),
        Command::Report(args) => commands::report::run(&args),
        Command::Diff(args) => commands::diff::run(&args),
        Command::Check(args) => commands::check::run(&args),
        Command::Merge(args) => commands::merge::run(&args),
        Command::Caps(args) => commands::caps::run(&args),
        Command::Doctor(args) => commands::doctor::run(&args),
        Command::GenerateDocs(args) => commands::docs::run(&args),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPTRACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
