//! The HTML report in a real browser: a real recording (`record --html`, and `report --html`
//! of its profile) rendered by Debian's headless Chromium; the DOM it dumps must hold the
//! process tree, the timeline, the flags and every format, with the workload's markup inert.
//! The screenshot stays under target/ (`captrace-report.png`) for CI to keep.
mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use captrace::profile::Profile;

/// target/ of this build (`CARGO_TARGET_TMPDIR` is target/tmp).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

/// `chromium --headless --no-sandbox ARGS... file://PAGE`, with a profile directory of its own.
fn chromium(page: &Path, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("chromium");
    cmd.env("HOME", home.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()));
    let out = support::output_within(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "chromium {args:?} (install it with `cargo xtask setup`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_real_recording_renders_in_chromium_with_tree_timeline_and_flags() {
    if !support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let profile_path = dir.path().join("p.json");
    let page = dir.path().join("report.html");
    // The comment is the workload's text, shown in the page: it must stay text.
    let script =
        format!("cd {d} && touch f && chown 1000 f # <img src=x onerror=document.title='owned'>");
    let out = Command::new(support::captrace_bin())
        .args(["record", "-o"])
        .arg(&profile_path)
        .arg("--html")
        .arg(&page)
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("running captrace record");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "record: {stderr}");
    let profile = Profile::read(&profile_path).expect("reading the profile");
    let names: Vec<String> = profile.cap_add.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["CHOWN"], "{stderr}");
    let chown = profile
        .checks
        .iter()
        .find(|c| c.cap.name() == "CHOWN")
        .expect("a CHOWN check");
    let chown_pid = chown.pid.expect("the CHOWN check's process");

    // `report --html` of the written profile gives the same page.
    let again = dir.path().join("again.html");
    let out = Command::new(support::captrace_bin())
        .arg("report")
        .arg(&profile_path)
        .arg("--html")
        .arg(&again)
        .output()
        .expect("running captrace report");
    assert!(
        out.status.success(),
        "report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(&page).unwrap(),
        fs::read(&again).unwrap(),
        "record --html and report --html differ"
    );

    let dom = String::from_utf8_lossy(&chromium(&page, &["--dump-dom"]).stdout).into_owned();
    // Its own script ran (and nothing else did: the title is captrace's).
    assert!(dom.contains("data-ready=\"1\""), "{dom}");
    assert!(!dom.contains("<title>owned"), "{dom}");
    assert!(
        !dom.contains("<img"),
        "the workload's markup became an element: {dom}"
    );
    assert!(dom.contains("&lt;img src=x"), "{dom}");
    // The tree: the command, and the chown process with CHOWN counted.
    assert!(dom.contains("<section id=\"tree\">"), "{dom}");
    let proc_start = dom
        .find(&format!("data-pid=\"{chown_pid}\""))
        .unwrap_or_else(|| panic!("no process {chown_pid} in the tree: {dom}"));
    let proc_li = &dom[proc_start..proc_start + dom[proc_start..].find("</li>").unwrap()];
    assert!(
        proc_li.contains("<span class=\"comm\">chown</span>"),
        "{proc_li}"
    );
    assert!(proc_li.contains("class=\"cap counted\""), "{proc_li}");
    assert!(proc_li.contains(">CHOWN"), "{proc_li}");
    // The timeline: CHOWN with its first and last sighting from the profile.
    assert!(dom.contains("id=\"timeline\""), "{dom}");
    let first = chown.first_seen_ms.expect("first_seen_ms");
    assert!(
        dom.contains(&format!("data-cap=\"CHOWN\" data-first-ms=\"{first}\"")),
        "{dom}"
    );
    // The flags: the noaudit SYS_ADMIN checks of sh's memory accounting, never counted.
    assert!(
        profile.checks.iter().any(|c| c.cap.name() == "SYS_ADMIN"),
        "expected the noaudit SYS_ADMIN checks here: {stderr}"
    );
    assert!(dom.contains("class=\"cap noaudit\""), "{dom}");
    assert!(
        dom.contains("<dt class=\"present\"><span class=\"cap noaudit\">"),
        "{dom}"
    );
    // Every format, each with a copy button.
    for format in [
        "docker", "compose", "podman", "k8s", "oci", "systemd", "bwrap", "setpriv", "json",
    ] {
        assert!(
            dom.contains(&format!("data-target=\"rec-{format}\"")),
            "no copy button for {format}"
        );
    }
    assert!(dom.contains("--cap-drop=ALL --cap-add=CHOWN"), "{dom}");

    let png = target_dir().join("captrace-report.png");
    let _ = fs::remove_file(&png);
    chromium(
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1600",
            "--hide-scrollbars",
        ],
    );
    let bytes = fs::read(&png).expect("chromium wrote no screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    eprintln!("screenshot: {}", png.display());
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_container_recording_has_a_branch_and_a_section_per_container_in_chromium() {
    let _docker = support::docker_session();
    let dir = support::tempdir();
    let page = dir.path().join("containers.html");
    let name = format!("ct-html-{}", std::process::id());
    let out = Command::new(support::captrace_bin())
        .arg("record")
        .arg("--html")
        .arg(&page)
        .args(["--", "docker"])
        .args(support::chown_container(&name, ""))
        .output()
        .expect("running captrace record -- docker run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "record: {stderr}");

    let dom = String::from_utf8_lossy(&chromium(&page, &["--dump-dom"]).stdout).into_owned();
    assert!(dom.contains("data-ready=\"1\""), "{dom}");
    // The tree has the container's branch, linking to its section.
    let branch = dom
        .find("<li class=\"node container\">")
        .unwrap_or_else(|| panic!("no container branch in the tree: {stderr}\n{dom}"));
    let branch = &dom[branch..branch + dom[branch..].find("</details>").unwrap()];
    assert!(branch.contains("href=\"#container-0\""), "{branch}");
    assert!(branch.contains(&name), "{branch}");
    assert!(
        branch.contains("<span class=\"comm\">chown</span>"),
        "{branch}"
    );
    assert!(branch.contains(">CHOWN"), "{branch}");
    // Its section: its own timeline and its set in every format.
    let section = dom
        .find("<section class=\"container\" id=\"container-0\">")
        .unwrap_or_else(|| panic!("no container section: {dom}"));
    let section = &dom[section..];
    assert!(section.contains("id=\"timeline-0\""), "{section}");
    assert!(section.contains("data-cap=\"CHOWN\""), "{section}");
    assert!(
        section.contains("data-target=\"rec-0-docker\""),
        "{section}"
    );
    assert!(section.contains("data-target=\"rec-0-k8s\""), "{section}");
    assert!(
        section.contains("--cap-drop=ALL --cap-add=CHOWN"),
        "{section}"
    );
}
