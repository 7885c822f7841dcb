//! Syscall numbers of this architecture to names (the `syscalls` crate's table).
use syscalls::Sysno;

/// The name of syscall `nr`, `None` outside a syscall (nr < 0).
pub fn name(nr: i32) -> Option<String> {
    if nr < 0 {
        return None;
    }
    Some(match Sysno::new(nr as usize) {
        Some(s) => s.name().to_string(),
        None => format!("syscall_{nr}"),
    })
}

/// Where the syscall number and arguments sit in `struct pt_regs`.
#[derive(Clone, Copy, Debug)]
pub struct RegsLayout {
    pub syscall: u32,
    pub arg0: u32,
    pub arg1: u32,
    pub arg2: u32,
}

/// arch/x86/include/asm/ptrace.h: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax;
/// arguments in di, si, dx (syscall ABI).
#[cfg(target_arch = "x86_64")]
pub const REGS: RegsLayout = RegsLayout {
    syscall: 15 * 8,
    arg0: 14 * 8,
    arg1: 13 * 8,
    arg2: 12 * 8,
};

/// arch/arm64/include/asm/ptrace.h: regs[31] sp pc pstate orig_x0 syscallno; arguments in x0,
/// x1, x2 (orig_x0 keeps the first one).
#[cfg(target_arch = "aarch64")]
pub const REGS: RegsLayout = RegsLayout {
    syscall: 35 * 8,
    arg0: 34 * 8,
    arg1: 8,
    arg2: 2 * 8,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn names_x86_64_syscalls() {
        assert_eq!(name(92).as_deref(), Some("chown"));
        assert_eq!(name(260).as_deref(), Some("fchownat"));
        assert_eq!(name(49).as_deref(), Some("bind"));
        assert_eq!(name(-1), None);
        assert_eq!(name(9999).as_deref(), Some("syscall_9999"));
    }
}
