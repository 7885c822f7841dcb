//! Kernel tier (root): files beside captrace's input and output, and what it prints, are
//! attack surface too. Each test plants what a hostile user or workload would (a symlink at
//! `-o`, a FIFO or device as `--profile`, a forged kernel symbol cache, a process named with
//! terminal escapes) and shows it fails. The `run` boundary itself: `security.rs`.
mod support;

use support::{captrace, text};

use std::{fs, os::unix::fs::symlink, path::Path, time::Duration};

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn record_output_never_follows_a_planted_symlink() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let out = dir.path().join("out.json");
    symlink(&victim, &out).unwrap();
    let o = out.to_str().unwrap();
    let res = captrace(&["record", "-o", o, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(0), "{}", text(&res.stderr));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    let meta = fs::symlink_metadata(&out).unwrap();
    assert!(meta.is_file(), "the link was replaced by the profile");
    assert!(
        fs::read_to_string(&out)
            .unwrap()
            .contains("captrace/profile")
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_fifo_or_a_device_as_profile_fails_fast_with_exit_3() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("profile.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let zero_link = dir.path().join("zero.json");
    symlink("/dev/zero", &zero_link).unwrap();
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    for (path, kind) in [
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (zero_link.as_path(), "character device"),
    ] {
        let p = path.to_str().unwrap();
        for args in [
            vec!["run", "--profile", p, "--", "sh", "-c", &touch],
            vec!["recommend", p],
        ] {
            let out = support::output_within(captrace(&args), Duration::from_secs(10));
            let err = support::one_line(&format!("{args:?}"), &out, 3, "captrace: ");
            assert!(
                err.contains(&format!("{kind}, not a regular file")),
                "{err}"
            );
            assert!(!ran.exists());
        }
    }
}

/// Process names (at most 15 bytes) that drive a terminal, as Python bytes source, with how
/// captrace prints them as text and inside JSON: C0 (set the title, clear the line) and C1
/// (U+009B is CSI, U+009D OSC, in UTF-8).
const HOSTILE_NAMES: &[(&str, &str, &str)] = &[
    (
        r"\x1b]0;owned\x07\x1b[2K",
        r"\x1b]0;owned\x07\x1b[2K",
        r"\u001b]0;owned\u0007\u001b[2K",
    ),
    (
        r"\xc2\x9b2J\xc2\x9d0;x\x07",
        r"\u{9b}2J\u{9d}0;x\x07",
        r"\u009b2J\u009d0;x\u0007",
    ),
];

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_workload_named_with_terminal_escapes_cannot_reach_the_terminal() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, "").unwrap();
    for (name, as_text, as_json) in HOSTILE_NAMES {
        // The workload renames itself, then makes a capability check under that name.
        let script = format!(
            "import ctypes, os\n\
             ctypes.CDLL(None).prctl(15, b\"{name}\", 0, 0, 0)\n\
             try:\n    os.chown({:?}, 1000, -1)\nexcept OSError:\n    pass\n",
            f.to_str().unwrap()
        );
        let cases: [(&[&str], &str); 3] = [
            (&["record"], as_text),
            (&["record", "--json"], as_json),
            (&["run", "--audit", "--cap-drop", "ALL"], as_text),
        ];
        for (sub, escaped) in cases {
            let mut cmd = captrace(sub);
            cmd.args(["--", "/usr/bin/python3", "-c", &script]);
            let out = support::output_within(cmd, Duration::from_secs(60));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{sub:?}: {err}");
            // The name is there, escaped, and no control character but newlines.
            assert!(err.contains(escaped), "{sub:?}: {escaped} not in {err}");
            assert!(
                !err.chars().any(|c| c.is_control() && c != '\n'),
                "{sub:?}: raw control characters: {err:?}"
            );
        }
    }
}

/// A cache in the format `symbolizer.rs` writes, keyed for this boot and these modules, that
/// names every kernel function `FORGED`.
fn forged_cache() -> Vec<u8> {
    let mut key = fs::read("/proc/sys/kernel/random/boot_id").unwrap();
    key.extend(fs::read("/proc/modules").unwrap_or_else(|_| b"no modules".to_vec()));
    let mut out = b"captrace kallsyms cache 1\n".to_vec();
    let mut put = |bytes: &[u8]| {
        out.extend((bytes.len() as u64).to_le_bytes());
        out.extend(bytes);
    };
    put(&key);
    put(&[0u64.to_le_bytes(), u64::MAX.to_le_bytes()].concat());
    // One symbol at address 0, so every address falls in it.
    let mut sym = 0u64.to_le_bytes().to_vec();
    sym.extend(0u32.to_le_bytes());
    sym.extend(6u32.to_le_bytes());
    put(&sym);
    put(b"FORGED");
    out
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn a_kernel_symbol_cache_others_could_plant_is_never_used() {
    support::require_root();
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged");
    fs::write(&forged, forged_cache()).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "").unwrap();
    let profile = dir.path().join("p.json");
    let (f, forged, victim, p) = (
        file.to_str().unwrap(),
        forged.to_str().unwrap(),
        victim.to_str().unwrap(),
        profile.to_str().unwrap(),
    );
    // In a private mount namespace, over a tmpfs /run: the machine's own cache is untouched.
    for setup in [
        // A cache directory anyone can write, holding a forged cache.
        format!(
            "mount -t tmpfs none /run; mkdir -m 0777 /run/captrace; cp {forged} /run/captrace/kallsyms"
        ),
        // Root's own directory, with the cache a symlink to a forged file elsewhere.
        format!(
            "mount -t tmpfs none /run; mkdir -m 0700 /run/captrace; ln -s {forged} /run/captrace/kallsyms"
        ),
        // A symlink at the cache's name pointing at a file captrace must not overwrite.
        format!(
            "mount -t tmpfs none /run; mkdir -m 0700 /run/captrace; ln -s {victim} /run/captrace/kallsyms"
        ),
    ] {
        let out =
            support::in_private_mounts(&setup, &["record", "-o", p, "--", "chown", "1000", f])
                .output()
                .unwrap();
        assert_eq!(out.status.code(), Some(0), "{setup}: {}", text(&out.stderr));
        let written = fs::read_to_string(&profile).unwrap();
        assert!(!written.contains("FORGED"), "{setup}: forged names used");
        // Used, the forged names hide every noaudit path: SYS_ADMIN would be recommended.
        let parsed = captrace::profile::Profile::from_json(&written, p).unwrap();
        let caps: Vec<String> = parsed.cap_add.iter().map(|c| c.name()).collect();
        assert_eq!(caps, ["CHOWN"], "{setup}");
        assert_eq!(fs::read_to_string(victim).unwrap(), "precious\n");
        assert_eq!(fs::read(forged).unwrap(), forged_cache());
    }
}
