//! The one lifecycle every collector follows, and the registry of collectors.
//!
//! A collector is opened while the command is stopped before its `exec`
//! (so per-task counters are armed when it starts), runs on its own thread
//! until the command has ended, and is finished once every collector has
//! stopped. Adding one is a new file with a [`Spec`] and one line in
//! [`REGISTRY`]; the recorder does the rest: statuses in `meta.json`, the
//! thread, lost events, notes.

use super::{cpu, gpu, net, python, syscalls, system};
use crate::{RecordConfig, RecordError};
use perf_event_open::sample::record::{Record, RecordId};
use sofa_trace::tables::{LostEvents, Untraced};
use sofa_trace::{ArchiveWriter, CollectorName, CollectorState, CollectorStatus, TraceError};
use std::sync::atomic::AtomicBool;

/// Every collector, in the order they are opened, run and finished. The CPU
/// sampler comes first: without it there is no recording.
pub const REGISTRY: &[Spec] = &[
    cpu::SPEC,
    syscalls::SPEC,
    system::SPEC,
    gpu::SPEC,
    net::SPEC,
    python::SPEC,
];

/// How the recorder knows a collector.
pub struct Spec {
    /// Its name in `meta.json` (`collectors`, `lost`) and in the `lost` table.
    pub name: CollectorName,
    /// What it records, in words, for "… not available (reason)".
    pub what: &'static str,
    /// How the user turns it off (or on), stored as the reason of `disabled`.
    pub switch: &'static str,
    /// Whether the configuration asks for it.
    pub enabled: fn(&RecordConfig) -> bool,
    /// Opens it on the stopped command.
    pub open: fn(&mut Setup) -> Result<Box<dyn Collector>, OpenError>,
    /// Called instead of `open` when it is disabled or unavailable: sets the
    /// status of collectors that only run through this one.
    pub skipped: fn(&mut Setup),
}

/// A running collector.
pub trait Collector: Send {
    /// Reads on the collector's own thread until `stop` is set, then once
    /// more so nothing recorded before the command ended is left behind.
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError>;

    /// Finishes its tables once every collector has stopped.
    fn finish(self: Box<Self>, archive: &ArchiveWriter) -> Result<Outcome, TraceError>;
}

/// What a finished collector reports.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows of its main table (samples, system calls, packets, readings).
    pub rows: u64,
    /// Events it lost, with one `lost` row per report; both empty for a
    /// collector that cannot lose any.
    pub losses: Option<Losses>,
    /// Worth a line each in the summary.
    pub notes: Vec<String>,
    /// Replaces its `ok` status (e.g. to say what it could not get).
    pub status: Option<CollectorStatus>,
    /// When it recorded less than it was asked to (`untraced` rows).
    pub untraced: Vec<Untraced>,
    /// Statuses of collectors that run through this one (`off_cpu`
    /// through `cpu`), where they have something to say.
    pub others: Vec<(CollectorName, CollectorStatus)>,
}

/// Why a collector did not open.
#[derive(Debug)]
pub enum OpenError {
    /// Not available here (no driver, no tracefs, no permission): the
    /// recording goes on and the archive says why.
    Unavailable(String),
    /// The recording cannot go on.
    Fatal(RecordError),
}

impl From<RecordError> for OpenError {
    fn from(e: RecordError) -> Self {
        OpenError::Fatal(e)
    }
}

impl From<TraceError> for OpenError {
    fn from(e: TraceError) -> Self {
        OpenError::Fatal(e.into())
    }
}

/// What a collector may use and set while it opens.
pub struct Setup<'a> {
    pub config: &'a RecordConfig,
    /// The command, stopped before its `exec`.
    pub pid: libc::pid_t,
    pub cpus: u32,
    pub archive: &'a mut ArchiveWriter,
    pub notes: &'a mut Vec<String>,
}

impl Setup<'_> {
    pub fn set_status(&mut self, name: CollectorName, status: CollectorStatus) {
        self.archive
            .meta_mut()
            .collectors
            .insert(name.as_str().to_owned(), status);
    }

    /// Records that `name` is unavailable, with a note for the summary.
    pub fn unavailable(&mut self, name: CollectorName, what: &str, reason: String) {
        self.notes.push(format!("{what}: not available ({reason})"));
        self.set_status(
            name,
            CollectorStatus::with(CollectorState::Unavailable, reason),
        );
    }
}

/// Lost events reported in a collector's ring buffers: a total and one
/// `lost` row per report.
#[derive(Debug)]
pub struct Losses {
    collector: CollectorName,
    pub total: u64,
    pub rows: Vec<LostEvents>,
}

impl Losses {
    pub fn new(collector: CollectorName) -> Losses {
        Losses {
            collector,
            total: 0,
            rows: Vec::new(),
        }
    }

    /// Counts `record`, read from the ring buffer of `cpu`, if it reports
    /// lost events (other records are ignored).
    pub fn count(&mut self, cpu: u32, record: &Record) {
        let time = |id: &Option<RecordId>| id.as_ref().and_then(|r| r.time);
        match record {
            Record::LostRecords(l) => self.add(cpu, l.lost_records, time(&l.record_id)),
            Record::LostSamples(l) => self.add(cpu, l.lost_samples, time(&l.record_id)),
            _ => {}
        }
    }

    /// A loss of `count` events in the ring buffer of `cpu`.
    pub fn add(&mut self, cpu: u32, count: u64, time_ns: Option<u64>) {
        self.total += count;
        self.rows.push(LostEvents {
            time_ns: time_ns.unwrap_or(0),
            collector: self.collector.as_str().to_owned(),
            cpu: Some(cpu),
            count,
        });
    }
}

/// A collector opened, with its spec.
pub type Opened = (&'static Spec, Box<dyn Collector>);

/// Opens every enabled collector of the registry. A fatal error stops the
/// recording; an unavailable collector is recorded as such.
pub fn open_all(setup: &mut Setup) -> Result<Vec<Opened>, RecordError> {
    let mut opened = Vec::new();
    for spec in REGISTRY {
        if !(spec.enabled)(setup.config) {
            setup.set_status(
                spec.name,
                CollectorStatus::with(CollectorState::Disabled, spec.switch),
            );
            (spec.skipped)(setup);
            continue;
        }
        match (spec.open)(setup) {
            Ok(collector) => {
                // An `open` that had something to say set the status itself.
                setup
                    .archive
                    .meta_mut()
                    .collectors
                    .entry(spec.name.as_str().to_owned())
                    .or_insert_with(CollectorStatus::ok);
                opened.push((spec, collector));
            }
            Err(OpenError::Unavailable(reason)) => {
                setup.unavailable(spec.name, spec.what, reason);
                (spec.skipped)(setup);
            }
            Err(OpenError::Fatal(e)) => return Err(e),
        }
    }
    Ok(opened)
}

/// A `skipped` for collectors nothing rides on.
pub fn nothing_skipped(_: &mut Setup) {}
