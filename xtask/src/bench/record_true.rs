//! Start-up (section 2 of the bench): `captrace record -- true` against plain `true`.
use super::*;

impl Bench {
    pub(super) fn startup(&mut self) {
        header("2. start-up: `captrace record -- true` vs `true`");
        let (mut plain, mut recorded) = (Series::default(), Series::default());
        for _ in 0..self.plan.startup_rounds {
            match self.measure(|_| wall_ms(Command::new("true"))) {
                Ok((ms, clean)) => plain.push(ms, clean),
                Err(e) => self.note(format!("true: {e:#}")),
            }
            let mut record = Command::new(&self.captrace);
            record.args(["record", "--", "true"]);
            match self.measure(|_| wall_ms(record)) {
                Ok((ms, clean)) => recorded.push(ms, clean),
                Err(e) => self.note(format!("captrace record -- true: {e:#}")),
            }
        }
        println!(
            "true: {} ms\ncaptrace record -- true: {} ms",
            plain.list(),
            recorded.list()
        );
        self.set("true_ms", median(&plain.usable()));
        self.set("record_true_ms", median(&recorded.usable()));
    }
}
