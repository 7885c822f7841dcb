//! Safer alternatives to capabilities of a set: what a container runtime or service manager
//! can give instead of the capability. Pure: a set and what the kernel saw in, alternatives
//! out; `minimize::alternatives` proves them by replay.
use crate::{capability::Cap, profile::Alternative};

pub const CAP_NET_BIND_SERVICE: Cap = Cap(10);
pub const CAP_NET_RAW: Cap = Cap(13);
pub const CAP_SETGID: Cap = Cap(6);
pub const CAP_SETUID: Cap = Cap(7);

/// The sysctl below which binding a port needs CAP_NET_BIND_SERVICE
/// (`inet_port_requires_bind_service`). It belongs to the network namespace, so a container
/// with its own sets it without touching the host (`docker run --sysctl`; Docker 20.10 and
/// later already set it to 0, podman keeps 1024).
pub const UNPRIVILEGED_PORT_START: &str = "net.ipv4.ip_unprivileged_port_start";

/// The groups that may open ICMP datagram ("ping") sockets (`ping_init_sock`), and the range
/// that lets every group, as Docker 20.10 and later set it in a container.
pub const PING_GROUP_RANGE: &str = "net.ipv4.ping_group_range";
const EVERY_GROUP: &str = "0 2147483647";

const SYSCTL: &str = "sysctl ";
const USER: &str = "user ";

/// The uid a proof of a set replaced entirely by sysctls runs as (`nobody`).
pub const NONROOT_UID: u32 = 65_534;

/// What the kernel showed that an alternative depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Ports whose `bind` checked CAP_NET_BIND_SERVICE.
    pub bind_ports: Vec<u16>,
    /// A raw ICMP socket checked CAP_NET_RAW.
    pub raw_icmp: bool,
}

impl Seen {
    /// From the kernel's notes on syscall arguments (`tracer_common::arg_note`).
    pub fn from_notes(notes: &[(u16, u16)]) -> Seen {
        use tracer_common::arg_note;
        Seen {
            bind_ports: notes
                .iter()
                .filter(|(k, _)| *k == arg_note::BIND_PORT)
                .map(|(_, v)| *v)
                .collect(),
            raw_icmp: notes.iter().any(|(k, _)| *k == arg_note::RAW_ICMP),
        }
    }
}

/// The alternatives for members of `set`, unproven.
pub fn find(set: &[Cap], seen: &Seen) -> Vec<Alternative> {
    let mut out = Vec::new();
    if set.contains(&CAP_NET_BIND_SERVICE)
        && let Some(lowest) = seen.bind_ports.iter().min()
    {
        out.push(Alternative {
            cap: CAP_NET_BIND_SERVICE,
            instead: format!("{SYSCTL}{UNPRIVILEGED_PORT_START}={lowest}"),
            proven: false,
        });
    }
    if set.contains(&CAP_NET_RAW) && seen.raw_icmp {
        out.push(Alternative {
            cap: CAP_NET_RAW,
            instead: format!("{SYSCTL}{PING_GROUP_RANGE}={EVERY_GROUP}"),
            proven: false,
        });
    }
    out
}

/// The user-change alternative (`--minimize --as-user NAME`): SETUID and SETGID, used only to
/// become NAME, are not needed when the command starts as NAME.
pub fn as_user(set: &[Cap], name: &str) -> Vec<Alternative> {
    [CAP_SETUID, CAP_SETGID]
        .into_iter()
        .filter(|c| set.contains(c))
        .map(|cap| Alternative {
            cap,
            instead: format!("{USER}{name}"),
            proven: false,
        })
        .collect()
}

/// `(key, value)` of a sysctl alternative.
pub fn sysctl(a: &Alternative) -> Option<(&str, &str)> {
    a.instead.strip_prefix(SYSCTL)?.split_once('=')
}

/// The user of a user-change alternative.
pub fn user(a: &Alternative) -> Option<&str> {
    a.instead.strip_prefix(USER)
}

/// Every sysctl the alternatives set, once each.
pub fn sysctls(alts: &[Alternative]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = alts
        .iter()
        .filter_map(sysctl)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What remains of `set` when every alternative is taken.
pub fn remaining(set: &[Cap], alts: &[Alternative]) -> Vec<Cap> {
    set.iter()
        .filter(|c| !alts.iter().any(|a| a.cap == **c))
        .copied()
        .collect()
}

/// The report's line for one alternative, shown next to the flag; `minimized`: the profile
/// went through `--minimize` (whose note says why an alternative was not proven).
pub fn line(a: &Alternative, minimized: bool) -> String {
    let proof = match (a.proven, minimized) {
        (true, _) => "proven by a replay",
        (false, true) => "not proven: see the minimize note",
        (false, false) => "not proven (record with --minimize to prove it)",
    };
    match (sysctl(a), user(a)) {
        (Some((k, v)), _) => format!(
            "instead of {}: --sysctl {} in a container with its own network namespace{} ({proof})",
            a.cap,
            shell_word(&format!("{k}={v}")),
            if k == PING_GROUP_RANGE {
                ", for a program that falls back to an ICMP datagram socket (as iputils ping does)"
            } else {
                ""
            }
        ),
        (_, Some(u)) => format!(
            "instead of {}: start it as {u} (docker run --user, systemd User=) with the rest as ambient capabilities ({proof})",
            a.cap
        ),
        _ => format!("instead of {}: {} ({proof})", a.cap, a.instead),
    }
}

/// `word`, quoted for a shell when it holds a space (`net.ipv4.ping_group_range=0 2147483647`).
pub fn shell_word(word: &str) -> String {
    if word.contains(' ') {
        format!("'{word}'")
    } else {
        word.to_string()
    }
}

/// When every capability has a sysctl alternative, the workload needs none: it runs as a
/// non-root user.
pub fn non_root_line(set: &[Cap], alts: &[Alternative]) -> Option<String> {
    let all_sysctl = !set.is_empty()
        && set
            .iter()
            .all(|c| alts.iter().any(|a| a.cap == *c && sysctl(a).is_some()));
    all_sysctl.then(|| {
        "with those sysctls it needs no capability: run it as a non-root user (docker run --user, USER in the Dockerfile)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_port_bound_sets_the_sysctl() {
        let seen = Seen {
            bind_ports: vec![443, 80],
            ..Seen::default()
        };
        let alts = find(&[Cap(0), CAP_NET_BIND_SERVICE], &seen);
        assert_eq!(alts.len(), 1);
        assert_eq!(
            alts[0].instead,
            "sysctl net.ipv4.ip_unprivileged_port_start=80"
        );
        assert_eq!(
            sysctl(&alts[0]),
            Some(("net.ipv4.ip_unprivileged_port_start", "80"))
        );
        assert_eq!(
            remaining(&[Cap(0), CAP_NET_BIND_SERVICE], &alts),
            vec![Cap(0)]
        );
        assert!(non_root_line(&[Cap(0), CAP_NET_BIND_SERVICE], &alts).is_none());
        assert!(non_root_line(&[CAP_NET_BIND_SERVICE], &alts).is_some());
    }

    #[test]
    fn a_raw_icmp_socket_gets_the_ping_group_range() {
        use tracer_common::arg_note;
        let seen = Seen::from_notes(&[(arg_note::RAW_ICMP, 2), (arg_note::BIND_PORT, 80)]);
        assert_eq!(seen.bind_ports, vec![80]);
        let alts = find(&[CAP_NET_RAW], &seen);
        assert_eq!(
            sysctl(&alts[0]),
            Some(("net.ipv4.ping_group_range", "0 2147483647"))
        );
        assert!(
            line(&alts[0], false).contains("--sysctl 'net.ipv4.ping_group_range=0 2147483647'"),
            "{}",
            line(&alts[0], false)
        );
        // A raw socket of another kind (a packet socket) has no such alternative.
        assert!(find(&[CAP_NET_RAW], &Seen::default()).is_empty());
    }

    #[test]
    fn no_port_seen_no_sysctl() {
        assert!(find(&[CAP_NET_BIND_SERVICE], &Seen::default()).is_empty());
        let port_80 = Seen {
            bind_ports: vec![80],
            ..Seen::default()
        };
        assert!(find(&[Cap(0)], &port_80).is_empty());
    }

    #[test]
    fn the_user_change_replaces_setuid_and_setgid() {
        let alts = as_user(&[Cap(0), CAP_SETGID, CAP_SETUID], "www-data");
        assert_eq!(alts.len(), 2);
        assert!(alts.iter().all(|a| user(a) == Some("www-data")));
        assert!(line(&alts[0], false).contains("start it as www-data"));
        assert_eq!(
            remaining(&[Cap(0), CAP_SETGID, CAP_SETUID], &alts),
            vec![Cap(0)]
        );
    }
}
