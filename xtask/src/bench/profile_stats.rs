//! BPF run-time statistics: ns per run and runs per call of every program each tracer holds.
//! The passes are interleaved over the plan's rounds (floor_filter record monitor ... again)
//! and every figure is a median over rounds, like the wall-time figures.
use super::*;

/// The tracers profiled, in the order of each round.
const PROFILED: [Variant; 8] = [
    Variant::Floor,
    Variant::FloorFilter,
    Variant::FloorCount,
    Variant::FloorCountSyscall,
    Variant::FloorTp,
    Variant::Record,
    Variant::Monitor,
    Variant::Bpftrace,
];

/// One program's figures in one pass.
struct ProgramRun {
    name: String,
    ns_per_run: f64,
    runs_per_call: f64,
    ns_per_call: f64,
}

impl Bench {
    pub(super) fn profile(&mut self) {
        header("profile: BPF run-time statistics (one sethostname loop per tracer and round)");
        let _stats = match bpf::enable_stats() {
            Ok(fd) => fd,
            Err(e) => {
                self.note(format!("profile skipped: {e:#}"));
                return;
            }
        };
        // (variant, program) -> one pass per round.
        let mut passes: BTreeMap<(Variant, String), Vec<ProgramRun>> = BTreeMap::new();
        let mut order: Vec<(Variant, String)> = Vec::new();
        let mut noted: Vec<String> = Vec::new();
        for round in 1..=self.plan.rounds {
            let mut line = format!("round {round}/{}", self.plan.rounds);
            for variant in PROFILED {
                let programs = match self.profile_pass(variant) {
                    Ok(p) => p,
                    Err(e) => {
                        let e = format!("profile of {}: {e:#}", variant.name());
                        if !noted.contains(&e) {
                            noted.push(e);
                        }
                        continue;
                    }
                };
                for p in programs {
                    if p.name.starts_with("cap_capable") || p.name.starts_with("bench_") {
                        let _ = write!(line, " {}={:.1}", variant.name(), p.ns_per_run);
                    }
                    let key = (variant, p.name.clone());
                    if !passes.contains_key(&key) {
                        order.push(key.clone());
                    }
                    passes.entry(key).or_default().push(p);
                }
            }
            println!("{line}");
        }
        for e in noted {
            self.note(e);
        }
        println!(
            "{:<12} {:<22} {:>10} {:>10} {:>12}",
            "tracer", "program", "ns/run", "runs/call", "ns/call"
        );
        let mut total_ns: BTreeMap<Variant, f64> = BTreeMap::new();
        for key in order {
            let runs = &passes[&key];
            // A pass where the program never ran has no ns/run (NaN): left out.
            let med = |f: fn(&ProgramRun) -> f64| {
                median(
                    &runs
                        .iter()
                        .map(f)
                        .filter(|x| x.is_finite())
                        .collect::<Vec<_>>(),
                )
            };
            let (ns_per_run, runs_per_call, ns_per_call) = (
                med(|p| p.ns_per_run),
                med(|p| p.runs_per_call),
                med(|p| p.ns_per_call),
            );
            let (variant, name) = key;
            println!(
                "{:<12} {:<22} {:>10} {:>10} {:>12}",
                variant.name(),
                name,
                fmt_opt(ns_per_run, 1),
                fmt_opt(runs_per_call, 3),
                fmt_opt(ns_per_call, 1)
            );
            *total_ns.entry(variant).or_default() += ns_per_call.unwrap_or(0.0);
            let key = format!("profile_{}_{}", variant.name(), sanitize(&name));
            self.set(format!("{key}_ns_per_run"), ns_per_run);
            self.set(format!("{key}_runs_per_call"), runs_per_call);
        }
        for (variant, total) in total_ns {
            self.set(
                format!("profile_{}_prog_ns_per_call", variant.name()),
                Some(total),
            );
        }
        println!(
            "(medians over rounds; ns/call = time inside the programs per loop call; runs can \
             exceed one per call when a program also runs for other processes' events)"
        );
        // Per-check cost against the least a per-thread tracer does (whatever hook they run
        // on: the cap_capable program of each): the median of the per-round ratios, so a
        // round that was slow for everything counts as one round.
        let filter: Vec<f64> = passes
            .iter()
            .filter(|((v, name), _)| *v == Variant::FloorFilter && name == "bench_filter")
            .flat_map(|(_, runs)| runs.iter().map(|p| p.ns_per_run))
            .collect();
        for variant in [
            Variant::FloorCount,
            Variant::FloorCountSyscall,
            Variant::Record,
            Variant::Monitor,
        ] {
            let own: Vec<f64> = passes
                .iter()
                .filter(|((v, name), _)| {
                    *v == variant
                        && (name.starts_with("cap_capable") || name.starts_with("bench_count"))
                })
                .flat_map(|(_, runs)| runs.iter().map(|p| p.ns_per_run))
                .collect();
            let ratios: Vec<f64> = own.iter().zip(&filter).map(|(o, f)| o / f).collect();
            self.set(
                format!("profile_{}_vs_filter", variant.name()),
                median(&ratios),
            );
        }
    }

    /// One sethostname loop under `variant` with statistics on: its programs' figures.
    fn profile_pass(&self, variant: Variant) -> anyhow::Result<Vec<ProgramRun>> {
        let out = self.dir.join(format!("profile-{}.json", variant.name()));
        let _ = fs::remove_file(&out);
        self.hook_run(Loop::Sethostname, variant, Some(&out))?;
        let calls = self.plan.calls as f64;
        let programs = read_json(&out)?["programs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(programs
            .iter()
            .map(|p| {
                let runs = p["runs"].as_f64().unwrap_or(0.0);
                let ns = p["run_time_ns"].as_f64().unwrap_or(0.0);
                ProgramRun {
                    name: p["name"].as_str().unwrap_or("?").to_string(),
                    ns_per_run: ns / runs,
                    runs_per_call: runs / calls,
                    ns_per_call: ns / calls,
                }
            })
            .collect())
    }
}
