//! The `syscalls` collector: `raw_syscalls:sys_enter`/`sys_exit` tracepoints
//! for the traced tree only (per-CPU counters on the child, inherited, enabled
//! at exec), paired into one row per call.

use super::collector::{Collector, Losses, OpenError, Outcome, Setup, Spec, nothing_skipped};
use super::drain::{Sink, drain};
use super::duty::{Turn, Windows, per_second, switch, untraced};
use super::host::monotonic_ns;
use super::tracepoint::{Scope, Source, event_format, open_pair};
use crate::syscalls::{Enter, Exit, Pairer};
use crate::tracefs::{self, EventFormat, Field};
use perf_event_open::count::Counter;
use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record;
use sofa_trace::tables::{Syscall, Untraced};
use sofa_trace::{
    ArchiveWriter, CollectorName, CollectorState, CollectorStatus, TableWriter, TraceError,
};
use std::sync::atomic::AtomicBool;

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
    let mut samplers = Vec::new();
    let mut handles = Vec::new();
    for (tag, counter, sampler) in counters.sources {
        samplers.push((tag, sampler));
        handles.push(counter);
    }
    let mut sink = SyscallSink::new(setup.archive, counters.layouts, setup.cpus)?;
    sink.counters = handles;
    // "Left out after" counts from the recording's start, as the analysis
    // does.
    sink.duty = Duty::new(
        setup.config.syscall_rate,
        setup.archive.meta().clock.start_ns,
    );
    Ok(Box::new(SyscallCollector { samplers, sink }))
}

/// The rings and their reader, which holds the counters (to turn tracing
/// off while calls come too fast).
struct SyscallCollector {
    samplers: Vec<(u32, Sampler)>,
    sink: SyscallSink,
}

impl Collector for SyscallCollector {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        let refs: Vec<_> = self.samplers.iter().map(|(tag, s)| (*tag, s)).collect();
        drain(&refs, &mut self.sink, stop, SyscallSink::check_duty)?;
        for counter in &self.sink.counters {
            let _ = counter.disable();
        }
        let mut duty = std::mem::replace(&mut self.sink.duty, Duty::new(0, 0));
        duty.end(&mut self.sink);
        self.sink.duty = duty;
        Ok(())
    }

    fn finish(self: Box<Self>, _: &ArchiveWriter) -> Result<Outcome, TraceError> {
        let said = self.sink.duty.said(&self.sink);
        let mut outcome = self.sink.finish()?;
        if let Some(said) = said {
            outcome.notes.push(format!("system calls: {said}"));
            outcome.status = Some(CollectorStatus::with(CollectorState::Ok, said));
        }
        Ok(outcome)
    }
}

/// Events read between two looks at the budget within a pass.
const CHECK_EVERY: u64 = 1024;
/// Call numbers counted one by one (x86-64 and arm64 have fewer than 512).
const NUMBERS: usize = 512;
/// A filtered-out call still costs ~45 ns an event (enter and exit) in the
/// calling thread: up to 200 000 calls a second (~2 % of a CPU) one is left
/// out; a faster one (other than `sched_yield`) gets windows, whose gaps
/// cost ~15 ns a call (docs/design.md).
const MAX_FILTERED_PER_S: u64 = 200_000;

/// Tracing in windows ([`Windows`]), and before them, where one call makes
/// most of a storm, that call left out by a kernel filter: every other
/// call stays traced in full.
struct Duty {
    windows: Windows,
    /// Enters per call number read when the window began.
    nr_counts: Vec<u64>,
    /// `sched_yield`, when the filter left it out with another call.
    companion: Option<u32>,
    /// The recording's start.
    origin_ns: u64,
}

impl Duty {
    fn new(limit: u64, origin_ns: u64) -> Duty {
        Duty {
            windows: Windows::new(limit),
            nr_counts: Vec::new(),
            companion: None,
            origin_ns,
        }
    }

    fn check(&mut self, sink: &mut SyscallSink) {
        let counters = &sink.counters;
        match self.windows.look(&sink.enters, |on| switch(counters, on)) {
            Turn::Within => {}
            Turn::NewWindow => self.nr_counts.clone_from(&sink.by_nr),
            Turn::Resumed { since, end, rate } => {
                sink.gap_ends(since, end, rate);
                self.nr_counts.clone_from(&sink.by_nr);
            }
            Turn::Overspent {
                off_ns,
                rate,
                elapsed_ns,
            } => {
                // Mostly one call: leave it out, in the kernel, and trace
                // every other call in full (no gap), where the filter is
                // cheap enough.
                let traced_ns = self.windows.traced_ns();
                if let Some((nr, per_s)) = self.dominant(sink, elapsed_ns, traced_ns)
                    && self.leave_out(sink, nr, per_s, elapsed_ns)
                {
                    return;
                }
                let counters = &sink.counters;
                let since = self.windows.go_off(off_ns, rate, |on| switch(counters, on));
                sink.gap_begins(since);
            }
        }
    }

    /// The call that made at least half of the window's calls, and its rate
    /// (all CPUs), if it may be left out: `sched_yield` always (its
    /// callers only spin), another call while filtering it out costs at
    /// most [`MAX_FILTERED_PER_S`] events a second.
    fn dominant(&self, sink: &SyscallSink, elapsed_ns: u64, traced_ns: u64) -> Option<(u32, u64)> {
        // The kernel sets a counter's filter once (`EEXIST` after).
        if sink.filtered {
            return None;
        }
        let window: Vec<u64> = (0..sink.by_nr.len())
            .map(|nr| self.in_window(sink, nr))
            .collect();
        let total: u64 = window.iter().sum();
        let (nr, &most) = window.iter().enumerate().max_by_key(|&(_, n)| *n)?;
        // Its rate in this window, or over all the traced time if higher
        // (a window that caught the end of a storm says too little).
        let per_s = per_second(most, elapsed_ns).max(per_second(sink.by_nr[nr], traced_ns));
        let spin = Some(nr as u32) == sink.spin_nr;
        (2 * most >= total && most > 0 && (spin || per_s <= MAX_FILTERED_PER_S))
            .then_some((nr as u32, per_s))
    }

    /// Sets the filter leaving out `nr`, and `sched_yield` with it, on
    /// every counter; false where the kernel refused it everywhere. A
    /// counter takes one filter (the kernel refuses to replace it), so the
    /// one set also leaves out the spin loops' call, the storm that comes
    /// most often in training jobs (libgomp's pool), which could not be
    /// left out later: `torch_transformer.py` had `newfstatat` left out
    /// during its imports, then `sched_yield` spun at up to 370 000 calls
    /// a second in 22 windows.
    fn leave_out(&mut self, sink: &mut SyscallSink, nr: u32, per_s: u64, elapsed_ns: u64) -> bool {
        let spin = sink.spin_nr.filter(|&spin| spin != nr);
        let filter = std::iter::once(nr)
            .chain(spin)
            .map(|n| format!("id != {n}"))
            .collect::<Vec<_>>()
            .join(" && ");
        let filter = std::ffi::CString::new(filter).expect("no NUL");
        // Whatever the outcome, no counter takes another filter.
        sink.filtered = true;
        let set = sink
            .counters
            .iter()
            .filter(|c| c.with_ftrace_filter(&filter).is_ok())
            .count();
        if set == 0 {
            return false;
        }
        let since = monotonic_ns();
        sink.leave_out(nr, since, per_s);
        if let Some(spin) = spin {
            let rate = per_second(self.in_window(sink, spin as usize), elapsed_ns);
            sink.leave_out(spin, since, rate);
            self.companion = Some(spin);
        }
        self.windows.forgive(&sink.enters, since);
        self.nr_counts.clone_from(&sink.by_nr);
        true
    }

    /// Calls `nr` read since the window began.
    fn in_window(&self, sink: &SyscallSink, nr: usize) -> u64 {
        sink.by_nr[nr] - self.nr_counts.get(nr).copied().unwrap_or(0)
    }

    /// The command has ended (the counters are off): a span still open
    /// ends now.
    fn end(&mut self, sink: &mut SyscallSink) {
        if let Some((since, end, rate)) = self.windows.end() {
            sink.gap_ends(since, end, rate);
        }
    }

    /// What the archive and the user are told, if tracing was ever off.
    fn said(&self, sink: &SyscallSink) -> Option<String> {
        let mut said = Vec::new();
        let companion = self
            .companion
            .and_then(|nr| crate::syscalls::name(std::env::consts::ARCH, nr));
        for gap in &sink.gaps {
            if let Some(name) = &gap.call {
                let after = gap.start_ns.saturating_sub(self.origin_ns) as f64 / 1e9;
                said.push(if Some(name.as_str()) == companion {
                    format!(
                        "{name} left out with it ({} a second; a counter takes one filter)",
                        gap.rate_per_s
                    )
                } else {
                    format!(
                        "{name} left out after {after:.2} s (most of the calls, {} a second)",
                        gap.rate_per_s
                    )
                });
            }
        }
        said.extend(self.windows.said("calls"));
        (!said.is_empty()).then(|| {
            format!(
                "{}: above --syscall-rate {} (0 traces every call)",
                said.join("; "),
                self.windows.limit()
            )
        })
    }
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
    /// Enter events read per CPU, of calls not left out (what [`Duty`]
    /// charges to the budget: a left-out call's events still read were
    /// recorded before its filter).
    enters: Vec<u64>,
    /// Enter events read per call number (numbers below [`NUMBERS`]).
    by_nr: Vec<u64>,
    /// Call numbers the kernel filter leaves out.
    left_out: Vec<u32>,
    /// The counters have their filter (the kernel sets one, once).
    filtered: bool,
    /// `sched_yield`'s number here: a thread pool spinning between
    /// parallel regions (libgomp) calls it hundreds of thousands of times a
    /// second, and nothing else of it needs tracing.
    spin_nr: Option<u32>,
    /// Tracing is off (between a gap's begin and end in time order).
    in_gap: bool,
    /// Events inside a gap (a process exec'd then, which enables its
    /// counters): dropped, as the gap says nothing was traced.
    in_gap_events: u64,
    /// The spans tracing was off.
    gaps: Vec<Untraced>,
    /// Both tracepoints' counters on every CPU (switched by [`Duty`]).
    counters: Vec<Counter>,
    duty: Duty,
    /// Events handled: every [`CHECK_EVERY`] the duty is checked, so a
    /// storm is noticed within a pass over full rings, not after it.
    handled: u64,
}

impl SyscallSink {
    pub fn new(archive: &ArchiveWriter, layouts: Layouts, cpus: u32) -> Result<Self, TraceError> {
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
            enters: vec![0; cpus as usize],
            by_nr: vec![0; NUMBERS],
            left_out: Vec::new(),
            filtered: false,
            spin_nr: crate::syscalls::number(std::env::consts::ARCH, "sched_yield"),
            in_gap: false,
            in_gap_events: 0,
            gaps: Vec::new(),
            counters: Vec::new(),
            duty: Duty::new(0, 0),
            handled: 0,
        })
    }

    /// Lets [`Duty`] look at the calls read so far (after each pass, and
    /// within one every [`CHECK_EVERY`] events).
    fn check_duty(&mut self) {
        let mut duty = std::mem::replace(&mut self.duty, Duty::new(0, 0));
        duty.check(self);
        self.duty = duty;
    }

    /// Tracing went off at `time_ns` (every event before it is in the rings).
    fn gap_begins(&mut self, time_ns: u64) {
        self.pending.push(Event::GapBegins(time_ns));
    }

    /// Tracing, off since `since`, goes on after `time_ns`.
    fn gap_ends(&mut self, since: u64, time_ns: u64, rate: u64) {
        self.pending.push(Event::GapEnds(time_ns));
        self.gaps
            .push(untraced(CollectorName::Syscalls, since, time_ns, rate));
    }

    /// Calls `nr` are filtered out in the kernel from `since` on: the span
    /// ends when the recording does.
    fn leave_out(&mut self, nr: u32, since: u64, rate: u64) {
        let name = crate::syscalls::name(std::env::consts::ARCH, nr)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("syscall_{nr}"));
        self.left_out.push(nr);
        self.gaps.push(Untraced {
            collector: CollectorName::Syscalls.as_str().to_owned(),
            start_ns: since,
            end_ns: u64::MAX,
            rate_per_s: rate,
            call: Some(name),
        });
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
                Event::GapBegins(_) => {
                    self.in_gap = true;
                    self.pairer.gap(&mut self.rows);
                }
                Event::GapEnds(_) => self.in_gap = false,
                _ if self.in_gap => self.in_gap_events += 1,
                Event::Enter(e) => self.pairer.enter(e, &mut self.rows),
                Event::Exit(x) => self.pairer.exit(x, &mut self.rows),
            }
        }
        self.write_rows()
    }
}

impl SyscallSink {
    /// Flushes calls still open; says how many exits had no enter and when
    /// tracing was off.
    fn finish(mut self) -> Result<Outcome, TraceError> {
        self.feed(u64::MAX)?;
        let pairer = std::mem::take(&mut self.pairer);
        let orphans = pairer.finish(&mut self.rows);
        self.write_rows()?;
        let summary = self.out.finish()?;
        let end = self.horizon_ns.max(super::host::monotonic_ns());
        let untraced = self
            .gaps
            .into_iter()
            .map(|gap| Untraced {
                end_ns: gap.end_ns.min(end),
                ..gap
            })
            .collect();
        let mut notes = Vec::new();
        if self.in_gap_events > 0 {
            notes.push(format!(
                "{} system call events of processes that started while tracing was off \
                 were left out",
                self.in_gap_events
            ));
        }
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
            untraced,
            others: Vec::new(),
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
                self.handled += 1;
                if !is_exit {
                    if let Some(n) = self.by_nr.get_mut(nr as usize) {
                        *n += 1;
                    }
                    if !self.left_out.contains(&nr)
                        && let Some(n) = self.enters.get_mut((tag / 2) as usize)
                    {
                        *n += 1;
                    }
                }
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
        if self.handled.is_multiple_of(CHECK_EVERY) {
            self.check_duty();
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
    /// Tracing went off: no event of the traced tree comes until `GapEnds`.
    GapBegins(u64),
    GapEnds(u64),
}

impl Event {
    fn time_ns(&self) -> u64 {
        match self {
            Event::Enter(e) => e.time_ns,
            Event::Exit(x) => x.time_ns,
            Event::GapBegins(t) | Event::GapEnds(t) => *t,
        }
    }
}
