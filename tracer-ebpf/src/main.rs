//! Kernel side of captrace. Thin programs: filter first, aggregate in maps, send only what is
//! new. No policy lives here.
//!
//! No `aya-log`: the rare paths it would report (a full map, a lost ring reservation, a failed
//! stack walk) are already counted in `STATS` (`stat::MAP_FULL`, `EVENTS_LOST`, `STACKS_LOST`),
//! which user space reads and prints as losses, and a log call would add its own per-CPU buffer
//! and ring to every program for text no one reads in production.
// Built for the host too (workspace clippy and tests unify features), where it is an empty
// program.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

mod args;
mod check;
mod fork;
mod hooks;
mod kmem;
mod lsm;
mod maps;
mod process;
mod runtime;
mod syscalls;
mod uring;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
