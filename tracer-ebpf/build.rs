//! Rebuild when bpf-linker changes, and say clearly what to do when it is missing.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => {
            println!(
                "cargo:warning=bpf-linker not found on PATH: run `cargo xtask setup` (installs bpf-linker@0.10.4)"
            );
        }
    }
}
