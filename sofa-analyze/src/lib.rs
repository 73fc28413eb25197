//! Analysis of sofa archives. Works offline: it reads only the archive,
//! never the profiled binaries, perf or NVML.

mod breakdown;
mod fasthash;
mod functions;
mod gaps;
mod gpu;
mod hints;
mod labels;
mod multi;
mod net;
mod overlap;
mod phases;
mod python;
mod render;
mod sample;
mod silhouette;
mod spin;
mod steps;
mod summary;
mod swarms;
mod syscalls;
mod system;
mod tasks;
mod unwinding;
mod varint;
mod views;
mod waitlist;
mod waits;

/// A CPU sample of thread 1 of process 1 at `time_ns` in stack `stack`
/// (1 ms period), for the unit tests.
#[cfg(test)]
pub(crate) fn test_sample(time_ns: u64, stack: u64) -> Sample {
    Sample::new(time_ns, Some(stack), 1, 1)
}

/// A system call of thread `tid` of process 1 at `time_ns`, for tests.
#[cfg(test)]
pub(crate) fn test_syscall(
    time_ns: u64,
    tid: u32,
    name: &str,
    duration_ns: Option<u64>,
) -> sofa_trace::tables::Syscall {
    sofa_trace::tables::Syscall {
        time_ns,
        duration_ns,
        pid: 1,
        tid,
        nr: 0,
        name: name.to_owned(),
        ret: Some(0),
        arg0: 0,
        arg1: 0,
        arg2: 0,
    }
}

pub use breakdown::{ByName, StepBreakdown};
pub use fasthash::StackMap;
pub use functions::{FunctionRow, Functions, ModuleRow, modules, top_functions};
pub use gaps::Gaps;
pub use gpu::{GpuRow, gpu_table};
pub use hints::{Hint, Severity, hints};
pub use labels::{FunctionId, SwarmId};
pub use multi::{MergedFunction, MultiAnalysis, RankRow, merge};
pub use net::{Flow, HostPair, InterfaceTraffic, NetSummary, Packet, Packets, net_summary};
pub use phases::{Phase, PhaseRow, PhaseSummary};
pub use python::{PY_MODULE_PREFIX, PythonSummary};
pub use render::{ExportError, export, render_json, render_multi_text, render_text};
pub use sample::{Sample, Samples};
pub use silhouette::{distance, silhouette, weighted_silhouette};
pub use spin::{Oversubscription, Pool, PoolSpin, SpinSummary, SpinThread};
pub use steps::{Steps, StreamEvidence};
pub use summary::{
    Analysis, CollectorJson, Options, RunSummary, analyze, analyze_with, analyze_with_views,
    folded_stacks,
};
pub use swarms::{Swarm, find_swarms};
pub use syscalls::{Call, Calls, FutexWait, SyscallRow, syscall_table};
pub use system::{DiskRow, InterfaceRow, SystemSummary, system_summary};
pub use tasks::{ProcessRow, ThreadRow};
pub use unwinding::StackSummary;
pub use views::{
    CpuSeries, Folded, GpuSeries, PhaseBins, Scatter, ScatterFunction, Series, Timeline, Views,
};
pub use waitlist::WaitList;
pub use waits::{LockRow, LoopWaits, ReasonRow, ThreadWaits, Wait, WaitStackRow, WaitSummary};

/// The error of a table read again that no longer holds what the first
/// read found: fewer rows, or a `new` name.
pub(crate) fn changed_while_analysed(
    path: std::path::PathBuf,
    (read, first): (u64, u64),
    rows: &str,
    new: Option<String>,
) -> sofa_trace::TraceError {
    sofa_trace::TraceError::CorruptTable {
        path,
        reason: format!(
            "it changed while it was analysed ({read} {rows} read again, {first} at first{})",
            new.map_or(String::new(), |n| format!("; {n} is new"))
        ),
    }
}

/// Errors of analysis; reading the archive is the only thing that can fail so far.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Archive(#[from] sofa_trace::TraceError),
}
