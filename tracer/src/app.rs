//! Entry point behind `main`: parse, set up logging, dispatch, map errors to exit codes.
use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    commands,
    launch::ExecError,
};

/// captrace's own failure (anything that is not the command's exit status).
pub const EXIT_FAILURE: u8 = 125;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("captrace: {err:#}");
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
        Command::Caps(args) => commands::caps::run(&args),
        Command::Doctor(args) => commands::doctor::run(&args),
    }
}

/// Bad usage found after parsing (unknown capability or namespace, conflicting flags): exit 2
/// like clap's own usage errors, before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// 2 for bad usage, 126/127 as a shell would for a command that cannot run; 125 for
/// everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    match err.downcast_ref::<ExecError>() {
        Some(e) => e.exit_code(),
        None => EXIT_FAILURE,
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
