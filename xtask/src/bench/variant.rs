//! The loops and tracer variants of the hook-overhead comparison.

/// The loops of the hook-overhead comparison.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Loop {
    Sethostname,
    Setuid,
    /// No capability check: what a tracer adds to every syscall of the host.
    Getppid,
}

impl Loop {
    pub(super) const ALL: [Loop; 3] = [Loop::Sethostname, Loop::Setuid, Loop::Getppid];

    pub(super) fn name(self) -> &'static str {
        match self {
            Loop::Sethostname => "sethostname",
            Loop::Setuid => "setuid",
            Loop::Getppid => "getppid",
        }
    }
}

/// What one loop reported, in ns per call.
#[derive(Clone, Copy)]
pub(super) struct LoopTime {
    /// Wall time (CLOCK_MONOTONIC): the definition.
    pub(super) wall: f64,
    /// CPU time of the loop's thread (CLOCK_THREAD_CPUTIME_ID): a cross-check that time spent
    /// preempted by other processes does not inflate.
    pub(super) cpu: f64,
}

#[derive(Clone, Copy)]
pub(super) enum Clock {
    Wall,
    Cpu,
}

impl LoopTime {
    pub(super) fn get(self, clock: Clock) -> f64 {
        match clock {
            Clock::Wall => self.wall,
            Clock::Cpu => self.cpu,
        }
    }
}

/// What is attached while a loop runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Variant {
    Untraced,
    Floor,
    FloorTp,
    Record,
    Monitor,
    Bpftrace,
    FloorFilter,
    /// getppid loop only: what any syscall tracepoint costs the other syscalls.
    FloorSyscallTp,
    /// Profile only: the thread lookup hitting, then one per-CPU counter (the least a tracer
    /// that counts a chosen thread's checks does).
    FloorCount,
    /// Profile only: as FloorCount, with one counter per syscall, its number read from the
    /// task's saved registers as captrace reads it (two helper calls and a load).
    FloorCountSyscall,
}

impl Variant {
    pub(super) const ALL: [Variant; 8] = [
        Variant::Untraced,
        Variant::Floor,
        Variant::FloorFilter,
        Variant::FloorTp,
        Variant::Record,
        Variant::Monitor,
        Variant::Bpftrace,
        Variant::FloorSyscallTp,
    ];

    /// Whether the variant runs with loop `lp`: the syscall-tracepoint floor only matters for
    /// the syscall tax.
    pub(super) fn runs_with(self, lp: Loop) -> bool {
        self != Variant::FloorSyscallTp || lp == Loop::Getppid
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Variant::Untraced => "untraced",
            Variant::Floor => "floor",
            Variant::FloorTp => "floor_tp",
            Variant::Record => "record",
            Variant::Monitor => "monitor",
            Variant::Bpftrace => "bpftrace",
            Variant::FloorFilter => "floor_filter",
            Variant::FloorSyscallTp => "floor_syscall_tp",
            Variant::FloorCount => "floor_count",
            Variant::FloorCountSyscall => "floor_count_syscall",
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Variant::Untraced => "nothing attached",
            Variant::Floor => "empty raw_tracepoint/cap_capable program",
            Variant::FloorTp => "empty bpftrace tracepoint:capability:cap_capable",
            Variant::Record => "captrace record -- <loop>",
            Variant::Monitor => "captrace monitor (host-wide) running",
            Variant::Bpftrace => "bpftrace count map keyed by cap",
            Variant::FloorFilter => "raw_tp program doing only a thread-id hash lookup",
            Variant::FloorSyscallTp => "empty bpftrace syscalls:sys_exit_unshare (getppid only)",
            Variant::FloorCount => {
                "raw_tp program: thread-id hash lookup that hits, one per-CPU counter"
            }
            Variant::FloorCountSyscall => {
                "floor_count with a counter per syscall (bpf_task_pt_regs, as captrace)"
            }
        }
    }
}
