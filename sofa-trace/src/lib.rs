//! The sofa archive: what a recording leaves on disk and what analysis reads.
//!
//! An archive is a directory holding `meta.json` and one sub-directory per
//! table, each a set of Parquet files (see `docs/archive-format.md`). This
//! crate is deliberately portable: it makes no Linux-specific calls, so an
//! archive recorded on a cluster node can be read on a laptop.
//!
//! Crash safety comes from the layout rather than from the Parquet writer:
//! while recording, each flush writes a *complete* part file (footer and all)
//! under a temporary name and renames it into place, so a recorder killed at
//! any instant leaves only whole parts plus at most one ignorable `.tmp`.

pub mod column;
mod error;
pub mod golden;
mod meta;
mod output;
pub mod quiet;
mod reader;
pub mod synthetic;
pub mod tables;
pub mod vocab;
mod writer;

pub use column::{ColumnValue, Table};
pub use error::TraceError;
pub use meta::{
    ClockInfo, CollectorState, CollectorStatus, EventInfo, ExitInfo, FORMAT_MINOR, FORMAT_VERSION,
    GpuInfo, HostInfo, Meta, RecordingStatus, SamplingInfo, TableInfo,
};
pub use output::{FORMAT_MARKER, LOCK_FILE, PREVIOUS_DIR};
pub use reader::{Archive, CallRef, PacketRef, SampleRef, Warning};
pub use vocab::{CollectorName, FrameKind, Metric, NetSource, StackEnd, SymbolSource, WaitReason};
pub use writer::{ArchiveWriter, FlushPolicy, TableSummary, TableWriter};

/// Re-exported so that downstream crates use the same polars as the archive.
pub use polars;

/// Name of the metadata file at the root of every archive.
pub const META_FILE: &str = "meta.json";

/// Directory of copied JIT symbol maps (`perf-PID.map`) inside an archive.
pub const JIT_MAPS_DIR: &str = "jitmaps";
