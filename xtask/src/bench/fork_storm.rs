//! Fork storm (section 4 of the bench): every short-lived child's check counted.
use super::*;

impl Bench {
    pub(super) fn fork_storm(&mut self) {
        let children = self.plan.children;
        header(&format!("4. fork storm: {children} children under record"));
        self.set("fork_storm_total", Some(f64::from(children)));
        let mut storm = Command::new(&self.load_exe);
        storm
            .args(["bench-load", "fork-storm", "--children"])
            .arg(children.to_string());
        match run_stdout(&mut storm) {
            Ok(out) => {
                self.set("fork_storm_untraced_ms", value_of(&out, "ms"));
            }
            Err(e) => self.note(format!("fork storm untraced: {e:#}")),
        }
        let profile = self.dir.join("fork-storm.json");
        let _ = fs::remove_file(&profile);
        let mut record = Command::new(&self.captrace);
        record
            .args(["record", "-o"])
            .arg(&profile)
            .arg("--")
            .arg(storm.get_program())
            .args(storm.get_args());
        let tracked = run_stdout(&mut record).and_then(|out| {
            self.report
                .insert("fork_storm_record_ms".into(), value_of(&out, "ms"));
            if value_of(&out, "ok") != Some(f64::from(children)) {
                bail!("not every child succeeded: {out:?}");
            }
            let json = read_json(&profile)?;
            Ok(sethostname_checks(&json))
        });
        match tracked {
            Ok(n) => {
                println!(
                    "counted {n} of {children} (untraced {} ms, recorded {} ms)",
                    fmt_opt(self.get("fork_storm_untraced_ms"), 0),
                    fmt_opt(self.get("fork_storm_record_ms"), 0)
                );
                self.set("fork_storm_tracked", Some(n as f64));
            }
            Err(e) => {
                self.note(format!("fork storm under record: {e:#}"));
                self.set("fork_storm_tracked", None);
            }
        }
    }
}

/// The audited SYS_ADMIN checks a profile counted in `sethostname`.
pub(super) fn sethostname_checks(profile: &Value) -> u64 {
    profile["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["cap"] == "SYS_ADMIN" && c["syscall"] == "sethostname")
        .filter_map(|c| c["count"].as_u64())
        .sum()
}
