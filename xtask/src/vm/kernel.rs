//! Debian kernels for the VM: resolved and downloaded with apt through a private list directory
//! per Debian release (the host's apt configuration and lists stay untouched), extracted with
//! `dpkg-deb -x` and indexed with `depmod -b`.
//!
//! The mirror is never written here: it is read from the host's own apt sources at run time.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};

use super::sources;
use crate::cmd::{self, stdout_of, succeeds};

/// Private apt lists older than this are refreshed before resolving.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Which kernel releases a kernel name accepts.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// Exactly this major.minor.
    Series(u32, u32),
    /// This major.minor or newer.
    AtLeast(u32, u32),
}

/// A kernel the VM can boot, by name.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The name given to `--kernel`.
    pub name: &'static str,
    /// The Debian release whose suites are searched.
    pub release: &'static str,
    /// Suites below the release (`""` is the release itself).
    pub suites: &'static [&'static str],
    /// The meta package whose newest version names the kernel.
    pub meta: &'static str,
    pub want: Want,
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "6.1",
        release: "bookworm",
        suites: &["", "-security"],
        meta: "linux-image-amd64",
        want: Want::Series(6, 1),
    },
    Spec {
        name: "6.12",
        release: "bookworm",
        suites: &["", "-security"],
        meta: "linux-image-6.12-amd64",
        want: Want::Series(6, 12),
    },
    Spec {
        name: "trixie",
        release: "trixie",
        suites: &["", "-backports", "-security"],
        meta: "linux-image-amd64",
        want: Want::AtLeast(6, 14),
    },
];

/// A resolved kernel: what to download and where it is (or will be) extracted.
#[derive(Debug)]
pub struct Kernel {
    pub spec: Spec,
    /// `uname -r` of the kernel, e.g. `6.12.117+deb12-amd64`.
    pub release: String,
    /// Debian version of the meta package, and the suite it came from.
    pub version: String,
    pub suite: String,
    /// `name=version` of each package to download.
    pub packages: Vec<String>,
    /// The extracted tree: `<cache>/kernels/<release>`.
    pub dir: PathBuf,
}

impl Kernel {
    /// The kernel image inside the extracted tree, if it is there.
    pub fn vmlinuz(&self) -> Option<PathBuf> {
        let r = &self.release;
        [
            format!("boot/vmlinuz-{r}"),
            format!("usr/lib/modules/{r}/vmlinuz"),
            format!("lib/modules/{r}/vmlinuz"),
        ]
        .into_iter()
        .map(|p| self.dir.join(p))
        .find(|p| p.is_file())
    }

    /// The kernel's build configuration inside the extracted tree, if it is there.
    pub fn config(&self) -> Option<PathBuf> {
        let r = &self.release;
        [
            format!("boot/config-{r}"),
            format!("usr/lib/modules/{r}/config"),
            format!("lib/modules/{r}/config"),
        ]
        .into_iter()
        .map(|p| self.dir.join(p))
        .find(|p| p.is_file())
    }

    /// The `-b` base for depmod/modprobe: the tree, or its `usr` for merged-/usr packages.
    pub fn modules_base(&self) -> PathBuf {
        modules_base(&self.dir, &self.release)
    }

    /// `lib/modules/<release>` in the extracted tree.
    pub fn modules_dir(&self) -> PathBuf {
        self.modules_base().join("lib/modules").join(&self.release)
    }
}

fn modules_base(dir: &Path, release: &str) -> PathBuf {
    if dir.join("lib/modules").join(release).is_dir() {
        dir.to_path_buf()
    } else {
        dir.join("usr")
    }
}

/// Where a kernel came from in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Already extracted in the cache: nothing downloaded.
    Cache,
    /// Downloaded from the mirror and extracted into the cache.
    Downloaded,
}

/// Resolves the newest kernel of `spec` and makes sure it is extracted under `cache/kernels`.
/// Downloads nothing when the kernel's image is already there.
pub fn ensure(spec: Spec, cache: &Path, refresh: bool) -> anyhow::Result<(Kernel, Origin)> {
    let apt = PrivateApt::new(spec.release, spec.suites, cache)?;
    let mut updated = apt.update_if_stale(refresh)?;
    loop {
        let kernel = apt.resolve(spec, cache)?;
        if let Some(vmlinuz) = kernel.vmlinuz() {
            println!(
                "kernel {}: from the cache ({})",
                kernel.release,
                vmlinuz.display()
            );
            return Ok((kernel, Origin::Cache));
        }
        println!(
            "kernel {}: not in the cache, downloading {}",
            kernel.release,
            kernel.packages.join(" ")
        );
        match fetch(&apt, &kernel) {
            Ok(()) => {
                println!(
                    "kernel {}: downloaded into {}",
                    kernel.release,
                    kernel.dir.display()
                );
                return Ok((kernel, Origin::Downloaded));
            }
            // Lists that name a version the mirror no longer has: refresh once and retry.
            Err(e) if !updated => {
                eprintln!("download failed ({e:#}); refreshing the package lists");
                apt.update()?;
                updated = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Resolves without downloading the kernel (lists may be refreshed).
pub fn resolve(spec: Spec, cache: &Path, refresh: bool) -> anyhow::Result<Kernel> {
    let apt = PrivateApt::new(spec.release, spec.suites, cache)?;
    apt.update_if_stale(refresh)?;
    apt.resolve(spec, cache)
}

/// apt with its own sources, lists, cache and (empty) dpkg status under `<cache>/apt/<release>`.
struct PrivateApt {
    dir: PathBuf,
    sources_changed: bool,
}

impl PrivateApt {
    fn new(release: &str, suffixes: &[&str], cache: &Path) -> anyhow::Result<Self> {
        let dir = cache.join("apt").join(release);
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let sources = sources::private_sources(release, suffixes)?;
        let path = dir.join("sources.list");
        let sources_changed = fs::read_to_string(&path).ok().as_deref() != Some(&sources);
        if sources_changed {
            fs::write(&path, &sources).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Self {
            dir,
            sources_changed,
        })
    }

    fn command(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut command = Command::new(program);
        command.args([
            format!(
                "-oDir::Etc::sourcelist={}",
                d.join("sources.list").display()
            ),
            "-oDir::Etc::sourceparts=-".to_owned(),
            format!("-oDir::State::Lists={}", d.join("lists").display()),
            format!("-oDir::State::status={}", d.join("status").display()),
            format!("-oDir::Cache={}", d.join("cache").display()),
            // Downloads land in root-owned folders the `_apt` sandbox user cannot write.
            "-oAPT::Sandbox::User=root".to_owned(),
        ]);
        command
    }

    /// Refreshes the lists and stamps the time (apt dates list files by the server's clock).
    fn update(&self) -> anyhow::Result<()> {
        cmd::run(self.command("apt-get").args(["-q", "update"]))?;
        fs::write(self.dir.join("updated"), "")?;
        Ok(())
    }

    /// Runs `apt-get update` unless the lists are recent and the sources unchanged. A failed
    /// update with usable lists only warns. Returns whether the lists were refreshed.
    fn update_if_stale(&self, force: bool) -> anyhow::Result<bool> {
        let updated = fs::metadata(self.dir.join("updated"))
            .and_then(|m| m.modified())
            .ok();
        let age = updated.and_then(|t| SystemTime::now().duration_since(t).ok());
        if !force && !self.sources_changed && age.is_some_and(|a| a < LISTS_MAX_AGE) {
            return Ok(false);
        }
        match self.update() {
            Ok(()) => Ok(true),
            Err(e) if updated.is_some() => {
                eprintln!("warning: {e:#}; using the lists from the previous update");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn cache(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command("apt-cache");
        command.args(args);
        stdout_of(&mut command).with_context(|| format!("`{}` failed", cmd::display(&command)))
    }

    /// The newest version of `package` in `suites`, with the suite it is in.
    fn newest(&self, package: &str, suites: &[String]) -> anyhow::Result<(String, String)> {
        let madison = self.cache(&["madison", package])?;
        let mut best: Option<(String, String)> = None;
        for (version, suite) in parse_madison(&madison) {
            if !suites.contains(&suite) {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| version_gt(&version, b)) {
                best = Some((version, suite));
            }
        }
        best.with_context(|| format!("no {package} in {}", suites.join(", ")))
    }

    /// The `Depends` of `package=version`: (name, exact version if pinned with `=`).
    fn depends(
        &self,
        package: &str,
        version: &str,
    ) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let show = self.cache(&["show", &format!("{package}={version}")])?;
        let stanza = show.split("\n\n").next().unwrap_or_default();
        Ok(field(stanza, "Depends")
            .map(|d| parse_depends(&d))
            .unwrap_or_default())
    }

    fn resolve(&self, spec: Spec, cache: &Path) -> anyhow::Result<Kernel> {
        let suites: Vec<String> = spec
            .suites
            .iter()
            .map(|s| format!("{}{s}", spec.release))
            .collect();
        let (version, suite) = self.newest(spec.meta, &suites)?;
        // The meta package depends on `linux-image-<release>` (itself a meta package on 7.x).
        let (image, image_version) = self
            .depends(spec.meta, &version)?
            .into_iter()
            .find(|(name, _)| name.starts_with("linux-image-") && name != spec.meta)
            .with_context(|| format!("{}={version} depends on no linux-image-*", spec.meta))?;
        let image_version = match image_version {
            Some(v) => v,
            None => self.newest(&image, &suites)?.0,
        };
        let release = image["linux-image-".len()..].to_owned();
        check_release(spec, &release)?;
        let mut packages = vec![format!("{image}={image_version}")];
        for (name, pinned) in self.depends(&image, &image_version)? {
            let part = ["linux-binary-", "linux-modules-", "linux-base-"]
                .iter()
                .any(|p| name.strip_prefix(p) == Some(release.as_str()));
            if part {
                packages.push(format!(
                    "{name}={}",
                    pinned.as_deref().unwrap_or(&image_version)
                ));
            }
        }
        Ok(Kernel {
            spec,
            dir: cache.join("kernels").join(&release),
            release,
            version,
            suite,
            packages,
        })
    }
}

/// Downloads the kernel's packages, extracts them, runs depmod, moves the tree in place, and
/// removes the trees (and initramfs images) of the kernels this one supersedes.
fn fetch(apt: &PrivateApt, kernel: &Kernel) -> anyhow::Result<()> {
    let kernels = kernel.dir.parent().context("kernel dir has no parent")?;
    // Per process: another vm-test may be fetching the same kernel.
    let partial = kernels.join(format!(
        ".{}.partial-{}",
        kernel.release,
        std::process::id()
    ));
    let result = extract(apt, kernel, &partial);
    fs::remove_dir_all(&partial).ok();
    result?;
    if kernel.vmlinuz().is_none() {
        bail!("no vmlinuz in {}", kernel.dir.display());
    }
    prune(kernel, kernels);
    Ok(())
}

fn extract(apt: &PrivateApt, kernel: &Kernel, partial: &Path) -> anyhow::Result<()> {
    let debs = partial.join("debs");
    let root = partial.join("root");
    fs::create_dir_all(&debs)?;
    fs::create_dir_all(&root)?;
    cmd::run(
        apt.command("apt-get")
            .current_dir(&debs)
            .args(["-q", "download"])
            .args(&kernel.packages),
    )?;
    for deb in fs::read_dir(&debs)? {
        cmd::run(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb?.path())
                .arg(&root),
        )?;
    }
    let base = modules_base(&root, &kernel.release);
    cmd::run(
        Command::new("depmod")
            .arg("-b")
            .arg(&base)
            .arg(&kernel.release),
    )?;
    if let Err(e) = fs::rename(&root, &kernel.dir) {
        // Lost a race with another vm-test: its tree is as good as ours.
        if kernel.vmlinuz().is_none() {
            return Err(e)
                .with_context(|| format!("moving the kernel to {}", kernel.dir.display()));
        }
    }
    Ok(())
}

/// Removes older kernels of the same name (and their initramfs images).
fn prune(kernel: &Kernel, kernels: &Path) {
    let Ok(entries) = fs::read_dir(kernels) else {
        return;
    };
    for entry in entries.flatten() {
        let release = entry.file_name().to_string_lossy().into_owned();
        if release.starts_with('.')
            || release == kernel.release
            || check_release(kernel.spec, &release).is_err()
        {
            continue;
        }
        println!("removing superseded kernel {release}");
        fs::remove_dir_all(entry.path()).ok();
        if let Some(cache) = kernels.parent() {
            for suffix in ["cpio.gz", "cpio.gz.stamp"] {
                fs::remove_file(cache.join(format!("initramfs-{release}.{suffix}"))).ok();
            }
        }
    }
}

fn check_release(spec: Spec, release: &str) -> anyhow::Result<()> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) else {
        bail!("cannot read the version of kernel {release}");
    };
    let ok = match spec.want {
        Want::Series(a, b) => (major, minor) == (a, b),
        Want::AtLeast(a, b) => (major, minor) >= (a, b),
    };
    if !ok {
        bail!(
            "{} resolved to kernel {release}, which is not {:?}",
            spec.name,
            spec.want
        );
    }
    Ok(())
}

/// `dpkg --compare-versions a gt b`.
fn version_gt(a: &str, b: &str) -> bool {
    succeeds(Command::new("dpkg").args(["--compare-versions", a, "gt", b]))
}

/// (version, suite) of each line of `apt-cache madison`.
fn parse_madison(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('|').map(str::trim);
            let (_, version, source) = (cols.next()?, cols.next()?, cols.next()?);
            let suite = source.split_whitespace().nth(1)?.split('/').next()?;
            Some((version.to_owned(), suite.to_owned()))
        })
        .collect()
}

/// A field of a deb822 stanza, continuation lines joined.
pub(super) fn field(stanza: &str, name: &str) -> Option<String> {
    let mut lines = stanza.lines().skip_while(|l| {
        l.split_once(':')
            .is_none_or(|(k, _)| !k.eq_ignore_ascii_case(name))
    });
    let first = lines.next()?.split_once(':')?.1.trim().to_owned();
    let rest = lines.take_while(|l| l.starts_with([' ', '\t']));
    Some(
        std::iter::once(first)
            .chain(rest.map(|l| l.trim().to_owned()))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Every alternative of a `Depends` field: (name, version if pinned with `=`).
fn parse_depends(depends: &str) -> Vec<(String, Option<String>)> {
    depends
        .split([',', '|'])
        .filter_map(|dep| {
            let dep = dep.trim();
            let (name, constraint) = match dep.split_once('(') {
                Some((n, c)) => (n.trim(), Some(c.trim_end_matches(')').trim())),
                None => (dep, None),
            };
            let name = name.split(':').next()?.trim();
            let pinned = constraint
                .and_then(|c| c.strip_prefix('='))
                .map(|v| v.trim().to_owned());
            (!name.is_empty()).then(|| (name.to_owned(), pinned))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_depends_with_pins() {
        let deps = parse_depends(
            "dracut | initramfs-tools (>= 0.120+deb8u2), linux-base-7.3.4+deb13-amd64 \
             (= 7.3.4-1~bpo13+1), linux-image-6.1.0-56-amd64",
        );
        assert_eq!(
            deps,
            [
                ("dracut".to_owned(), None),
                ("initramfs-tools".to_owned(), None),
                (
                    "linux-base-7.3.4+deb13-amd64".to_owned(),
                    Some("7.3.4-1~bpo13+1".to_owned())
                ),
                ("linux-image-6.1.0-56-amd64".to_owned(), None),
            ]
        );
    }

    #[test]
    fn parses_madison() {
        let text = " linux-image-amd64 | 7.3.4-1~bpo13+1 | http://m.example/debian \
                    trixie-backports/main amd64 Packages\n \
                    linux-image-amd64 | 6.12.118-1 | http://m.example/debian-security \
                    trixie-security/main amd64 Packages\n";
        assert_eq!(
            parse_madison(text),
            [
                ("7.3.4-1~bpo13+1".to_owned(), "trixie-backports".to_owned()),
                ("6.12.118-1".to_owned(), "trixie-security".to_owned()),
            ]
        );
    }

    #[test]
    fn checks_kernel_series() {
        let [v61, v612, trixie] = [SPECS[0], SPECS[1], SPECS[2]];
        assert!(check_release(v61, "6.1.0-56-amd64").is_ok());
        assert!(check_release(v61, "6.12.117+deb12-amd64").is_err());
        assert!(check_release(v612, "6.12.117+deb12-amd64").is_ok());
        assert!(check_release(trixie, "7.3.4+deb13-amd64").is_ok());
        assert!(check_release(trixie, "6.12.118+deb13-amd64").is_err());
        assert!(check_release(trixie, "6.14.1+deb13-amd64").is_ok());
    }
}
