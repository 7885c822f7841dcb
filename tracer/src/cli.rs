//! Command-line interface: raw flags only. Each subcommand validates them into its own config
//! before doing any work.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{cli_help, enforce::Mode, formats::Format, hook::HookChoice};

/// Exit codes of captrace's own failures (`error::Class`); otherwise captrace exits with the
/// command's status.
pub const EXIT_CODES_HELP: &str = "\
Exit status: the traced command's own status (128+N if killed by signal N), or
  2    bad usage: unknown flag, capability, namespace, user, group or container; an empty
       command; a capability captrace cannot grant; an output directory that does not exist
  3    bad profile: unreadable, not a regular file, over 16 MiB, not JSON, wrong types,
       unknown capabilities
  4    missing privileges: not root (or CAP_BPF and CAP_PERFMON), or in a user namespace
  5    the kernel lacks what captrace needs: BTF, a hook on cap_capable (fentry, the
       tracepoint or kprobes), BPF LSM for enforcement, or for monitor a mounted cgroup v2
  125  captrace itself failed otherwise (the message says why and what to do)
  126  the command was found but cannot be executed
  127  the command was not found
The command has not run when captrace exits 2, 3, 4, 5, 126 or 127.";

/// Exit codes of `diff` and `check`, which answer a question as `diff` and `test` do.
pub const COMPARE_EXIT_HELP: &str = "\
Exit status:
  0    the sets are equal (diff) or the profile is within the allowed set (check)
  1    they differ (diff) or it needs more (check); one line per capability says which
  2    bad usage: unknown flag or capability name
  3    bad profile: unreadable, over 16 MiB, not JSON, wrong types, unknown capabilities
  125  captrace itself failed otherwise";

/// Exit codes of `merge`.
pub const MERGE_EXIT_HELP: &str = "\
Exit status:
  0    merged
  2    bad usage: unknown flag, no profile, -o into a directory that does not exist
  3    bad profile: unreadable, over 16 MiB, not JSON, wrong types, unknown capabilities
  125  captrace itself failed otherwise (e.g. the merged profile cannot be written)";

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
    #[command(after_help = cli_help::after(cli_help::RECORD, EXIT_CODES_HELP))]
    Record(RecordArgs),
    /// Run a command in new namespaces with exactly the capabilities it needs, and report every
    /// capability it was denied (--audit).
    #[command(after_help = cli_help::after(cli_help::RUN, EXIT_CODES_HELP))]
    Run(RunArgs),
    /// Watch every capability check on the host, attributed to containers.
    #[command(after_help = cli_help::after(cli_help::MONITOR, EXIT_CODES_HELP))]
    Monitor(MonitorArgs),
    /// Confine a running process tree or container in the kernel (BPF LSM) to a capability
    /// set, without restarting it, until Ctrl-C or until it exits.
    #[command(after_help = cli_help::after(cli_help::ENFORCE, EXIT_CODES_HELP))]
    Enforce(EnforceArgs),
    /// Render a profile written by `record -o` in another syntax.
    #[command(after_help = cli_help::after(cli_help::RECOMMEND, EXIT_CODES_HELP))]
    Recommend(RecommendArgs),
    /// Show a profile written by `record -o`: the report `record` prints, or with --html one
    /// self-contained page (process tree, timeline, every format with a copy button).
    #[command(after_help = cli_help::after(cli_help::REPORT, EXIT_CODES_HELP))]
    Report(ReportArgs),
    /// Compare two profiles' capability sets: which capabilities the new one adds (and the
    /// process and syscall that first used each) and which it no longer needs.
    #[command(after_help = cli_help::after(cli_help::DIFF, COMPARE_EXIT_HELP))]
    Diff(DiffArgs),
    /// Fail (exit 1) when a profile needs a capability beyond an allowed set, naming each one
    /// with the process and syscall that first used it.
    #[command(after_help = cli_help::after(cli_help::CHECK, COMPARE_EXIT_HELP))]
    Check(CheckArgs),
    /// Merge the profiles of several runs into one: checks united and counted, the
    /// recommendation recomputed.
    #[command(after_help = cli_help::after(cli_help::MERGE, MERGE_EXIT_HELP))]
    Merge(MergeArgs),
    /// List every capability this kernel knows.
    #[command(after_help = cli_help::after(cli_help::CAPS, ""))]
    Caps(CapsArgs),
    /// What this kernel offers (hooks, BTF, BPF LSM, mounts, privileges) and what captrace
    /// will use. Exits 1 when captrace cannot trace here.
    #[command(after_help = cli_help::after(cli_help::DOCTOR, ""))]
    Doctor(DoctorArgs),
    /// Write the man pages and shell completions into DIR (what `cargo xtask dist` installs).
    #[command(hide = true, name = "generate-docs")]
    GenerateDocs(DocsArgs),
}

/// `--hook`, shared by every command that traces.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// How to watch capability checks: fentry (fexit on cap_capable, reads the audit flag),
    /// tracepoint (capability:cap_capable, Linux >= 6.14), kprobe, or auto: the first of
    /// those this kernel accepts.
    #[arg(
        long,
        value_enum,
        default_value_t,
        env = "CAPTRACE_HOOK",
        value_name = "HOOK"
    )]
    pub hook: HookChoice,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub hook: HookArgs,
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
    /// With --minimize: a shell command run after the recording and after each replay; a
    /// replay passes only if it exits 0 (e.g. `test -g FILE` when the set-group-ID bit matters).
    #[arg(long, value_name = "CMD", requires = "minimize")]
    pub check: Option<String>,
    /// With --minimize: also replay the command started as this user (NAME or UID[:GID]) with
    /// the rest of the set as ambient capabilities, to prove that SETUID and SETGID, used only
    /// to become that user, can go (`docker run --user`, systemd `User=`).
    #[arg(long, value_name = "NAME", requires = "minimize")]
    pub as_user: Option<String>,
    /// Stop when the command exits instead of waiting for processes it left running.
    #[arg(long)]
    pub no_follow_daemons: bool,
    /// Follow the containers the command starts (docker, podman, docker-compose and other
    /// clients in scripts), each from its first instruction, with a set of its own. On by
    /// default when CMD itself is a container client.
    #[arg(long)]
    pub containers: bool,
    /// Print the report as JSON on stderr instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Record a running container (docker or podman id or name) from now until it exits or
    /// Ctrl-C, instead of running a command.
    #[arg(long, value_name = "ID|NAME", conflicts_with_all = ["minimize", "setup", "check", "no_follow_daemons", "containers"])]
    pub container: Option<String>,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        required_unless_present = "container",
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub hook: HookArgs,
    /// Also confine the workload in the kernel with BPF LSM: every capability outside the set
    /// is refused (enforce, the default) or allowed and reported (complain: the workload then
    /// keeps captrace's capabilities), in every user namespace, each one reported live.
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "enforce")]
    pub enforce: Option<Mode>,
    /// Start from a profile written by `record -o` (its cap_add) instead of Docker's defaults.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Capabilities to drop from the starting set, or ALL (CHOWN, CAP_CHOWN and chown all work).
    #[arg(long = "cap-drop", value_name = "CAP", value_delimiter = ',')]
    pub cap_drop: Vec<String>,
    /// Capabilities to add, or ALL (every capability captrace itself holds).
    #[arg(long = "cap-add", value_name = "CAP", value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// Run as this user: UID[:GID] or NAME[:GROUP], looked up in the workload's /etc/passwd.
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// New namespaces: a comma-separated list of user,pid,mnt,uts,ipc,net,cgroup, or all.
    #[arg(long, value_name = "LIST")]
    pub ns: Option<String>,
    /// Hostname inside a new UTS namespace (implies --ns uts).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Pivot into this root file system directory (implies --ns mnt). Mounted nodev: only
    /// /dev's small allowlist opens devices.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Run captrace's minimal init as PID 1 (reaps zombies, forwards signals) and the command
    /// as PID 2 (implies --ns pid). Without it, the command is PID 1.
    #[arg(long)]
    pub init: bool,
    /// Trace the workload and report every capability check it was denied, with the fix.
    #[arg(long)]
    pub audit: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass captrace's value on).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the workload's PID inside its PID namespace and on the host.
    #[arg(long)]
    pub show_pids: bool,
    /// Host id that root maps to in a new user namespace (65536 ids from there), for uids and
    /// gids. Default: the range of `captrace`, else of root, in /etc/subuid and /etc/subgid;
    /// 100000 without one.
    #[arg(long, value_name = "ID")]
    pub userns_base: Option<u32>,
    /// seccomp filter: `default` (Docker's default profile), `unconfined` (none), or a
    /// profile file in Docker's JSON format.
    #[arg(
        long,
        value_name = "default|unconfined|FILE",
        default_value = "default"
    )]
    pub seccomp: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "container", "cgroup"])))]
pub struct EnforceArgs {
    /// The process to confine, with its threads and every descendant (now and later).
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
    /// The container to confine (id, short id or name; docker or podman): every process in
    /// its cgroup, including later `exec`s.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,
    /// A cgroup (v2) directory to confine as a whole.
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// Start from a profile written by `record -o` (its cap_add) instead of Docker's defaults.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Remove capabilities from the allowed set (ALL for every one).
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub cap_drop: Vec<String>,
    /// Add capabilities to the allowed set.
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// enforce: refuse with EPERM and report; complain: allow and report.
    #[arg(long, value_enum, default_value_t)]
    pub mode: Mode,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub hook: HookArgs,
    /// Only these containers (id, short id or name; docker or podman).
    #[arg(long, value_name = "ID|NAME")]
    pub container: Vec<String>,
    /// Only these capabilities in the line output.
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub cap: Vec<String>,
    /// One JSON object per line (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Print each (container, capability, verdict) once.
    #[arg(long)]
    pub unique: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// On exit, per container: capabilities used, its effective set, and what it can drop.
    #[arg(long)]
    pub summary: bool,
    /// Serve Prometheus metrics at this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A profile written by `captrace record -o`.
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,
    #[arg(long, short = 'f', value_enum, default_value = "docker")]
    pub format: Format,
    /// One container of a container recording (name, compose service or id prefix) instead of
    /// the union of all of them.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Render the profile's safer alternatives instead of the capabilities they replace
    /// (`--sysctl net.ipv4.ip_unprivileged_port_start=80`, `--user`), where the format has them.
    #[arg(long)]
    pub prefer_alternatives: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A profile written by `captrace record -o` (or by `merge`).
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,
    /// Write one self-contained HTML page here (inline CSS and JavaScript, nothing fetched)
    /// instead of printing the text report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The profile to compare against (e.g. the one committed with the code).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The profile of the new run.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("allowed").required(true).multiple(true).args(["allow", "allow_from"])))]
pub struct CheckArgs {
    /// A profile written by `captrace record -o`.
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,
    /// Allowed capabilities, comma-separated (CHOWN, CAP_CHOWN and chown all work; '' for
    /// none).
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Allow the set of this profile (its cap_add), e.g. the one committed with the code;
    /// repeatable, and adds to --allow.
    #[arg(long, value_name = "BASE")]
    pub allow_from: Vec<PathBuf>,
    /// JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Profiles written by `captrace record -o` (or by `merge`).
    #[arg(value_name = "PROFILE", required = true)]
    pub profiles: Vec<PathBuf>,
    /// Write the merged profile here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CapsArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Directory to write share/man/man1 and the completions under (created if missing).
    #[arg(value_name = "DIR")]
    pub out: PathBuf,
}
