use super::*;
use crate::{
    capability::Cap,
    profile::{ContainerProfile, Scope},
};

fn check(cap: u8, audit: Audit, comm: &str, pid: u32, first: u64, last: u64) -> Check {
    Check {
        cap: Cap(cap),
        verdict: Verdict::Granted,
        audit,
        scope: Scope::Host,
        syscall: Some("fchownat".into()),
        count: 2,
        pid: Some(pid),
        comm: Some(comm.into()),
        call_paths: Vec::new(),
        origin: Origin::Workload,
        first_seen_ms: Some(first),
        last_seen_ms: Some(last),
    }
}

fn profile() -> Profile {
    let mut p = Profile::new();
    p.command = vec!["sh".into(), "-c".into(), "chown 1000 f".into()];
    p.cap_add = vec![Cap(0)];
    p.checks = vec![
        check(0, Audit::Audited, "chown", 42, 10, 12),
        check(21, Audit::Noaudit, "sh", 41, 0, 30),
    ];
    p
}

#[test]
fn workload_chosen_strings_never_become_markup() {
    let mut p = profile();
    p.checks[0].comm = Some("<img src=x onerror=alert(1)>".into());
    p.command = vec!["</title><script>alert(1)</script>".into()];
    p.containers.push(ContainerProfile {
        runtime: "docker".into(),
        id: "0123456789abcdef".into(),
        name: Some("\"><script>x</script>".into()),
        image: Some("<b>".into()),
        cap_add: vec![Cap(0)],
        ..Default::default()
    });
    let page = render(&p);
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<script>x"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The one script is captrace's own.
    assert_eq!(page.matches("<script>").count(), 1);
}

#[test]
fn every_format_has_a_copy_button_and_nothing_is_fetched() {
    let page = render(&profile());
    for format in Format::value_variants() {
        let name = format.to_possible_value().unwrap().get_name().to_string();
        assert!(
            page.contains(&format!("data-target=\"rec-{name}\"")),
            "{name}"
        );
        assert!(page.contains(&format!("<pre id=\"rec-{name}\">")), "{name}");
    }
    assert!(page.contains("--cap-drop=ALL --cap-add=CHOWN"));
    for remote in ["http://", "https://", "src=\"", "<link"] {
        assert!(!page.contains(remote), "{remote} in the page");
    }
}

#[test]
fn the_tree_and_timeline_show_what_counted() {
    let page = render(&profile());
    assert!(page.contains("data-pid=\"42\""));
    assert!(page.contains("<span class=\"cap counted\""));
    assert!(page.contains("<span class=\"cap noaudit\""));
    // Sorted by first sighting: SYS_ADMIN (0 ms) before CHOWN (10 ms).
    let admin = page.find("data-cap=\"SYS_ADMIN\"").unwrap();
    let chown = page.find("data-cap=\"CHOWN\"").unwrap();
    assert!(admin < chown);
    assert!(page.contains("data-first-ms=\"10\" data-last-ms=\"12\""));
    assert!(page.contains("10–12 ms"));
}

#[test]
fn each_container_has_a_section() {
    let mut p = profile();
    p.containers.push(ContainerProfile {
        runtime: "docker".into(),
        id: "0123456789abcdef".into(),
        name: Some("web".into()),
        cap_add: vec![Cap(10)],
        checks: vec![check(10, Audit::Audited, "httpd", 7, 5, 5)],
        ..Default::default()
    });
    let page = render(&p);
    assert!(page.contains("id=\"container-0\""));
    assert!(page.contains("id=\"timeline-0\""));
    assert!(page.contains("data-target=\"rec-0-k8s\""));
    assert!(page.contains("--cap-add=NET_BIND_SERVICE"));
}
