//! Command-line interface: raw flags only. Each subcommand validates them into its own config
//! before doing any work.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes of captrace's own failures; otherwise captrace exits with the command's status.
pub const EXIT_CODES_HELP: &str = "\
Exit status: the traced command's own status (128+N if killed by signal N), or
  2    bad usage (unknown flag, missing argument)
  125  captrace itself failed (the message says why and what to do)
  126  the command was found but cannot be executed
  127  the command was not found";

#[derive(Debug, Parser)]
#[command(name = "captrace", version, about = "Trace, recommend and enforce the Linux capabilities a workload needs", after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command, trace every capability check it and its descendants make, and print the
    /// minimal capability set.
    #[command(after_help = EXIT_CODES_HELP)]
    Record(RecordArgs),
    /// Render a profile written by `record -o` in another syntax.
    Recommend(RecommendArgs),
    /// List every capability this kernel knows.
    Caps(CapsArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Write the JSON profile here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Prove the set by replaying the command: drop what it does not need, add what was used
    /// without a visible check.
    #[arg(long)]
    pub minimize: bool,
    /// With --minimize: a shell command run before each replay (e.g. to restore files).
    #[arg(long, value_name = "CMD", requires = "minimize")]
    pub setup: Option<String>,
    /// Stop when the command exits instead of waiting for processes it left running.
    #[arg(long)]
    pub no_follow_daemons: bool,
    /// Print the report as JSON on stderr instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Docker,
    Compose,
    Podman,
    K8s,
    Oci,
    Systemd,
    Bwrap,
    Setpriv,
    Json,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A profile written by `captrace record -o`.
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,
    #[arg(long, short = 'f', value_enum, default_value = "docker")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CapsArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
