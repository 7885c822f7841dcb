//! End to end: `captrace record -- docker run / podman run / docker-compose up` follows the
//! containers the client starts, with real dockerd, podman and Debian's docker-compose, and
//! every set it prints is checked against the runtime itself: the container works with
//! `--cap-drop ALL` plus the set, and fails with any one member removed.
mod support;

use std::{
    fs,
    path::Path,
    process::{Command, Output, Stdio},
};

use captrace::profile::{ContainerProfile, Profile};

/// chown of a file in the image, then a listener on :80 (busybox httpd forks into the
/// background, so the script goes on once it is bound).
const CHOWN_AND_BIND: &str = "touch /tmp/f && chown 1000 /tmp/f && httpd -p 80 && sleep 1";

enum Runtime<'a> {
    Docker,
    Podman(&'a support::Podman),
}

impl Runtime<'_> {
    fn command(&self) -> Command {
        match self {
            Runtime::Docker => Command::new("docker"),
            Runtime::Podman(p) => p.command(),
        }
    }

    fn image(&self) -> &'static str {
        match self {
            Runtime::Docker => support::Docker::IMAGE,
            Runtime::Podman(_) => support::Podman::IMAGE,
        }
    }

    /// `run --rm --cap-drop ALL --cap-add ...` of `script` in the test image: did it succeed?
    fn works_with(&self, caps: &[String], script: &str) -> bool {
        let mut cmd = self.command();
        cmd.args(["run", "--rm", "--cap-drop", "ALL"]);
        for cap in caps {
            cmd.args(["--cap-add", cap]);
        }
        cmd.args([self.image(), "sh", "-c", script]);
        cmd.stdin(Stdio::null())
            .output()
            .expect("running the runtime")
            .status
            .success()
    }
}

/// `captrace record -o P -- ARGS...` with `env`, and the profile it wrote.
fn record(env: &[(&str, &Path)], args: &[&str]) -> (Output, Profile) {
    record_with(env, &[], args)
}

/// `captrace record -o P OPTIONS... -- ARGS...`.
fn record_with(env: &[(&str, &Path)], options: &[&str], args: &[&str]) -> (Output, Profile) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let out = Command::new(support::captrace_bin())
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .args(["record", "-o", p.to_str().unwrap()])
        .args(options)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let profile = Profile::from_json(&text, "p.json").unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out, profile)
}

fn names(c: &ContainerProfile) -> Vec<String> {
    c.cap_add.iter().map(|c| c.name()).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The set works under the runtime, and each member is needed.
fn assert_exact(rt: &Runtime, caps: &[String], script: &str) {
    assert!(
        rt.works_with(caps, script),
        "the container fails with exactly {caps:?}"
    );
    for (i, cap) in caps.iter().enumerate() {
        let mut less = caps.to_vec();
        less.remove(i);
        assert!(
            !rt.works_with(&less, script),
            "the container still works without {cap}: {caps:?} is not minimal"
        );
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn docker_run_gives_the_containers_own_set_checked_by_docker() {
    let _docker = support::docker_session();
    let (out, p) = record(
        &[],
        &[
            "docker",
            "run",
            "--rm",
            "--name",
            "ct-rec-run",
            support::Docker::IMAGE,
            "sh",
            "-c",
            CHOWN_AND_BIND,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(p.containers.len(), 1, "{err}");
    let c = &p.containers[0];
    // Docker 20.10 sets ip_unprivileged_port_start=0 in the container's network namespace:
    // binding :80 needs nothing there.
    assert_eq!(names(c), ["CHOWN"], "{err}");
    assert_eq!(p.cap_add, c.cap_add);
    assert_eq!(c.runtime, "docker");
    assert_eq!(c.name.as_deref(), Some("ct-rec-run"));
    assert_eq!(c.image.as_deref(), Some(support::Docker::IMAGE));
    assert_eq!(c.id.len(), 64);
    assert_eq!(c.granted.as_ref().map(Vec::len), Some(14), "{err}");
    assert!(
        err.contains("docker run --cap-drop=ALL --cap-add=CHOWN captrace-bb:latest"),
        "{err}"
    );
    // The runtime's init sets the container up with the runtime's privileges: recorded, kept
    // apart, never in the set.
    assert!(c.checks.iter().any(|k| !k.origin.is_workload()), "{err}");
    assert_exact(&Runtime::Docker, &names(c), CHOWN_AND_BIND);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn docker_run_detached_is_waited_for() {
    let _docker = support::docker_session();
    let script = "sleep 1.5; chown 1000 /etc/passwd";
    let (out, p) = record(
        &[],
        &[
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            "ct-rec-detached",
            support::Docker::IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(p.containers.len(), 1, "{err}");
    // The chown comes 1.5 s after `docker run -d` returned: only a recording that waits for
    // the container sees it.
    assert_eq!(names(&p.containers[0]), ["CHOWN"], "{err}");
    assert_exact(&Runtime::Docker, &names(&p.containers[0]), script);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn podman_run_keeps_podman_conmon_and_runc_out_of_the_containers_set() {
    support::require_root();
    let _serial = support::serial();
    let podman = support::Podman::start();
    let (out, p) = record(
        &[("CONTAINERS_CONF", podman.conf().as_path())],
        &[
            "podman",
            "run",
            "--rm",
            "--name",
            "ct-rec-podman",
            support::Podman::IMAGE,
            "sh",
            "-c",
            CHOWN_AND_BIND,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(p.containers.len(), 1, "{err}");
    let c = &p.containers[0];
    // podman keeps ip_unprivileged_port_start at 1024.
    assert_eq!(names(c), ["CHOWN", "NET_BIND_SERVICE"], "{err}");
    assert_eq!(p.cap_add, c.cap_add);
    assert_eq!(c.runtime, "podman");
    // podman, netavark and runc used these as root; the client's table shows them, no
    // container's set does.
    let client: Vec<String> = p
        .checks
        .iter()
        .filter(|k| k.audit == captrace::profile::Audit::Audited)
        .map(|k| k.cap.name())
        .collect();
    for cap in ["SYS_ADMIN", "NET_ADMIN"] {
        assert!(
            client.contains(&cap.to_string()),
            "podman's own {cap}: {err}"
        );
        assert!(!names(c).contains(&cap.to_string()));
        assert!(!p.cap_add.iter().any(|c| c.name() == cap));
    }
    assert!(
        err.contains("podman run --cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE"),
        "{err}"
    );
    assert_exact(&Runtime::Podman(&podman), &names(c), CHOWN_AND_BIND);
}

/// An image whose entrypoint's very first system call is `chown("/etc/passwd", 1000, -1)`,
/// then `exit(-ret)`: no libc, no shell, nothing before it.
#[cfg(target_arch = "x86_64")]
fn first_instruction_image(dir: &Path) -> &'static str {
    const IMAGE: &str = "captrace-first:latest";
    let src = dir.join("first.S");
    fs::write(
        &src,
        ".globl _start\n_start:\n  mov $92, %rax\n  lea path(%rip), %rdi\n  mov $1000, %rsi\n  mov $-1, %rdx\n  syscall\n  mov %rax, %rdi\n  neg %rdi\n  mov $60, %rax\n  syscall\npath: .asciz \"/etc/passwd\"\n",
    )
    .unwrap();
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/:/first\n").unwrap();
    let cc = Command::new("cc")
        .args(["-nostdlib", "-static", "-o"])
        .arg(root.join("first"))
        .arg(&src)
        .output()
        .expect("running cc (`cargo xtask setup` installs gcc)");
    assert!(cc.status.success(), "{}", stderr(&cc));
    let tar = dir.join("first.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let import = Command::new("docker")
        .args(["import", "--change", "ENTRYPOINT [\"/first\"]"])
        .arg(&tar)
        .arg(IMAGE)
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));
    IMAGE
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
#[cfg(target_arch = "x86_64")]
fn a_containers_very_first_system_call_is_recorded() {
    let _docker = support::docker_session();
    let dir = tempfile::tempdir().unwrap();
    let image = first_instruction_image(dir.path());
    let (out, p) = record(&[], &["docker", "run", "--rm", image]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the chown failed: {err}");
    assert_eq!(p.containers.len(), 1, "{err}");
    let c = &p.containers[0];
    assert_eq!(names(c), ["CHOWN"], "{err}");
    let chown = c
        .checks
        .iter()
        .find(|k| k.cap.name() == "CHOWN" && k.origin.is_workload())
        .expect("the CHOWN check");
    assert_eq!(chown.syscall.as_deref(), Some("chown"));
    assert_eq!(chown.comm.as_deref(), Some("first"));
    // And docker agrees: the entrypoint needs CHOWN and nothing else.
    let run = |caps: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--cap-drop", "ALL"]);
        for cap in caps {
            cmd.args(["--cap-add", cap]);
        }
        cmd.arg(image).status().unwrap().success()
    };
    assert!(run(&["CHOWN"]));
    assert!(!run(&[]));
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn docker_compose_services_get_their_own_sets_and_the_override_works() {
    let _docker = support::docker_session();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    let owner = "touch /tmp/f && chown 1000 /tmp/f";
    let maker = "mknod /tmp/n c 1 3 && chown 1000 /tmp/n && chmod 600 /tmp/n";
    fs::write(
        &file,
        format!(
            "services:\n  owner:\n    image: {img}\n    network_mode: none\n    command: [\"sh\", \"-c\", \"{owner}\"]\n  maker:\n    image: {img}\n    network_mode: none\n    command: [\"sh\", \"-c\", \"{maker}\"]\n",
            img = support::Docker::IMAGE
        ),
    )
    .unwrap();
    let project = "ctcompose";
    let compose = |extra: &[&Path], args: &[&str]| {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(&file);
        for f in extra {
            cmd.arg("-f").arg(f);
        }
        cmd.args(["-p", project]).args(args).stdin(Stdio::null());
        cmd.output().expect("running docker-compose")
    };
    let (out, p) = record(
        &[],
        &[
            "docker-compose",
            "-f",
            file.to_str().unwrap(),
            "-p",
            project,
            "up",
        ],
    );
    let _ = compose(&[], &["down"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let service = |name: &str| {
        p.containers
            .iter()
            .find(|c| c.service.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no container of service {name}: {err}"))
    };
    assert_eq!(names(service("owner")), ["CHOWN"], "{err}");
    assert_eq!(
        names(service("maker")),
        ["CHOWN", "FOWNER", "MKNOD"],
        "{err}"
    );

    // The override `recommend --format compose` prints, saved as is, makes both services
    // work with cap_drop ALL...
    let profile = dir.path().join("p.json");
    p.write(&profile).unwrap();
    let rec = Command::new(support::captrace_bin())
        .args(["recommend", "--format", "compose"])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(rec.status.success(), "{}", stderr(&rec));
    let yaml = String::from_utf8(rec.stdout).unwrap();
    let override_file = dir.path().join("override.yml");
    fs::write(&override_file, &yaml).unwrap();
    for svc in ["owner", "maker"] {
        let run = compose(&[&override_file], &["run", "--rm", svc]);
        assert!(
            run.status.success(),
            "{svc} fails under {yaml}: {}",
            stderr(&run)
        );
    }
    // ...and removing any one capability from a service makes that service fail.
    for svc in ["owner", "maker"] {
        let caps = names(service(svc));
        for drop in &caps {
            let kept: Vec<&String> = caps.iter().filter(|c| *c != drop).collect();
            let mut y = format!("services:\n  {svc}:\n    cap_drop: [ALL]\n");
            if !kept.is_empty() {
                let list: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
                y += &format!("    cap_add: [{}]\n", list.join(", "));
            }
            let less = dir.path().join("less.yml");
            fs::write(&less, &y).unwrap();
            let run = compose(&[&less], &["run", "--rm", svc]);
            assert!(!run.status.success(), "{svc} still works without {drop}");
        }
    }
    let _ = compose(&[], &["down"]);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_container_client_that_started_nothing_is_no_recommendation() {
    let _docker = support::docker_session();
    let (out, p) = record(
        &[],
        &[
            "docker",
            "run",
            "--rm",
            "--pull",
            "never",
            "captrace-no-such-image:none",
            "true",
        ],
    );
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(p.follows_containers);
    assert!(p.containers.is_empty());
    assert!(err.contains("no container was seen"), "{err}");
    assert!(
        err.contains("recommendation: none for a container"),
        "{err}"
    );
    assert!(!err.contains("needs no capabilities"), "{err}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_failed_command_is_not_called_harmless() {
    support::require_root();
    let _serial = support::serial();
    let (out, p) = support::record(&["sh", "-c", "exit 3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(p.exit_status, Some(3));
    assert!(
        err.contains("covers only what ran before the command failed (exit status 3)"),
        "{err}"
    );
    assert!(!err.contains("needs no capabilities"), "{err}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn minimize_of_a_docker_run_drops_what_fresh_containers_prove_unneeded() {
    let _docker = support::docker_session();
    // CHOWN and FOWNER are needed; the mknod is best effort (its failure is ignored), so the
    // MKNOD the kernel asks for is not a need; chmod asks FSETID only to keep a set-group-ID
    // bit the new mode does not have.
    let script = "touch /tmp/a && chown 1000:1000 /tmp/a && chmod 644 /tmp/a && (mknod /tmp/n c 1 3 2>/dev/null || true)";
    let (out, p) = record_with(
        &[],
        &["--minimize"],
        &[
            "docker",
            "run",
            "--rm",
            support::Docker::IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let m = p.minimize.as_ref().expect("a minimize report");
    assert!(m.faithful, "{err}");
    let c = &p.containers[0];
    assert_eq!(names(c), ["CHOWN", "FOWNER"], "{err}");
    assert_eq!(p.cap_add, c.cap_add);
    assert!(m.dropped.iter().any(|d| d.name() == "MKNOD"), "{err}");
    assert!(
        p.silent_refusals.iter().any(|r| r.cap.name() == "MKNOD"),
        "{err}"
    );
    assert!(m.replays >= 4, "{m:?}");
    // The proven flags work under real docker, and each is needed.
    assert_exact(&Runtime::Docker, &names(c), script);
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn ctrl_c_stops_the_recording_and_leaves_the_container_running() {
    let _docker = support::docker_session();
    let name = "ct-rec-interrupted";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let captrace = Command::new(support::captrace_bin())
        .args(["record", "-o", p.to_str().unwrap(), "--"])
        .args(["docker", "run", "-d", "--rm", "--name", name])
        .args([
            support::Docker::IMAGE,
            "sh",
            "-c",
            "chown 1000 /etc/passwd; touch /tmp/chowned; sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = || {
        Command::new("docker")
            .args(["inspect", "--format", "{{.State.Running}}", name])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    };
    let chowned = || {
        Command::new("docker")
            .args(["exec", name, "test", "-f", "/tmp/chowned"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // record waits for the containers it follows, as for daemons: interrupt it once the
    // container has done its work.
    support::wait_for(
        "the container's chown",
        std::time::Duration::from_secs(30),
        chowned,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(captrace.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let out = captrace.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(running(), "the container was stopped: {err}");
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}: {err}"));
    let profile = Profile::from_json(&text, "p.json").unwrap();
    assert_eq!(profile.containers.len(), 1, "{err}");
    assert_eq!(names(&profile.containers[0]), ["CHOWN"], "{err}");
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
}
