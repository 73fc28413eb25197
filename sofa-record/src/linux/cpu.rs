//! The `cpu` collector: call stacks sampled on every CPU for the command's
//! tree (perf.rs opens the counters, collect.rs turns records into rows), and
//! the symbols of what was sampled, resolved when it finishes.

use super::collect::Streams;
use super::collector::{Collector, OpenError, Outcome, Setup, Spec, nothing_skipped};
use super::events::Event;
use super::perf::{self, CpuSampler};
use super::{dir_size, symbols};
use crate::{CallGraph, human_bytes};
use perf_event_open::sample::record::Record;
use sofa_trace::{
    ArchiveWriter, CollectorName, CollectorState, CollectorStatus, EventInfo, SamplingInfo,
    StackEnd, TraceError,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub const SPEC: Spec = Spec {
    name: CollectorName::Cpu,
    what: "call stacks",
    switch: "always on",
    enabled: |_| true,
    open,
    skipped: nothing_skipped,
};

struct Cpu {
    samplers: Vec<CpuSampler>,
    /// What the status said at open (e.g. user stacks only).
    open_notes: Vec<String>,
    /// Taken by the worker thread while recording, put back at its end.
    streams: Option<Streams>,
    /// Where the archive grows, for the progress line; `None`: no progress line.
    progress: Option<PathBuf>,
    /// Where detached debug files are looked for.
    debug_dirs: Vec<PathBuf>,
    /// When the recording began and the libraries of the JIT runtimes sofa
    /// asked for perf maps (their maps are removed once copied into the
    /// archive); no libraries where the user asked for maps too.
    own_perf_maps: (std::time::SystemTime, Vec<&'static str>),
    /// Switch-outs a second per CPU above which switches are recorded in
    /// windows (`--switch-rate`).
    switch_rate: u64,
    cpus: usize,
    /// When switches were not recorded, and what the `off_cpu` status
    /// says then: filled in when the recording ends.
    off_cpu: (Vec<sofa_trace::tables::Untraced>, Option<String>),
}

/// Where the kernel's sampling rate limit is; it lowers it itself when
/// sampling interrupts take too long.
const MAX_RATE_SYSCTL: &str = "/proc/sys/kernel/perf_event_max_sample_rate";

/// The rate to sample at: `requested`, or the kernel's limit `max` where it
/// is lower (the kernel would refuse the counters), with a note saying so.
fn within_max_rate(requested: u64, max: Option<u64>) -> (u64, Option<String>) {
    match max {
        Some(max) if max > 0 && requested > max => (
            max,
            Some(format!(
                "-F {requested} is above kernel.perf_event_max_sample_rate ({max}): sampled at \
                 {max} Hz (raise the limit with `sudo sysctl kernel.perf_event_max_sample_rate=N`)"
            )),
        ),
        _ => (requested, None),
    }
}

fn open(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    let config = setup.config;
    let max = std::fs::read_to_string(MAX_RATE_SYSCTL)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let (frequency_hz, limited) = within_max_rate(config.frequency_hz, max);
    // Stack copies are unwound with x86-64 register rules only.
    let call_graph = if cfg!(target_arch = "x86_64") {
        config.call_graph
    } else {
        if config.call_graph != CallGraph::Fp {
            setup.notes.push(format!(
                "--call-graph {} needs x86-64: frame pointers used",
                config.call_graph.as_str()
            ));
        }
        CallGraph::Fp
    };
    let stacks = perf::Stacks {
        call_graph,
        stack_bytes: config.stack_bytes,
    };
    let mut opened = perf::open(setup.pid, frequency_hz, config.event.as_deref(), stacks)?;
    let off_cpu = super::offcpu::open(setup, opened.kernel, stacks);
    opened.notes.extend(limited);
    setup.notes.extend(opened.notes.iter().cloned());
    if let Some(fallback) = &opened.chosen.fallback {
        setup.notes.push(fallback.clone());
    }
    let meta = setup.archive.meta_mut();
    meta.sampling = Some(SamplingInfo {
        event: opened.chosen.name.to_owned(),
        frequency_hz,
        fallback: opened.chosen.fallback.clone(),
        call_graph: Some(call_graph.as_str().to_owned()),
        stack_bytes: (call_graph != CallGraph::Fp).then_some(config.stack_bytes & !7),
    });
    meta.events = vec![EventInfo {
        name: opened.chosen.name.to_owned(),
        period_unit: opened.chosen.period_unit.to_owned(),
    }];
    if !opened.notes.is_empty() {
        setup.set_status(
            CollectorName::Cpu,
            CollectorStatus::with(CollectorState::Ok, opened.notes.join("; ")),
        );
    }
    let progress = config.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let streams = Streams::new(
        setup.archive,
        call_graph,
        config.stack_bytes,
        !off_cpu.is_empty(),
    )?;
    let mut samplers = opened.samplers;
    samplers.extend(off_cpu);
    Ok(Box::new(Cpu {
        samplers,
        open_notes: opened.notes,
        streams: Some(streams),
        progress: progress.then(|| config.output.clone()),
        debug_dirs: config.debug_dirs.clone(),
        own_perf_maps: (
            std::time::SystemTime::now(),
            super::own_perf_map_libraries(config, |var| std::env::var_os(var).is_some()),
        ),
        switch_rate: config.switch_rate,
        cpus: setup.cpus as usize,
        off_cpu: (Vec::new(), None),
    }))
}

impl Collector for Cpu {
    /// Drains the rings into a worker thread that turns the records into
    /// rows (and unwinds stack copies): the draining never waits for that
    /// work, so a slow stretch of it (the first samples in a library whose
    /// unwind tables are still on disk) costs memory, not lost samples.
    /// With the one-line progress display on a terminal.
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        let sources: Vec<_> = self.samplers.iter().map(|s| (s.cpu, &s.sampler)).collect();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let progress = self.progress.as_deref();
        let mut streams = self.streams.take().expect("the CPU collector runs once");
        let (tx, rx) = std::sync::mpsc::channel::<Item>();
        let (drained, worked, off_cpu) = std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("sofa-cpu-rows".into())
                .spawn_scoped(scope, move || -> Result<Streams, TraceError> {
                    for item in rx {
                        match item {
                            Item::Event(event, tag) => streams.handle(event, tag)?,
                            Item::Tick => streams.flush_if_due()?,
                        }
                    }
                    Ok(streams)
                })
                .map_err(|source| TraceError::Io {
                    path: "sofa-cpu-rows thread".into(),
                    source,
                });
            let mut forward = Forward {
                tx,
                samples: 0,
                lost: 0,
                off_cpu: super::offcpu::Duty::new(self.switch_rate, &self.samplers, self.cpus),
            };
            let drained = super::drain::drain(&sources, &mut forward, stop, |f| {
                f.off_cpu.check();
                if let Some(dir) = progress
                    && last_progress.elapsed() >= Duration::from_millis(500)
                {
                    last_progress = Instant::now();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K[sofa] {:.1} s  {} samples  {} lost  {}",
                        started.elapsed().as_secs_f64(),
                        f.samples,
                        f.lost,
                        human_bytes(dir_size(dir))
                    );
                    let _ = err.flush();
                }
            });
            for s in &self.samplers {
                let _ = s.counter.disable();
            }
            // Closing the channel ends the worker once it has caught up.
            let Forward { tx, off_cpu, .. } = forward;
            drop(tx);
            let off_cpu = off_cpu.end();
            let worked = worker.and_then(|w| w.join().expect("the CPU rows worker does not panic"));
            (drained, worked, off_cpu)
        });
        self.off_cpu = off_cpu;
        if progress.is_some() {
            eprint!("\r\x1b[2K");
        }
        // The worker's error is the cause; a refused send only follows it.
        self.streams = Some(worked?);
        drained
    }

    /// Closes the streams, then resolves the symbols of every sampled
    /// address while the binaries are still there.
    fn finish(self: Box<Self>, archive: &ArchiveWriter) -> Result<Outcome, TraceError> {
        let finished = self
            .streams
            .expect("the streams are back after running")
            .finish_streams()?;
        let sym = symbols::write(archive, &finished, &self.debug_dirs)?;
        let mut notes = Vec::new();
        let (since, libraries) = &self.own_perf_maps;
        if !libraries.is_empty() {
            // Processes that ran code of a runtime sofa asked for maps.
            let pids: std::collections::BTreeSet<u32> = finished
                .frames
                .iter()
                .filter(|f| {
                    f.file
                        .as_ref()
                        .is_some_and(|(path, _)| libraries.iter().any(|l| path.contains(l)))
                })
                .map(|f| f.key.pid)
                .collect();
            if let Err(e) = symbols::remove_own_perf_maps(archive.dir(), pids, *since) {
                notes.push(format!("perf maps sofa caused were not all removed: {e}"));
            }
        }
        // Daemons and orphans the command left behind: the counters close
        // with the command, so what they do from now on is not recorded.
        let alive: Vec<u32> = finished
            .outlived
            .iter()
            .copied()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        if let Some(first) = alive.first() {
            let comm = std::fs::read_to_string(format!("/proc/{first}/comm")).unwrap_or_default();
            notes.push(format!(
                "{} process{} outlived the command and {} not recorded further (e.g. pid {first} {})",
                alive.len(),
                if alive.len() == 1 { "" } else { "es" },
                if alive.len() == 1 { "was" } else { "were" },
                comm.trim()
            ));
        }
        if sym.kernel_hidden {
            notes.push(
                "kernel addresses are hidden (kernel.kptr_restrict): kernel frames unnamed".into(),
            );
        }
        if !sym.unreadable.is_empty() {
            notes.push(format!(
                "{} binaries could not be read for symbols, e.g. {}",
                sym.unreadable.len(),
                sym.unreadable[0]
            ));
        }
        // What the samples lack: in the collector's status as well as the summary.
        let mut gaps = Vec::new();
        if finished.cut_chains > 0 {
            gaps.push(format!(
                "{} of {} samples ({:.1}%) had call chains cut at {} entries \
                 (kernel.perf_event_max_stack): their outermost callers are missing",
                finished.cut_chains,
                finished.sample_count,
                100.0 * finished.cut_chains as f64 / finished.sample_count.max(1) as f64,
                super::perf::MAX_STACK
            ));
        }
        if finished.throttled > 0 {
            gaps.push(format!(
                "the kernel throttled sampling {} times (sampling interrupts over \
                 kernel.perf_cpu_time_max_percent): samples are missing there; record with a lower -F",
                finished.throttled
            ));
        }
        if finished.switches_lost > 0 {
            gaps.push(format!(
                "{} off-CPU records lost (context switches faster than sofa read them): \
                 waits are missing there; --no-off-cpu turns them off",
                finished.switches_lost
            ));
        }
        notes.extend(gaps.iter().cloned());
        let mut status_notes = self.open_notes;
        status_notes.extend(gaps);
        if let Some((line, note)) = unwind_summary(&finished.ends) {
            notes.extend(note);
            status_notes.push(line);
        }
        let status = (!status_notes.is_empty())
            .then(|| CollectorStatus::with(CollectorState::Ok, status_notes.join("; ")));
        let (untraced, off_cpu) = self.off_cpu;
        notes.extend(off_cpu.iter().map(|said| format!("off-CPU waits: {said}")));
        Ok(Outcome {
            rows: finished.sample_count,
            losses: Some(finished.losses),
            notes,
            status,
            untraced,
            others: off_cpu
                .map(|said| {
                    (
                        CollectorName::OffCpu,
                        CollectorStatus::with(CollectorState::Ok, said),
                    )
                })
                .into_iter()
                .collect(),
        })
    }
}

/// What the draining thread hands the worker.
enum Item {
    /// A record of the ring buffer tagged so (its CPU).
    Event(Event, u32),
    /// A pass over the rings ended: flush what is due.
    Tick,
}

/// The draining side: records become events and go to the worker; counts
/// for the progress line.
struct Forward<'a> {
    tx: std::sync::mpsc::Sender<Item>,
    samples: u64,
    lost: u64,
    /// Switch records in windows above `--switch-rate`.
    off_cpu: super::offcpu::Duty<'a>,
}

impl Forward<'_> {
    fn send(&self, item: Item) -> Result<(), TraceError> {
        self.tx.send(item).map_err(|_| TraceError::Io {
            path: "sofa-cpu-rows thread".into(),
            source: std::io::Error::other("stopped"),
        })
    }
}

impl super::drain::Sink for Forward<'_> {
    fn handle(&mut self, tag: u32, record: Record) -> Result<(), TraceError> {
        let event = Event::from(record);
        self.off_cpu.saw(tag, &event);
        match &event {
            Event::Sample { .. } if tag & super::offcpu::TAG == 0 => self.samples += 1,
            Event::Lost { count, .. } => self.lost += count,
            _ => {}
        }
        self.send(Item::Event(event, tag))
    }

    fn tick(&mut self) -> Result<(), TraceError> {
        self.send(Item::Tick)
    }
}

/// How the unwound user stacks ended, as one line for the collector's
/// status ("user stacks unwound: root 97.1%, stack-copy 2.9%"), and a note
/// for the user when fewer than 90 % reached their root.
fn unwind_summary(ends: &BTreeMap<StackEnd, u64>) -> Option<(String, Option<String>)> {
    let total: u64 = ends.values().sum();
    if total == 0 {
        return None;
    }
    let share = |end| 100.0 * ends.get(&end).copied().unwrap_or(0) as f64 / total as f64;
    let mut by_count: Vec<(&StackEnd, &u64)> = ends.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = by_count
        .iter()
        .map(|(end, _)| format!("{end} {:.1}%", share(**end)))
        .collect();
    let line = format!("user stacks unwound: {}", parts.join(", "));
    // A frame-pointer chain `auto` kept is as deep as it goes.
    let complete: f64 = ends
        .keys()
        .filter(|e| e.reached_root() || **e == StackEnd::FramePointers)
        .map(|&e| share(e))
        .sum();
    let note = (complete < 90.0).then(|| {
        let hint = if share(StackEnd::StackCopy) >= 5.0 {
            " (a larger --stack-size copies more of each stack)"
        } else {
            ""
        };
        format!("{line}{hint}")
    });
    Some((line, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_stays_within_the_kernels_limit() {
        assert_eq!(within_max_rate(999, Some(100_000)), (999, None));
        assert_eq!(within_max_rate(100_000, Some(100_000)), (100_000, None));
        let (hz, note) = within_max_rate(50_000, Some(25_000));
        assert_eq!(hz, 25_000);
        assert!(
            note.unwrap()
                .contains("kernel.perf_event_max_sample_rate (25000)")
        );
        assert_eq!(
            within_max_rate(4999, None),
            (4999, None),
            "no sysctl: as asked"
        );
    }
}
