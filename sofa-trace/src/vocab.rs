//! Words the recorder writes and the analyzer reads: collector names, metric
//! names, packet sources, frame kinds. Stored in the archive as the same
//! strings as always (the Parquet files and `meta.json` do not change), but
//! named here once, so that the compiler finds every writer and reader.

/// A closed set of names stored as strings in the archive.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The string stored in the archive.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value stored as `text`; `None` for a word this sofa does
            /// not know (an archive of a newer minor version may hold one).
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

vocabulary! {
    /// A collector: keys of `meta.json` `collectors` and `lost`, and
    /// `lost.collector`.
    CollectorName {
        /// Call stacks sampled with perf_event_open.
        Cpu = "cpu",
        /// `raw_syscalls` tracepoints of the command's tree.
        Syscalls = "syscalls",
        /// /proc counters.
        System = "system",
        /// NVML counters.
        Gpu = "gpu",
        /// `net` tracepoints, system-wide.
        Net = "net",
        /// Packet headers (AF_PACKET), riding on `net`.
        NetCapture = "net_capture",
        /// Python stacks read from CPython interpreters' memory.
        Python = "python",
        /// Context switches with stacks (`switches`), riding on `cpu`.
        OffCpu = "off_cpu",
    }
}

vocabulary! {
    /// Why a thread waited off the CPU, from the kernel and user frames of
    /// its stack when it left, and the system call it was in.
    WaitReason {
        /// Still runnable: it waited for a CPU (other threads or processes ran).
        Preempted = "preempted",
        /// CPython's global interpreter lock (`take_gil`).
        Gil = "gil",
        /// A futex: a lock, condition variable or queue of user space.
        Lock = "lock",
        /// A read from a pipe, socket or queue (data-loader batches, messages).
        Pipe = "pipe",
        /// poll, select or epoll: an event loop or a multiplexed wait.
        Poll = "poll",
        /// Disk I/O: a read, write, sync or fault that waited for the block device.
        Disk = "disk",
        /// A page fault that waited (not for disk).
        PageFault = "page-fault",
        /// A timed sleep (nanosleep, clock_nanosleep).
        Sleep = "sleep",
        /// Waiting for a child process (wait4, waitid).
        Child = "child",
        /// The NVIDIA driver (ioctl on /dev/nvidia*), e.g. a CUDA synchronize.
        GpuDriver = "gpu-driver",
        /// None of the above could be told from the stack.
        Other = "other",
    }
}

vocabulary! {
    /// `net.source`: where a packet event came from.
    NetSource {
        /// `net:net_dev_xmit`: a packet sent.
        Xmit = "xmit",
        /// `net:netif_receive_skb`: a packet received.
        Recv = "recv",
        /// A captured header (`--net-capture`): the same packets again, with
        /// addresses and ports, so totals skip these.
        Capture = "capture",
    }
}

vocabulary! {
    /// `stack_ends.end`: how the user part of an unwound stack ended
    /// (`--call-graph dwarf|auto`).
    StackEnd {
        /// Reached the thread's first function: the stack is complete.
        Root = "root",
        /// Reached the root through stack bytes the copy lacked, read from the
        /// live process right after the sample (its outer frames, still running).
        RootLate = "root-late",
        /// Its caller's frame lies past the copied user stack (`--stack-size`).
        StackCopy = "stack-copy",
        /// Its caller's frame lies past a copy the kernel cut short: it copies
        /// only resident pages, and a large frame may hold untouched ones.
        ShortCopy = "short-copy",
        /// An address in code with no unwind information (JIT, unknown module) and no usable frame pointer.
        NoUnwindInfo = "no-unwind-info",
        /// The unwind rules led to an impossible frame (a read outside the copy, a return address of 0, a loop).
        BadFrame = "bad-frame",
        /// More frames than sofa follows (`MAX_FRAMES`).
        TooDeep = "too-deep",
        /// `auto` took the frame-pointer chain: it was at least as deep as the unwound one.
        FramePointers = "frame-pointers",
        /// The sample had no user registers or stack (a kernel thread, or the copy was empty).
        NoUserStack = "no-user-stack",
    }
}

impl StackEnd {
    /// Whether a stack that ended so is complete: it reached its root.
    pub fn reached_root(self) -> bool {
        matches!(self, StackEnd::Root | StackEnd::RootLate)
    }
}

vocabulary! {
    /// `binaries.symbols`: where a binary's function names came from, the
    /// richest source found (a detached debug file or MiniDebugInfo adds to
    /// the binary's own tables).
    SymbolSource {
        /// A detached debug file found under `DIR/.build-id/` of a debug directory.
        BuildId = "build-id",
        /// A detached debug file found through the `.gnu_debuglink` section.
        Debuglink = "debuglink",
        /// The xz-compressed symbol table in `.gnu_debugdata` (Fedora, RHEL).
        MiniDebugInfo = "minidebuginfo",
        /// The binary's full symbol table (`.symtab`).
        Symtab = "symtab",
        /// Only the exported symbols (`.dynsym`): internal functions stay unnamed.
        Dynsym = "dynsym",
        /// No function symbols at all.
        None = "none",
        /// The file could not be read or parsed at the end of recording.
        Unreadable = "unreadable",
    }
}

vocabulary! {
    /// `frames.kind`: what sort of code an address is in.
    FrameKind {
        Kernel = "kernel",
        /// A file-backed user mapping (or none known).
        User = "user",
        /// Anonymous executable memory: JIT-compiled code.
        Jit = "jit",
    }
}

vocabulary! {
    /// `system.metric`: what a /proc counter measures. Cumulative counters
    /// (`*_s`, `*_bytes` of disks and interfaces, `*_packets`) are totals since
    /// boot; `mem.*` are levels.
    Metric {
        CpuUser = "cpu.user_s",
        CpuSystem = "cpu.system_s",
        CpuIowait = "cpu.iowait_s",
        CpuIdle = "cpu.idle_s",
        CpuSteal = "cpu.steal_s",
        MemTotal = "mem.total_bytes",
        MemUsed = "mem.used_bytes",
        MemAvailable = "mem.available_bytes",
        MemCached = "mem.cached_bytes",
        DiskRead = "disk.read_bytes",
        DiskWrite = "disk.write_bytes",
        NetRxBytes = "net.rx_bytes",
        NetTxBytes = "net.tx_bytes",
        NetRxPackets = "net.rx_packets",
        NetTxPackets = "net.tx_packets",
    }
}

impl Metric {
    /// The CPU time metrics, in the order the report stacks them.
    pub const CPU_TIMES: [Metric; 5] = [
        Metric::CpuUser,
        Metric::CpuSystem,
        Metric::CpuIowait,
        Metric::CpuIdle,
        Metric::CpuSteal,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_and_is_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &v in all {
                assert_eq!(parse(as_str(v)), Some(v));
                assert!(seen.insert(as_str(v)), "{v:?} twice");
            }
            assert_eq!(parse("no-such-word"), None);
        }
        check(
            CollectorName::ALL,
            CollectorName::as_str,
            CollectorName::parse,
        );
        check(NetSource::ALL, NetSource::as_str, NetSource::parse);
        check(FrameKind::ALL, FrameKind::as_str, FrameKind::parse);
        check(Metric::ALL, Metric::as_str, Metric::parse);
        check(SymbolSource::ALL, SymbolSource::as_str, SymbolSource::parse);
        check(StackEnd::ALL, StackEnd::as_str, StackEnd::parse);
        check(WaitReason::ALL, WaitReason::as_str, WaitReason::parse);
        let stored = String::from("capture");
        assert!(stored == NetSource::Capture);
        assert!(*"recv" != NetSource::Xmit);
    }
}
