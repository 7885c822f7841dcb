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
        let (mut filtered, mut floored) = (Series::default(), Series::default());
        for _ in 0..self.plan.rounds {
            for run in [
                Run::Plain,
                Run::Filter,
                Run::FilterAndSyscallTp,
                Run::Record,
            ] {
                if run == Run::FilterAndSyscallTp && !self.bpftrace {
                    continue;
                }
                let mut tar = Command::new("tar");
                tar.arg("--same-owner")
                    .arg("-xf")
                    .arg(&archive)
                    .arg("-C")
                    .arg(&dest);
                let cmd = if run == Run::Record {
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
                    self.measure(|bench| {
                        let _filter = matches!(run, Run::Filter | Run::FilterAndSyscallTp)
                            .then(|| bpf::attach_filter_raw_tp("cap_capable"))
                            .transpose()?;
                        let syscall_tp = (run == Run::FilterAndSyscallTp)
                            .then(|| {
                                Bpftrace::start(
                                    BPFTRACE_SYSCALL_EMPTY,
                                    "sys_exit_unshare",
                                    &bench.dir,
                                )
                            })
                            .transpose()?;
                        let ms = wall_ms(cmd);
                        if let Some(tracer) = syscall_tp {
                            tracer.stop();
                        }
                        ms
                    })
                });
                match ms {
                    Ok((ms, clean)) => match run {
                        Run::Plain => plain.push(ms, clean),
                        Run::Filter => filtered.push(ms, clean),
                        Run::FilterAndSyscallTp => floored.push(ms, clean),
                        Run::Record => recorded.push(ms, clean),
                    },
                    Err(e) => self.note(format!("real workload ({run:?}): {e:#}")),
                }
            }
        }
        let _ = fs::remove_dir_all(&dest);
        println!(
            "untraced: {} ms\nfilter:   {} ms\nfilter + syscall tracepoint: {} ms\nrecord:   {} ms",
            plain.list(),
            filtered.list(),
            floored.list(),
            recorded.list()
        );
        let (u, r) = (median(&plain.usable()), median(&recorded.usable()));
        let f = median(&filtered.usable());
        self.set("real_workload_filter_ms", f);
        self.set("real_workload_ratio_filter", f.zip(u).map(|(f, u)| f / u));
        let floor = median(&floored.usable());
        self.set("real_workload_floor_syscall_tp_ms", floor);
        self.set(
            "real_workload_ratio_floor_syscall_tp",
            floor.zip(u).map(|(f, u)| f / u),
        );
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
}

/// One tar run of a round, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Plain,
    /// The thread-lookup-only program on cap_capable: the least any tracer following chosen
    /// processes could add to this workload.
    Filter,
    /// That program and an empty one on a syscall exit tracepoint: the least a tracer that
    /// also sees every namespace call's result adds where the kernel has no trampolines
    /// (every syscall then takes the slow path).
    FilterAndSyscallTp,
    Record,
}

impl Bench {
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
