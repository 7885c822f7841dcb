//! One module per subcommand.
pub mod caps;
pub mod doctor;
pub mod enforce;
pub mod monitor;
pub mod recommend;
pub mod record;
pub mod run;
