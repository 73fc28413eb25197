//! `meta.json`: what was recorded, how, and how far the recording got.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Archive format major version. A reader refuses archives with a larger
/// major version; it reads any smaller or equal one.
pub const FORMAT_VERSION: u32 = 1;
/// Additive revisions (new tables, new columns, new meta fields) within a
/// major version. Older readers ignore what they do not know.
pub const FORMAT_MINOR: u32 = 9;

/// Whether the recorder finished writing the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStatus {
    /// Written when recording starts; still there if the recorder died.
    Recording,
    /// Written last, after every table was flushed and compacted.
    Complete,
}

/// The archive's metadata. Every field a reader may lack in an older archive
/// has a default, so adding fields is a minor format revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Always `sofa-archive` ([`crate::FORMAT_MARKER`]): what lets `sofa
    /// record` tell its own archive, which it may replace, from a user's
    /// directory that happens to hold a `meta.json`. Absent before 1.1.
    #[serde(default)]
    pub format: String,
    pub format_version: u32,
    #[serde(default)]
    pub format_minor: u32,
    /// Version of the sofa that recorded the archive.
    pub sofa_version: String,
    pub status: RecordingStatus,
    /// The profiled command line.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub host: HostInfo,
    #[serde(default)]
    pub clock: ClockInfo,
    /// CLOCK_MONOTONIC time the recording ended, ns; absent while recording.
    #[serde(default)]
    pub end_ns: Option<u64>,
    /// How the profiled command ended; absent while recording.
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    #[serde(default)]
    pub sampling: Option<SamplingInfo>,
    /// Events referred to by `samples.event`, by index.
    #[serde(default)]
    pub events: Vec<EventInfo>,
    /// What each collector did (`cpu`, `syscalls`, `system`, `net`, `gpu`, ...).
    #[serde(default)]
    pub collectors: BTreeMap<String, CollectorStatus>,
    /// GPUs the `gpu` collector saw; `gpu.gpu` indexes them.
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
    /// Lost or dropped events per collector, totals of the `lost` table.
    #[serde(default)]
    pub lost: BTreeMap<String, u64>,
    /// Rows and files of every table, filled in when the archive is complete.
    #[serde(default)]
    pub tables: BTreeMap<String, TableInfo>,
    /// Variables sofa set in the command's environment (perf-map switches
    /// of JIT runtimes, `PYTHONPERFSUPPORT`); absent before 1.6.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub command_env: BTreeMap<String, String>,
}

impl Meta {
    /// Metadata of a recording that is about to start.
    pub fn new(command: Vec<String>) -> Meta {
        Meta {
            format: crate::FORMAT_MARKER.to_owned(),
            format_version: FORMAT_VERSION,
            format_minor: FORMAT_MINOR,
            sofa_version: env!("CARGO_PKG_VERSION").to_owned(),
            status: RecordingStatus::Recording,
            command,
            host: HostInfo::default(),
            clock: ClockInfo::default(),
            end_ns: None,
            exit: None,
            sampling: None,
            events: Vec::new(),
            collectors: BTreeMap::new(),
            gpus: Vec::new(),
            lost: BTreeMap::new(),
            tables: BTreeMap::new(),
            command_env: BTreeMap::new(),
        }
    }

    /// Recording duration in ns, when the recording finished.
    pub fn duration_ns(&self) -> Option<u64> {
        self.end_ns
            .map(|end| end.saturating_sub(self.clock.start_ns))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    pub os: String,
    pub arch: String,
    pub cpus: u32,
}

/// Ties CLOCK_MONOTONIC timestamps to wall-clock time so archives of several
/// hosts can be lined up: `wall_ns = monotonic_ns + realtime_offset_ns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// CLOCK_MONOTONIC at the start of recording, ns.
    pub start_ns: u64,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC at the start, ns.
    pub realtime_offset_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when the command exited normally.
    pub code: Option<i32>,
    /// Signal number, when the command was killed by a signal.
    pub signal: Option<i32>,
}

/// How call stacks were sampled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingInfo {
    /// Event actually used, e.g. `cycles` or `cpu-clock`.
    pub event: String,
    /// Requested samples per second per CPU.
    pub frequency_hz: u64,
    /// Why the requested event was replaced, e.g. "no hardware PMU: cpu-clock used".
    #[serde(default)]
    pub fallback: Option<String>,
    /// How user call stacks were taken: `fp` (frame pointers, the kernel's
    /// chain), `dwarf` (copies of the user stack unwound with `.eh_frame`)
    /// or `auto` (both, the deeper kept); absent before 1.4 (`fp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_graph: Option<String>,
    /// Bytes of user stack copied per sample (`dwarf`, `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_bytes: Option<u32>,
}

/// A GPU as NVML named it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML device index, as in the `gpu` and `gpu_processes` tables.
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// One entry of `events`, referred to by `samples.event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub name: String,
    /// Unit of `samples.period` for this event: `ns` or `count`.
    pub period_unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorState {
    /// Collected as asked.
    Ok,
    /// Could not run on this host (no permission, no driver, ...).
    Unavailable,
    /// Switched off by the user.
    Disabled,
    /// Started but failed part-way; `reason` says how.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorStatus {
    pub status: CollectorState,
    /// Why it is not `ok`, or a note on what it did.
    #[serde(default)]
    pub reason: Option<String>,
}

impl CollectorStatus {
    pub fn ok() -> Self {
        CollectorStatus {
            status: CollectorState::Ok,
            reason: None,
        }
    }
    pub fn with(status: CollectorState, reason: impl Into<String>) -> Self {
        CollectorStatus {
            status,
            reason: Some(reason.into()),
        }
    }
}

/// Rows and files of one table of a complete archive, so a reader can tell
/// a missing or shortened file from an empty table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub rows: u64,
    pub files: Vec<String>,
    /// CRC-32 of each file, as 8 hex digits, checked when the file is read:
    /// a file damaged after recording is an error, never a silently
    /// different analysis. Absent before format 1.2.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crc32: BTreeMap<String, String>,
}
