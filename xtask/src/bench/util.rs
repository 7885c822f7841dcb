//! Small helpers: running commands, parsing the load generator's output, medians.
use super::*;

/// Runs `cmd` with stderr discarded; its stdout if it exits with 0.
pub(super) fn run_stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = cmd::display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("`{shown}` failed ({}); stdout: {stdout:?}", out.status);
    }
    Ok(stdout)
}

/// Wall time of `cmd` (stdout and stderr discarded) in ms; fails unless it exits with 0.
pub(super) fn wall_ms(mut cmd: Command) -> anyhow::Result<f64> {
    let shown = cmd::display(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(ms)
}

/// Wall time and CPU time (user + system of `cmd` and every descendant it waited for) of
/// `cmd` in ms, stdout and stderr discarded; fails unless it exits with 0.
pub(super) fn wall_and_cpu_ms(cmd: Command) -> anyhow::Result<(f64, f64)> {
    let before = children_cpu_ms();
    let wall = wall_ms(cmd)?;
    Ok((wall, children_cpu_ms() - before))
}

/// CPU time of this process's reaped children, in ms (getrusage(RUSAGE_CHILDREN)).
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The number after `key ` on a line of the load generator's output.
pub(super) fn value_of(stdout: &str, key: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

pub(super) fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// An empty directory at `path`.
pub(super) fn fresh_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

pub(super) fn median(samples: &[f64]) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

pub(super) fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:.decimals$}"))
}

/// A program name as a report key fragment.
pub(super) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
