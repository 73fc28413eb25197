//! What the tracepoint collectors (syscalls, net) share: tracefs, the
//! counter options, opening a pair of tracepoints on every CPU, and the
//! collector that drains them.

use super::collector::{Collector, Outcome};
use super::drain::{Sink, drain};
use crate::tracefs::{self, EventFormat};
use perf_event_open::config::{
    Clock, Cpu, Inherit, OnExecve, Opts, Proc, RecordIdFormat, SampleFormat, SampleOn,
};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;
use perf_event_open::sample::Sampler;
use sofa_trace::{ArchiveWriter, TraceError};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// (tag, counter, sampler); tag = 2 * cpu + which of the pair (0 or 1).
pub type Source = (u32, Counter, Sampler);

/// Finds tracefs, mounting it where it is not (as `perf trace` needs too).
pub fn tracefs_dir() -> Result<PathBuf, String> {
    let candidates = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    for dir in candidates.iter().map(Path::new) {
        match std::fs::metadata(dir.join("events")) {
            Ok(m) if m.is_dir() => return Ok(dir.to_path_buf()),
            // Mounted, but this user may not look inside: mounting again
            // would not help, and "not mounted" would mislead.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "tracefs at {} is not readable by this user ({e}): \
                     run sofa as root or with CAP_PERFMON and read access to tracefs",
                    dir.display()
                ));
            }
            _ => {}
        }
    }
    let mounted = super::sys::mount_tracefs(c"/sys/kernel/tracing");
    let dir = Path::new("/sys/kernel/tracing");
    match mounted {
        Ok(()) if dir.join("events").is_dir() => Ok(dir.to_path_buf()),
        Ok(()) => Err("tracefs mounted at /sys/kernel/tracing has no events".to_owned()),
        Err(e) => Err(format!(
            "tracefs is not mounted and mounting it failed ({e}): \
             run `sudo mount -t tracefs nodev /sys/kernel/tracing`"
        )),
    }
}

/// Reads the format of tracepoint `group:name`.
pub fn event_format(group: &str, name: &str) -> Result<EventFormat, String> {
    let path = tracefs_dir()?
        .join("events")
        .join(group)
        .join(name)
        .join("format");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    tracefs::parse_format(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the counters look.
pub enum Scope {
    /// The command's tree: inherited, enabled by the kernel at its exec.
    Tree(libc::pid_t),
    /// Every task on the CPU: enabled by the reader.
    System,
}

/// Opens tracepoints `ids` (a pair) on every CPU, each event a raw sample
/// with task and CLOCK_MONOTONIC time, in rings of 2^`pages_exp` pages.
pub fn open_pair(
    ids: [u64; 2],
    scope: Scope,
    cpus: u32,
    pages_exp: u8,
    what: &str,
) -> Result<Vec<Source>, String> {
    let per_task = matches!(scope, Scope::Tree(_));
    let opts = Opts {
        inherit: per_task.then_some(Inherit::NewChild),
        on_execve: per_task.then_some(OnExecve::Enable),
        enable: false,
        sample_on: SampleOn::Count(1),
        sample_format: SampleFormat {
            raw: true,
            ..Default::default()
        },
        record_id_all: true,
        record_id_format: RecordIdFormat {
            task: true,
            time: true,
            ..Default::default()
        },
        timer: Some(Clock::Monotonic),
        ..Default::default()
    };
    let mut sources = Vec::new();
    for cpu in 0..cpus {
        for (which, id) in ids.into_iter().enumerate() {
            let counter = match scope {
                Scope::Tree(pid) => {
                    Counter::new(Tracepoint { id }, (Proc(pid as u32), Cpu(cpu)), &opts)
                }
                Scope::System => Counter::new(Tracepoint { id }, (Cpu(cpu), Proc::ALL), &opts),
            }
            .map_err(|e| format!("perf_event_open({what}): {e}"))?;
            let sampler = counter
                .sampler(pages_exp)
                .map_err(|e| format!("ring buffer for {what}: {e}"))?;
            sources.push((2 * cpu + which as u32, counter, sampler));
        }
    }
    Ok(sources)
}

/// A collector that drains tracepoint rings into a sink.
pub struct Tracepoints<S> {
    sources: Vec<Source>,
    sink: S,
    /// Enable the counters when the thread starts (system-wide ones, which
    /// no exec enables).
    enable: bool,
}

impl<S> Tracepoints<S> {
    pub fn new(sources: Vec<Source>, sink: S, enable: bool) -> Self {
        Tracepoints {
            sources,
            sink,
            enable,
        }
    }
}

/// A sink that ends as a collector does.
pub trait FinishSink: Sink {
    fn finish(self) -> Result<Outcome, TraceError>;
}

impl<S: FinishSink + Send> Collector for Tracepoints<S> {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        if self.enable {
            for (_, counter, _) in &self.sources {
                let _ = counter.enable();
            }
        }
        let refs: Vec<_> = self.sources.iter().map(|(tag, _, s)| (*tag, s)).collect();
        drain(&refs, &mut self.sink, stop, |_| {})?;
        for (_, counter, _) in &self.sources {
            let _ = counter.disable();
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _: &ArchiveWriter) -> Result<Outcome, TraceError> {
        self.sink.finish()
    }
}
