//! The cgroups v2 the paced callers run in, and the agent's per-cgroup counts read back from
//! its Prometheus text.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// Where the whole cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo` (a mount of a
/// sub-tree would make the agent's cgroup paths relative to something else).
pub(super) fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent dev root mount-point options [optional fields...] - fstype source options
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        (fs.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
            .then(|| fields.get(4).map(|p| PathBuf::from(unescape_octal(p))))?
    })
}

/// mountinfo's `\NNN` escapes (a space is `\040`).
pub(super) fn unescape_octal(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The labels and value of one `captrace_capability_checks_total` sample.
pub(super) fn check_sample(line: &str) -> Option<(Vec<(String, String)>, u64)> {
    let rest = line.strip_prefix("captrace_capability_checks_total{")?;
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((name, value));
        match chars.next()? {
            ',' => continue,
            '}' => break,
            _ => return None,
        }
    }
    let count = chars.as_str().trim().parse().ok()?;
    Some((labels, count))
}

/// The checks of capability `cap` the agent counted in the cgroup named by any of `labels` (its
/// path, or `cgroup-id:N` when the agent could not find it).
pub(super) fn checks_in(metrics: &str, labels: &[String], cap: &str) -> u64 {
    metrics
        .lines()
        .filter_map(check_sample)
        .filter(|(l, _)| {
            let label = |name: &str| l.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            label("capability") == Some(cap)
                && label("cgroup").is_some_and(|c| labels.iter().any(|x| x == c))
        })
        .map(|(_, n)| n)
        .sum()
}

/// A cgroup v2 of the bench's own, removed on drop.
pub(super) struct Cgroup {
    pub(super) dir: PathBuf,
    /// How the agent names it: the path from the hierarchy's root, or its id.
    pub(super) labels: Vec<String>,
}

impl Cgroup {
    pub(super) fn create(root: &Path, name: &str) -> anyhow::Result<Cgroup> {
        let dir = root.join(name);
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        let id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&dir)?);
        Ok(Cgroup {
            dir,
            labels: vec![format!("/{name}"), format!("cgroup-id:{id}")],
        })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_whole_cgroup2_hierarchy() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let escaped = "1 0 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(escaped), Some(PathBuf::from("/mnt/my cg")));
        // Only a sub-tree, or only v1.
        assert_eq!(
            cgroup2_root("1 0 0:38 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            None
        );
        assert_eq!(
            cgroup2_root("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }

    #[test]
    fn sums_one_cgroups_checks_of_one_capability() {
        let metrics = "\
# TYPE captrace_capability_checks_total counter
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 3000
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"noaudit\",origin=\"workload\"} 5
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"/captrace-bench-1\",capability=\"SETUID\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 7
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"a\\\"b\",cgroup=\"/captrace-bench-10\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 11
captrace_capability_checks_total{runtime=\"host\",container_id=\"\",container_name=\"\",cgroup=\"cgroup-id:77\",capability=\"SYS_ADMIN\",verdict=\"granted\",audit=\"audited\",origin=\"workload\"} 2
captrace_events_lost_total 0
";
        let ours = ["/captrace-bench-1".to_string(), "cgroup-id:77".to_string()];
        assert_eq!(checks_in(metrics, &ours, "SYS_ADMIN"), 3007);
        assert_eq!(checks_in(metrics, &ours, "SETUID"), 7);
        assert_eq!(
            checks_in(metrics, &["/captrace-bench-10".to_string()], "SYS_ADMIN"),
            11
        );
        assert_eq!(checks_in(metrics, &["/other".to_string()], "SYS_ADMIN"), 0);
        assert_eq!(
            check_sample("captrace_capability_checks_total{a=\"x} 1"),
            None
        );
    }
}
