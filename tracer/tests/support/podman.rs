//! podman with runc (crun fails on this host's hybrid cgroups) and the busybox image.
use std::{path::PathBuf, process::Command};

pub struct Podman {
    _dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Podman {
    pub const IMAGE: &str = "localhost/captrace-bb:latest";

    /// Writes a containers.conf (runc, ulimits this host allows) and imports the image once.
    pub fn start() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits=[\"nofile=1024:1024\",\"nproc=4096:4096\"]\n[engine]\nruntime=\"runc\"\n",
        )
        .expect("writing containers.conf");
        let p = Podman { _dir: dir, conf };
        let exists = p
            .command()
            .args(["image", "exists", Self::IMAGE])
            .status()
            .expect("running podman");
        if !exists.success() {
            let root = tempfile::tempdir().expect("tempdir");
            super::busybox_rootfs(root.path());
            let tar = p._dir.path().join("bb.tar");
            let st = Command::new("tar")
                .arg("-C")
                .arg(root.path())
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .unwrap();
            assert!(st.success(), "tar of the busybox rootfs");
            let st = p
                .command()
                .arg("import")
                .arg(&tar)
                .arg(Self::IMAGE)
                .status()
                .unwrap();
            assert!(st.success(), "podman import");
        }
        p
    }

    /// `podman` with this configuration.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf);
        c
    }

    /// The configuration file, for processes (captrace) that call podman themselves.
    pub fn conf(&self) -> &PathBuf {
        &self.conf
    }
}
