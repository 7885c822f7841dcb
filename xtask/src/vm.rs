//! `cargo xtask vm-test`: run a command on real Debian kernels (6.1, 6.12 and the newest of
//! trixie) in qemu, to test the hooks this host's kernel refuses (kprobe, fentry, BPF LSM).
//!
//! Recipe (see shared/VM.md): qemu with TCG (the machine's KVM is nested and unusable); the
//! kernel packages from Debian's archive, resolved and downloaded by apt through private lists
//! (`kernel`, `sources`), extracted into `target/vm/kernels/<release>` and booted uncompressed
//! through their PVH entry (`vmlinux`); a 1.4 MB busybox initramfs (`initramfs`); the host's root
//! file system shared read-only over 9p under a tmpfs overlay, so the guest sees every binary
//! and file of the host and forgets its writes; a second, writable 9p share carries the job
//! script, its output (copied to stdout as it grows) and its exit status. A guest that never
//! reports a status fails; one that fails before the job starts is booted again. Kernels, their
//! unpacked images and the initramfs images are cached under `target/vm`.
use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, header};

mod initramfs;
mod kernel;
mod packages;
mod sources;
mod vmlinux;

use initramfs::{HOST_TAG, SHARE_MOUNT, SHARE_TAG};
use kernel::{Kernel, SPECS, Spec};

const CMDLINE: &str = "console=ttyS0 rdinit=/init panic=-1 softlockup_panic=1 quiet \
                       mitigations=off lsm=lockdown,capability,landlock,yama,apparmor,bpf";

const DEFAULT_JOB: &str = "uname -r\n\
    bpftool feature probe kernel | grep -E \"program_type (tracing|lsm|kprobe)\"\n\
    ./target/release/captrace caps | head -3\n";

/// Boots that fail before the job starts are tried again, up to this many boots in all: under
/// TCG a guest kernel occasionally crashes while patching its own code early in boot (seen: an
/// `Oops: int3` in `set_next_task_fair` on 7.3, about one boot in 30).
const BOOT_ATTEMPTS: u32 = 3;

/// A guest whose job has not started by then counts as a failed boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// PATH of the job in the guest.
const GUEST_PATH: &str =
    "/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask vm-test\n  \
    cargo xtask vm-test --kernel 6.12 -- sh -c 'uname -r; bpftool feature probe kernel'\n  \
    cargo xtask vm-test --kernel trixie -- ./target/release/captrace caps\n\n\
The command runs as root in the guest, in the host's current directory, on the host's root file \
system (read-only 9p under a tmpfs overlay: writes succeed and are forgotten). Its output goes \
to stdout; the guest's console to target/vm/<kernel>.log.")]
pub struct VmArgs {
    /// Kernel to boot (repeatable; default: all three, in turn). trixie = the newest trixie or
    /// trixie-backports kernel (>= 6.14).
    #[arg(long = "kernel", value_name = "NAME", value_enum)]
    kernels: Vec<KernelName>,
    /// Resolve the kernels, show their versions and whether they are cached, and exit.
    #[arg(long)]
    list: bool,
    /// Seconds a guest may run before it is killed (and counted as failed).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Extra kernel command line parameters (appended: they override the defaults).
    #[arg(long, value_name = "PARAMS")]
    append: Option<String>,
    /// Refresh the private apt lists under target/vm/apt even if they are recent.
    #[arg(long)]
    refresh: bool,
    /// Do not install missing Debian packages (qemu-system-x86, kmod, cpio, ...).
    #[arg(long)]
    no_apt: bool,
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

/// What one kernel's run came to.
struct Outcome {
    name: &'static str,
    release: Option<String>,
    boot: Option<Duration>,
    total: Option<Duration>,
    /// Boots it took (more than 1 after a guest failed before the job started).
    attempts: u32,
    result: anyhow::Result<()>,
}

pub fn run(args: &VmArgs) -> anyhow::Result<()> {
    let specs: Vec<Spec> = if args.kernels.is_empty() {
        SPECS.to_vec()
    } else {
        args.kernels.iter().map(|k| k.spec()).collect()
    };
    let vm_dir = cmd::workspace_root().join("target/vm");
    fs::create_dir_all(&vm_dir).with_context(|| format!("creating {}", vm_dir.display()))?;

    if args.list {
        for spec in specs {
            let k = kernel::resolve(spec, &vm_dir, args.refresh)?;
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
    remove_stale_shares(&vm_dir);
    let run = Run {
        args,
        script: match args.command.as_slice() {
            [] => DEFAULT_JOB.to_owned(),
            words => {
                words
                    .iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
                    + "\n"
            }
        },
        cwd: std::env::current_dir().context("no current directory")?,
        vm_dir,
    };
    let outcomes: Vec<Outcome> = specs.into_iter().map(|spec| run.kernel(spec)).collect();

    header("vm-test: summary");
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    for o in &outcomes {
        let status = match &o.result {
            Ok(()) => "ok".to_owned(),
            // The first line: details (such as the console's last lines) were shown above.
            Err(e) => format!("FAILED: {}", format!("{e:#}").lines().next().unwrap_or("")),
        };
        let boots = if o.attempts > 1 {
            format!(" (boots: {})", o.attempts)
        } else {
            String::new()
        };
        println!(
            "{:<7} {:<24} boot {:>7}  total {:>7}  job: {status}{boots}",
            o.name,
            o.release.as_deref().unwrap_or("?"),
            secs(o.boot),
            secs(o.total),
        );
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} kernels failed", outcomes.len());
    }
    Ok(())
}

/// One job, run on each kernel in turn.
struct Run<'a> {
    args: &'a VmArgs,
    /// The job's shell script.
    script: String,
    /// Where the job runs in the guest: the host's current directory.
    cwd: PathBuf,
    vm_dir: PathBuf,
}

impl Run<'_> {
    fn kernel(&self, spec: Spec) -> Outcome {
        header(&format!("vm-test: kernel {}", spec.name));
        let mut outcome = Outcome {
            name: spec.name,
            release: None,
            boot: None,
            total: None,
            attempts: 0,
            result: Ok(()),
        };
        outcome.result = self.prepare_and_boot(spec, &mut outcome);
        if let Err(e) = &outcome.result {
            eprintln!("vm-test {}: FAILED: {e:#}", spec.name);
        }
        outcome
    }

    fn prepare_and_boot(&self, spec: Spec, outcome: &mut Outcome) -> anyhow::Result<()> {
        let kernel = kernel::ensure(spec, &self.vm_dir, self.args.refresh)?;
        outcome.release = Some(kernel.release.clone());
        let image = vmlinux::ensure(&kernel)?;
        let initrd = initramfs::ensure(&kernel, &self.vm_dir)?;
        let share = self
            .vm_dir
            .join(format!("share-{}-{}", spec.name, std::process::id()));
        if share.exists() {
            fs::remove_dir_all(&share)?;
        }
        fs::create_dir_all(&share)?;
        let result = self.boot(&kernel, &image, &initrd, &share, outcome);
        fs::remove_dir_all(&share).ok();
        result
    }

    /// Boots `kernel`, streams the job's output to stdout while it runs, and checks its status.
    /// A guest that fails before the job starts is booted again (see `BOOT_ATTEMPTS`).
    fn boot(
        &self,
        kernel: &Kernel,
        image: &Path,
        initrd: &Path,
        share: &Path,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        initramfs::write_executable(&share.join("job.sh"), &self.script)?;
        initramfs::write_executable(&share.join("run.sh"), &run_script(kernel, &self.cwd))?;
        let log_path = self.vm_dir.join(format!("{}.log", kernel.spec.name));
        let mut log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut qemu = self.qemu(image, initrd, share);
        println!("+ {}", cmd::display(&qemu));
        println!("console: {}", log_path.display());

        for attempt in 1..=BOOT_ATTEMPTS {
            if attempt > 1 {
                writeln!(log, "\n=== vm-test: boot attempt {attempt} ===")?;
            }
            let guest = self.run_guest(&mut qemu, &log, share)?;
            outcome.boot = guest.boot;
            outcome.total = Some(guest.total);
            outcome.attempts = attempt;
            if guest.boot.is_some() || attempt == BOOT_ATTEMPTS {
                return verdict(&guest, share, &log_path);
            }
            eprintln!(
                "vm-test {}: the guest failed before the job started (see {}); booting again",
                kernel.spec.name,
                log_path.display()
            );
        }
        unreachable!("the last attempt returns")
    }

    fn qemu(&self, image: &Path, initrd: &Path, share: &Path) -> Command {
        let mut cmdline = CMDLINE.to_owned();
        if let Some(extra) = &self.args.append {
            cmdline = format!("{cmdline} {extra}");
        }
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .args(["-m", "2G", "-smp", "2"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(image)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", &cmdline])
            .arg("-virtfs")
            .arg(format!(
                "local,path=/,mount_tag={HOST_TAG},security_model=none,readonly=on,multidevs=remap"
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag={SHARE_TAG},security_model=none,multidevs=remap",
                share.display()
            ))
            .stdin(Stdio::null());
        qemu
    }

    /// Runs qemu once, its console to `log`, copying the job's output to stdout as it grows.
    fn run_guest(&self, qemu: &mut Command, log: &fs::File, share: &Path) -> anyhow::Result<Guest> {
        for file in ["started", "output", "status"] {
            fs::remove_file(share.join(file)).ok();
        }
        let timeout = Duration::from_secs(self.args.timeout);
        let start = Instant::now();
        let mut child = qemu
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .spawn()
            .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
        let mut output = Tail::new(share.join("output"));
        let started = share.join("started");
        let mut boot = None;
        let exit = loop {
            output.copy_to_stdout();
            if boot.is_none() && started.exists() {
                boot = Some(start.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            let limit = if boot.is_some() {
                timeout
            } else {
                timeout.min(BOOT_TIMEOUT)
            };
            if start.elapsed() > limit {
                child.kill().ok();
                child.wait().ok();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        output.copy_to_stdout();
        Ok(Guest {
            boot,
            total: start.elapsed(),
            exit,
        })
    }
}

/// One run of qemu.
struct Guest {
    /// From qemu's start to the job's start, if it started.
    boot: Option<Duration>,
    total: Duration,
    /// qemu's exit status; `None` if it was killed at the time limit.
    exit: Option<ExitStatus>,
}

/// The job's exit status (from the share) as a result.
fn verdict(guest: &Guest, share: &Path, log_path: &Path) -> anyhow::Result<()> {
    let Some(exit) = guest.exit else {
        let what = if guest.boot.is_some() {
            "the job"
        } else {
            "the boot"
        };
        bail!(
            "{what} timed out after {:.0} s (console: {})",
            guest.total.as_secs_f64(),
            log_path.display()
        );
    };
    let status = fs::read_to_string(share.join("status")).ok();
    let Some(status) = status.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        eprintln!("--- last lines of {}:", log_path.display());
        eprintln!("{}", last_lines(log_path, 15));
        bail!(
            "the guest reported no exit status (qemu {exit}, console: {})",
            log_path.display()
        );
    };
    match status.parse::<i32>() {
        Ok(0) => Ok(()),
        Ok(code) => bail!("exit status {code}"),
        Err(_) => bail!("unreadable exit status {status:?}"),
    }
}

/// The script init runs in the guest's root: binds the kernel's modules and config where
/// modprobe and bpftool look, runs the job in `cwd`, and records its output and status in the
/// share.
fn run_script(kernel: &Kernel, cwd: &Path) -> String {
    let quote = |p: &Path| shell_quote(&p.to_string_lossy());
    let release = &kernel.release;
    let mut script = format!(
        "# generated by `cargo xtask vm-test`\n\
         export PATH={GUEST_PATH} HOME=/root TERM=dumb\n\
         mkdir -p /lib/modules/{release} && mount -o bind,ro {} /lib/modules/{release}\n",
        quote(&kernel.modules_dir())
    );
    if let Some(config) = kernel.config() {
        script += &format!(
            "mkdir -p /boot && touch /boot/config-{release} && mount -o bind,ro {} /boot/config-{release}\n",
            quote(&config)
        );
    }
    script += &format!(
        "cat /proc/uptime >{SHARE_MOUNT}/started\n\
         echo \"vm: job starting, uptime $(cut -d' ' -f1 /proc/uptime) s\" >/dev/console\n\
         (cd {} && exec sh {SHARE_MOUNT}/job.sh) >{SHARE_MOUNT}/output 2>&1 </dev/null\n\
         echo $? >{SHARE_MOUNT}/status\n\
         echo \"vm: job exited with $(cat {SHARE_MOUNT}/status)\" >/dev/console\n",
        quote(cwd)
    );
    script
}

/// Removes the shares (`share-<kernel>-<pid>`) of vm-test runs that are gone (interrupted).
fn remove_stale_shares(vm_dir: &Path) {
    let Ok(entries) = fs::read_dir(vm_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("share-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map(|(_, pid)| pid);
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            fs::remove_dir_all(entry.path()).ok();
        }
    }
}

/// Follows a file that another process appends to.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    fn copy_to_stdout(&mut self) {
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() && file.read_to_end(&mut buf).is_ok() {
            self.offset += buf.len() as u64;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&buf).ok();
            stdout.flush().ok();
        }
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
