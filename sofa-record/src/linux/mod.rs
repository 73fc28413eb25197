//! `sofa record` on Linux.

mod capture;
mod child;
mod collect;
mod drain;
mod host;
mod net;
mod perf;
mod procmaps;
mod symbols;
mod syscalls;
mod system;
mod tracepoint;

use crate::{RecordConfig, RecordError, RecordSummary};
use child::{Child, Exit};
use collect::Collector;
use perf::CpuSampler;
use sofa_trace::tables::LostEvents;
use sofa_trace::{
    ArchiveWriter, CollectorState, CollectorStatus, EventInfo, ExitInfo, Meta, SamplingInfo,
    TraceError,
};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn record(config: &RecordConfig) -> Result<RecordSummary, RecordError> {
    let Some(program) = config.command.first() else {
        return Err(RecordError::CommandNotFound(String::new()));
    };
    let program = child::resolve(program)?;

    let mut meta = Meta::new(
        config
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    );
    meta.host = host::host_info();
    meta.clock = host::clock_info();
    let mut archive = ArchiveWriter::create(&config.output, meta)?;
    // Until the command runs, a failure leaves no stub: the directory is
    // as it was, with an archive it held put back.
    archive.set_provisional(true);

    let extra_env: &[(&str, &str)] = if config.python_perf {
        &[("PYTHONPERFSUPPORT", "1")]
    } else {
        &[]
    };
    let mut child = Child::spawn_stopped(&program, &config.command, extra_env)?;
    let opened = match perf::open(child.pid, config.frequency_hz, config.event.as_deref()) {
        Ok(opened) => opened,
        Err(e) => {
            child.abandon();
            return Err(e);
        }
    };
    let mut notes = opened.notes.clone();
    if let Some(fallback) = &opened.chosen.fallback {
        notes.push(fallback.clone());
    }
    {
        let meta = archive.meta_mut();
        meta.sampling = Some(SamplingInfo {
            event: opened.chosen.name.to_owned(),
            frequency_hz: config.frequency_hz,
            fallback: opened.chosen.fallback.clone(),
        });
        meta.events = vec![EventInfo {
            name: opened.chosen.name.to_owned(),
            period_unit: opened.chosen.period_unit.to_owned(),
        }];
        let cpu_status = if opened.notes.is_empty() {
            CollectorStatus::ok()
        } else {
            CollectorStatus::with(CollectorState::Ok, opened.notes.join("; "))
        };
        meta.collectors.insert("cpu".into(), cpu_status);
    }

    let syscall_counters = open_collector(
        &mut archive,
        &mut notes,
        ("syscalls", "system calls", config.syscalls, "--no-syscalls"),
        || syscalls::open(child.pid, perf::online_cpus()),
    );
    archive.write_meta()?;

    let stop = Arc::new(AtomicBool::new(false));
    let collector = Collector::new(&archive)?;
    let progress = config.progress && std::io::stderr().is_terminal();
    let cpu_reader = {
        let stop = Arc::clone(&stop);
        let dir = config.output.clone();
        spawn("sofa-cpu", move || {
            read_cpu(opened.samplers, collector, &stop, progress.then_some(&*dir))
        })?
    };
    let system_reader = match open_collector(
        &mut archive,
        &mut notes,
        ("system", "/proc counters", config.system, "--no-system"),
        || Ok(()),
    ) {
        Some(()) => {
            let sampler = system::SystemSampler::new(&archive, child.pid as u32)?;
            let stop = Arc::clone(&stop);
            let hz = config.proc_hz;
            Some(spawn("sofa-system", move || {
                system::run(sampler, hz, &stop)
            })?)
        }
        None => None,
    };
    let gpu_reader = match open_collector(
        &mut archive,
        &mut notes,
        ("gpu", "GPU counters", config.gpu, "--no-gpu"),
        crate::gpu::open,
    ) {
        Some((nvml, gpus)) => {
            let count = gpus.len() as u32;
            archive.meta_mut().gpus = gpus;
            let mut sampler = crate::gpu::GpuSampler::new(&archive, nvml, count)?;
            let stop = Arc::clone(&stop);
            let (hz, root) = (config.gpu_hz.max(1), child.pid as u32);
            Some(spawn("sofa-gpu", move || {
                let period = Duration::from_nanos(1_000_000_000 / hz);
                let traced = |pid| system::in_tree(pid, root);
                while !stop.load(Ordering::Acquire) {
                    let started = Instant::now();
                    sampler.sample(host::monotonic_ns(), &traced)?;
                    std::thread::sleep(period.saturating_sub(started.elapsed()));
                }
                sampler.sample(host::monotonic_ns(), &traced)?;
                sampler.finish()
            })?)
        }
        None => None,
    };
    let net_counters = open_collector(
        &mut archive,
        &mut notes,
        ("net", "network traffic", config.net, "--no-net"),
        || net::open(perf::online_cpus()),
    );
    let capture = open_collector(
        &mut archive,
        &mut notes,
        (
            "net_capture",
            "packet headers",
            config.net_capture,
            "off by default; --net-capture",
        ),
        || match &net_counters {
            Some(_) => capture::open(),
            None => Err("needs the net collector".to_owned()),
        },
    );
    let net_reader = match net_counters {
        Some(counters) => {
            let sink = net::NetSink::new(&archive, counters.layouts, capture)?;
            Some(spawn_tracepoint_reader(
                "sofa-net",
                counters.sources,
                sink,
                &stop,
                true,
            )?)
        }
        None => None,
    };
    archive.write_meta()?;
    let syscall_reader = match syscall_counters {
        Some(counters) => {
            let sink = syscalls::SyscallSink::new(&archive, counters.layouts)?;
            // Enabled by the kernel at the command's exec, like the CPU counters.
            Some(spawn_tracepoint_reader(
                "sofa-syscalls",
                counters.sources,
                sink,
                &stop,
                false,
            )?)
        }
        None => None,
    };

    child::forward_signals_to(child.pid);
    archive.set_provisional(false);
    let released = child.release();
    let exit = match released {
        Ok(()) => child.wait(),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Release);
    let collector = join(cpu_reader)?;
    let syscall_sink = syscall_reader.map(join).transpose()?;
    if let Some(sampler) = system_reader.map(join).transpose()? {
        sampler.finish()?;
    }
    if let Some((_, missing)) = gpu_reader.map(join).transpose()?
        && !missing.is_empty()
    {
        let fields: Vec<&str> = missing.into_iter().collect();
        let reason = format!("not reported by this driver/GPU: {}", fields.join(", "));
        notes.push(format!("GPU counters: {reason}"));
        set_collector(
            &mut archive,
            "gpu",
            CollectorStatus::with(CollectorState::Ok, reason),
        );
    }
    let exit = exit?;
    let end_ns = host::monotonic_ns();

    let mut finished = collector.finish_streams()?;
    let mut lost_rows = std::mem::take(&mut finished.lost_rows);
    let (syscalls_written, syscalls_lost) = match syscall_sink {
        Some(sink) => {
            let lost = sink.losses.total;
            let (rows, orphans, rows_lost) = sink.finish()?;
            if orphans > 0 {
                notes.push(format!(
                    "{orphans} system call exits had no matching entry (lost entries, or \
                     calls in progress when recording began)"
                ));
            }
            lost_rows.extend(rows_lost);
            (rows, Some(lost))
        }
        None => (0, None),
    };
    let net_lost = match net_reader.map(join).transpose()? {
        Some(sink) => {
            let lost = sink.losses.total;
            let (_, rows_lost) = sink.finish()?;
            lost_rows.extend(rows_lost);
            Some(lost)
        }
        None => None,
    };
    let mut lost_out = archive.table::<LostEvents>()?;
    lost_rows
        .sort_by(|a, b| (a.time_ns, &a.collector, a.cpu).cmp(&(b.time_ns, &b.collector, b.cpu)));
    for row in lost_rows {
        lost_out.push(row)?;
    }
    lost_out.finish()?;
    let sym = symbols::write(&archive, &finished)?;
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

    let meta = archive.meta_mut();
    meta.end_ns = Some(end_ns);
    meta.exit = Some(match exit {
        Exit::Code(c) => ExitInfo {
            code: Some(c),
            signal: None,
        },
        Exit::Signal(s) => ExitInfo {
            code: None,
            signal: Some(s),
        },
    });
    meta.lost.insert("cpu".into(), finished.lost);
    if let Some(lost) = syscalls_lost {
        meta.lost.insert("syscalls".into(), lost);
    }
    if let Some(lost) = net_lost {
        meta.lost.insert("net".into(), lost);
    }
    let duration_ns = end_ns.saturating_sub(meta.clock.start_ns);
    archive.finish()?;

    Ok(RecordSummary {
        exit_status: exit.status(),
        samples: finished.sample_count,
        syscalls: syscalls_written,
        lost: finished.lost + syscalls_lost.unwrap_or(0) + net_lost.unwrap_or(0),
        duration_ns,
        archive_bytes: dir_size(&config.output),
        output: config.output.clone(),
        notes,
    })
}

fn set_collector(archive: &mut ArchiveWriter, name: &str, status: CollectorStatus) {
    archive
        .meta_mut()
        .collectors
        .insert(name.to_owned(), status);
}

/// Opens a collector the user may have switched off and that may not be
/// available here, and records which it was: `ok`, `disabled` (naming the
/// switch) or `unavailable` (with the reason, also as a note for the summary).
/// `spec` is (name in meta.json, words for the note, enabled, switch).
fn open_collector<T>(
    archive: &mut ArchiveWriter,
    notes: &mut Vec<String>,
    (name, what, enabled, switch): (&str, &str, bool, &str),
    open: impl FnOnce() -> Result<T, String>,
) -> Option<T> {
    if !enabled {
        set_collector(
            archive,
            name,
            CollectorStatus::with(CollectorState::Disabled, switch),
        );
        return None;
    }
    match open() {
        Ok(opened) => {
            set_collector(archive, name, CollectorStatus::ok());
            Some(opened)
        }
        Err(reason) => {
            notes.push(format!("{what}: not available ({reason})"));
            set_collector(
                archive,
                name,
                CollectorStatus::with(CollectorState::Unavailable, reason),
            );
            None
        }
    }
}

/// A thread draining tracepoint ring buffers into `sink` until `stop`;
/// `enable` turns the counters on first (system-wide ones, which no exec enables).
fn spawn_tracepoint_reader<S: drain::Sink + Send + 'static>(
    name: &str,
    sources: Vec<tracepoint::Source>,
    mut sink: S,
    stop: &Arc<AtomicBool>,
    enable: bool,
) -> Result<std::thread::JoinHandle<Result<S, TraceError>>, RecordError> {
    let stop = Arc::clone(stop);
    spawn(name, move || {
        if enable {
            for (_, counter, _) in &sources {
                let _ = counter.enable();
            }
        }
        let refs: Vec<_> = sources.iter().map(|(tag, _, s)| (*tag, s)).collect();
        drain::drain(&refs, &mut sink, &stop, |_| {})?;
        for (_, counter, _) in &sources {
            let _ = counter.disable();
        }
        Ok(sink)
    })
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, TraceError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, TraceError>>, RecordError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| RecordError::Os {
            what: format!("starting thread {name}"),
            source: e,
        })
}

fn join<T>(handle: std::thread::JoinHandle<Result<T, TraceError>>) -> Result<T, RecordError> {
    let name = handle.thread().name().unwrap_or("reader").to_owned();
    match handle.join() {
        Ok(result) => Ok(result?),
        Err(_) => Err(RecordError::Os {
            what: format!("thread {name} panicked"),
            source: std::io::Error::other("panic"),
        }),
    }
}

/// The CPU reader thread, with the one-line progress display on a terminal.
fn read_cpu(
    samplers: Vec<CpuSampler>,
    mut collector: Collector,
    stop: &AtomicBool,
    progress_dir: Option<&Path>,
) -> Result<Collector, TraceError> {
    let sources: Vec<_> = samplers.iter().map(|s| (s.cpu, &s.sampler)).collect();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    drain::drain(&sources, &mut collector, stop, |c| {
        if let Some(dir) = progress_dir
            && last_progress.elapsed() >= Duration::from_millis(500)
        {
            last_progress = Instant::now();
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K[sofa] {:.1} s  {} samples  {} lost  {}",
                started.elapsed().as_secs_f64(),
                c.sample_count,
                c.lost,
                human_bytes(dir_size(dir))
            );
            let _ = err.flush();
        }
    })?;
    if progress_dir.is_some() {
        eprint!("\r\x1b[2K");
    }
    for s in &samplers {
        let _ = s.counter.disable();
    }
    Ok(collector)
}

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

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
