//! Whether this kernel refuses fexit programs outright, asked before anything else needs to
//! know.
//!
//! Some kernels refuse every fentry/fexit program with EPERM at load, before the verifier
//! runs (this project's hosts: `bpftool feature probe` lists no trampolines; the refusal
//! takes ~15 us). captrace tries fexit first (on `cap_capable` and on the namespace
//! syscalls), and those attempts need the BTF ids of their functions, which aya looks up in
//! the small BTF `attach_btf` builds with a placeholder for every kernel type below the
//! highest id asked for: on such a kernel the fexit functions (ids ~57,000-69,000 here) made
//! it 2.5 times larger than the tracepoints alone need (~27,000), and its build sat on the
//! start-up's critical path. A two-instruction fexit program on `cap_capable` (`r0 = 0;
//! exit`, valid on any function) is refused exactly like captrace's own where the refusal
//! is the kernel's or the caller's privileges, so its EPERM lets the loader leave the fexit
//! attempts and their ids out. Anything else (loaded, or another error) leaves everything as
//! it was: the real programs are tried and report their own errors.
use std::{io, os::fd::FromRawFd as _};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};

/// EPERM when the kernel refuses an fexit program on the function of BTF id `func_id`; None
/// when it loads one, or says anything else.
pub(super) fn refused(func_id: u32) -> Option<io::Error> {
    match load(func_id) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Some(e),
        _ => None,
    }
}

/// BPF_PROG_LOAD of `r0 = 0; exit` as fexit on `func_id`; the program is closed at once.
fn load(func_id: u32) -> io::Result<()> {
    // BPF_ALU64 | BPF_MOV | BPF_K with dst r0, imm 0; then BPF_JMP | BPF_EXIT.
    // SAFETY: bpf_insn is plain data; all-zero registers and immediates are r0 and 0.
    let mut insns: [bpf_insn; 2] = unsafe { std::mem::zeroed() };
    insns[0].code = 0x07 | 0xb0;
    insns[1].code = 0x05 | 0x90;
    let license = c"GPL";
    // SAFETY: bpf_attr is plain data; all-zero is its "unset" state.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
    load.expected_attach_type = bpf_attach_type::BPF_TRACE_FEXIT as u32;
    load.attach_btf_id = func_id;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    // SAFETY: the attr, the instructions and the license outlive the call; the kernel copies
    // what it keeps.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &raw mut attr,
            std::mem::size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel gave this process; owned (and closed) here.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}
