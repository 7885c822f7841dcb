//! The definitions printed first, the results table, and `target/bench/report.json`.
use super::*;

impl Bench {
    pub(super) fn print_definitions(&self, quick: bool) {
        let p = &self.plan;
        header(if quick {
            "captrace bench (--quick)"
        } else {
            "captrace bench"
        });
        println!(
            "\
Definitions (all figures are medians over interleaved rounds; the bench never asserts):
- loop: unshare(CLONE_NEWUTS) once, then {calls} x sethostname(\"x\") (one audited CAP_SYS_ADMIN
  check each); also {calls} x setuid(0) as root (CAP_SETUID). ns/call = loop wall time (CLOCK_MONOTONIC)
  / calls; {rounds} rounds, each running in turn: untraced, floor, floor_tp, record, monitor, bpftrace.
- floor: empty program on raw_tracepoint/cap_capable (captrace's hook), attached via bpf(2);
  floor_tp: empty bpftrace program on tracepoint:capability:cap_capable (reference).
- bpftrace: bpftrace -e '{BPFTRACE_ANCHOR}'
- added = ns/call - untraced ns/call; overhead_ratio_record = added(record)/added(floor) (target <= 1.5
  and below overhead_ratio_bpftrace = added(bpftrace)/added(floor)); overhead_ratio_floor = floor/untraced.
  *_cpu keys: the same from the loop thread's CPU time (cross-check); setuid_* keys: the setuid(0) loop.
- monitor: `captrace monitor --json --metrics 127.0.0.1:PORT` (host-wide) running, ready (first counts
  served) before the loop starts; overhead_ratio_monitor = added(monitor)/added(floor).
- record_true_ms: wall time of `captrace record -- true` vs plain `true`, {startup} rounds (target <= 60 ms).
- fork storm: {children} short-lived children under `captrace record -o`, one sethostname each; counted
  = sum of the profile's SYS_ADMIN/sethostname counts (target: all).
- real workload: `tar --same-owner -xf` of {files} files owned by uid 1000 into tmpfs, as root (a chown
  per file), untraced vs `captrace record -- tar ...`, end to end, {tar_rounds} rounds (target <= 1.05x);
  real_workload_ratio_filter: plain tar with the thread-lookup-only program on cap_capable / untraced;
  real_workload_ratio_floor_syscall_tp: that program plus an empty one on syscalls:sys_exit_unshare
  (the least a tracer seeing every namespace call's result adds without trampolines) / untraced;
  real_workload_ratio_after_start: the same minus captrace's start-up (record_true_ms - true_ms);
  ratios are medians of per-round ratios; *_cpu_ratio*: the same by CPU time (user + system of the tree).
- profile: {rounds} interleaved loops per tracer with BPF run-time stats on: ns/run and runs/call of each program
  (medians); profile_record_vs_filter = record's cap_capable ns/run / the thread-lookup-only program's, median of
  the rounds' ratios (target <= 1.5; monitor <= 2). floor_count: the thread lookup hitting + one per-CPU counter;
  floor_count_syscall: + the syscall number read as captrace reads it (bpf_get_current_task_btf, bpf_task_pt_regs):
  the least a per-thread tracer counting per syscall does.
- syscall tax: getppid (no check) added ns under record/monitor (target <= 60 with syscall tracepoints);
  floor_syscall_tp: an empty bpftrace program on syscalls:sys_exit_unshare, the least any syscall tracepoint adds.
- runs marked * had another process's tracing BPF programs loaded (waited for first, within a budget);
  they are left out of a median when the same series has clean runs.
- monitor throughput: {monitor_rounds} rounds of a fresh `captrace monitor` (idle, then warmed up) and {procs} processes
  in a cgroup v2 of their own (one per step) calling sethostname at rising rates ({ladder}); monitor_max_checks_per_s = highest
  achieved rate before the first step whose per-cgroup SYS_ADMIN count (its /metrics) differs from the calls
  made; monitor_cpu_pct_at_100k = its CPU time over the 100k/s step, % of one CPU; monitor_rss_mb = its VmHWM.{monitor}",
            calls = p.calls,
            rounds = p.rounds,
            startup = p.startup_rounds,
            children = p.children,
            files = p.files,
            tar_rounds = p.tar_rounds,
            monitor_rounds = p.monitor.rounds,
            procs = monitor_throughput::PROCS,
            ladder = p.monitor.describe_ladder(),
            monitor = self
                .monitor_na
                .map_or(String::new(), |why| format!("\n- monitor: {why}")),
        );
    }
}

impl Bench {
    pub(super) fn print_table(&self) {
        header("hook overhead: ns per call (median)");
        println!(
            "{:<10} {:>12} {:>10} {:>9} {:>12} {:>10} {:>9} {:>10} {:>8}  what",
            "variant",
            "sethostname",
            "added",
            "x floor",
            "setuid(0)",
            "added",
            "x floor",
            "getppid",
            "added"
        );
        for v in Variant::ALL {
            let mut line = format!("{:<10}", v.name());
            for lp in Loop::ALL {
                let ns = self.get(&format!("{}_{}_ns", lp.name(), v.name()));
                let added = self.get(&format!("{}_{}_added_ns", lp.name(), v.name()));
                let floor = self.get(&format!("{}_floor_added_ns", lp.name()));
                let ratio = added
                    .zip(floor)
                    .and_then(|(a, f)| (v != Variant::Untraced && f > 0.0).then_some(a / f));
                if lp == Loop::Getppid {
                    let _ = write!(line, " {:>10} {:>8}", fmt_opt(ns, 1), fmt_opt(added, 1));
                    continue;
                }
                let _ = write!(
                    line,
                    " {:>12} {:>10} {:>9}",
                    fmt_opt(ns, 1),
                    fmt_opt(added, 1),
                    fmt_opt(ratio, 2)
                );
            }
            println!("{line}  {}", v.describe());
        }

        header("results");
        let rows = self.rows();
        println!("{:<36} {:>12} {:<34} met", "metric", "value", "target");
        let (mut met, mut missed) = (0, 0);
        for row in &rows {
            let verdict = match row.met {
                Some(true) => {
                    met += 1;
                    "yes"
                }
                Some(false) => {
                    missed += 1;
                    "NO"
                }
                None => "-",
            };
            println!(
                "{:<36} {:>12} {:<34} {verdict}",
                row.metric, row.value, row.target
            );
        }
        println!("targets: {met} met, {missed} missed");
        if !self.notes.is_empty() {
            println!("notes:");
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }

    pub(super) fn rows(&self) -> Vec<Row> {
        let v = |k: &str| self.get(k);
        let mut rows = vec![
            Row::plain("untraced ns/call", v("sethostname_untraced_ns"), 1),
            Row::plain("floor ns/call", v("sethostname_floor_ns"), 1),
            Row::plain("record ns/call", v("sethostname_record_ns"), 1),
            Row::plain("bpftrace ns/call", v("sethostname_bpftrace_ns"), 1),
            Row::plain("overhead_ratio_floor", v("overhead_ratio_floor"), 3),
            Row::plain(
                "overhead_ratio_floor_filter",
                v("overhead_ratio_floor_filter"),
                2,
            ),
            Row::plain(
                "overhead_ratio_record_vs_filter",
                v("overhead_ratio_record_vs_filter"),
                2,
            ),
            Row::plain(
                "in-program ns/run: empty program",
                v("profile_floor_bench_floor_ns_per_run"),
                1,
            ),
            Row::plain(
                "in-program ns/run: thread lookup only",
                v("profile_floor_filter_bench_filter_ns_per_run"),
                1,
            ),
            Row::plain(
                "in-program ns/run: record's cap_capable",
                v("profile_record_cap_capable_tp_btf_ns_per_run"),
                1,
            ),
            Row::plain(
                "profile_floor_count_vs_filter",
                v("profile_floor_count_vs_filter"),
                2,
            ),
            Row::plain(
                "profile_floor_count_syscall_vs_filter",
                v("profile_floor_count_syscall_vs_filter"),
                2,
            ),
            Row::target(
                "profile_record_vs_filter".into(),
                v("profile_record_vs_filter"),
                2,
                "<= 1.5",
                v("profile_record_vs_filter").map(|r| r <= 1.5),
            ),
            Row::target(
                "profile_monitor_vs_filter".into(),
                v("profile_monitor_vs_filter"),
                2,
                "<= 2",
                v("profile_monitor_vs_filter").map(|r| r <= 2.0),
            ),
        ];
        // The syscall tax: <= 20 ns needs a kernel with trampolines (fexit, no program on the
        // syscall path); with syscall tracepoints, <= 60 ns. The floor shows the least any
        // syscall tracepoint adds here.
        for key in ["getppid_record_added_ns", "getppid_monitor_added_ns"] {
            rows.push(Row::target(
                key.into(),
                v(key),
                1,
                "<= 60 (syscall tracepoints)",
                v(key).map(|ns| ns <= 60.0),
            ));
        }
        rows.push(Row::plain(
            "getppid_floor_syscall_tp_added_ns",
            v("getppid_floor_syscall_tp_added_ns"),
            1,
        ));
        for (prefix, lp) in [("", Loop::Sethostname), ("setuid_", Loop::Setuid)] {
            let record = v(&format!("{prefix}overhead_ratio_record"));
            let bpftrace = v(&format!("{prefix}overhead_ratio_bpftrace"));
            // Judged on the added ns, which stay defined when the floor's do not.
            let below_bpftrace = v(&format!("{}_record_added_ns", lp.name()))
                .zip(v(&format!("{}_bpftrace_added_ns", lp.name())))
                .map(|(r, b)| r < b);
            rows.push(Row::target(
                format!("{prefix}overhead_ratio_record"),
                record,
                2,
                "<= 1.5",
                record.map(|r| r <= 1.5),
            ));
            rows.push(Row::target(
                format!("{prefix}overhead_ratio_bpftrace"),
                bpftrace,
                2,
                "record below it (added ns)",
                below_bpftrace,
            ));
            for v in ["record", "bpftrace"] {
                let key = format!("{prefix}overhead_ratio_{v}_cpu");
                rows.push(Row::plain(&key, self.get(&key), 2));
            }
        }
        rows.push(self.monitor_row("overhead_ratio_monitor", 2));
        rows.push(self.monitor_row("overhead_ratio_monitor_cpu", 2));
        rows.push(Row::plain("true_ms", v("true_ms"), 1));
        rows.push(Row::target(
            "record_true_ms".into(),
            v("record_true_ms"),
            1,
            "<= 60",
            v("record_true_ms").map(|ms| ms <= 60.0),
        ));
        for (key, decimals, target, met) in [
            (
                "monitor_max_checks_per_s",
                0,
                ">= 1000000",
                v("monitor_max_checks_per_s").map(|n| n >= 1e6),
            ),
            (
                "monitor_cpu_pct_at_100k",
                1,
                "<= 5",
                v("monitor_cpu_pct_at_100k").map(|p| p <= 5.0),
            ),
            ("monitor_cpu_pct_idle", 1, "", None),
            (
                "monitor_rss_mb",
                1,
                "<= 30",
                v("monitor_rss_mb").map(|mb| mb <= 30.0),
            ),
        ] {
            let row = self.monitor_row(key, decimals);
            rows.push(if self.monitor_na.is_some() {
                row
            } else {
                Row::target(key.into(), v(key), decimals, target, met)
            });
        }
        if self.monitor_na.is_none() {
            let (exact, steps) = (v("monitor_steps_exact"), v("monitor_steps"));
            rows.push(Row {
                metric: "monitor_steps_exact".into(),
                value: match (exact, steps) {
                    (Some(e), Some(n)) => format!("{e:.0}/{n:.0}"),
                    _ => "null".into(),
                },
                target: "all counted exactly".into(),
                met: exact.zip(steps).map(|(e, n)| e == n && n > 0.0),
            });
        }
        let (tracked, total) = (v("fork_storm_tracked"), v("fork_storm_total"));
        rows.push(Row {
            metric: "fork_storm_tracked".into(),
            value: match (tracked, total) {
                (Some(t), Some(n)) => format!("{t:.0}/{n:.0}"),
                _ => "null".into(),
            },
            target: "all counted".into(),
            met: tracked.zip(total).map(|(t, n)| t == n),
        });
        rows.push(Row::plain(
            "real_workload_untraced_ms",
            v("real_workload_untraced_ms"),
            1,
        ));
        rows.push(Row::plain(
            "real_workload_record_ms",
            v("real_workload_record_ms"),
            1,
        ));
        rows.push(Row::target(
            "real_workload_ratio".into(),
            v("real_workload_ratio"),
            3,
            "<= 1.05",
            v("real_workload_ratio").map(|r| r <= 1.05),
        ));
        rows.push(Row::plain(
            "real_workload_ratio_filter",
            v("real_workload_ratio_filter"),
            3,
        ));
        rows.push(Row::plain(
            "real_workload_ratio_floor_syscall_tp",
            v("real_workload_ratio_floor_syscall_tp"),
            3,
        ));
        for key in [
            "real_workload_cpu_ratio",
            "real_workload_cpu_ratio_filter",
            "real_workload_cpu_ratio_floor_syscall_tp",
        ] {
            rows.push(Row::plain(key, v(key), 3));
        }
        rows.push(Row::plain(
            "real_workload_ratio_after_start",
            v("real_workload_ratio_after_start"),
            3,
        ));
        rows
    }

    pub(super) fn write_report(&self) -> anyhow::Result<()> {
        let path = self.dir.join("report.json");
        let object: serde_json::Map<String, Value> = self
            .report
            .iter()
            .map(|(k, v)| {
                let value = v
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number);
                (k.clone(), value)
            })
            .collect();
        fs::write(&path, serde_json::to_vec_pretty(&Value::Object(object))?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
        Ok(())
    }
}

/// A line of the results table.
pub(super) struct Row {
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    pub(super) fn plain(metric: &str, value: Option<f64>, decimals: usize) -> Row {
        Row::target(metric.into(), value, decimals, "", None)
    }

    pub(super) fn target(
        metric: String,
        value: Option<f64>,
        decimals: usize,
        target: &str,
        met: Option<bool>,
    ) -> Row {
        Row {
            metric,
            value: fmt_opt(value, decimals),
            target: target.into(),
            met,
        }
    }

    pub(super) fn monitor(metric: &str, why: &str) -> Row {
        Row {
            metric: metric.into(),
            value: "n/a".into(),
            target: why.trim_start_matches("n/a ").into(),
            met: None,
        }
    }
}

impl Bench {
    /// A row of a monitor figure, or why there is none.
    pub(super) fn monitor_row(&self, key: &str, decimals: usize) -> Row {
        match self.monitor_na {
            Some(why) => Row::monitor(key, why),
            None => Row::plain(key, self.get(key), decimals),
        }
    }
}
