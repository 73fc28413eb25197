//! `sofa record` on Linux.

mod child;
mod collect;
mod host;
mod perf;
mod procmaps;
mod symbols;

use crate::{RecordConfig, RecordError, RecordSummary};
use child::{Child, Exit};
use collect::Collector;
use perf::CpuSampler;
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
    archive.write_meta()?;

    let collector = Collector::new(&archive)?;
    let stop = Arc::new(AtomicBool::new(false));
    let progress = config.progress && std::io::stderr().is_terminal();
    let reader = {
        let stop = Arc::clone(&stop);
        let dir = config.output.clone();
        std::thread::Builder::new()
            .name("sofa-reader".into())
            .spawn(move || drain(opened.samplers, collector, &stop, progress.then_some(&*dir)))
            .map_err(|e| RecordError::Os {
                what: "starting the reader thread".into(),
                source: e,
            })?
    };

    child::forward_signals_to(child.pid);
    let released = child.release();
    let exit = match released {
        Ok(()) => child.wait(),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    let collector = reader.join().map_err(|_| RecordError::Os {
        what: "the reader thread failed".into(),
        source: std::io::Error::other("panic"),
    })??;
    let exit = exit?;
    let end_ns = host::monotonic_ns();

    let finished = collector.finish_streams()?;
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
    let duration_ns = end_ns.saturating_sub(meta.clock.start_ns);
    archive.finish()?;

    Ok(RecordSummary {
        exit_status: exit.status(),
        samples: finished.sample_count,
        lost: finished.lost,
        duration_ns,
        archive_bytes: dir_size(&config.output),
        output: config.output.clone(),
        notes,
    })
}

/// The reader thread: drains every CPU's ring buffer into the archive until
/// told to stop, then drains once more so nothing the kernel wrote is left.
fn drain(
    samplers: Vec<CpuSampler>,
    mut collector: Collector,
    stop: &AtomicBool,
    progress_dir: Option<&Path>,
) -> Result<Collector, TraceError> {
    let mut iters: Vec<_> = samplers
        .iter()
        .map(|s| {
            (
                s.cpu,
                s.sampler.iter().expect("each sampler is iterated once"),
            )
        })
        .collect();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut records = 0usize;
        for (cpu, iter) in iters.iter_mut() {
            for (_, record) in iter.by_ref() {
                collector.handle(record, *cpu)?;
                records += 1;
            }
        }
        collector.flush_if_due()?;
        if let Some(dir) = progress_dir
            && last_progress.elapsed() >= Duration::from_millis(500)
        {
            last_progress = Instant::now();
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K[sofa] {:.1} s  {} samples  {} lost  {}",
                started.elapsed().as_secs_f64(),
                collector.sample_count,
                collector.lost,
                human_bytes(dir_size(dir))
            );
            let _ = err.flush();
        }
        if stopping {
            break;
        }
        if records == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if progress_dir.is_some() {
        eprint!("\r\x1b[2K");
    }
    for s in &samplers {
        let _ = s.counter.disable();
    }
    drop(iters);
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
