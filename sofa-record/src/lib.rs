//! Collectors: run the profiled command and stream what it does into an archive.
//!
//! Linux-only code sits behind the one `linux` module; symbolization is
//! portable (it parses bytes) and runs at the end of recording, while the
//! binaries are still present, so that analysis elsewhere needs none of them.

use std::ffi::OsString;
use std::path::PathBuf;

// The one platform boundary: everything that records (perf_event_open,
// tracefs, /proc, NVML, raw system calls) is in `linux`; the parsers below
// take bytes and build anywhere.
#[cfg(target_os = "linux")]
mod linux;
pub mod packet;
pub mod procfs;
pub mod symbolize;
pub mod syscalls;
pub mod tracefs;

/// How user call stacks are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallGraph {
    /// The kernel walks frame pointers: cheap, but the chain stops in the
    /// first library built without them.
    Fp,
    /// Each sample copies the top of the user stack and its registers;
    /// sofa unwinds the copy with the binaries' `.eh_frame` (framehop).
    Dwarf,
    /// Both; per sample the chain that reached the thread's root (else the
    /// deeper one) is kept.
    Auto,
}

impl CallGraph {
    pub fn as_str(self) -> &'static str {
        match self {
            CallGraph::Fp => "fp",
            CallGraph::Dwarf => "dwarf",
            CallGraph::Auto => "auto",
        }
    }
}

impl RecordConfig {
    /// Whether user stacks are unwound from copies (`dwarf`, `auto` on x86-64).
    pub fn unwinds(&self) -> bool {
        self.call_graph != CallGraph::Fp && cfg!(target_arch = "x86_64")
    }
}

/// User stack bytes copied per sample by default: the most a perf record
/// holds (perf's default is 8 KiB). The numpy loop's stacks reach their
/// root in 92 % of samples with 32 KiB and 99.5 % with this, a PyTorch
/// CNN's in 89 % and 92 %, at the same cost (docs/performance.md).
pub const DEFAULT_STACK_BYTES: u32 = 65528;

/// Calls a second per CPU traced in full by default: tracing costs ~0.5 µs
/// a call (enter and exit), so at this rate at most ~1 % of a CPU.
pub const DEFAULT_SYSCALL_RATE: u64 = 20_000;

/// Switch-outs a second per CPU recorded in full by default: four times
/// the busiest second of a CPU in the real training jobs of the step
/// corpus (2 543, PyTorch DDP), while a pipe ping-pong's ~10^6 a second
/// are recorded ~1 % of the time (docs/performance.md).
pub const DEFAULT_SWITCH_RATE: u64 = 10_000;

/// What `sofa record` was asked to do; built by the binary from its flags.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Archive directory. Default `sofa-out`.
    pub output: PathBuf,
    /// Samples per second per CPU. Default 999 (off the 1 kHz tick, as perf does).
    pub frequency_hz: u64,
    /// Sampling event; `None` picks hardware cycles where a PMU exists, else cpu-clock.
    pub event: Option<String>,
    /// Set `PYTHONPERFSUPPORT=1` in the child so CPython 3.12+ writes perf
    /// maps, when stacks are frame-pointer chains (`--call-graph fp`). Default on.
    pub python_perf: bool,
    /// JIT runtimes whose perf-map switch is *not* set in the command's
    /// environment (names of [`JIT_SWITCHES`], or `all`). Default none: each
    /// is set unless the user's environment already has it.
    pub no_jit_maps: Vec<String>,
    /// Read Python stacks of the CPython interpreters in the recorded tree
    /// (`--no-python` turns it off). Default on.
    pub python: bool,
    /// Python snapshots per second per Python process. Default 100.
    pub py_hz: u64,
    /// Reads per second of the main thread's outermost Python frames
    /// (CPython 3.11-3.13); 0: none. Default 1000.
    pub py_loop_hz: u64,
    /// How user call stacks are taken. Default [`CallGraph::Auto`] (the binary's).
    pub call_graph: CallGraph,
    /// Bytes of user stack copied per sample for `dwarf` and `auto`.
    /// Default [`DEFAULT_STACK_BYTES`].
    pub stack_bytes: u32,
    /// Where detached debug files are looked for (by build-id and by
    /// `.gnu_debuglink`), in order. Default `/usr/lib/debug`.
    pub debug_dirs: Vec<std::path::PathBuf>,
    /// Record system calls (`--no-syscalls` turns it off). Default on.
    pub syscalls: bool,
    /// Calls a second on one CPU up to which every system call is traced;
    /// above it the dominant call is left out or all are traced in windows
    /// (the `untraced` table lists both), so tracing does not slow a
    /// call-heavy program down and distort its CPU profile. 0: every call,
    /// always. Default [`DEFAULT_SYSCALL_RATE`].
    pub syscall_rate: u64,
    /// Record context switches with the stack at each switch-out
    /// (`--no-off-cpu` turns it off). Default on.
    pub off_cpu: bool,
    /// Switch-outs a second on one CPU up to which every context switch
    /// is recorded; above it, switches are recorded in windows that keep
    /// to this rate (the `untraced` table lists the spans between them).
    /// 0: every switch, always. Default [`DEFAULT_SWITCH_RATE`].
    pub switch_rate: u64,
    /// Record network packets (net tracepoints, system-wide). Default on.
    pub net: bool,
    /// Also capture packet headers (AF_PACKET) for flows. Default off.
    pub net_capture: bool,
    /// Sample NVIDIA GPUs through NVML where a driver is present. Default on.
    pub gpu: bool,
    /// GPU samples per second. Default 20.
    pub gpu_hz: u64,
    /// Sample /proc (CPU, memory, disk, network, traced processes). Default on.
    pub system: bool,
    /// /proc samples per second. Default 10.
    pub proc_hz: u64,
    /// Show a one-line progress display on stderr (the binary turns it on for terminals).
    pub progress: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// A JIT runtime's documented switch that makes it write
/// `/tmp/perf-PID.map` for the code it generates (nothing else).
pub struct JitSwitch {
    /// What `--no-jit-map NAME` calls it.
    pub name: &'static str,
    /// Variables set in the command's environment.
    pub vars: &'static [(&'static str, &'static str)],
    /// Libraries that hold the runtime (parts of their file names): only
    /// the maps of processes that ran code in one are removed as sofa's.
    pub libraries: &'static [&'static str],
}

/// The JIT runtimes sofa asks for perf maps by default: oneDNN's JIT
/// kernels (PyTorch and TensorFlow on CPU: convolutions, matmuls).
pub const JIT_SWITCHES: &[JitSwitch] = &[JitSwitch {
    name: "onednn",
    // 2: "basic Linux perf integration", the perf map only (6 and 14 add
    // jitdump files under ~/.debug/jit); DNNL_ is the name before oneDNN 2.x.
    vars: &[("ONEDNN_JIT_PROFILE", "2"), ("DNNL_JIT_PROFILE", "2")],
    libraries: &[
        "libtorch_cpu",
        "libdnnl",
        "libmkldnn",
        "libonednn",
        "tensorflow",
    ],
}];

/// `PYTHONPERFSUPPORT`'s libraries, as [`JitSwitch::libraries`].
pub const PYTHON_PERF_LIBRARIES: &[&str] = &["python3"];

/// How the recording went; printed by the binary as its one-line summary.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    /// Exit status for sofa: the command's code, or 128 + signal.
    pub exit_status: i32,
    pub samples: u64,
    /// System calls recorded (paired enter/exit rows).
    pub syscalls: u64,
    pub lost: u64,
    pub duration_ns: u64,
    pub archive_bytes: u64,
    pub output: PathBuf,
    /// Non-fatal problems worth a line each (event fallback, symbolization gaps).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}: command not found")]
    CommandNotFound(String),
    // Each OS error is the variant's source, printed after the message by
    // the binary's `{:#}`: the message does not repeat it.
    #[error("{command}: cannot execute")]
    CannotExecute {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("perf_event_open is not permitted: {0}")]
    PerfPermission(String),
    #[error(
        "unknown event `{0}` (known: cycles, instructions, cpu-clock, task-clock, page-faults, context-switches)"
    )]
    UnknownEvent(String),
    #[error("perf_event_open failed for {what}")]
    Perf {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Archive(#[from] sofa_trace::TraceError),
    #[error("recording needs Linux (perf_event_open); this sofa can analyze and report archives")]
    Unsupported,
}

/// `bytes` for people: "1.5 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Runs `config.command` and records it into `config.output`.
pub fn record(config: &RecordConfig) -> Result<RecordSummary, RecordError> {
    #[cfg(target_os = "linux")]
    {
        linux::record(config)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = config;
        Err(RecordError::Unsupported)
    }
}
