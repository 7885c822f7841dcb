//! The credentials a workload starts with: user, groups and all five capability sets, applied
//! in the child just before exec.
use std::collections::HashSet;

use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};

use crate::capability::Cap;

/// Who the workload runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group included).
    pub groups: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    /// Bounding, permitted and effective set; for a non-root user also inheritable and ambient,
    /// so the capabilities survive exec (capabilities(7): ambient set).
    pub caps: Vec<Cap>,
    pub user: Option<User>,
    pub no_new_privs: bool,
    /// Keep captrace's supplementary groups (replays of `record`, which ran with them).
    /// Otherwise they are set to the user's, or emptied for root without `--user`: a group
    /// captrace holds (even one a user namespace cannot map) still opens files by group.
    pub inherit_groups: bool,
}

fn to_caps(set: &[Cap]) -> HashSet<caps::Capability> {
    caps::all()
        .into_iter()
        .filter(|c| set.contains(&Cap(c.index())))
        .collect()
}

fn errno<E>(_: E) -> i32 {
    nix::errno::Errno::last_raw().max(1)
}

impl Privileges {
    /// Applies everything, in the order the kernel allows: bounding set (needs SETPCAP), then
    /// ids with keep-caps (needs SETUID/SETGID), then the capability sets (capset), then the
    /// ambient set, then no_new_privs. Returns the errno of the first failure.
    pub fn apply(&self) -> Result<(), i32> {
        // Every capability the kernel has, found by asking it rather than by reading
        // /proc/sys/kernel/cap_last_cap: by now the child may be inside a root file system
        // whose /proc is not the kernel's. Numbers are dense, so the first one the kernel does
        // not know (EINVAL, `cap_valid` in prctl PR_CAPBSET_READ) ends the list.
        for n in 0..=u8::MAX {
            // SAFETY: prctl with integer arguments.
            let known =
                unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n), 0, 0, 0) };
            if known < 0 {
                break;
            }
            if !self.caps.contains(&Cap(n)) {
                // SAFETY: prctl with integer arguments.
                let rc =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
                if rc != 0 {
                    return Err(nix::errno::Errno::last_raw());
                }
            }
        }
        let set = to_caps(&self.caps);
        let non_root = self.user.as_ref().is_some_and(|u| u.uid != 0);
        if !self.inherit_groups {
            let groups: Vec<Gid> = self
                .user
                .iter()
                .flat_map(|u| &u.groups)
                .map(|g| Gid::from_raw(*g))
                .collect();
            setgroups(&groups).map_err(errno)?;
        }
        if let Some(user) = &self.user {
            nix::sys::prctl::set_keepcaps(true).map_err(errno)?;
            let gid = Gid::from_raw(user.gid);
            setresgid(gid, gid, gid).map_err(errno)?;
            let uid = Uid::from_raw(user.uid);
            setresuid(uid, uid, uid).map_err(errno)?;
        }
        // Effective first: it must stay within the permitted set at every capset.
        caps::set(None, caps::CapSet::Effective, &set).map_err(errno)?;
        caps::set(None, caps::CapSet::Permitted, &set).map_err(errno)?;
        // Root gets its permitted set back from the bounding set at exec; a non-root user keeps
        // capabilities across exec only through the ambient set, which needs them inheritable.
        let inheritable = if non_root {
            set.clone()
        } else {
            HashSet::new()
        };
        caps::set(None, caps::CapSet::Inheritable, &inheritable).map_err(errno)?;
        caps::clear(None, caps::CapSet::Ambient).map_err(errno)?;
        if non_root {
            for c in &set {
                caps::raise(None, caps::CapSet::Ambient, *c).map_err(errno)?;
            }
        }
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(errno)?;
        }
        Ok(())
    }
}

/// Parses `UID[:GID]` or `NAME[:GROUP]` against the passwd and group files of the root the
/// workload will see. Supplementary groups come from the group file, as login would set them.
pub fn parse_user(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let entry = pw.iter().find(|f| f[0] == u || f[2] == u);
    let uid: u32 = match (u.parse(), entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2]
            .parse()
            .map_err(|_| format!("bad uid for user {u:?} in passwd"))?,
        (Err(_), None) => {
            return Err(format!(
                "unknown user {u:?}: give a number or a name from /etc/passwd"
            ));
        }
    };
    let name = entry.map(|f| f[0]);
    let gid: u32 = match g {
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unknown group {g:?}: give a number or a name from /etc/group")
                })?,
        },
        // A uid with no passwd entry gets the same number as gid, as docker does.
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(uid),
    };
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &gr {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Ok(n) = f[2].parse::<u32>()
                && !groups.contains(&n)
            {
                groups.push(n);
            }
        }
    }
    Ok(User { uid, gid, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n";
    const GROUP: &str =
        "root:x:0:\nuser:x:1000:\naudio:x:29:user\nvideo:x:44:user,www-data\nwww-data:x:33:\n";

    #[test]
    fn parses_numbers_names_and_groups() {
        assert_eq!(
            parse_user("1000", PASSWD, GROUP).unwrap(),
            User {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 29, 44]
            }
        );
        assert_eq!(
            parse_user("www-data", PASSWD, GROUP).unwrap(),
            User {
                uid: 33,
                gid: 33,
                groups: vec![33, 44]
            }
        );
        assert_eq!(parse_user("1000:44", PASSWD, GROUP).unwrap().gid, 44);
        assert_eq!(parse_user("user:video", PASSWD, GROUP).unwrap().gid, 44);
        assert_eq!(
            parse_user("4242", PASSWD, GROUP).unwrap(),
            User {
                uid: 4242,
                gid: 4242,
                groups: vec![4242]
            }
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(
            parse_user("nobody-here", PASSWD, GROUP)
                .unwrap_err()
                .contains("unknown user")
        );
        assert!(
            parse_user("1000:nogroup", PASSWD, GROUP)
                .unwrap_err()
                .contains("unknown group")
        );
    }
}
