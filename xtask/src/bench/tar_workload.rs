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
        // Each round's runs, by `Run as usize`.
        let mut rounds: Vec<[Option<Timed>; RUNS.len()]> = Vec::new();
        for _ in 0..self.plan.tar_rounds {
            let mut round = [None; RUNS.len()];
            for run in RUNS {
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
                let timed = fresh_dir(&dest).and_then(|()| {
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
                        let times = wall_and_cpu_ms(cmd);
                        if let Some(tracer) = syscall_tp {
                            tracer.stop();
                        }
                        times
                    })
                });
                match timed {
                    Ok(((wall, cpu), clean)) => {
                        round[run as usize] = Some(Timed { wall, cpu, clean });
                    }
                    Err(e) => self.note(format!("real workload ({run:?}): {e:#}")),
                }
            }
            rounds.push(round);
        }
        let _ = fs::remove_dir_all(&dest);
        for run in RUNS {
            let shown = |value: fn(&Timed) -> f64| {
                rounds
                    .iter()
                    .filter_map(|round| round[run as usize])
                    .map(|t| format!("{:.0}{}", value(&t), if t.clean { "" } else { "*" }))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "{:<28} wall {} ms; CPU {} ms",
                run.describe(),
                shown(|t| t.wall),
                shown(|t| t.cpu)
            );
        }
        let wall = |run: Run| median(&series(&rounds, run, |t| t.wall));
        let (u, r) = (wall(Run::Plain), wall(Run::Record));
        self.set("real_workload_untraced_ms", u);
        self.set("real_workload_record_ms", r);
        self.set("real_workload_filter_ms", wall(Run::Filter));
        self.set(
            "real_workload_floor_syscall_tp_ms",
            wall(Run::FilterAndSyscallTp),
        );
        // Ratios: the median of each round's ratio to that round's untraced run, so that the
        // machine's drift between rounds cancels out; by wall time (the target) and by the CPU
        // time of the whole tree (captrace included), which a busy neighbour disturbs less.
        for (run, key) in [
            (Run::Record, "real_workload_ratio"),
            (Run::Filter, "real_workload_ratio_filter"),
            (
                Run::FilterAndSyscallTp,
                "real_workload_ratio_floor_syscall_tp",
            ),
        ] {
            self.set(key, paired_ratio(&rounds, run, |t| t.wall));
            self.set(
                key.replace("ratio", "cpu_ratio"),
                paired_ratio(&rounds, run, |t| t.cpu),
            );
        }
        // Diagnostic: the same ratio with captrace's fixed start-up cost (record_true_ms -
        // true_ms) taken out, i.e. the per-file cost alone.
        let start = self
            .get("record_true_ms")
            .zip(self.get("true_ms"))
            .map(|(r, t)| r - t);
        let after_start = self
            .get("real_workload_ratio")
            .zip(u)
            .zip(start)
            .map(|((r, u), s)| r - s / u);
        self.set("real_workload_ratio_after_start", after_start);
    }
}

/// One tar run: wall and CPU time in ms, and whether no foreign tracer was loaded.
#[derive(Clone, Copy, Debug)]
struct Timed {
    wall: f64,
    cpu: f64,
    clean: bool,
}

/// `run`'s values over the rounds, the clean ones (every one when none is clean).
fn series(rounds: &[[Option<Timed>; RUNS.len()]], run: Run, value: fn(&Timed) -> f64) -> Vec<f64> {
    let all: Vec<Timed> = rounds.iter().filter_map(|r| r[run as usize]).collect();
    let clean: Vec<f64> = all.iter().filter(|t| t.clean).map(value).collect();
    if clean.is_empty() {
        all.iter().map(value).collect()
    } else {
        clean
    }
}

/// The median over rounds of `run`'s value ÷ the same round's untraced value, from the rounds
/// where both were clean (from every round where both ran when none was).
fn paired_ratio(
    rounds: &[[Option<Timed>; RUNS.len()]],
    run: Run,
    value: fn(&Timed) -> f64,
) -> Option<f64> {
    let pairs: Vec<(Timed, Timed)> = rounds
        .iter()
        .filter_map(|round| round[Run::Plain as usize].zip(round[run as usize]))
        .collect();
    let ratio = |(p, t): &(Timed, Timed)| value(t) / value(p);
    let clean: Vec<f64> = pairs
        .iter()
        .filter(|(p, t)| p.clean && t.clean)
        .map(ratio)
        .collect();
    if clean.is_empty() {
        median(&pairs.iter().map(ratio).collect::<Vec<_>>())
    } else {
        median(&clean)
    }
}

/// The runs of a round, in order.
const RUNS: [Run; 4] = [
    Run::Plain,
    Run::Filter,
    Run::FilterAndSyscallTp,
    Run::Record,
];

/// One tar run of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Plain = 0,
    /// The thread-lookup-only program on cap_capable: the least any tracer following chosen
    /// processes could add to this workload.
    Filter,
    /// That program and an empty one on a syscall exit tracepoint: the least a tracer that
    /// also sees every namespace call's result adds where the kernel has no trampolines
    /// (every syscall then takes the slow path).
    FilterAndSyscallTp,
    Record,
}

impl Run {
    fn describe(self) -> &'static str {
        match self {
            Run::Plain => "untraced:",
            Run::Filter => "filter:",
            Run::FilterAndSyscallTp => "filter + syscall tracepoint:",
            Run::Record => "record:",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn round(plain: f64, record: f64, clean: bool) -> [Option<Timed>; RUNS.len()] {
        let t = |wall| {
            Some(Timed {
                wall,
                cpu: wall / 2.0,
                clean,
            })
        };
        [t(plain), None, None, t(record)]
    }

    #[test]
    fn ratios_are_per_round_and_leave_out_contaminated_rounds() {
        // Drift: the second round is twice as slow for both; the third was contaminated.
        let rounds = [
            round(100.0, 110.0, true),
            round(200.0, 220.0, true),
            round(100.0, 300.0, false),
        ];
        let r = paired_ratio(&rounds, Run::Record, |t| t.wall).unwrap();
        assert!((r - 1.1).abs() < 1e-9, "{r}");
        let cpu = paired_ratio(&rounds, Run::Record, |t| t.cpu).unwrap();
        assert!((cpu - 1.1).abs() < 1e-9, "{cpu}");
        // A run that never ran has no ratio.
        assert_eq!(paired_ratio(&rounds, Run::Filter, |t| t.wall), None);
        // With no clean round, every round counts.
        let dirty = [round(100.0, 300.0, false), round(100.0, 100.0, false)];
        let r = paired_ratio(&dirty, Run::Record, |t| t.wall).unwrap();
        assert!((r - 2.0).abs() < 1e-9, "{r}");
    }
}
