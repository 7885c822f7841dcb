//! One boot of one kernel: qemu (TCG) with the host's root file system shared read-only under
//! a tmpfs overlay, and a writable share that carries the job script in and its output, exit
//! status and results out. A guest that never reports a status fails; one that fails before
//! the job starts is booted again.
use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    initramfs::{self, HOST_TAG, SHARE_MOUNT, SHARE_TAG},
    kernel::{self, Kernel, Origin, Spec},
    shell_quote, vmlinux,
};
use crate::cmd::{self, header};

const CMDLINE: &str = "console=ttyS0 rdinit=/init panic=-1 softlockup_panic=1 quiet \
                       mitigations=off lsm=lockdown,capability,landlock,yama,apparmor,bpf";

/// Boots that fail before the job starts are tried again, up to this many boots in all: under
/// TCG a guest kernel occasionally crashes while patching its own code early in boot (seen: an
/// `Oops: int3` in `set_next_task_fair` on 7.3, about one boot in 30).
const BOOT_ATTEMPTS: u32 = 3;

/// A guest whose job has not started by then counts as a failed boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// PATH of the job in the guest.
const GUEST_PATH: &str =
    "/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How guests are booted; the same for every kernel of a run.
pub struct Machine {
    /// The download cache (`cache`): apt lists, kernels, initramfs images.
    pub cache: PathBuf,
    /// This clone's `target/vm`: consoles and shares.
    pub runs: PathBuf,
    /// Where the job runs in the guest: a directory of the host.
    pub cwd: PathBuf,
    /// How long a guest may run before it is killed (and counted as failed).
    pub timeout: Duration,
    /// Extra kernel command line parameters.
    pub append: Option<String>,
    /// Refresh the private apt lists even if they are recent.
    pub refresh: bool,
}

/// What one kernel's run came to.
pub struct Outcome {
    pub name: &'static str,
    pub release: Option<String>,
    /// Whether the kernel came from the cache or was downloaded.
    pub origin: Option<Origin>,
    /// From qemu's start to the job's start.
    pub boot: Option<Duration>,
    /// From qemu's start to its exit.
    pub total: Option<Duration>,
    /// Boots it took (more than 1 after a guest failed before the job started).
    pub attempts: u32,
    /// The job's exit status as a result.
    pub result: anyhow::Result<()>,
    /// What the job wrote to `$VM_SHARE/results` (empty if nothing).
    pub results: String,
}

impl Machine {
    /// Runs the job script `job` on `spec`'s kernel (downloaded into the cache if missing).
    pub fn kernel(&self, spec: Spec, job: &str) -> Outcome {
        header(&format!("vm-test: kernel {}", spec.name));
        let mut outcome = Outcome {
            name: spec.name,
            release: None,
            origin: None,
            boot: None,
            total: None,
            attempts: 0,
            result: Ok(()),
            results: String::new(),
        };
        outcome.result = self.prepare_and_boot(spec, job, &mut outcome);
        if let Err(e) = &outcome.result {
            eprintln!("vm-test {}: FAILED: {e:#}", spec.name);
        }
        outcome
    }

    fn prepare_and_boot(&self, spec: Spec, job: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
        let (kernel, origin) = kernel::ensure(spec, &self.cache, self.refresh)?;
        outcome.release = Some(kernel.release.clone());
        outcome.origin = Some(origin);
        let image = vmlinux::ensure(&kernel)?;
        let initrd = initramfs::ensure(&kernel, &self.cache)?;
        let share = self
            .runs
            .join(format!("share-{}-{}", spec.name, std::process::id()));
        if share.exists() {
            fs::remove_dir_all(&share)?;
        }
        fs::create_dir_all(&share)?;
        initramfs::write_executable(&share.join("job.sh"), job)?;
        let result = self.boot(&kernel, &image, &initrd, &share, outcome);
        outcome.results = fs::read_to_string(share.join("results")).unwrap_or_default();
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
        initramfs::write_executable(&share.join("run.sh"), &run_script(kernel, &self.cwd))?;
        let log_path = self.runs.join(format!("{}.log", kernel.spec.name));
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
        if let Some(extra) = &self.append {
            cmdline = format!("{cmdline} {extra}");
        }
        let mut qemu = Command::new("qemu-system-x86_64");
        // One vCPU: with two, multi-threaded TCG sometimes let a vCPU run a stale int3 after
        // the other finished patching kernel text (text_poke_bp, e.g. when captrace enables the
        // syscall tracepoints), and the guest died with "Oops: int3" in syscall_trace_enter
        // (6.12; at boot on 7.3 too). The tests run one at a time anyway.
        qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .args(["-m", "2G", "-smp", "1"])
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
        for file in ["started", "output", "status", "results"] {
            fs::remove_file(share.join(file)).ok();
        }
        let timeout = self.timeout;
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
/// modprobe and bpftool look, runs the job in `cwd` with `VM_SHARE` naming the share (where it
/// may leave a `results` file), and records its output and status in the share.
fn run_script(kernel: &Kernel, cwd: &Path) -> String {
    let quote = |p: &Path| shell_quote(&p.to_string_lossy());
    let release = &kernel.release;
    let mut script = format!(
        "# generated by `cargo xtask vm-test`\n\
         export PATH={GUEST_PATH} HOME=/root TERM=dumb VM_SHARE={SHARE_MOUNT}\n\
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
pub fn remove_stale_shares(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
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
