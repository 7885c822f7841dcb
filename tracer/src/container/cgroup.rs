//! One parser for the cgroup paths every runtime people use creates, on cgroup v1, v2 and
//! hybrid hosts alike: the layouts are the same in every hierarchy, only the controllers differ.
use super::{ContainerRef, Runtime, is_hex64};

/// Top-level names that are never a containerd namespace (see [`parse_cgroup_path`]).
const NOT_NAMESPACES: &[&str] = &[
    "docker",
    "libpod_parent",
    "kubepods",
    "captrace",
    "machine",
    "user",
    "system",
    "lxc",
];

/// What a cgroup path says about the workload in it.
///
/// `path` is relative to the hierarchy's root, as in `/proc/PID/cgroup`; a whole line of that
/// file (`0::/path`, `4:memory:/path`) is accepted too. Layouts, with `<id>` 64 lower-case hex:
///
/// | path | result |
/// |---|---|
/// | `/system.slice/docker-<id>.scope`, `/docker/<id>` | Docker |
/// | `/machine.slice/libpod-<id>.scope`, `/libpod_parent/libpod-<id>`, rootless `.../user@1000.service/user.slice/libpod-<id>.scope` | Podman |
/// | `/<namespace>/<name>` (`/default/web`, `/k8s.io/<id>`), `cri-containerd-<id>.scope` | Containerd |
/// | `crio-<id>.scope`, `crio-<id>` | CriO |
/// | `kubepods[.slice]/[<qos>/]pod<uid>/<container>`, systemd or cgroupfs naming | Kubernetes |
/// | `/system.slice/nginx.service`, any other `.service` or `.scope` | Systemd |
/// | `/`, `/init.scope`, `session-N.scope`, `user@N.service/init.scope`, anything else | Host |
///
/// Decisions:
/// - `libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope` and `/libpod_parent/conmon` hold
///   the runtime's monitor, a host process with the host's capabilities. They get the runtime
///   with `id: None`, so the monitor's checks never count towards the container's set.
/// - Nested containers (docker in docker, kind nodes): the innermost container wins, since its
///   capability set is the one that constrains the task. Non-container cgroups inside a
///   container (systemd units of a systemd-in-container, podman's `container` sub-cgroup)
///   belong to that container.
/// - Under `kubepods`, a container is `Kubernetes` whatever the CRI engine; `cri-containerd-`
///   still sets `namespace: k8s.io`. Pods directly under `kubepods` are QoS `guaranteed`.
/// - containerd is a guess: exactly two levels `/<ns>/<name>`, both valid containerd
///   identifiers, the first not a systemd unit or a name another runtime uses.
pub fn parse_cgroup_path(path: &str) -> ContainerRef {
    let path = without_proc_prefix(path.trim());
    // proc_cgroup_show() appends this to the path of a removed cgroup.
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut found = ContainerRef::host();
    let mut kube = Kube::default();
    for (i, &comp) in comps.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| comps[p]);
        if let Some(mut r) = runtime_step(prev, comp, kube.pod_uid.is_some()) {
            if kube.active {
                r.runtime = Runtime::Kubernetes;
                r.pod_uid = kube.pod_uid.take();
                r.qos = kube.qos.take();
            }
            kube = Kube::default();
            found = r;
        } else if kube.step(comp) {
            found = ContainerRef {
                pod_uid: kube.pod_uid.clone(),
                qos: kube.qos.clone(),
                ..ContainerRef::new(Runtime::Kubernetes)
            };
        } else if comps.len() == 2 && i == 1 && is_containerd(comps[0], comp) {
            found = ContainerRef {
                id: Some(comp.to_owned()),
                namespace: Some(comps[0].to_owned()),
                ..ContainerRef::new(Runtime::Containerd)
            };
        } else if matches!(found.runtime, Runtime::Host | Runtime::Systemd) {
            if comp == "init.scope" || (comp.starts_with("session-") && comp.ends_with(".scope")) {
                found = ContainerRef::host();
            } else if is_unit(comp) {
                found = ContainerRef {
                    unit: Some(comp.to_owned()),
                    ..ContainerRef::new(Runtime::Systemd)
                };
            }
        }
    }
    found
}

/// A component that names a container, or a runtime's own cgroup (`id: None`).
fn runtime_step(prev: Option<&str>, comp: &str, in_pod: bool) -> Option<ContainerRef> {
    let scope = comp.strip_suffix(".scope");
    let name = scope.unwrap_or(comp);
    let make = |runtime, id: Option<&str>, namespace: Option<&str>| ContainerRef {
        id: id.map(str::to_owned),
        unit: scope.map(|_| comp.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ContainerRef::new(runtime)
    };
    // Monitors first: "libpod-conmon-<id>" also starts with "libpod-".
    for (prefix, runtime) in [
        ("libpod-conmon-", Runtime::Podman),
        ("crio-conmon-", Runtime::CriO),
    ] {
        if name.strip_prefix(prefix).is_some_and(is_hex64) {
            return Some(make(runtime, None, None));
        }
    }
    for (prefix, runtime, namespace) in [
        ("docker-", Runtime::Docker, None),
        ("libpod-", Runtime::Podman, None),
        ("cri-containerd-", Runtime::Containerd, Some("k8s.io")),
        ("crio-", Runtime::CriO, None),
    ] {
        if let Some(id) = name.strip_prefix(prefix).filter(|id| is_hex64(id)) {
            return Some(make(runtime, Some(id), namespace));
        }
    }
    match (prev, comp) {
        (Some("docker"), id) if is_hex64(id) => Some(make(Runtime::Docker, Some(id), None)),
        (Some("libpod_parent"), "conmon") => Some(make(Runtime::Podman, None, None)),
        // cgroupfs kubelet: the container is a bare id in the pod's directory.
        (_, id) if in_pod && is_hex64(id) => Some(make(Runtime::Kubernetes, Some(id), None)),
        (None, "docker") => Some(make(Runtime::Docker, None, None)),
        (None, "libpod_parent") => Some(make(Runtime::Podman, None, None)),
        _ => None,
    }
}

/// Where in the kubelet's tree a walk down a path is.
#[derive(Default)]
struct Kube {
    active: bool,
    qos: Option<String>,
    pod_uid: Option<String>,
}

impl Kube {
    /// Takes `comp` if it is a kubepods, QoS or pod level.
    fn step(&mut self, comp: &str) -> bool {
        // The systemd driver names `kubepods-burstable-pod<uid>.slice` after its parents
        // (`a-b.slice` is the parent of `a-b-c.slice`): the level's own name is the last part.
        let level = match comp.strip_suffix(".slice") {
            Some(slice) => slice.rsplit('-').next().unwrap_or(slice),
            None => comp,
        };
        if level == "kubepods" {
            *self = Kube {
                active: true,
                ..Kube::default()
            };
            return true;
        }
        if !self.active || self.pod_uid.is_some() {
            return false;
        }
        if self.qos.is_none() && matches!(level, "burstable" | "besteffort") {
            self.qos = Some(level.to_owned());
            return true;
        }
        // Slice names carry the uid with '_' for '-', which systemd reserves for nesting.
        match level.strip_prefix("pod").map(|uid| uid.replace('_', "-")) {
            Some(uid) if is_pod_uid(&uid) => {
                self.pod_uid = Some(uid);
                self.qos.get_or_insert_with(|| "guaranteed".to_owned());
                true
            }
            _ => false,
        }
    }
}

fn without_proc_prefix(s: &str) -> &str {
    if !s.starts_with('/') {
        let mut fields = s.splitn(3, ':');
        if let (Some(hierarchy), Some(_), Some(path)) =
            (fields.next(), fields.next(), fields.next())
            && !hierarchy.is_empty()
            && hierarchy.bytes().all(|b| b.is_ascii_digit())
        {
            return path;
        }
    }
    s
}

fn is_containerd(namespace: &str, name: &str) -> bool {
    let is_systemd = |c: &str| {
        [".slice", ".scope", ".service", ".mount", ".socket", ".swap"]
            .iter()
            .any(|s| c.ends_with(s))
    };
    is_identifier(namespace)
        && is_identifier(name)
        && !NOT_NAMESPACES.contains(&namespace)
        && !namespace.starts_with("lxc.")
        && !is_systemd(namespace)
        && !is_systemd(name)
}

fn is_unit(comp: &str) -> bool {
    [".service", ".scope"]
        .iter()
        .any(|s| comp.strip_suffix(s).is_some_and(|stem| !stem.is_empty()))
}

/// containerd's identifier rule (`identifiers.Validate`): alphanumeric runs joined by single
/// `.`, `_` or `-`, at most 76 characters.
fn is_identifier(s: &str) -> bool {
    s.len() <= 76
        && s.split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A pod UID: a UUID, or the 32-hex hash the kubelet gives static pods.
fn is_pod_uid(s: &str) -> bool {
    let hex = |p: &str| p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [a] => a.len() == 32 && hex(a),
        [a, b, c, d, e] => {
            [8, 4, 4, 4, 12] == [a.len(), b.len(), c.len(), d.len(), e.len()]
                && parts.iter().all(|p| hex(p))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Runtime::*;

    const ID: &str = "3f4e8a6c2b1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";
    const ID2: &str = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
    const UID: &str = "0b8a4f5e-7c21-4d3a-9e6f-1a2b3c4d5e6f";
    const UID_: &str = "0b8a4f5e_7c21_4d3a_9e6f_1a2b3c4d5e6f";

    fn c(runtime: Runtime, id: Option<&str>) -> ContainerRef {
        ContainerRef {
            id: id.map(str::to_owned),
            ..ContainerRef::new(runtime)
        }
    }
    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }
    fn unit(runtime: Runtime, id: Option<&str>, unit: &str) -> ContainerRef {
        ContainerRef {
            unit: s(unit),
            ..c(runtime, id)
        }
    }
    fn pod(id: Option<&str>, qos: &str, unit: Option<&str>, ns: Option<&str>) -> ContainerRef {
        ContainerRef {
            pod_uid: s(UID),
            qos: s(qos),
            unit: unit.map(str::to_owned),
            namespace: ns.map(str::to_owned),
            ..c(Kubernetes, id)
        }
    }
    fn check(cases: &[(String, ContainerRef)]) {
        for (path, want) in cases {
            assert_eq!(&parse_cgroup_path(path), want, "path {path:?}");
        }
    }

    #[test]
    fn docker_podman_containerd_crio() {
        let ctrd = |ns: &str, id: &str| ContainerRef {
            namespace: s(ns),
            ..c(Containerd, Some(id))
        };
        check(&[
            (
                format!("/system.slice/docker-{ID}.scope"),
                unit(Docker, Some(ID), &format!("docker-{ID}.scope")),
            ),
            (format!("/docker/{ID}"), c(Docker, Some(ID))),
            (format!("12:pids:/docker/{ID}"), c(Docker, Some(ID))),
            (format!("0::/docker/{ID} (deleted)"), c(Docker, Some(ID))),
            (format!("/docker/{ID}/docker/{ID2}"), c(Docker, Some(ID2))),
            (format!("/libpod_parent/libpod-{ID}"), c(Podman, Some(ID))),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                unit(Podman, Some(ID), &format!("libpod-{ID}.scope")),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                unit(Podman, Some(ID), &format!("libpod-{ID}.scope")),
            ),
            (
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                unit(Podman, None, &format!("libpod-conmon-{ID}.scope")),
            ),
            ("/libpod_parent/conmon".into(), c(Podman, None)),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                unit(Podman, Some(ID), &format!("libpod-{ID}.scope")),
            ),
            (
                "/default/mycontainer".into(),
                ctrd("default", "mycontainer"),
            ),
            (format!("/k8s.io/{ID}"), ctrd("k8s.io", ID)),
            (
                format!("/system.slice/cri-containerd-{ID}.scope"),
                ContainerRef {
                    unit: s(&format!("cri-containerd-{ID}.scope")),
                    ..ctrd("k8s.io", ID)
                },
            ),
            (
                format!("/system.slice/crio-{ID}.scope"),
                unit(CriO, Some(ID), &format!("crio-{ID}.scope")),
            ),
            (
                format!("/system.slice/crio-conmon-{ID}.scope"),
                unit(CriO, None, &format!("crio-conmon-{ID}.scope")),
            ),
        ]);
    }

    #[test]
    fn kubernetes() {
        let burstable =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        );
        let cri = format!("cri-containerd-{ID}.scope");
        let crio = format!("crio-{ID}.scope");
        check(&[
            (
                format!("{burstable}/{cri}"),
                pod(Some(ID), "burstable", Some(&cri), Some("k8s.io")),
            ),
            (
                format!("{besteffort}/{crio}"),
                pod(Some(ID), "besteffort", Some(&crio), None),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/{cri}"),
                pod(Some(ID), "guaranteed", Some(&cri), Some("k8s.io")),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                pod(Some(ID), "burstable", None, None),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                pod(Some(ID), "guaranteed", None, None),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                pod(Some(ID), "besteffort", None, None),
            ),
            (
                format!("{burstable}/docker-{ID}.scope"),
                pod(
                    Some(ID),
                    "burstable",
                    Some(&format!("docker-{ID}.scope")),
                    None,
                ),
            ),
            // The pod cgroup itself, and CRI-O's monitor kept in it (conmon_cgroup = "pod").
            (burstable.clone(), pod(None, "burstable", None, None)),
            (
                format!("{burstable}/crio-conmon-{ID}.scope"),
                pod(
                    None,
                    "burstable",
                    Some(&format!("crio-conmon-{ID}.scope")),
                    None,
                ),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice".into(),
                ContainerRef {
                    qos: s("besteffort"),
                    ..c(Kubernetes, None)
                },
            ),
            // Static pods' uid is a 32-hex hash.
            (
                format!("/kubepods/besteffort/pod{}/{ID}", UID.replace('-', "")),
                ContainerRef {
                    pod_uid: s(&UID.replace('-', "")),
                    ..pod(Some(ID), "besteffort", None, None)
                },
            ),
            // A kind node: kubelet in a docker container; the pod's container is innermost.
            (
                format!(
                    "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/\
                     kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/{cri}"
                ),
                pod(Some(ID), "besteffort", Some(&cri), Some("k8s.io")),
            ),
        ]);
    }

    #[test]
    fn systemd_captrace_and_host() {
        check(&[
            (
                "/system.slice/nginx.service".into(),
                unit(Systemd, None, "nginx.service"),
            ),
            (
                "/system.slice/docker.service".into(),
                unit(Systemd, None, "docker.service"),
            ),
            (
                "/system.slice/foo.service".into(),
                unit(Systemd, None, "foo.service"),
            ),
            (
                "/system.slice/run-r8d2f.scope".into(),
                unit(Systemd, None, "run-r8d2f.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service".into(),
                unit(Systemd, None, "syncthing.service"),
            ),
            (
                format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"),
                unit(Docker, Some(ID), &format!("docker-{ID}.scope")),
            ),
            // captrace makes no cgroup of its own: a scope by its name is just a unit.
            (
                "/system.slice/captrace-web-1.scope".into(),
                unit(Systemd, None, "captrace-web-1.scope"),
            ),
            ("/captrace".into(), ContainerRef::host()),
            ("/".into(), ContainerRef::host()),
            ("/init.scope".into(), ContainerRef::host()),
            (
                "/user.slice/user-1000.slice/session-3.scope".into(),
                ContainerRef::host(),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/init.scope".into(),
                ContainerRef::host(),
            ),
            ("0::/".into(), ContainerRef::host()),
        ]);
    }

    #[test]
    fn bad_ids_and_garbage_are_not_containers() {
        let short = "3f4e8a6c2b1d";
        check(&[
            (
                format!("/system.slice/docker-{short}.scope"),
                unit(Systemd, None, &format!("docker-{short}.scope")),
            ),
            (format!("/docker/{}", ID.to_uppercase()), c(Docker, None)),
            (format!("/docker/{ID}0"), c(Docker, None)),
            ("/docker/buildkit".into(), c(Docker, None)),
            (
                format!("/libpod_parent/libpod-{}", &ID[1..]),
                c(Podman, None),
            ),
            (
                format!("/machine.slice/libpod-{}x.scope", &ID[1..]),
                unit(Systemd, None, &format!("libpod-{}x.scope", &ID[1..])),
            ),
            (
                format!("/kubepods/burstable/podnot-a-uid/{ID}"),
                ContainerRef {
                    qos: s("burstable"),
                    ..c(Kubernetes, None)
                },
            ),
            (
                format!("/kubepods/burstable/pod{UID}/not-an-id"),
                pod(None, "burstable", None, None),
            ),
            (
                format!("/pod{UID}/{ID}"),
                ContainerRef {
                    namespace: s(&format!("pod{UID}")),
                    ..c(Containerd, Some(ID))
                },
            ),
            ("/system.slice".into(), ContainerRef::host()),
            ("/machine/qemu-1".into(), ContainerRef::host()),
            ("/default/my container".into(), ContainerRef::host()),
            ("/default/my/container".into(), ContainerRef::host()),
            ("/.service/x".into(), ContainerRef::host()),
            (String::new(), ContainerRef::host()),
            ("garbage".into(), ContainerRef::host()),
            ("::::".into(), ContainerRef::host()),
            ("/../..".into(), ContainerRef::host()),
            ("\0\u{fffd}//\n".into(), ContainerRef::host()),
        ]);
    }
}
