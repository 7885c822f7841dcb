//! captrace: trace the Linux capabilities a workload uses, recommend the minimal set, and
//! render it for the runtimes people use.
pub mod app;
pub mod attach_btf;
pub mod capability;
pub mod classifier;
pub mod cli;
pub mod commands;
pub mod container;
pub mod enforce;
pub mod escape;
pub mod formats;
pub mod hook;
pub mod kernel_btf;
pub mod launch;
pub mod loader;
pub mod metrics;
pub mod minimize;
pub mod monitor;
pub mod namespaces;
pub mod profile;
pub mod reader;
pub mod recommend;
pub mod report;
pub mod safe_file;
pub mod session;
pub mod symbolizer;
pub mod syscall;
