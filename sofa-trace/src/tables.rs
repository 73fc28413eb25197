//! The archive's tables. Timestamps are `CLOCK_MONOTONIC` nanoseconds of the
//! recording host (`meta.json` `clock` maps them to wall-clock time);
//! addresses are virtual addresses of the sampled process unless the column
//! name says otherwise.

use crate::column::ColumnSpec;
use crate::{Table, table};

table! {
    /// One row per CPU sample (or other sampled event) of the traced process tree.
    pub struct Sample in "samples" {
        /// CLOCK_MONOTONIC time of the sample, ns.
        pub time_ns: u64,
        /// Process id (thread group id).
        pub pid: u32,
        /// Thread id.
        pub tid: u32,
        /// CPU the sample was taken on.
        pub cpu: u32,
        /// Innermost node of the call stack in `stacks`; null when the kernel gave no call chain.
        pub stack_id: Option<u64>,
        /// Index into meta.json `events` (which event produced the sample).
        pub event: u32,
        /// Sample weight: the event period (ns for cpu-clock, count for hardware events).
        pub period: u64,
    }
}

table! {
    /// Call stacks as a prefix tree: each node is one frame plus the node of its caller.
    pub struct StackNode in "stacks" {
        /// Id of this node; samples refer to their innermost node.
        pub stack_id: u64,
        /// Node of the caller; null for the outermost frame.
        pub parent_id: Option<u64>,
        /// The frame at this position, in `frames`.
        pub frame_id: u64,
    }
}

table! {
    /// One row per distinct sampled code address.
    pub struct Frame in "frames" {
        /// Id referenced by `stacks` and `symbols`.
        pub frame_id: u64,
        /// Process whose address space the address belongs to (0 for kernel frames).
        pub pid: u32,
        /// Virtual address (return address for callers, instruction pointer for the leaf).
        pub address: u64,
        /// `user`, `kernel` or `jit`.
        pub kind: String,
        /// Mapping holding the address, in `mappings`; null when unknown.
        pub mapping_id: Option<u64>,
        /// Address relative to the start of the mapped file (what symbol tables use).
        pub file_offset: Option<u64>,
    }
}

table! {
    /// Memory mappings of executable code, from mmap records.
    pub struct Mapping in "mappings" {
        /// Id referenced by `frames`.
        pub mapping_id: u64,
        /// Process that mapped it.
        pub pid: u32,
        /// When it was mapped, ns.
        pub time_ns: u64,
        /// First virtual address.
        pub start: u64,
        /// One past the last virtual address.
        pub end: u64,
        /// Offset in the file of `start`.
        pub pgoff: u64,
        /// Path of the mapped file, or a pseudo name such as `[vdso]`.
        pub path: String,
        /// GNU build-id in lowercase hex, when known.
        pub build_id: Option<String>,
    }
}

table! {
    /// Resolved symbols, one row per (frame, inline level); resolved at the end of recording.
    pub struct Symbol in "symbols" {
        /// Frame this symbol describes.
        pub frame_id: u64,
        /// 0 for the real function; 1.. for functions inlined into it, outermost first.
        pub inline_depth: u32,
        /// Demangled function name.
        pub function: String,
        /// Module (file name of the binary or library, `[kernel]`, `[jit]`).
        pub module: String,
        /// Source file, when debug info had it.
        pub file: Option<String>,
        /// Source line, when debug info had it.
        pub line: Option<u32>,
    }
}

table! {
    /// Process and thread life cycle from the kernel's records: fork, comm, exec, exit.
    pub struct TaskEvent in "tasks" {
        /// When it happened, ns.
        pub time_ns: u64,
        /// `fork`, `comm`, `exec` or `exit`.
        pub kind: String,
        /// Process id.
        pub pid: u32,
        /// Thread id.
        pub tid: u32,
        /// Parent process id (fork only).
        pub ppid: Option<u32>,
        /// Parent thread id (fork only).
        pub ptid: Option<u32>,
        /// Thread name after the event (comm and exec).
        pub comm: Option<String>,
    }
}

table! {
    /// System calls of the traced tree, enter and exit paired into one row.
    pub struct Syscall in "syscalls" {
        /// Entry time, ns.
        pub time_ns: u64,
        /// Time from entry to exit, ns; null when the exit was not seen.
        pub duration_ns: Option<u64>,
        /// Process id.
        pub pid: u32,
        /// Thread id.
        pub tid: u32,
        /// System call number of the recording host's architecture.
        pub nr: u32,
        /// System call name.
        pub name: String,
        /// Return value (negative errno on failure); null when the exit was not seen.
        pub ret: Option<i64>,
        /// First argument (often a file descriptor).
        pub arg0: u64,
        /// Second argument.
        pub arg1: u64,
        /// Third argument (often a size).
        pub arg2: u64,
    }
}

table! {
    /// System-wide counters sampled from /proc, long format.
    pub struct SystemCounter in "system" {
        /// Sample time, ns.
        pub time_ns: u64,
        /// Metric name, e.g. `cpu.user`, `mem.available_bytes`, `disk.read_bytes`, `net.rx_bytes`.
        pub metric: String,
        /// What it is about: `cpu3`, `all`, `nvme0n1`, `eth0`.
        pub device: String,
        /// Value; cumulative counters are stored as read, rates are derived in analysis.
        pub value: f64,
    }
}

table! {
    /// Per-process resource use of the traced tree, sampled from /proc/PID.
    pub struct ProcessCounter in "process_counters" {
        /// Sample time, ns.
        pub time_ns: u64,
        /// Process id.
        pub pid: u32,
        /// Cumulative user CPU time, ns.
        pub utime_ns: u64,
        /// Cumulative system CPU time, ns.
        pub stime_ns: u64,
        /// Resident set size, bytes.
        pub rss_bytes: u64,
        /// Number of threads.
        pub threads: u32,
    }
}

table! {
    /// Per-GPU counters from NVML; a null means the driver did not report that field.
    pub struct GpuCounter in "gpu" {
        /// Sample time, ns.
        pub time_ns: u64,
        /// NVML device index.
        pub gpu: u32,
        /// GPU utilisation, percent.
        pub util_gpu: Option<f64>,
        /// Memory controller utilisation, percent.
        pub util_mem: Option<f64>,
        /// Memory in use, bytes.
        pub mem_used_bytes: Option<u64>,
        /// Total memory, bytes.
        pub mem_total_bytes: Option<u64>,
        /// Power draw, watts.
        pub power_w: Option<f64>,
        /// Temperature, degrees Celsius.
        pub temperature_c: Option<f64>,
        /// SM clock, MHz.
        pub sm_clock_mhz: Option<u32>,
        /// Memory clock, MHz.
        pub mem_clock_mhz: Option<u32>,
        /// PCIe transmit throughput, bytes/s.
        pub pcie_tx_bytes_per_s: Option<u64>,
        /// PCIe receive throughput, bytes/s.
        pub pcie_rx_bytes_per_s: Option<u64>,
        /// NVLink transmit, bytes/s summed over links.
        pub nvlink_tx_bytes_per_s: Option<u64>,
        /// NVLink receive, bytes/s summed over links.
        pub nvlink_rx_bytes_per_s: Option<u64>,
    }
}

table! {
    /// Per-process GPU use of the traced tree, from NVML.
    pub struct GpuProcessCounter in "gpu_processes" {
        /// Sample time, ns.
        pub time_ns: u64,
        /// NVML device index.
        pub gpu: u32,
        /// Process id.
        pub pid: u32,
        /// GPU memory used by the process, bytes.
        pub mem_used_bytes: Option<u64>,
        /// SM utilisation attributed to the process, percent.
        pub sm_util: Option<f64>,
    }
}

table! {
    /// Network packets from net tracepoints and, optionally, header capture.
    pub struct NetEvent in "net" {
        /// When the packet was seen, ns.
        pub time_ns: u64,
        /// `xmit`, `recv` (tracepoints) or `capture` (packet socket).
        pub source: String,
        /// Interface name.
        pub ifname: Option<String>,
        /// Packet length, bytes.
        pub len: u32,
        /// Process the kernel attributed it to, when known.
        pub pid: Option<u32>,
        /// `tcp`, `udp`, ... (capture only).
        pub protocol: Option<String>,
        /// Source address (capture only).
        pub src_addr: Option<String>,
        /// Destination address (capture only).
        pub dst_addr: Option<String>,
        /// Source port (capture only).
        pub src_port: Option<u32>,
        /// Destination port (capture only).
        pub dst_port: Option<u32>,
    }
}

table! {
    /// Python stacks of the traced tree's CPython interpreters, one row per
    /// thread per snapshot (`--py-hz`, default 100 per second). Snapshots are
    /// read from the interpreter's memory without pausing it.
    pub struct PySample in "py_samples" {
        /// CLOCK_MONOTONIC time of the snapshot's start, ns.
        pub time_ns: u64,
        /// How long reading the snapshot took, ns (the stack is from within this window).
        pub read_ns: u64,
        /// Process id.
        pub pid: u32,
        /// OS thread id; 0 when the interpreter did not say which thread it is.
        pub tid: u32,
        /// Innermost node of the Python stack in `py_stacks`; null for a thread with no Python frame.
        pub stack_id: Option<u64>,
        /// Whether the thread held the GIL.
        pub owns_gil: bool,
        /// Whether the thread was running (not waiting) per the OS.
        pub active: bool,
    }
}

table! {
    /// The outermost Python frames (up to 16) of the recorded Python
    /// process's main thread, read `--py-loop-hz` times a second (default
    /// 1000; CPython 3.11-3.13) for step detection: one row where they
    /// changed or one ran its line again, and one for the last read before.
    /// Frames that returned since the last full snapshot are left out.
    pub struct PyOuter in "py_outer" {
        /// CLOCK_MONOTONIC time of the read, ns.
        pub time_ns: u64,
        /// Process id (the main thread's id).
        pub pid: u32,
        /// Innermost node of the frames read, in `py_stacks`; null when none was.
        pub stack_id: Option<u64>,
        /// Bit k (the outermost frame is 0): frame k ran its line again since the previous read — same line, other values in its local variables (a loop whose body is one line, or a new call of the same function).
        pub reran: u32,
    }
}

table! {
    /// Python call stacks as a prefix tree, as `stacks` for native frames.
    pub struct PyStackNode in "py_stacks" {
        /// Id of this node; `py_samples` refer to their innermost node.
        pub stack_id: u64,
        /// Node of the caller; null for the outermost frame.
        pub parent_id: Option<u64>,
        /// The frame at this position, in `py_frames`.
        pub frame_id: u64,
    }
}

table! {
    /// One row per distinct Python frame (function, file, line).
    pub struct PyFrame in "py_frames" {
        /// Id referenced by `py_stacks`.
        pub frame_id: u64,
        /// Function name; the qualified name (`Class.method`) on CPython 3.11 and later.
        pub function: String,
        /// Source file as the interpreter has it.
        pub file: String,
        /// Line being run; 0 when unknown.
        pub line: u32,
        /// Whether C code entered the interpreter for this frame: its eval-loop call runs no frame below it.
        pub entry: bool,
    }
}

table! {
    /// How each unwound stack ended (since 1.4; `--call-graph dwarf|auto` only):
    /// one row per innermost stack node that samples refer to.
    pub struct StackEndRow in "stack_ends" {
        /// Innermost node of the stack in `stacks`.
        pub stack_id: u64,
        /// `root` (complete), `root-late` (complete, outer frames read from the live process), `stack-copy`, `short-copy`, `no-unwind-info`, `bad-frame`, `too-deep`, `frame-pointers`, `no-user-stack`.
        pub end: String,
    }
}

table! {
    /// One row per binary whose sampled addresses were symbolized (since 1.4):
    /// where its names came from, to tell "not symbolized" from "no symbols".
    pub struct Binary in "binaries" {
        /// Path of the file as mapped (`[vdso]` for the vDSO).
        pub path: String,
        /// Its GNU build-id, hex.
        pub build_id: Option<String>,
        /// Richest source of function names: `build-id`, `debuglink`, `minidebuginfo`, `symtab`, `dynsym`, `none`, `unreadable`.
        pub symbols: String,
        /// The detached debug file used, if any.
        pub debug_file: Option<String>,
        /// Whether DWARF gave inlines and file:line.
        pub dwarf: bool,
        /// Distinct sampled addresses in it.
        pub frames: u64,
        /// How many of them got a function name.
        pub named: u64,
    }
}

table! {
    /// Context switches of the traced tree's threads (since 1.5; off with
    /// `--no-off-cpu`): one row when a thread leaves a CPU, with its stack
    /// then, and one when it gets a CPU again. An `out` row followed by the
    /// thread's next `in` row is one wait (off-CPU interval).
    pub struct Switch in "switches" {
        /// When it happened, ns.
        pub time_ns: u64,
        /// Process id.
        pub pid: u32,
        /// Thread id.
        pub tid: u32,
        /// CPU it left or got.
        pub cpu: u32,
        /// Whether the thread left the CPU (else it got one).
        pub out: bool,
        /// Whether it left still runnable (preempted: it waited for a CPU, not an event); `false` on `in` rows.
        pub preempted: bool,
        /// Innermost node of its call stack when it left (kernel and user frames, in `stacks`); null on `in` rows and when none was taken.
        pub stack_id: Option<u64>,
    }
}

table! {
    /// Spans in which a collector recorded nothing on purpose: system calls
    /// coming faster than `--syscall-rate` a second on a CPU are traced in
    /// windows, and the spans between are listed here (or, where most of
    /// them were a spin loop's `sched_yield`, that call alone is left out
    /// from then on: a row with `call`); context switches coming faster
    /// than `--switch-rate` switch-outs a second on a CPU are recorded in
    /// windows too (collector `off_cpu`). Counts and times of such a
    /// collector cover only the time outside these spans: a thread's
    /// switch-out before a span and its switch-in after it prove it waited
    /// only outside the span.
    pub struct Untraced in "untraced" {
        /// Collector that was off (`syscalls`, `off_cpu`).
        pub collector: String,
        /// When it was switched off, ns (after the switch: nothing later is recorded).
        pub start_ns: u64,
        /// When it was switched on again, ns (before the switch: nothing earlier is recorded).
        pub end_ns: u64,
        /// The highest per-CPU rate, calls (or switch-outs) a second, measured in the window before the span.
        pub rate_per_s: u64,
        /// The one system call left untraced in the span (a spin loop's `sched_yield`, filtered out in the kernel while every other call is traced); null when none was traced.
        pub call: Option<String>,
    }
}

table! {
    /// Lost or dropped events, as the kernel or a collector reported them.
    pub struct LostEvents in "lost" {
        /// When the loss was reported, ns.
        pub time_ns: u64,
        /// Collector that lost them (`cpu`, `syscalls`, `net`, ...).
        pub collector: String,
        /// CPU whose buffer overflowed, when per-CPU.
        pub cpu: Option<u32>,
        /// Number of events lost.
        pub count: u64,
    }
}

/// Name, description and columns of one table, for documentation and checks.
pub struct TableSpec {
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: Vec<ColumnSpec>,
}

fn spec<T: Table>() -> TableSpec {
    TableSpec {
        name: T::NAME,
        doc: T::DOC,
        columns: T::columns(),
    }
}

/// Every table of the current format, in documentation order.
pub fn all() -> Vec<TableSpec> {
    vec![
        spec::<Sample>(),
        spec::<StackNode>(),
        spec::<Frame>(),
        spec::<Mapping>(),
        spec::<Symbol>(),
        spec::<Binary>(),
        spec::<StackEndRow>(),
        spec::<TaskEvent>(),
        spec::<Syscall>(),
        spec::<SystemCounter>(),
        spec::<ProcessCounter>(),
        spec::<GpuCounter>(),
        spec::<GpuProcessCounter>(),
        spec::<NetEvent>(),
        spec::<PySample>(),
        spec::<PyStackNode>(),
        spec::<PyFrame>(),
        spec::<PyOuter>(),
        spec::<Switch>(),
        spec::<Untraced>(),
        spec::<LostEvents>(),
    ]
}

/// Markdown reference of every table and column, as embedded in
/// `docs/archive-format.md` (kept in sync by a golden test).
pub fn markdown_reference() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for spec in all() {
        let _ = writeln!(out, "### `{}`\n\n{}\n", spec.name, spec.doc.trim());
        out.push_str("| column | type | nullable | meaning |\n| --- | --- | --- | --- |\n");
        for c in &spec.columns {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                c.name,
                parquet_type(&c.dtype),
                if c.nullable { "yes" } else { "no" },
                c.doc
            );
        }
        out.push('\n');
    }
    out
}

fn parquet_type(dtype: &polars::prelude::DataType) -> &'static str {
    use polars::prelude::DataType;
    match dtype {
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        DataType::String => "string (UTF-8)",
        _ => "other",
    }
}
