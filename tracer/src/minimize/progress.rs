//! `--minimize` progress on a terminal: one line, rewritten in place, saying which replay runs
//! and what it tries. Never in a pipe or with `--json`, whose readers want the report only.
use std::io::Write as _;

/// Clears the terminal line the cursor is on (`CSI 2 K`) and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

#[derive(Debug, Default)]
pub struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    /// Shown only when `on` (stderr is a terminal and the report is not JSON).
    pub fn new(on: bool) -> Progress {
        Progress { on, shown: false }
    }

    /// `captrace: replay 3 of 6: trying without CHOWN`.
    pub fn replay(&mut self, n: u32, total: u32, what: &str) {
        if !self.on {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR_LINE}{}", line(n, total, what));
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line before the report is printed.
    pub fn done(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

fn line(n: u32, total: u32, what: &str) -> String {
    format!("captrace: replay {n} of {total}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_which_replay_and_what_it_tries() {
        assert_eq!(
            line(3, 6, "trying without CHOWN"),
            "captrace: replay 3 of 6: trying without CHOWN"
        );
        // Off: nothing is written and nothing needs clearing.
        let mut p = Progress::new(false);
        p.replay(1, 2, "x");
        assert!(!p.shown);
    }
}
