//! BPF run-time statistics: ns per run and runs per call of every program each tracer holds.
use super::*;

impl Bench {
    pub(super) fn profile(&mut self) {
        header("profile: BPF run-time statistics (one sethostname loop per tracer)");
        let _stats = match bpf::enable_stats() {
            Ok(fd) => fd,
            Err(e) => {
                self.note(format!("profile skipped: {e:#}"));
                return;
            }
        };
        let calls = self.plan.calls as f64;
        println!(
            "{:<10} {:<22} {:>10} {:>10} {:>12}",
            "tracer", "program", "ns/run", "runs/call", "ns/call"
        );
        for variant in [
            Variant::Floor,
            Variant::FloorFilter,
            Variant::FloorTp,
            Variant::Record,
            Variant::Monitor,
            Variant::Bpftrace,
        ] {
            let out = self.dir.join(format!("profile-{}.json", variant.name()));
            let _ = fs::remove_file(&out);
            let programs = self
                .hook_run(Loop::Sethostname, variant, Some(&out))
                .and_then(|_| read_json(&out))
                .map(|v| v["programs"].as_array().cloned().unwrap_or_default());
            let programs = match programs {
                Ok(p) => p,
                Err(e) => {
                    self.note(format!("profile of {}: {e:#}", variant.name()));
                    continue;
                }
            };
            let mut total_ns = 0.0;
            for p in &programs {
                let name = p["name"].as_str().unwrap_or("?");
                let runs = p["runs"].as_f64().unwrap_or(0.0);
                let ns = p["run_time_ns"].as_f64().unwrap_or(0.0);
                total_ns += ns;
                let key = format!("profile_{}_{}", variant.name(), sanitize(name));
                println!(
                    "{:<10} {:<22} {:>10.1} {:>10.3} {:>12.1}",
                    variant.name(),
                    name,
                    ns / runs,
                    runs / calls,
                    ns / calls
                );
                self.set(format!("{key}_ns_per_run"), Some(ns / runs));
                self.set(format!("{key}_runs_per_call"), Some(runs / calls));
            }
            println!(
                "{:<10} {:<22} {:>10} {:>10} {:>12.1}",
                variant.name(),
                "(all programs)",
                "",
                "",
                total_ns / calls
            );
            self.set(
                format!("profile_{}_prog_ns_per_call", variant.name()),
                Some(total_ns / calls),
            );
        }
        println!(
            "(ns/call = time inside the programs per loop call; runs can exceed one per call when a \
             program also runs for other processes' events)"
        );
        // Per-check cost against the least a per-thread tracer does (whatever hook they run
        // on: the cap_capable program of each).
        let filter = self.get("profile_floor_filter_bench_filter_ns_per_run");
        for variant in [Variant::Record, Variant::Monitor] {
            let prefix = format!("profile_{}_cap_capable", variant.name());
            let own = self
                .report
                .iter()
                .find(|(k, v)| k.starts_with(&prefix) && k.ends_with("_ns_per_run") && v.is_some())
                .and_then(|(_, v)| *v);
            self.set(
                format!("profile_{}_vs_filter", variant.name()),
                own.zip(filter).map(|(o, f)| o / f),
            );
        }
    }
}
