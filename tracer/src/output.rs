//! What captrace itself says to the user, as ripgrep keeps its messages in one place: every
//! line starts `captrace: `, each kind of line goes to one stream, and a reader that went away
//! (`captrace monitor --json | head -1`) ends captrace quietly instead of failing it.
//!
//! Reports (`record`'s table, `monitor`'s table and JSON, `caps`) are rendered by their own
//! modules and written by the commands; this module is for the lines around them.
use std::{
    fmt,
    io::{self, Write as _},
};

/// Where a line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    Stdout,
    Stderr,
}

/// `captrace: MSG` on stderr: progress, warnings, errors, totals.
pub fn note(msg: impl fmt::Display) {
    say(To::Stderr, msg);
}

/// `captrace: MSG` on `to`. A closed stream is not captrace's failure: the line is dropped (a
/// `println!` would panic, since captrace ignores SIGPIPE as every Rust program does).
pub fn say(to: To, msg: impl fmt::Display) {
    let _ = match to {
        To::Stdout => writeln!(io::stdout().lock(), "captrace: {msg}"),
        To::Stderr => writeln!(io::stderr().lock(), "captrace: {msg}"),
    };
}

/// One live enforcement denial (`chown[4242]: fchownat: CHOWN denied ...`): on stdout for
/// `captrace enforce`, whose output is the denials, and on stderr for `run --enforce`, whose
/// stdout is the workload's.
pub fn denial(to: To, line: impl fmt::Display) {
    say(to, format_args!("enforce: {line}"));
}

/// Whether `err` is, somewhere in its chain, a write to a pipe nobody reads any more.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn a_broken_pipe_is_found_through_context() {
        let pipe = Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot write the capability list to stdout")
            .unwrap_err();
        assert!(is_broken_pipe(&pipe));
        assert!(!is_broken_pipe(&anyhow::anyhow!("anything else")));
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
    }
}
