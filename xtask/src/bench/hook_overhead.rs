//! Hook overhead (section 1 of the bench): ns per call of each loop (sethostname, setuid,
//! and getppid: the syscall tax) under each variant, interleaved; see README.md next to this
//! file.
use super::*;

impl Bench {
    pub(super) fn hook_overhead(&mut self) {
        header("1. hook overhead");
        let mut samples: BTreeMap<(Loop, Variant), Series<LoopTime>> = BTreeMap::new();
        // A series is given up after two failed runs; each distinct error is noted once.
        let mut failures: BTreeMap<(Loop, Variant), Vec<String>> = BTreeMap::new();
        for round in 1..=self.plan.rounds {
            for lp in Loop::ALL {
                let mut line = format!("round {round}/{} {:<12}", self.plan.rounds, lp.name());
                for variant in Variant::ALL.into_iter().filter(|v| v.runs_with(lp)) {
                    let failed = failures.get(&(lp, variant)).map_or(0, Vec::len);
                    if failed >= 2 {
                        continue;
                    }
                    match self.measure(|b| b.hook_run(lp, variant, None)) {
                        Ok((t, clean)) => {
                            let mark = if clean { "" } else { "*" };
                            let _ = write!(line, " {}={:.0}{mark}", variant.name(), t.wall);
                            samples.entry((lp, variant)).or_default().push(t, clean);
                        }
                        Err(e) => {
                            let _ = write!(line, " {}=FAILED", variant.name());
                            let errors = failures.entry((lp, variant)).or_default();
                            let e = format!("{e:#}");
                            if !errors.contains(&e) {
                                eprintln!("{} {}: {e}", lp.name(), variant.name());
                            }
                            errors.push(e);
                        }
                    }
                }
                println!("{line}");
            }
        }
        for ((lp, variant), mut errors) in failures {
            let n = errors.len();
            errors.dedup();
            let runs = if n == 1 { "run" } else { "runs" };
            self.note(format!(
                "{} {}: {n} failed {runs}: {}",
                lp.name(),
                variant.name(),
                errors.join("; ")
            ));
        }
        for lp in Loop::ALL {
            for (clock, suffix) in [(Clock::Wall, ""), (Clock::Cpu, "_cpu")] {
                let ns = |v: Variant| {
                    let times = samples.get(&(lp, v))?.usable();
                    median(&times.iter().map(|t| t.get(clock)).collect::<Vec<_>>())
                };
                self.overhead_keys(lp, suffix, ns);
            }
            // Noise: how far apart the untraced rounds are, against what the floor adds.
            let untraced: Vec<f64> = samples
                .get(&(lp, Variant::Untraced))
                .map(|s| s.usable().iter().map(|t| t.wall).collect())
                .unwrap_or_default();
            let spread = spread(&untraced);
            self.set(
                format!("{}_untraced_spread_pct", lp.name()),
                spread.zip(median(&untraced)).map(|(s, m)| 100.0 * s / m),
            );
            if let (Some(spread), Some(floor)) =
                (spread, self.get(&format!("{}_floor_added_ns", lp.name())))
                && lp != Loop::Getppid
                && floor > 0.0
                && spread > floor
            {
                self.note(format!(
                    "{}: the untraced rounds spread over {spread:.0} ns/call, more than the \
                     floor adds ({floor:.0} ns): ratios to the floor are noise-dominated in this \
                     run; the profile's in-program times are the steadier figure",
                    lp.name()
                ));
            }
        }
    }

    /// The report keys of one loop from its medians: `{loop}_{variant}_ns{suffix}`,
    /// `..._added_ns{suffix}` and the ratios (headline names for sethostname, `setuid_` prefixed
    /// for setuid).
    pub(super) fn overhead_keys(
        &mut self,
        lp: Loop,
        suffix: &str,
        ns: impl Fn(Variant) -> Option<f64>,
    ) {
        let prefix = match lp {
            Loop::Sethostname => "",
            Loop::Setuid => "setuid_",
            Loop::Getppid => "getppid_",
        };
        let untraced = ns(Variant::Untraced);
        let added = |v: Variant| ns(v).zip(untraced).map(|(a, b)| a - b);
        for v in Variant::ALL {
            self.set(format!("{}_{}_ns{suffix}", lp.name(), v.name()), ns(v));
            if v != Variant::Untraced {
                self.set(
                    format!("{}_{}_added_ns{suffix}", lp.name(), v.name()),
                    added(v),
                );
            }
        }
        // No check is made: there is no floor to compare with, only the added ns.
        if lp == Loop::Getppid {
            return;
        }
        // Undefined (null) when the floor added nothing measurable.
        if let Some(f) = added(Variant::Floor).filter(|f| *f <= 0.0) {
            self.note(format!(
                "{}{suffix}: the floor added {f:.1} ns/call (<= 0: below the noise), so ratios \
                 to it are null; see the profile",
                lp.name()
            ));
        }
        let ratio_to_floor = |v: Variant| {
            added(v)
                .zip(added(Variant::Floor))
                .and_then(|(a, f)| (f > 0.0).then_some(a / f))
        };
        for v in [
            Variant::Record,
            Variant::Monitor,
            Variant::Bpftrace,
            Variant::FloorTp,
            Variant::FloorFilter,
        ] {
            self.set(
                format!("{prefix}overhead_ratio_{}{suffix}", v.name()),
                ratio_to_floor(v),
            );
        }
        // Against the least any per-thread tracer must do.
        self.set(
            format!("{prefix}overhead_ratio_record_vs_filter{suffix}"),
            added(Variant::Record)
                .zip(added(Variant::FloorFilter))
                .and_then(|(r, f)| (f > 0.0).then_some(r / f)),
        );
        self.set(
            format!("{prefix}overhead_ratio_floor{suffix}"),
            ns(Variant::Floor).zip(untraced).map(|(f, u)| f / u),
        );
    }

    /// One run of `lp` under `variant`: its ns/call. With `stats`, the loop also writes the
    /// tracer's BPF run statistics there.
    pub(super) fn hook_run(
        &self,
        lp: Loop,
        variant: Variant,
        stats: Option<&Path>,
    ) -> anyhow::Result<LoopTime> {
        let mut load = Command::new(&self.load_exe);
        load.args(["bench-load", lp.name(), "--calls"])
            .arg(self.plan.calls.to_string());
        let with_stats = |cmd: &mut Command, from: String| {
            if let Some(out) = stats {
                cmd.args(["--stats-from", &from, "--stats-out"]).arg(out);
            }
        };
        let stdout = match variant {
            Variant::Untraced => run_stdout(&mut load)?,
            Variant::Floor | Variant::FloorFilter => {
                let _floor = if variant == Variant::Floor {
                    bpf::attach_empty_raw_tp("cap_capable")?
                } else {
                    bpf::attach_filter_raw_tp("cap_capable")?
                };
                with_stats(&mut load, std::process::id().to_string());
                run_stdout(&mut load)?
            }
            Variant::FloorCount | Variant::FloorCountSyscall => {
                let by_syscall = variant == Variant::FloorCountSyscall;
                let count = bpf::attach_count_raw_tp("cap_capable", by_syscall)?;
                with_stats(&mut load, std::process::id().to_string());
                let shown = cmd::display(&load);
                let child = load
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("cannot start `{shown}`"))?;
                // The loop sets up its namespace before its first call: followed from (about)
                // its first check on.
                let followed = count.follow(child.id());
                let out = child.wait_with_output()?;
                followed?;
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                if !out.status.success() {
                    bail!("`{shown}` failed ({}); stdout: {stdout:?}", out.status);
                }
                stdout
            }
            Variant::Record => {
                with_stats(&mut load, "ancestor".into());
                let mut record = Command::new(&self.captrace);
                record
                    .args(["record", "--"])
                    .arg(load.get_program())
                    .args(load.get_args());
                run_stdout(&mut record)?
            }
            Variant::FloorTp | Variant::Bpftrace | Variant::FloorSyscallTp => {
                if !self.bpftrace {
                    bail!("bpftrace not installed");
                }
                let (program, point) = match variant {
                    Variant::FloorTp => (BPFTRACE_EMPTY, "cap_capable"),
                    Variant::Bpftrace => (BPFTRACE_ANCHOR, "cap_capable"),
                    _ => (BPFTRACE_SYSCALL_EMPTY, "sys_exit_unshare"),
                };
                let tracer = Bpftrace::start(program, point, &self.dir)?;
                with_stats(&mut load, tracer.pid().to_string());
                let out = run_stdout(&mut load);
                tracer.stop();
                out?
            }
            Variant::Monitor => {
                if let Some(why) = self.monitor_na {
                    bail!("{why}");
                }
                let agent = monitor_agent::Agent::start(&self.captrace, &self.dir, 600.0)?;
                with_stats(&mut load, agent.pid().to_string());
                let out = run_stdout(&mut load);
                agent.stop()?;
                out?
            }
        };
        value_of(&stdout, "ns_per_call")
            .zip(value_of(&stdout, "cpu_ns_per_call"))
            .map(|(wall, cpu)| LoopTime { wall, cpu })
            .with_context(|| format!("no ns_per_call in the loop's output: {stdout:?}"))
    }
}
