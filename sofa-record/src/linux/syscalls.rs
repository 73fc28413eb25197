//! The `syscalls` collector: `raw_syscalls:sys_enter`/`sys_exit` tracepoints
//! for the traced tree only (per-CPU counters on the child, inherited, enabled
//! at exec), paired into one row per call.

use super::collector::{Collector, Losses, OpenError, Outcome, Setup, Spec, nothing_skipped};
use super::drain::Sink;
use super::tracepoint::{FinishSink, Scope, Source, Tracepoints, event_format, open_pair};
use crate::syscalls::{Enter, Exit, Pairer};
use crate::tracefs::{self, EventFormat, Field};
use perf_event_open::sample::record::Record;
use sofa_trace::tables::Syscall;
use sofa_trace::{ArchiveWriter, CollectorName, TableWriter, TraceError};

pub const SPEC: Spec = Spec {
    name: CollectorName::Syscalls,
    what: "system calls",
    switch: "--no-syscalls",
    enabled: |config| config.syscalls,
    open: open_collector,
    skipped: nothing_skipped,
};

/// Counters on the command's tree, enabled by the kernel at its exec like
/// the CPU counters.
fn open_collector(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    let counters = open(setup.pid, setup.cpus).map_err(OpenError::Unavailable)?;
    let sink = SyscallSink::new(setup.archive, counters.layouts)?;
    Ok(Box::new(Tracepoints::new(counters.sources, sink, false)))
}

/// Ring buffer per CPU and event: 2^10 pages (4 MiB), about 40 000 events,
/// since a syscall-heavy program produces hundreds of thousands a second.
const RING_PAGES_EXP: u8 = 10;

pub struct Layout {
    id: Field,
    /// `args` (enter) or `ret` (exit).
    value: Field,
}

fn layout(format: &EventFormat, value: &str) -> Result<Layout, String> {
    let get = |name: &str| {
        format
            .field(name)
            .cloned()
            .ok_or_else(|| format!("tracepoint format lacks `{name}`"))
    };
    Ok(Layout {
        id: get("id")?,
        value: get(value)?,
    })
}

/// Where the syscall number and arguments or return value sit in each record.
pub struct Layouts {
    enter: Layout,
    exit: Layout,
}

/// Counters of both tracepoints on every CPU.
pub struct SyscallCounters {
    /// (tag, counter, sampler); tag = 2 * cpu + (0 enter | 1 exit).
    pub sources: Vec<Source>,
    pub layouts: Layouts,
}

/// Opens the syscall tracepoints for `pid`; `Err` says why they are unavailable.
pub fn open(pid: libc::pid_t, cpus: u32) -> Result<SyscallCounters, String> {
    let enter_fmt = event_format("raw_syscalls", "sys_enter")?;
    let exit_fmt = event_format("raw_syscalls", "sys_exit")?;
    let enter = layout(&enter_fmt, "args")?;
    let exit = layout(&exit_fmt, "ret")?;
    let sources = open_pair(
        [enter_fmt.id, exit_fmt.id],
        Scope::Tree(pid),
        cpus,
        RING_PAGES_EXP,
        "raw_syscalls",
    )?;
    Ok(SyscallCounters {
        sources,
        layouts: Layouts { enter, exit },
    })
}

/// Streaming state of the syscall collector.
pub struct SyscallSink {
    out: TableWriter<Syscall>,
    enter: Layout,
    exit: Layout,
    pairer: Pairer,
    rows: Vec<Syscall>,
    /// Events of this and earlier passes not yet fed to the pairer.
    pending: Vec<Event>,
    /// Every buffer is read after this time, so all events before it are in hand.
    horizon_ns: u64,
    pub events: u64,
    pub losses: Losses,
}

impl SyscallSink {
    pub fn new(archive: &ArchiveWriter, layouts: Layouts) -> Result<Self, TraceError> {
        Ok(SyscallSink {
            out: archive.table()?,
            enter: layouts.enter,
            exit: layouts.exit,
            pairer: Pairer::new(std::env::consts::ARCH),
            rows: Vec::new(),
            pending: Vec::new(),
            horizon_ns: 0,
            events: 0,
            losses: Losses::new(CollectorName::Syscalls),
        })
    }

    fn write_rows(&mut self) -> Result<(), TraceError> {
        for row in self.rows.drain(..) {
            self.out.push(row)?;
        }
        Ok(())
    }

    /// Feeds the pairer, in time order, the events older than `horizon`.
    /// Buffers are per CPU and per event, so only a time-ordered merge lets
    /// a thread's enters and exits alternate as they happened.
    fn feed(&mut self, horizon: u64) -> Result<(), TraceError> {
        self.pending.sort_by_key(Event::time_ns);
        let ready = self.pending.partition_point(|e| e.time_ns() < horizon);
        for event in self.pending.drain(..ready) {
            match event {
                Event::Enter(e) => self.pairer.enter(e, &mut self.rows),
                Event::Exit(x) => self.pairer.exit(x, &mut self.rows),
            }
        }
        self.write_rows()
    }
}

impl FinishSink for SyscallSink {
    /// Flushes calls still open; says how many exits had no enter.
    fn finish(mut self) -> Result<Outcome, TraceError> {
        self.feed(u64::MAX)?;
        let pairer = std::mem::take(&mut self.pairer);
        let orphans = pairer.finish(&mut self.rows);
        self.write_rows()?;
        let summary = self.out.finish()?;
        let mut notes = Vec::new();
        if orphans > 0 {
            notes.push(format!(
                "{orphans} system call exits had no matching entry (lost entries, or \
                 calls in progress when recording began)"
            ));
        }
        Ok(Outcome {
            rows: summary.rows,
            losses: Some(self.losses),
            notes,
            status: None,
        })
    }
}

impl Sink for SyscallSink {
    fn handle(&mut self, tag: u32, record: Record) -> Result<(), TraceError> {
        let is_exit = tag % 2 == 1;
        match record {
            Record::Sample(s) => {
                let (Some(raw), Some(task)) = (s.raw.as_deref(), s.record_id.task.as_ref()) else {
                    return Ok(());
                };
                let time_ns = s.record_id.time.unwrap_or(0);
                let layout = if is_exit { &self.exit } else { &self.enter };
                let Some(nr) = tracefs::read_int(raw, &layout.id) else {
                    return Ok(());
                };
                let nr = nr as u32;
                self.events += 1;
                if is_exit {
                    let ret = tracefs::read_int(raw, &layout.value).unwrap_or(0);
                    let exit = Exit {
                        time_ns,
                        pid: task.pid,
                        tid: task.tid,
                        nr,
                        ret,
                    };
                    self.pending.push(Event::Exit(exit));
                } else {
                    let arg = |i| tracefs::read_u64_elem(raw, &layout.value, i).unwrap_or(0);
                    let enter = Enter {
                        time_ns,
                        pid: task.pid,
                        tid: task.tid,
                        nr,
                        args: [arg(0), arg(1), arg(2)],
                    };
                    self.pending.push(Event::Enter(enter));
                }
            }
            other => self.losses.count(tag / 2, &other),
        }
        Ok(())
    }

    fn begin_pass(&mut self) {
        self.horizon_ns = super::host::monotonic_ns();
    }

    fn tick(&mut self) -> Result<(), TraceError> {
        self.feed(self.horizon_ns)?;
        self.out.flush_if_due()
    }
}

enum Event {
    Enter(Enter),
    Exit(Exit),
}

impl Event {
    fn time_ns(&self) -> u64 {
        match self {
            Event::Enter(e) => e.time_ns,
            Event::Exit(x) => x.time_ns,
        }
    }
}
