//! The profile: versioned JSON that `record -o` writes and every other command reads.
//! All reading and writing goes through this module. The schema is documented in README.md.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    capability::Cap,
    safe_file::{self, NoOutputDir, ReadError},
};

pub const SCHEMA: &str = "captrace/profile";
pub const VERSION: u32 = 1;
/// Profiles larger than this are refused before parsing (a profile is a few KiB).
pub const MAX_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub schema: String,
    pub version: u32,
    /// The minimal set, Docker style names (`["CHOWN","NET_BIND_SERVICE"]`).
    pub cap_add: Vec<Cap>,
    /// The command that was recorded.
    #[serde(default)]
    pub command: Vec<String>,
    /// Its exit code, or 128+N when killed by signal N.
    #[serde(default)]
    pub exit_status: Option<i32>,
    #[serde(default)]
    pub kernel: String,
    /// The kernel hook that observed the checks (e.g. `tp_btf/cap_capable`).
    #[serde(default)]
    pub hook: String,
    /// Every distinct check observed.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Audited checks against the host that were denied: wanted but not granted.
    #[serde(default)]
    pub denied: Vec<Check>,
    /// Capabilities used only inside user namespaces the workload owns (not host capabilities).
    #[serde(default)]
    pub nested_userns: Vec<Cap>,
    /// Capabilities in `cap_add` that no traced check showed: from kernel rules or from replay.
    #[serde(default)]
    pub never_checked: Vec<Added>,
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Detail events the ring buffer could not take (counts stay exact).
    #[serde(default)]
    pub lost_events: u64,
    /// Stack walks that failed: those checks are reported with an unknown call path.
    #[serde(default)]
    pub lost_stacks: u64,
    /// Inserts a full kernel map refused: checks or processes that were not counted.
    #[serde(default)]
    pub map_full: u64,
    #[serde(default)]
    pub minimize: Option<Minimize>,
    /// Containers the recorded command started (`record -- docker run ...`), each with its own
    /// set. When there are any, `cap_add` is the union of theirs, and `checks` are the
    /// client's own (docker, podman), never a container's.
    #[serde(default)]
    pub containers: Vec<ContainerProfile>,
    /// The recording followed the containers the command started (a container client, or
    /// `record --containers`), whether or not it saw any.
    #[serde(default)]
    pub follows_containers: bool,
    /// `--minimize`: checks of capabilities left out of `cap_add` that the kernel refused in the
    /// proving replay without changing the command's outcome, each with its known effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent_refusals: Vec<SilentRefusal>,
    /// Capabilities of `cap_add` with a safer alternative (`alternatives.rs`): a network
    /// sysctl of the container's own network namespace, or starting as the service user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
    /// Human advice (non-root, Docker default comparison, --privileged).
    #[serde(default)]
    pub advice: Vec<String>,
}

/// What the kernel side could not record (`STATS`): reported by every command, never silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    pub events: u64,
    pub stacks: u64,
    pub map_full: u64,
}

impl Losses {
    /// One line per kind of loss, empty when nothing was lost.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.events > 0 {
            out.push(format!(
                "lost {} detail events (ring buffer full); counts are still exact",
                self.events
            ));
        }
        if self.stacks > 0 {
            out.push(format!(
                "lost {} kernel stack walks; those checks are shown with an unknown call path and count as audited",
                self.stacks
            ));
        }
        if self.map_full > 0 {
            out.push(format!(
                "a full kernel map refused {} entries: some checks or processes were not counted",
                self.map_full
            ));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Granted,
    Denied,
}

/// Whether a check would be audited (and so counts as use) or is a `*_noaudit` probe.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Audit {
    Audited,
    Noaudit,
    /// Audited, but the kernel only asks to choose a path and succeeds without it (e.g. the
    /// SETPCAP check on every capset); never counted as use.
    Probe,
    /// No call path was available; treated as audited.
    Unknown,
}

/// Whose capabilities a check tested.
#[derive(
    Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The workload's own credentials.
    #[default]
    Workload,
    /// A container runtime's init (runc, crun) before it execs the workload.
    Runtime,
    /// Credentials the task borrowed (`cred != task->real_cred`), e.g. overlayfs acting as its
    /// mounter.
    Borrowed,
}

impl Origin {
    pub fn is_workload(&self) -> bool {
        *self == Origin::Workload
    }

    /// The kernel side's `tracer_common::origin` value.
    pub(crate) fn from_kernel(o: u8) -> Origin {
        match o {
            tracer_common::origin::RUNTIME => Origin::Runtime,
            tracer_common::origin::BORROWED => Origin::Borrowed,
            _ => Origin::Workload,
        }
    }
}

/// The user namespace a check was made against.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Host,
    Nested,
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub cap: Cap,
    pub verdict: Verdict,
    pub audit: Audit,
    pub scope: Scope,
    /// Syscall name, or `null` outside a syscall.
    pub syscall: Option<String>,
    /// Exact number of checks with this capability, verdict, scope and syscall.
    pub count: u64,
    /// The first process seen making it.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub comm: Option<String>,
    /// Distinct kernel call paths seen (innermost first, `cap_capable` omitted).
    #[serde(default)]
    pub call_paths: Vec<CallPath>,
    /// Whose check it is: the workload's own (the default), a container runtime's init
    /// setting the container up, or made with borrowed credentials. Only the workload's count.
    #[serde(default, skip_serializing_if = "Origin::is_workload")]
    pub origin: Origin,
    /// Milliseconds from the start of the recording to when this check was first seen, to
    /// within captrace's polling interval; absent in profiles of older captraces and of
    /// `record --container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_ms: Option<u64>,
    /// Milliseconds from the start of the recording to the last poll that found its count
    /// grown (or its first sighting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
}

#[cfg(test)]
impl Check {
    /// A granted, audited host check of the workload, made once by process 1 (`x`) in
    /// `syscall`: the common case unit tests vary with struct update syntax.
    pub(crate) fn granted(cap: u8, syscall: &str) -> Check {
        Check {
            cap: Cap(cap),
            verdict: Verdict::Granted,
            audit: Audit::Audited,
            scope: Scope::Host,
            syscall: Some(syscall.into()),
            count: 1,
            pid: Some(1),
            comm: Some("x".into()),
            call_paths: vec![],
            origin: Origin::Workload,
            first_seen_ms: None,
            last_seen_ms: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallPath {
    pub frames: Vec<String>,
    pub audit: Audit,
    /// The classifier rule that decided `audit`.
    pub rule: String,
}

/// One container the recorded command started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerProfile {
    /// `docker`, `podman`, `containerd`, ...
    pub runtime: String,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// The compose service that started it.
    #[serde(default)]
    pub service: Option<String>,
    /// Its minimal set (its own processes' checks; the runtime's never count).
    pub cap_add: Vec<Cap>,
    /// Every distinct check made in its cgroup, the runtime's (`origin`) included.
    #[serde(default)]
    pub checks: Vec<Check>,
    #[serde(default)]
    pub denied: Vec<Check>,
    #[serde(default)]
    pub never_checked: Vec<Added>,
    /// The effective set of its init (what the runtime granted), when it could be read.
    #[serde(default)]
    pub granted: Option<Vec<Cap>>,
    /// `--minimize`: what the replays proved for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimize: Option<Minimize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent_refusals: Vec<SilentRefusal>,
}

impl ContainerProfile {
    /// `docker ct-x (3f4e8a6c2b1d)`.
    pub fn label(&self) -> String {
        let short = &self.id[..self.id.len().min(12)];
        match &self.name {
            Some(n) => format!("{} {n} ({short})", self.runtime),
            None => format!("{} {short}", self.runtime),
        }
    }

    /// Whether `key` names it: its name, its service, or a prefix of its id.
    pub fn is(&self, key: &str) -> bool {
        self.name.as_deref() == Some(key)
            || self.service.as_deref() == Some(key)
            || (key.len() >= 4 && self.id.starts_with(key))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Added {
    pub cap: Cap,
    /// Why: the kernel rule or the replay that showed it.
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// Namespace kinds created (unshare, clone, clone3), e.g. `["uts","mnt"]`.
    pub created: Vec<String>,
    /// Namespace kinds joined (setns).
    pub joined: Vec<String>,
    pub calls: Vec<NsCallRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NsCallRecord {
    pub syscall: String,
    pub namespaces: Vec<String>,
    /// Return value (negative errno on failure).
    pub ret: i64,
    pub pid: u32,
    pub comm: String,
    /// Who made it: `runtime` when the kernel saw a container runtime's code make it (a
    /// runtime's init creating the container's namespaces); absent for the workload.
    #[serde(default, skip_serializing_if = "Origin::is_workload")]
    pub origin: Origin,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Minimize {
    /// Whether replaying with the recorded privileges reproduced the exit status.
    pub rerunnable: bool,
    /// Whether that replay also made the recording's audited checks and no others: only then
    /// is anything dropped or added.
    #[serde(default)]
    pub faithful: bool,
    /// The audited checks in which that replay differed from the recording
    /// (`CHOWN in fchownat by chown: recorded 1x, replayed 0x`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    pub proven: Vec<Cap>,
    pub dropped: Vec<Cap>,
    pub added: Vec<Cap>,
    pub replays: u32,
    pub note: Option<String>,
}

/// A capability the kernel refused in the replay that proved `cap_add`, while the command's
/// outcome (exit status, `--check`) stayed the recording's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SilentRefusal {
    pub cap: Cap,
    /// The first process seen refused.
    pub comm: Option<String>,
    pub syscall: Option<String>,
    /// Exact number of refused checks of this capability in this syscall.
    pub count: u64,
    /// A short kernel call path (`in_group_or_capable <- setattr_prepare`).
    pub kernel_path: String,
    /// What the refusal does, as far as the kernel source tells.
    pub effect: String,
}

/// What can replace one capability of the set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    pub cap: Cap,
    /// `sysctl net.ipv4.ip_unprivileged_port_start=80` (a sysctl of the workload's own network
    /// namespace) or `user www-data` (start as that user instead of switching to it).
    pub instead: String,
    /// A `--minimize` replay with the alternative in place of the capability ended like the
    /// recording.
    pub proven: bool,
}

/// Checks that `-o FILE` can be written before anything starts: its directory must exist.
pub fn check_output_dir(output: Option<&Path>) -> Result<(), NoOutputDir> {
    output.map_or(Ok(()), |out| safe_file::check_parent_dir("profile", out))
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A FIFO, a device or a directory: reading it could block or never end.
    #[error("cannot read profile {path}: it is a {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    /// The file is larger than any profile captrace writes.
    #[error(
        "profile {path} is {size} bytes, over the {MAX_BYTES}-byte limit: is it really a captrace profile?"
    )]
    TooLarge { path: String, size: u64 },
    /// Not valid JSON of the profile schema.
    #[error("profile {path} is not a valid captrace profile")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A profile of another schema or a newer version.
    #[error(
        "profile {path} has schema {schema:?} version {version}; this captrace reads {SCHEMA:?} version {VERSION}"
    )]
    Version {
        path: String,
        schema: String,
        version: u32,
    },
    /// The file could not be written.
    #[error("cannot write profile {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Profile {
    pub fn new() -> Self {
        Profile {
            schema: SCHEMA.to_string(),
            version: VERSION,
            ..Default::default()
        }
    }

    pub fn losses(&self) -> Losses {
        Losses {
            events: self.lost_events,
            stacks: self.lost_stacks,
            map_full: self.map_full,
        }
    }

    pub fn set_losses(&mut self, l: Losses) {
        self.lost_events = l.events;
        self.lost_stacks = l.stacks;
        self.map_full = l.map_full;
    }

    pub fn from_json(text: &str, path: &str) -> Result<Self, ProfileError> {
        let p: Profile = serde_json::from_str(text).map_err(|source| ProfileError::Parse {
            path: path.to_string(),
            source,
        })?;
        if p.schema != SCHEMA || p.version != VERSION {
            return Err(ProfileError::Version {
                path: path.to_string(),
                schema: p.schema,
                version: p.version,
            });
        }
        Ok(p)
    }

    pub fn read(path: &Path) -> Result<Self, ProfileError> {
        let name = path.display().to_string();
        let data = safe_file::read_regular(path, MAX_BYTES).map_err(|e| match e {
            ReadError::Io(source) => ProfileError::Read {
                path: name.clone(),
                source,
            },
            ReadError::NotRegular(kind) => ProfileError::NotRegular {
                path: name.clone(),
                kind,
            },
            ReadError::TooLarge(size) => ProfileError::TooLarge {
                path: name.clone(),
                size,
            },
        })?;
        let text = String::from_utf8(data).map_err(|e| ProfileError::Read {
            path: name.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        })?;
        Self::from_json(&text, &name)
    }

    /// Pretty JSON with no raw control character (a comm may hold C1 controls).
    pub fn to_json(&self) -> String {
        crate::escape::json(
            serde_json::to_string_pretty(self).expect("a profile always serialises"),
        )
    }

    pub fn write(&self, path: &Path) -> Result<(), ProfileError> {
        let mut text = self.to_json();
        text.push('\n');
        safe_file::write_replacing(path, text.as_bytes(), 0o666).map_err(|source| {
            ProfileError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_docker_names() {
        let mut p = Profile::new();
        p.cap_add = vec![Cap(0), Cap(10)];
        let text = p.to_json();
        assert!(
            text.contains(
                r#""cap_add": [
    "CHOWN",
    "NET_BIND_SERVICE"
  ]"#
            ),
            "{text}"
        );
        assert_eq!(Profile::from_json(&text, "p.json").unwrap(), p);
    }

    #[test]
    fn minimal_profile_needs_only_schema_and_cap_add() {
        let p = Profile::from_json(
            r#"{"schema":"captrace/profile","version":1,"cap_add":["cap_chown","NET_RAW"]}"#,
            "p.json",
        )
        .unwrap();
        assert_eq!(p.cap_add, vec![Cap(0), Cap(13)]);
    }

    #[test]
    fn rejects_bad_profiles_with_the_reason() {
        let e = Profile::from_json(
            r#"{"schema":"captrace/profile","version":1,"cap_add":["CHOWM"]}"#,
            "p.json",
        )
        .unwrap_err();
        let e = format!("{:#}", anyhow::Error::from(e));
        assert!(e.contains("did you mean CHOWN"), "{e}");
        let e = Profile::from_json(
            r#"{"schema":"captrace/profile","version":1,"cap_add":"CHOWN"}"#,
            "p.json",
        )
        .unwrap_err();
        let e = format!("{:#}", anyhow::Error::from(e));
        assert!(e.contains("invalid type"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = Profile::from_json(r#"{"schema":"other","version":1,"cap_add":[]}"#, "p.json")
            .unwrap_err();
        assert!(matches!(e, ProfileError::Version { .. }));
        let e = Profile::from_json(
            r#"{"schema":"captrace/profile","version":1,"cap_add":["CHOWN"]"#,
            "p.json",
        )
        .unwrap_err();
        assert!(matches!(e, ProfileError::Parse { .. }));
    }
}
