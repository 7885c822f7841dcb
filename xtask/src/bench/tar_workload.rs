//! Real workload (section 5 of the bench): `tar --same-owner -xf` of many files, untraced and recorded.
use super::*;

impl Bench {
    pub(super) fn real_workload(&mut self) {
        let files = self.plan.files;
        header(&format!(
            "5. real workload: tar --same-owner -xf ({files} files, uid 1000) as root"
        ));
        self.set("real_workload_files", Some(f64::from(files)));
        let archive = match self.archive(files) {
            Ok(a) => a,
            Err(e) => {
                self.note(format!("real workload: cannot build the archive: {e:#}"));
                for key in [
                    "real_workload_untraced_ms",
                    "real_workload_record_ms",
                    "real_workload_ratio",
                ] {
                    self.set(key, None);
                }
                return;
            }
        };
        // tmpfs when there is one: disk writeback would drown the difference in noise.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            self.dir.clone()
        };
        let dest = base.join(format!("captrace-bench-extract-{}", std::process::id()));
        let (mut plain, mut recorded) = (Series::default(), Series::default());
        let mut filtered = Series::default();
        for _ in 0..self.plan.rounds {
            // With the filter-only program on cap_capable while plain tar runs: the least any
            // tracer following chosen processes could add to this workload.
            for (traced, with_filter) in [(false, false), (false, true), (true, false)] {
                let mut tar = Command::new("tar");
                tar.arg("--same-owner")
                    .arg("-xf")
                    .arg(&archive)
                    .arg("-C")
                    .arg(&dest);
                let cmd = if traced {
                    let mut record = Command::new(&self.captrace);
                    record
                        .args(["record", "--"])
                        .arg(tar.get_program())
                        .args(tar.get_args());
                    record
                } else {
                    tar
                };
                let ms = fresh_dir(&dest).and_then(|()| {
                    // SAFETY: plain syscall; flushes what the previous round left dirty.
                    unsafe { libc::sync() };
                    // Attached inside the measurement, after its check for foreign tracers.
                    self.measure(|_| {
                        let _filter = with_filter
                            .then(|| bpf::attach_filter_raw_tp("cap_capable"))
                            .transpose()?;
                        wall_ms(cmd)
                    })
                });
                match (ms, traced, with_filter) {
                    (Ok((ms, clean)), false, false) => plain.push(ms, clean),
                    (Ok((ms, clean)), false, true) => filtered.push(ms, clean),
                    (Ok((ms, clean)), true, _) => recorded.push(ms, clean),
                    (Err(e), _, _) => self.note(format!("real workload (traced: {traced}): {e:#}")),
                }
            }
        }
        let _ = fs::remove_dir_all(&dest);
        println!(
            "untraced: {} ms\nfilter:   {} ms\nrecord:   {} ms",
            plain.list(),
            filtered.list(),
            recorded.list()
        );
        let (u, r) = (median(&plain.usable()), median(&recorded.usable()));
        let f = median(&filtered.usable());
        self.set("real_workload_filter_ms", f);
        self.set("real_workload_ratio_filter", f.zip(u).map(|(f, u)| f / u));
        self.set("real_workload_untraced_ms", u);
        self.set("real_workload_record_ms", r);
        self.set("real_workload_ratio", r.zip(u).map(|(r, u)| r / u));
        // Diagnostic: the same ratio with captrace's fixed start-up cost (record_true_ms -
        // true_ms) taken out, i.e. the per-file cost alone.
        let start = self
            .get("record_true_ms")
            .zip(self.get("true_ms"))
            .map(|(r, t)| r - t);
        self.set(
            "real_workload_ratio_after_start",
            r.zip(u).zip(start).map(|((r, u), s)| (r - s) / u),
        );
    }

    /// `target/bench/workload-N.tar`: N small files owned by uid 1000, built once.
    pub(super) fn archive(&self, files: u32) -> anyhow::Result<PathBuf> {
        let archive = self.dir.join(format!("workload-{files}.tar"));
        if archive.is_file() {
            return Ok(archive);
        }
        println!("building {} (once)", archive.display());
        let src = self.dir.join(format!("workload-{files}"));
        fresh_dir(&src)?;
        for i in 0..files {
            let sub = src.join(format!("d{:03}", i / 500));
            if i % 500 == 0 {
                fs::create_dir(&sub)?;
                std::os::unix::fs::chown(&sub, Some(1000), Some(1000))?;
            }
            let file = sub.join(format!("f{i:07}"));
            fs::write(&file, format!("file {i}\n"))?;
            std::os::unix::fs::chown(&file, Some(1000), Some(1000))?;
        }
        let partial = archive.with_extension("tar.partial");
        cmd::run(
            Command::new("tar")
                .arg("-cf")
                .arg(&partial)
                .arg("-C")
                .arg(&src)
                .arg("."),
        )?;
        fs::rename(&partial, &archive)?;
        fs::remove_dir_all(&src)?;
        Ok(archive)
    }
}
