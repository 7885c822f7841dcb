//! One module per subcommand.
pub mod caps;
pub mod check;
pub mod diff;
pub mod docs;
pub mod doctor;
pub mod enforce;
pub mod merge;
pub mod monitor;
pub mod recommend;
pub mod record;
pub mod report;
pub mod run;
