//! The one capability table: number, name, Docker's default set and what each allows.
//! Every command that names a capability goes through here.
use std::fmt;

use serde::{Deserialize, Serialize};

/// A Linux capability by number (include/uapi/linux/capability.h).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(pub u8);

pub struct CapInfo {
    pub number: u8,
    /// Docker style: upper case, no `CAP_` prefix.
    pub name: &'static str,
    pub docker_default: bool,
    pub allows: &'static str,
}

macro_rules! caps {
    ($( $n:literal $name:ident $dflt:literal $allows:literal ),* $(,)?) => {
        pub const TABLE: &[CapInfo] = &[
            $( CapInfo { number: $n, name: stringify!($name), docker_default: $dflt, allows: $allows }, )*
        ];
    };
}

caps! {
    0 CHOWN true "change the owner and group of any file",
    1 DAC_OVERRIDE true "bypass file read, write and execute permission checks",
    2 DAC_READ_SEARCH false "bypass file read and directory search permission checks; open_by_handle_at",
    3 FOWNER true "act as the owner of any file (chmod, utime, sticky-bit deletes, xattrs)",
    4 FSETID true "keep set-user/group-ID bits when a file is modified; set SGID for other groups",
    5 KILL true "send signals to processes of other users",
    6 SETGID true "change group ids and supplementary groups; forge gids on sockets",
    7 SETUID true "change user ids; forge uids on sockets; write uid maps",
    8 SETPCAP true "change other capability sets: drop from the bounding set, add to inheritable",
    9 LINUX_IMMUTABLE false "set the immutable and append-only file attributes",
    10 NET_BIND_SERVICE true "bind sockets to ports below 1024",
    11 NET_BROADCAST false "broadcast and listen to multicast (unused by the kernel)",
    12 NET_ADMIN false "configure interfaces, routes, firewall, sockets' privileged options",
    13 NET_RAW true "use raw and packet sockets (ping, tcpdump); bind to any address",
    14 IPC_LOCK false "lock memory (mlock, mlockall, SHM_LOCK) beyond RLIMIT_MEMLOCK",
    15 IPC_OWNER false "bypass permission checks on System V IPC objects",
    16 SYS_MODULE false "load and unload kernel modules",
    17 SYS_RAWIO false "raw I/O: ioperm, iopl, /dev/mem, FIBMAP, some device ioctls",
    18 SYS_CHROOT true "call chroot; change mount namespaces with setns",
    19 SYS_PTRACE false "ptrace any process; read other processes' memory",
    20 SYS_PACCT false "turn process accounting on and off",
    21 SYS_ADMIN false "a long list of administration: mount, sethostname, namespaces, quotas, ...",
    22 SYS_BOOT false "reboot and load a new kernel (kexec)",
    23 SYS_NICE false "raise priority, set real-time scheduling and CPU affinity of other processes",
    24 SYS_RESOURCE false "override resource limits, quotas and reserved space",
    25 SYS_TIME false "set the system clock and the real-time clock",
    26 SYS_TTY_CONFIG false "vhangup and privileged ioctls on virtual terminals",
    27 MKNOD true "create device special files with mknod",
    28 LEASE false "take leases on files the process does not own",
    29 AUDIT_WRITE true "write records to the kernel audit log",
    30 AUDIT_CONTROL false "configure kernel auditing and its rules",
    31 SETFCAP true "set file capabilities; map uid 0 in a user namespace",
    32 MAC_OVERRIDE false "override Mandatory Access Control (Smack)",
    33 MAC_ADMIN false "configure Mandatory Access Control (Smack, AppArmor policy)",
    34 SYSLOG false "privileged syslog operations; read kernel addresses",
    35 WAKE_ALARM false "set timers that wake the system up",
    36 BLOCK_SUSPEND false "prevent the system from suspending (epoll wakeups)",
    37 AUDIT_READ false "read the audit log over multicast netlink",
    38 PERFMON false "privileged performance monitoring (perf_event_open, BPF tracing)",
    39 BPF false "privileged BPF operations (maps, programs; with PERFMON for tracing)",
    40 CHECKPOINT_RESTORE false "checkpoint/restore: set next PID, read other processes' maps",
}

/// Capabilities Docker grants by default (moby's `DefaultCapabilities`).
pub fn docker_defaults() -> impl Iterator<Item = Cap> {
    TABLE
        .iter()
        .filter(|c| c.docker_default)
        .map(|c| Cap(c.number))
}

/// Number of capabilities in Docker's default set.
/// Every capability captrace knows.
pub fn all() -> impl Iterator<Item = Cap> {
    (0..TABLE.len() as u8).map(Cap)
}

pub fn docker_default_count() -> usize {
    docker_defaults().count()
}

impl Cap {
    pub fn info(self) -> Option<&'static CapInfo> {
        TABLE.get(self.0 as usize)
    }

    /// Docker style name (`CHOWN`); `CAP_41` style for numbers this table does not know.
    pub fn name(self) -> String {
        match self.info() {
            Some(i) => i.name.to_string(),
            None => format!("CAP_{}", self.0),
        }
    }

    /// Kernel style name (`CAP_CHOWN`).
    pub fn kernel_name(self) -> String {
        match self.info() {
            Some(i) => format!("CAP_{}", i.name),
            None => format!("CAP_{}", self.0),
        }
    }

    pub fn docker_default(self) -> bool {
        self.info().is_some_and(|i| i.docker_default)
    }

    /// Parses `CHOWN`, `CAP_CHOWN`, `chown`, `cap_chown` or a number.
    pub fn parse(text: &str) -> Result<Cap, UnknownCap> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if let Some(info) = TABLE.iter().find(|c| c.name == bare) {
            return Ok(Cap(info.number));
        }
        if let Ok(n) = bare.parse::<u8>()
            && (n as usize) < TABLE.len()
        {
            return Ok(Cap(n));
        }
        // Capability names are short: a long string gets no suggestion (the edit distance is
        // quadratic) and is cut in the message.
        let suggestion = if bare.len() <= MAX_NAME {
            nearest(bare)
        } else {
            None
        };
        let mut given: String = text.chars().take(MAX_NAME).collect();
        if given.len() < text.len() {
            given.push_str("...");
        }
        Err(UnknownCap { given, suggestion })
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Cap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cap::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Longer than any capability name with its `CAP_` prefix.
const MAX_NAME: usize = 32;

/// A capability name that is not in the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown capability {given:?}{}", suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
pub struct UnknownCap {
    pub given: String,
    pub suggestion: Option<&'static str>,
}

fn nearest(name: &str) -> Option<&'static str> {
    // A unique name that starts with what was typed beats the closest spelling.
    let mut prefixed = TABLE
        .iter()
        .filter(|c| name.len() >= 3 && c.name.starts_with(name));
    if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
        return Some(only.name);
    }
    TABLE
        .iter()
        .map(|c| (strsim::levenshtein(name, c.name), c.name))
        .filter(|(d, n)| *d <= (n.len() / 2).max(2))
        .min()
        .map(|(_, n)| n)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn kernel_last_cap() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Parses a capability bit mask as printed in `/proc/PID/status` (`CapEff: 000001fffeffffff`).
pub fn from_mask(mask: u64) -> Vec<Cap> {
    (0..64u8)
        .filter(|n| mask & (1u64 << n) != 0)
        .map(Cap)
        .collect()
}

pub fn to_mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << c.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_number() {
        for (i, c) in TABLE.iter().enumerate() {
            assert_eq!(c.number as usize, i, "{}", c.name);
        }
    }

    #[test]
    fn names_agree_with_the_caps_crate() {
        for c in caps::all() {
            let ours = Cap(c.index());
            assert_eq!(
                ours.kernel_name(),
                c.to_string(),
                "capability {}",
                c.index()
            );
        }
    }

    #[test]
    fn docker_grants_fourteen() {
        let names: Vec<String> = docker_defaults().map(|c| c.name()).collect();
        assert_eq!(names.len(), 14);
        assert!(names.contains(&"NET_BIND_SERVICE".to_string()));
        assert!(!names.contains(&"SYS_ADMIN".to_string()));
    }

    #[test]
    fn parses_every_spelling() {
        for s in ["CHOWN", "CAP_CHOWN", "chown", "cap_chown", "0"] {
            assert_eq!(Cap::parse(s), Ok(Cap(0)), "{s}");
        }
        assert_eq!(
            Cap::parse("net_bind_service").unwrap().name(),
            "NET_BIND_SERVICE"
        );
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let e = Cap::parse("CHOWM").unwrap_err();
        assert_eq!(e.suggestion, Some("CHOWN"));
        assert_eq!(
            e.to_string(),
            "unknown capability \"CHOWM\" (did you mean CHOWN?)"
        );
        let e = Cap::parse("NET_BIND").unwrap_err();
        assert_eq!(e.suggestion, Some("NET_BIND_SERVICE"));
        assert_eq!(
            Cap::parse("TOTALLY_BOGUS_THING").unwrap_err().suggestion,
            None
        );
    }

    #[test]
    fn huge_names_are_refused_and_cut() {
        // How fast the refusal is belongs to `cargo xtask bench`, not to a wall-clock bound here.
        let long = "X".repeat(1 << 20);
        let e = Cap::parse(&long).unwrap_err();
        assert_eq!(e.suggestion, None);
        assert_eq!(e.given.len(), MAX_NAME + 3);
    }

    #[test]
    fn masks_round_trip() {
        let caps = from_mask(0x000001fffeffffff);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&Cap(24)));
        assert_eq!(to_mask(&caps), 0x000001fffeffffff);
    }
}
