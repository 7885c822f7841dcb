//! Builds the kernel programs (`tracer-ebpf`) with the nightly toolchain and bpf-linker, the
//! aya-template way. `AYA_BUILD_SKIP=1` skips it for pure-logic work; the binary then carries an
//! empty object and refuses to trace with a message saying so.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("tracer");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !object.exists() {
            fs::write(&object, []).context("writing the placeholder eBPF object")?;
        }
    } else if which::which("bpf-linker").is_err() {
        return Err(anyhow!(
            "bpf-linker is not installed: run `cargo xtask setup` (or `cargo install bpf-linker@0.10.4 --locked`)"
        ));
    }
    let root = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = PathBuf::from(root).join("../tracer-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
