//! `sofa record` on Linux.

mod capture;
mod child;
mod collect;
mod collector;
mod cpu;
mod drain;
mod duty;
mod events;
mod gpu;
mod host;
mod net;
mod offcpu;
mod perf;
mod procmaps;
mod pyprobe;
mod python;
mod symbols;
mod sys;
mod syscalls;
mod system;
mod tracepoint;
mod unwind;

use crate::{RecordConfig, RecordError, RecordSummary};
use child::{Child, Exit};
use collector::{Collector, Setup};
use sofa_trace::tables::{LostEvents, Untraced};
use sofa_trace::{ArchiveWriter, CollectorName, ExitInfo, Meta, TraceError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

    // CPython 3.12's trampolines keep no frame pointer and have no unwind
    // tables: unwinding stops at the first Python call. They name Python
    // frames only for frame-pointer chains; unwound stacks get Python
    // frames from the interpreters' memory instead.
    let extra_env = command_env(config, &|var| std::env::var_os(var).is_some());
    archive.meta_mut().command_env = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut child = Child::spawn_stopped(&program, &config.command, &extra_env)?;
    let mut notes = Vec::new();
    let opened = collector::open_all(&mut Setup {
        config,
        pid: child.pid,
        cpus: sys::online_cpus(),
        archive: &mut archive,
        notes: &mut notes,
    });
    let opened = match opened.and_then(|o| archive.write_meta().map(|()| o).map_err(Into::into)) {
        Ok(opened) => opened,
        Err(e) => {
            child.abandon();
            return Err(e);
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    for (spec, collector) in opened {
        match spawn(spec.name, collector, &stop) {
            Ok(handle) => running.push((spec, handle)),
            Err(e) => {
                stop.store(true, Ordering::Release);
                child.abandon();
                return Err(e);
            }
        }
    }

    child::forward_signals_to(child.pid);
    archive.set_provisional(false);
    let released = child.release();
    let exit = match released {
        Ok(()) => child.wait(),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Release);
    let mut stopped = Vec::new();
    for (spec, handle) in running {
        stopped.push((spec, join(spec.name, handle)?));
    }
    let exit = exit?;
    let end_ns = host::monotonic_ns();

    let mut rows = std::collections::BTreeMap::new();
    let mut lost_rows: Vec<LostEvents> = Vec::new();
    let mut lost_total = 0;
    let mut untraced = Vec::new();
    for (spec, collector) in stopped {
        let outcome = collector.finish(&archive)?;
        rows.insert(spec.name, outcome.rows);
        untraced.extend(outcome.untraced);
        notes.extend(outcome.notes);
        let meta = archive.meta_mut();
        if let Some(status) = outcome.status {
            meta.collectors
                .insert(spec.name.as_str().to_owned(), status);
        }
        for (name, status) in outcome.others {
            meta.collectors.insert(name.as_str().to_owned(), status);
        }
        if let Some(losses) = outcome.losses {
            meta.lost
                .insert(spec.name.as_str().to_owned(), losses.total);
            lost_total += losses.total;
            lost_rows.extend(losses.rows);
        }
    }
    let mut lost_out = archive.table::<LostEvents>()?;
    lost_rows
        .sort_by(|a, b| (a.time_ns, &a.collector, a.cpu).cmp(&(b.time_ns, &b.collector, b.cpu)));
    for row in lost_rows {
        lost_out.push(row)?;
    }
    lost_out.finish()?;
    if !untraced.is_empty() {
        let mut table = archive.table::<Untraced>()?;
        untraced.sort_by(|a, b| (a.start_ns, &a.collector).cmp(&(b.start_ns, &b.collector)));
        for row in untraced {
            table.push(row)?;
        }
        table.finish()?;
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
    let duration_ns = end_ns.saturating_sub(meta.clock.start_ns);
    archive.finish()?;

    let rows_of = |name| rows.get(&name).copied().unwrap_or(0);
    Ok(RecordSummary {
        exit_status: exit.status(),
        samples: rows_of(CollectorName::Cpu),
        syscalls: rows_of(CollectorName::Syscalls),
        lost: lost_total,
        duration_ns,
        archive_bytes: dir_size(&config.output),
        output: config.output.clone(),
        notes,
    })
}

type Running = std::thread::JoinHandle<Result<Box<dyn Collector>, TraceError>>;

/// Runs `collector` on a thread of its own, `sofa-NAME`, until `stop`.
fn spawn(
    name: CollectorName,
    mut collector: Box<dyn Collector>,
    stop: &Arc<AtomicBool>,
) -> Result<Running, RecordError> {
    let stop = Arc::clone(stop);
    let thread = format!("sofa-{name}");
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            collector.run(&stop)?;
            Ok(collector)
        })
        .map_err(|e| RecordError::Os {
            what: format!("starting thread {thread}"),
            source: e,
        })
}

fn join(name: CollectorName, handle: Running) -> Result<Box<dyn Collector>, RecordError> {
    match handle.join() {
        Ok(result) => Ok(result?),
        Err(_) => Err(RecordError::Os {
            what: format!("the {name} collector's thread panicked"),
            source: std::io::Error::other("panic"),
        }),
    }
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
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

/// What sofa sets in the command's environment: `PYTHONPERFSUPPORT=1` for
/// frame-pointer stacks (CPython 3.12's trampolines keep no frame pointer
/// and have no unwind tables: unwinding stops at the first Python call;
/// unwound stacks get Python frames from the interpreters' memory
/// instead), and each JIT runtime's perf-map switch not turned off — none
/// that the user's environment (`is_set`) already has.
pub(crate) fn command_env(
    config: &RecordConfig,
    is_set: &impl Fn(&str) -> bool,
) -> Vec<(&'static str, &'static str)> {
    let mut env = Vec::new();
    if config.python_perf && !config.unwinds() {
        env.push(("PYTHONPERFSUPPORT", "1"));
    }
    let off = |name: &str| config.no_jit_maps.iter().any(|n| n == name || n == "all");
    for switch in crate::JIT_SWITCHES.iter().filter(|s| !off(s.name)) {
        env.extend(switch.vars.iter().copied());
    }
    env.retain(|(var, _)| !is_set(var));
    env
}

/// The libraries of the runtimes sofa asked for perf maps, when the maps
/// of this recording are sofa's doing alone: the user's environment has no
/// perf-map switch and the command line no `-X perf` (CPython's own).
pub(crate) fn own_perf_map_libraries(
    config: &RecordConfig,
    is_set: impl Fn(&str) -> bool,
) -> Vec<&'static str> {
    // Every variable that makes a runtime write perf maps.
    let perf_map_vars = crate::JIT_SWITCHES
        .iter()
        .flat_map(|s| s.vars.iter().map(|(var, _)| *var))
        .chain(["PYTHONPERFSUPPORT"]);
    let asked_by_user = perf_map_vars.into_iter().any(&is_set)
        || config
            .command
            .windows(2)
            .any(|w| w[0] == "-X" && w[1].to_string_lossy().starts_with("perf"))
        || config
            .command
            .iter()
            .any(|a| a.to_string_lossy().starts_with("-Xperf"));
    if asked_by_user {
        return Vec::new();
    }
    let set = command_env(config, &is_set);
    let mut libraries: Vec<&'static str> = crate::JIT_SWITCHES
        .iter()
        .filter(|s| s.vars.iter().any(|v| set.contains(v)))
        .flat_map(|s| s.libraries.iter().copied())
        .collect();
    if set.iter().any(|(var, _)| *var == "PYTHONPERFSUPPORT") {
        libraries.extend(crate::PYTHON_PERF_LIBRARIES);
    }
    libraries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(command: &[&str]) -> RecordConfig {
        RecordConfig {
            output: "sofa-out".into(),
            frequency_hz: 999,
            event: None,
            python_perf: true,
            no_jit_maps: Vec::new(),
            python: true,
            py_hz: 100,
            py_loop_hz: 1000,
            call_graph: crate::CallGraph::Auto,
            stack_bytes: crate::DEFAULT_STACK_BYTES,
            debug_dirs: Vec::new(),
            syscalls: true,
            syscall_rate: crate::DEFAULT_SYSCALL_RATE,
            switch_rate: crate::DEFAULT_SWITCH_RATE,
            off_cpu: true,
            net: true,
            net_capture: false,
            gpu: true,
            gpu_hz: 20,
            system: true,
            proc_hz: 10,
            progress: false,
            command: command.iter().map(Into::into).collect(),
        }
    }

    #[test]
    fn perf_map_switches_in_the_command_environment() {
        let unset = |_: &str| false;
        let c = config(&["python3", "train.py"]);
        assert_eq!(
            command_env(&c, &unset),
            [("ONEDNN_JIT_PROFILE", "2"), ("DNNL_JIT_PROFILE", "2")]
        );
        assert_eq!(own_perf_map_libraries(&c, unset)[0], "libtorch_cpu");
        // The user's own value stays, and their maps are theirs.
        let user = |v: &str| v == "ONEDNN_JIT_PROFILE";
        assert_eq!(command_env(&c, &user), [("DNNL_JIT_PROFILE", "2")]);
        assert!(own_perf_map_libraries(&c, user).is_empty());
        let xperf = config(&["python3.12", "-X", "perf", "train.py"]);
        assert!(own_perf_map_libraries(&xperf, unset).is_empty());
        // Turned off, by name or all.
        let mut off = config(&["python3"]);
        off.no_jit_maps = vec!["onednn".into()];
        assert!(command_env(&off, &unset).is_empty());
        assert!(own_perf_map_libraries(&off, unset).is_empty());
        // Frame-pointer stacks get CPython's perf support too.
        let mut fp = config(&["python3"]);
        fp.call_graph = crate::CallGraph::Fp;
        fp.no_jit_maps = vec!["all".into()];
        assert_eq!(command_env(&fp, &unset), [("PYTHONPERFSUPPORT", "1")]);
        assert_eq!(own_perf_map_libraries(&fp, unset), ["python3"]);
    }
}
