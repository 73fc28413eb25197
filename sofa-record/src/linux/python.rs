//! The `python` collector: Python stacks of every CPython interpreter in the
//! recorded tree, read from its memory with the `py-spy` library at
//! `--py-hz` (default 100) snapshots per second, without pausing it.
//!
//! Processes are found by walking the tree every [`SCAN_PERIOD`] on a
//! thread of their own, so
//! `multiprocessing` children (fork and spawn) and DataLoader workers are
//! sampled from their first scan on. A process is tried only if it looks
//! like Python (an executable named `python*` or a `libpython` mapping);
//! an interpreter that is not initialised yet is retried until
//! [`ATTACH_PATIENCE`] has passed. Read errors (a stack torn by the running
//! interpreter, a process exiting) are counted, never fatal.
//!
//! The analyzer merges these snapshots into the CPU samples' stacks.

use super::collector::{Collector, OpenError, Outcome, Setup, Spec, nothing_skipped};
use super::host::monotonic_ns;
use super::pyprobe::{self, LoopProbe, Outer};
use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy, StackTrace};
use remoteprocess::ProcessMemory;
use sofa_trace::tables::{PyFrame, PyOuter, PySample, PyStackNode};
use sofa_trace::{
    ArchiveWriter, CollectorName, CollectorState, CollectorStatus, TableWriter, TraceError,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const SPEC: Spec = Spec {
    name: CollectorName::Python,
    what: "Python stacks",
    switch: "--no-python",
    enabled: |config| config.python,
    open: open_collector,
    skipped: nothing_skipped,
};

/// How often the process tree is walked for new processes.
const SCAN_PERIOD: Duration = Duration::from_millis(20);
/// How long a process that looks like Python may fail to attach (its
/// interpreter still starting) before sofa gives up on it.
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);

fn open_collector(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    Ok(Box::new(Python {
        root: setup.pid as u32,
        hz: setup.config.py_hz.max(1),
        loop_hz: setup.config.py_loop_hz,
        sampled: HashMap::new(),
        samples: setup.archive.table()?,
        outer: OuterRows {
            table: setup.archive.table()?,
            probed: None,
            last: None,
            off: None,
        },
        stacks: Interner::default(),
        snapshots: 0,
        read_errors: 0,
        unnamed_threads: 0,
        versions: BTreeMap::new(),
        gave_up: Vec::new(),
        cpu_ns: 0,
        wall_ns: 0,
    }))
}

struct Python {
    root: u32,
    hz: u64,
    /// Reads of the main thread's outer frames per second; 0: none.
    loop_hz: u64,
    /// Interpreters being sampled, by pid.
    sampled: HashMap<u32, Sampled>,
    samples: TableWriter<PySample>,
    outer: OuterRows,
    stacks: Interner,
    snapshots: u64,
    read_errors: u64,
    /// Rows whose OS thread could not be told (tid 0).
    unnamed_threads: u64,
    /// Interpreter version → processes sampled.
    versions: BTreeMap<String, u32>,
    /// "pid N (reason)" of Python processes that could not be read.
    gave_up: Vec<String>,
    /// CPU time of the sampler and finder threads, and how long they ran, ns.
    cpu_ns: u64,
    wall_ns: u64,
}

struct Sampled {
    spy: Box<PythonSpy>,
    tids: ThreadIds,
}

/// The loop probe of one process (the recorded command, or the first
/// Python process of its tree) and its rows.
struct OuterRows {
    table: TableWriter<PyOuter>,
    /// The probed process and its probe.
    probed: Option<(u32, LoopProbe)>,
    last: Option<LastRead>,
    /// Why no process was probed.
    off: Option<String>,
}

/// The last read: its frames (compared with the next read, and with the
/// next snapshot), time and stack, and whether a row says so already.
struct LastRead {
    outer: Outer,
    time_ns: u64,
    stack_id: Option<u64>,
    written: bool,
}

impl Collector for Python {
    /// Samples on this thread; processes are found and attached on another,
    /// so a slow attach (it parses the interpreter's binary) never delays
    /// the snapshots of the others.
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        let (found, attached) = std::sync::mpsc::channel();
        let root = self.root;
        let started = Instant::now();
        let cpu_before = super::sys::thread_cpu_ns();
        std::thread::scope(|scope| {
            let finder = match std::thread::Builder::new()
                .name("sofa-python-finder".into())
                .spawn_scoped(scope, move || Finder::default().run(root, stop, found))
            {
                Ok(finder) => finder,
                Err(e) => {
                    self.gave_up
                        .push(format!("every process (no thread to find them: {e})"));
                    return Ok(());
                }
            };
            let sampled = self.sample_until(stop, &attached);
            let (gave_up, finder_cpu) = finder.join().unwrap_or_else(|_| {
                (
                    vec!["processes started after the finder failed".to_owned()],
                    0,
                )
            });
            self.gave_up = gave_up;
            self.cpu_ns = super::sys::thread_cpu_ns().saturating_sub(cpu_before) + finder_cpu;
            self.wall_ns = started.elapsed().as_nanos() as u64;
            // Attached after the last snapshot: still counted.
            for (pid, spy) in attached.try_iter() {
                self.add(pid, spy);
            }
            sampled
        })
    }

    fn finish(self: Box<Self>, archive: &ArchiveWriter) -> Result<Outcome, TraceError> {
        let rows = self.samples.finish()?.rows;
        let mut outer = self.outer;
        outer.flush_last()?;
        let outer_rows = outer.table.finish()?.rows;
        self.stacks.write(archive)?;
        let processes: u32 = self.versions.values().sum();
        let mut notes = Vec::new();
        let mut parts = Vec::new();
        if processes == 0 && self.gave_up.is_empty() {
            parts.push("no CPython process in the recorded tree".to_owned());
        } else {
            let versions: Vec<String> = self
                .versions
                .iter()
                .map(|(v, n)| format!("CPython {v} × {n}"))
                .collect();
            parts.push(format!(
                "{} snapshots of {processes} process{} ({})",
                self.snapshots,
                if processes == 1 { "" } else { "es" },
                versions.join(", ")
            ));
            if self.read_errors > 0 {
                parts.push(format!("{} snapshots failed to read", self.read_errors));
            }
            if self.unnamed_threads > 0 {
                parts.push(format!(
                    "{} thread stacks without an OS thread id",
                    self.unnamed_threads
                ));
            }
            match (&outer.probed, &outer.off) {
                (Some((pid, probe)), _) if probe.given_up() => parts.push(format!(
                    "loop probe of pid {pid} stopped: its reads disagreed with the snapshots"
                )),
                (Some((pid, probe)), _) => parts.push(format!(
                    "{} reads of pid {pid}'s outer frames ({} rows, {} failed)",
                    probe.reads, outer_rows, probe.failed
                )),
                (None, Some(why)) => parts.push(format!("no loop probe: {why}")),
                (None, None) => {}
            }
            if self.wall_ns > 0 {
                parts.push(format!(
                    "sampler CPU {:.1}% of one core",
                    100.0 * self.cpu_ns as f64 / self.wall_ns as f64
                ));
            }
        }
        if !self.gave_up.is_empty() {
            let line = format!("Python stacks: could not read {}", self.gave_up.join("; "));
            notes.push(line.clone());
            parts.push(line);
        }
        let status = if processes == 0 && !self.gave_up.is_empty() {
            CollectorStatus::with(CollectorState::Failed, parts.join("; "))
        } else {
            CollectorStatus::with(CollectorState::Ok, parts.join("; "))
        };
        Ok(Outcome {
            rows,
            losses: None,
            notes,
            status: Some(status),
            ..Outcome::default()
        })
    }
}

type Attached = (u32, Box<PythonSpy>);

impl Python {
    fn sample_until(
        &mut self,
        stop: &AtomicBool,
        attached: &std::sync::mpsc::Receiver<Attached>,
    ) -> Result<(), TraceError> {
        let period = Duration::from_nanos(1_000_000_000 / self.hz);
        let probe_period = Duration::from_nanos(1_000_000_000 / self.loop_hz.max(1));
        let mut next_snapshot = Instant::now();
        let mut next_probe = next_snapshot;
        loop {
            for (pid, spy) in attached.try_iter() {
                self.add(pid, spy);
            }
            if Instant::now() >= next_snapshot {
                self.snapshot()?;
                next_snapshot = behind(next_snapshot + period);
            }
            if self.loop_hz > 0 && Instant::now() >= next_probe {
                self.outer.probe(&mut self.stacks)?;
                next_probe = behind(next_probe + probe_period);
            }
            let next = if self.loop_hz > 0 && self.outer.probed.is_some() {
                next_snapshot.min(next_probe)
            } else {
                next_snapshot
            };
            while Instant::now() < next {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(20)));
            }
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
        }
    }

    fn add(&mut self, pid: u32, spy: Box<PythonSpy>) {
        *self.versions.entry(spy.version.to_string()).or_default() += 1;
        // The recorded command's process, or the first Python process of
        // its tree until the command's own shows up.
        let probed_root = self
            .outer
            .probed
            .as_ref()
            .is_some_and(|(p, _)| *p == self.root);
        if self.loop_hz > 0 && !probed_root && (pid == self.root || self.outer.probed.is_none()) {
            match pyprobe::layout(spy.version.major, spy.version.minor) {
                Some(layout) => {
                    let interpreter = spy.addresses.interpreter_address;
                    self.outer.last = None;
                    self.outer.probed = Some((pid, LoopProbe::new(pid, layout, interpreter)));
                    self.outer.off = None;
                }
                None if self.outer.probed.is_none() => {
                    self.outer.off = Some(format!(
                        "CPython {}.{} (the probe reads 3.11-3.13)",
                        spy.version.major, spy.version.minor
                    ));
                }
                None => {}
            }
        }
        self.sampled.insert(
            pid,
            Sampled {
                spy,
                tids: ThreadIds::default(),
            },
        );
    }

    /// One snapshot of every attached interpreter.
    fn snapshot(&mut self) -> Result<(), TraceError> {
        let mut ended = Vec::new();
        for (&pid, Sampled { spy, tids }) in self.sampled.iter_mut() {
            let start = monotonic_ns();
            // Reading memory the interpreter is changing can trip py-spy's
            // own checks (a panic, with overflow checks on): a failed read.
            let traces = sofa_trace::quiet::catch(|| spy.get_stack_traces())
                .unwrap_or_else(|panic| Err(anyhow::anyhow!(panic)));
            let read_ns = monotonic_ns().saturating_sub(start);
            let traces = match traces {
                Ok(traces) => traces,
                Err(_) => {
                    if alive(pid) {
                        self.read_errors += 1;
                    } else {
                        ended.push(pid);
                    }
                    continue;
                }
            };
            self.snapshots += 1;
            tids.update(spy, pid, &traces);
            if let Some((probed, probe)) = &mut self.outer.probed
                && *probed == pid
            {
                let main = traces.iter().find(|t| tids.tid_of(t) == pid);
                if let (Some(main), Some(last)) = (main, &self.outer.last) {
                    let names: Vec<(&str, &str)> = main
                        .frames
                        .iter()
                        .rev()
                        .map(|f| (f.name.as_str(), f.filename.as_str()))
                        .collect();
                    probe.check(&last.outer, &names);
                }
                // Walked again at every snapshot: frames that returned are
                // replaced by the ones running now.
                probe.walk();
            }
            for trace in traces {
                let tid = tids.tid_of(&trace);
                if tid == 0 {
                    self.unnamed_threads += 1;
                }
                self.samples.push(PySample {
                    time_ns: start,
                    read_ns,
                    pid,
                    tid,
                    stack_id: self.stacks.stack(trace.frames),
                    owns_gil: trace.owns_gil,
                    active: trace.active,
                })?;
            }
        }
        for pid in ended {
            self.sampled.remove(&pid);
        }
        self.samples.flush_if_due()
    }
}

/// The next tick after `next`, or now when that has passed (a slow read):
/// missed ticks are skipped rather than made up in a burst.
fn behind(next: Instant) -> Instant {
    next.max(Instant::now())
}

impl OuterRows {
    /// One read of the probed process's outer frames: a row when they
    /// changed, after one for the last read of the frames before.
    fn probe(&mut self, stacks: &mut Interner) -> Result<(), TraceError> {
        let Some((pid, probe)) = &mut self.probed else {
            return Ok(());
        };
        let pid = *pid;
        let time_ns = monotonic_ns();
        let Some((outer, reran)) = probe.read() else {
            return Ok(());
        };
        // The same frames (one code object is one `Code`), lines and entries.
        let same = |a: &Outer| {
            a.len() == outer.len()
                && a.iter()
                    .zip(&outer)
                    .all(|(x, y)| Arc::ptr_eq(&x.0, &y.0) && x.1 == y.1 && x.2 == y.2)
        };
        if let Some(last) = self.last.as_mut().filter(|l| reran == 0 && same(&l.outer)) {
            last.time_ns = time_ns;
            last.written = false;
            last.outer = outer;
            return Ok(());
        }
        self.flush_last()?;
        let stack_id = stacks.stack(outer_frames(&outer));
        self.table.push(PyOuter {
            time_ns,
            pid,
            stack_id,
            reran,
        })?;
        self.last = Some(LastRead {
            outer,
            time_ns,
            stack_id,
            written: true,
        });
        self.table.flush_if_due()
    }

    /// The row of the last read, where none says it yet.
    fn flush_last(&mut self) -> Result<(), TraceError> {
        let (Some((pid, _)), Some(last)) = (&self.probed, &mut self.last) else {
            return Ok(());
        };
        if last.written {
            return Ok(());
        }
        last.written = true;
        self.table.push(PyOuter {
            time_ns: last.time_ns,
            pid: *pid,
            stack_id: last.stack_id,
            reran: 0,
        })
    }
}

/// The outer frames as py-spy gives a stack: innermost first.
fn outer_frames(outer: &Outer) -> Vec<py_spy::Frame> {
    outer
        .iter()
        .rev()
        .map(|(code, line, entry)| py_spy::Frame {
            name: code.name.clone(),
            filename: code.file.clone(),
            module: None,
            short_filename: None,
            line: *line as i32,
            locals: None,
            is_entry: *entry,
            is_shim_entry: false,
        })
        .collect()
}

/// What the finder knows of a process of the tree.
enum Seen {
    /// Looks like Python; not attached yet.
    Pending { since: Instant },
    /// Attached, not Python, exited, or given up on.
    Done,
}

/// Finds the tree's Python processes and attaches to them.
#[derive(Default)]
struct Finder {
    /// By pid, with the executable it ran when seen (a new one after
    /// `exec` is a new program).
    seen: HashMap<u32, (PathBuf, Seen)>,
    gave_up: Vec<String>,
}

impl Finder {
    fn run(
        mut self,
        root: u32,
        stop: &AtomicBool,
        found: std::sync::mpsc::Sender<Attached>,
    ) -> (Vec<String>, u64) {
        let cpu_before = super::sys::thread_cpu_ns();
        let cpu = || super::sys::thread_cpu_ns().saturating_sub(cpu_before);
        while !stop.load(Ordering::Acquire) {
            let started = Instant::now();
            for pid in tree_pids(root) {
                if let Some(spy) = self.visit(pid)
                    && found.send((pid, spy)).is_err()
                {
                    return (self.gave_up, cpu());
                }
            }
            let spent = started.elapsed();
            std::thread::sleep(SCAN_PERIOD.saturating_sub(spent));
        }
        (self.gave_up, cpu())
    }

    /// Attaches to `pid` if it is new and Python, or pending.
    fn visit(&mut self, pid: u32) -> Option<Box<PythonSpy>> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let since = match self.seen.get(&pid) {
            Some((seen_exe, Seen::Done)) if *seen_exe == exe => return None,
            Some((seen_exe, Seen::Pending { since })) if *seen_exe == exe => *since,
            // New, or a new program in an old pid.
            _ if looks_like_python(pid, &exe) => Instant::now(),
            _ => {
                self.seen.insert(pid, (exe, Seen::Done));
                return None;
            }
        };
        let config = Config {
            blocking: LockingStrategy::NonBlocking,
            collect_thread_names: false,
            lineno: LineNo::LastInstruction,
            ..Config::default()
        };
        let result = sofa_trace::quiet::catch(|| {
            PythonSpy::new(pid as remoteprocess::Pid, &config)
                .and_then(|mut spy| spy.get_stack_traces().map(|_| spy))
        })
        .unwrap_or_else(|panic| Err(anyhow::anyhow!(panic)));
        let (state, spy) = match result {
            Ok(spy) => (Seen::Done, Some(Box::new(spy))),
            Err(_) if !alive(pid) => (Seen::Done, None),
            Err(e) if since.elapsed() > ATTACH_PATIENCE => {
                let error = first_line(&format!("{e:#}"));
                self.gave_up.push(format!("pid {pid} ({error})"));
                (Seen::Done, None)
            }
            Err(_) => (Seen::Pending { since }, None),
        };
        self.seen.insert(pid, (exe, state));
        spy
    }
}

/// `root` and its descendants, from the kernel's per-thread `children`
/// lists (a few reads per scan), or a walk of all of /proc where the
/// kernel has no such lists.
fn tree_pids(root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        out.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            match std::fs::read(task.path().join("children")) {
                Ok(bytes) => queue.extend(
                    String::from_utf8_lossy(&bytes)
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return super::system::traced_tree(root)
                        .into_iter()
                        .map(|p| p.pid)
                        .collect();
                }
                Err(_) => {}
            }
        }
    }
    out
}

/// Whether `pid` runs a CPython: an executable named `python…`, or
/// `libpython` mapped (embedded interpreters, `--enable-shared` builds).
fn looks_like_python(pid: u32, exe: &std::path::Path) -> bool {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("python") {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/maps"))
        .map(|maps| maps_have_libpython(&maps))
        .unwrap_or(false)
}

fn maps_have_libpython(maps: &[u8]) -> bool {
    maps.split(|&b| b == b'\n').any(|line| {
        let path = line.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        path.starts_with(b"libpython")
    })
}

fn alive(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}/task")).is_ok()
        && std::fs::read(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|b| crate::procfs::parse_pid_stat(&b))
            .is_some_and(|s| s.state != 'Z')
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

/// Python stacks and frames interned as the archive stores them.
#[derive(Default)]
struct Interner {
    frames: HashMap<(String, String, u32, bool), u64>,
    nodes: HashMap<(Option<u64>, u64), u64>,
}

impl Interner {
    /// The innermost node of `frames` (innermost first, as py-spy gives
    /// them); their strings become the keys, uncopied.
    fn stack(&mut self, frames: Vec<py_spy::Frame>) -> Option<u64> {
        let mut parent = None;
        for frame in frames.into_iter().rev() {
            let key = (
                frame.name,
                frame.filename,
                frame.line.max(0) as u32,
                frame.is_entry || frame.is_shim_entry,
            );
            let next = self.frames.len() as u64;
            let frame_id = *self.frames.entry(key).or_insert(next);
            let next = self.nodes.len() as u64;
            parent = Some(*self.nodes.entry((parent, frame_id)).or_insert(next));
        }
        parent
    }

    fn write(self, archive: &ArchiveWriter) -> Result<(), TraceError> {
        write_by_id(
            archive,
            self.frames
                .into_iter()
                .map(|((function, file, line, entry), frame_id)| PyFrame {
                    frame_id,
                    function,
                    file,
                    line,
                    entry,
                }),
            |f| f.frame_id,
        )?;
        write_by_id(
            archive,
            self.nodes
                .into_iter()
                .map(|((parent_id, frame_id), stack_id)| PyStackNode {
                    stack_id,
                    parent_id,
                    frame_id,
                }),
            |n| n.stack_id,
        )
    }
}

/// Writes a whole table, rows sorted by their id.
fn write_by_id<T: sofa_trace::Table>(
    archive: &ArchiveWriter,
    rows: impl Iterator<Item = T>,
    id: impl Fn(&T) -> u64,
) -> Result<(), TraceError> {
    let mut rows: Vec<T> = rows.collect();
    rows.sort_by_key(|r| id(r));
    let mut table = archive.table::<T>()?;
    for row in rows {
        table.push(row)?;
    }
    table.finish().map(|_| ())
}

/// OS thread ids of a process's Python threads. CPython 3.11 and later
/// store it in the thread state (py-spy reads it); before, the thread
/// state has only the `pthread_t`, which on glibc is the address of the
/// thread's `struct pthread`, whose `tid` field sits at an offset that is
/// found once per process: the one where every Python thread's struct
/// holds a live thread id of the process.
#[derive(Default)]
struct ThreadIds {
    offset: Option<usize>,
    known: HashMap<u64, u32>,
}

/// glibc's offset of `tid` in `struct pthread` on x86-64 (2.26 and later);
/// tried first, then every other offset up to [`PTHREAD_SCAN`].
const GLIBC_TID_OFFSET: usize = 0x2d0;
const PTHREAD_SCAN: usize = 2048;

impl ThreadIds {
    fn update(&mut self, spy: &PythonSpy, pid: u32, traces: &[StackTrace]) {
        let missing: Vec<u64> = traces
            .iter()
            .filter(|t| t.os_thread_id.is_none() && !self.known.contains_key(&t.thread_id))
            .map(|t| t.thread_id)
            .collect();
        if missing.is_empty() {
            return;
        }
        let live = live_tids(pid);
        if traces.len() == 1 && live.len() == 1 {
            // One thread: it is the main thread.
            self.known.insert(missing[0], pid);
            return;
        }
        let structs: Vec<Vec<u8>> = missing
            .iter()
            .map(|&addr| {
                spy.process
                    .copy(addr as usize, PTHREAD_SCAN + 4)
                    .unwrap_or_default()
            })
            .collect();
        let offset = self
            .offset
            .filter(|&o| tids_at(&structs, o, &live).is_some())
            .or_else(|| tid_offset(&structs, &live));
        self.offset = offset;
        if let Some(tids) = offset.and_then(|o| tids_at(&structs, o, &live)) {
            self.known.extend(missing.into_iter().zip(tids));
        }
    }

    fn tid_of(&self, trace: &StackTrace) -> u32 {
        trace
            .os_thread_id
            .map(|t| t as u32)
            .or_else(|| self.known.get(&trace.thread_id).copied())
            .unwrap_or(0)
    }
}

fn live_tids(pid: u32) -> HashSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread ids at `offset` of each struct, if each is a live, distinct one.
fn tids_at(structs: &[Vec<u8>], offset: usize, live: &HashSet<u32>) -> Option<Vec<u32>> {
    let mut seen = HashSet::new();
    structs
        .iter()
        .map(|s| {
            let bytes = s.get(offset..offset + 4)?;
            let tid = u32::from_ne_bytes(bytes.try_into().ok()?);
            (live.contains(&tid) && seen.insert(tid)).then_some(tid)
        })
        .collect()
}

/// The offset of the thread id in `struct pthread`, given copies of the
/// structs of some threads and the process's live thread ids: glibc's
/// where it holds, else the first that does.
fn tid_offset(structs: &[Vec<u8>], live: &HashSet<u32>) -> Option<usize> {
    std::iter::once(GLIBC_TID_OFFSET)
        .chain((0..PTHREAD_SCAN).step_by(4))
        .find(|&o| tids_at(structs, o, live).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pthread(tid_at: usize, tid: u32, noise: u32) -> Vec<u8> {
        let mut s: Vec<u8> = (0..PTHREAD_SCAN as u32 / 4 + 1)
            .flat_map(|i| (i.wrapping_mul(2654435761) ^ noise).to_ne_bytes())
            .collect();
        s[tid_at..tid_at + 4].copy_from_slice(&tid.to_ne_bytes());
        s
    }

    #[test]
    fn thread_ids_found_at_glibc_offset_first() {
        let live: HashSet<u32> = [100, 101, 102].into();
        // The same tid also at an earlier offset of one struct: the glibc
        // offset still wins because it holds for all.
        let mut a = pthread(GLIBC_TID_OFFSET, 101, 1);
        a[8..12].copy_from_slice(&101u32.to_ne_bytes());
        let b = pthread(GLIBC_TID_OFFSET, 102, 2);
        assert_eq!(tid_offset(&[a, b], &live), Some(GLIBC_TID_OFFSET));
    }

    #[test]
    fn thread_ids_found_elsewhere_need_distinct_live_values() {
        let live: HashSet<u32> = [7, 8].into();
        let a = pthread(0x100, 7, 3);
        let b = pthread(0x100, 8, 4);
        assert_eq!(tid_offset(&[a.clone(), b.clone()], &live), Some(0x100));
        assert_eq!(tids_at(&[a.clone(), b], 0x100, &live), Some(vec![7, 8]));
        // Two threads claiming the same id is not an answer.
        assert_eq!(tids_at(&[a.clone(), a], 0x100, &live), None);
        // A dead thread id is not either; a short copy neither.
        assert_eq!(tid_offset(&[pthread(0x100, 9, 5)], &live), None);
        assert_eq!(tids_at(&[vec![0; 8]], 0x100, &live), None);
    }

    #[test]
    fn libpython_in_maps() {
        let maps = b"55d0-55d1 r-xp 0 08:01 1 /usr/bin/foo\n\
                     7f00-7f01 r-xp 0 08:01 2 /usr/lib/libpython3.12.so.1.0\n";
        assert!(maps_have_libpython(maps));
        assert!(!maps_have_libpython(
            b"7f00-7f01 r-xp 0 08:01 2 /usr/lib/libc.so.6\n"
        ));
    }

    fn frame(name: &str, line: i32, entry: bool) -> py_spy::Frame {
        py_spy::Frame {
            name: name.to_owned(),
            filename: "t.py".to_owned(),
            module: None,
            short_filename: None,
            line,
            locals: None,
            is_entry: entry,
            is_shim_entry: false,
        }
    }

    #[test]
    fn stacks_share_their_callers() {
        let mut interner = Interner::default();
        let a = interner.stack(vec![frame("hot_a", 3, false), frame("<module>", 9, true)]);
        let b = interner.stack(vec![frame("hot_b", 6, false), frame("<module>", 9, true)]);
        let again = interner.stack(vec![frame("hot_a", 3, false), frame("<module>", 9, true)]);
        assert_eq!(a, again);
        assert_ne!(a, b);
        // One root node, two leaves; three frames.
        assert_eq!(interner.nodes.len(), 3);
        assert_eq!(interner.frames.len(), 3);
        assert_eq!(interner.stack(vec![]), None);
    }
}
