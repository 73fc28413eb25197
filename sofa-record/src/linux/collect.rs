//! Turns the kernel's perf records into archive rows, as they stream in.

use super::collector::Losses;
use super::events::{Context, Event, UserStack};
use super::unwind::Unwinders;
use crate::CallGraph;
use perf_event_open::sample::record::Record;
use sofa_trace::tables::{Frame, Mapping, Sample, StackEndRow, StackNode, Switch, TaskEvent};
use sofa_trace::{ArchiveWriter, CollectorName, FrameKind, StackEnd, TableWriter, TraceError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A sampled code address. Kernel addresses are shared by all processes (pid 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameKey {
    pub pid: u32,
    pub address: u64,
    pub kernel: bool,
}

/// An executable mapping of one process.
#[derive(Debug, Clone)]
pub struct MapRange {
    pub mapping_id: u64,
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub path: Arc<str>,
}

/// A frame as streamed to `frames`, kept for end-of-run symbolization.
#[derive(Debug, Clone)]
pub struct FrameInfo {
    pub key: FrameKey,
    /// File-backed mapping holding the address, with the address's offset in that file.
    pub file: Option<(Arc<str>, u64)>,
}

/// Anonymous executable memory: where JIT compilers put their code.
fn is_anonymous(path: &str) -> bool {
    path.is_empty() || path.starts_with("//anon") || path.starts_with("[anon")
}

/// The kernel's virtual shared object: no file, but its image is the same
/// in every process, so symbolization reads sofa's own.
pub const VDSO: &str = "[vdso]";

/// Paths that name no file we could open for symbols.
pub(crate) fn is_pseudo(path: &str) -> bool {
    is_anonymous(path) || path.starts_with('[') || path.starts_with("/memfd:")
}

/// How far apart a switch-out sample and its switch record may be, ns.
const LEAVING_NS: u64 = 1_000_000;

/// Streaming state of the CPU collector.
pub struct Streams {
    samples: TableWriter<Sample>,
    stacks: TableWriter<StackNode>,
    frames_out: TableWriter<Frame>,
    tasks: TableWriter<TaskEvent>,
    /// Kept in memory (losses are rare) and written with the other collectors' at the end.
    pub losses: Losses,
    mappings_out: TableWriter<Mapping>,
    /// Frame ids in order of first appearance (id = index).
    pub frames: Vec<FrameInfo>,
    frame_ids: HashMap<FrameKey, u64>,
    stack_ids: HashMap<(Option<u64>, u64), u64>,
    pub spaces: AddressSpaces,
    next_mapping: u64,
    /// Processes whose /proc/PID/maps was already consulted.
    maps_read: HashSet<u32>,
    /// Processes the command's tree forked that have not exited.
    running: HashSet<u32>,
    pub sample_count: u64,
    /// Samples whose call chain filled all `MAX_STACK` entries: its
    /// outermost callers are missing.
    pub cut_chains: u64,
    /// Times the kernel throttled sampling.
    pub throttled: u64,
    pub unknown_records: u64,
    /// How user stacks are taken; with `dwarf` and `auto`, the unwinders.
    call_graph: CallGraph,
    unwinders: Option<Unwinders>,
    stack_ends: TableWriter<StackEndRow>,
    /// Stacks whose end is written (each once).
    ended: HashSet<u64>,
    /// Samples per way their user stack ended (`dwarf`, `auto`).
    pub ends: std::collections::BTreeMap<StackEnd, u64>,
    /// Context switches, when recorded (`--no-off-cpu` turns them off).
    switches: Option<TableWriter<Switch>>,
    /// The stack of each thread's last switch-out sample, until its switch
    /// record (which follows it in the same ring) takes it.
    leaving: HashMap<u32, (u64, Option<u64>)>,
    /// Off-CPU records the kernel lost (the rings ran full).
    pub switches_lost: u64,
}

impl Streams {
    pub fn new(
        archive: &ArchiveWriter,
        call_graph: CallGraph,
        stack_bytes: u32,
        off_cpu: bool,
    ) -> Result<Streams, TraceError> {
        Ok(Streams {
            switches: if off_cpu {
                Some(archive.table()?)
            } else {
                None
            },
            leaving: HashMap::new(),
            switches_lost: 0,
            call_graph,
            unwinders: (call_graph != CallGraph::Fp).then(|| Unwinders::new(stack_bytes)),
            stack_ends: archive.table()?,
            ended: HashSet::new(),
            ends: Default::default(),
            samples: archive.table()?,
            stacks: archive.table()?,
            frames_out: archive.table()?,
            tasks: archive.table()?,
            losses: Losses::new(CollectorName::Cpu),
            mappings_out: archive.table()?,
            frames: Vec::new(),
            frame_ids: HashMap::new(),
            stack_ids: HashMap::new(),
            spaces: AddressSpaces::default(),
            next_mapping: 0,
            maps_read: HashSet::new(),
            running: HashSet::new(),
            sample_count: 0,
            cut_chains: 0,
            throttled: 0,
            unknown_records: 0,
        })
    }

    /// Id of a frame; a new one is placed in its mapping now (the mapping
    /// events came first) and streamed, so even a cut-short archive knows
    /// which module each address was in.
    fn frame_id(&mut self, key: FrameKey) -> Result<u64, TraceError> {
        if let Some(&id) = self.frame_ids.get(&key) {
            return Ok(id);
        }
        let id = self.frames.len() as u64;
        let mapping = if key.kernel {
            None
        } else {
            self.spaces.lookup(key.pid, key.address)
        };
        let kind = match mapping {
            _ if key.kernel => FrameKind::Kernel,
            Some(m) if is_anonymous(&m.path) => FrameKind::Jit,
            _ => FrameKind::User,
        };
        let file_offset = mapping.map(|m| key.address - m.start + m.pgoff);
        self.frames_out.push(Frame {
            frame_id: id,
            pid: key.pid,
            address: key.address,
            kind: kind.as_str().into(),
            mapping_id: mapping.map(|m| m.mapping_id),
            file_offset,
        })?;
        let file = mapping
            .filter(|m| !is_pseudo(&m.path) || &*m.path == VDSO)
            .map(|m| (Arc::clone(&m.path), key.address - m.start + m.pgoff));
        self.frames.push(FrameInfo { key, file });
        self.frame_ids.insert(key, id);
        Ok(id)
    }

    fn stack_node(&mut self, parent: Option<u64>, frame: u64) -> Result<u64, TraceError> {
        if let Some(&id) = self.stack_ids.get(&(parent, frame)) {
            return Ok(id);
        }
        let id = self.stack_ids.len() as u64;
        self.stack_ids.insert((parent, frame), id);
        self.stacks.push(StackNode {
            stack_id: id,
            parent_id: parent,
            frame_id: frame,
        })?;
        Ok(id)
    }

    /// Interns a call chain (innermost first, as the kernel gives it) and
    /// returns its innermost stack node.
    fn intern_chain(&mut self, pid: u32, chain: &[Context]) -> Result<Option<u64>, TraceError> {
        // Innermost first: (address, kernel). Within each context the first
        // address is where execution was; the others are return addresses,
        // moved back by one byte into the call instruction so they resolve
        // to the calling line and function.
        let mut frames: Vec<(u64, bool)> = Vec::new();
        for segment in chain {
            let mut first = true;
            // Context markers (PERF_CONTEXT_*) sit in the top page.
            for &ip in segment
                .ips
                .iter()
                .filter(|&&ip| ip != 0 && ip < u64::MAX - 4095)
            {
                frames.push((if first { ip } else { ip - 1 }, segment.kernel));
                first = false;
            }
        }
        let mut node = None;
        for &(address, kernel) in frames.iter().rev() {
            let key = FrameKey {
                pid: if kernel { 0 } else { pid },
                address,
                kernel,
            };
            let frame = self.frame_id(key)?;
            node = Some(self.stack_node(node, frame)?);
        }
        Ok(node)
    }

    /// Handles one event read from the ring buffer tagged `tag`: its CPU,
    /// with [`super::offcpu::TAG`] set for the off-CPU rings.
    pub fn handle(&mut self, event: Event, tag: u32) -> Result<(), TraceError> {
        if tag & super::offcpu::TAG != 0 {
            return self.handle_off_cpu(event, tag & !super::offcpu::TAG);
        }
        let cpu = tag;
        match event {
            Event::Sample {
                time_ns,
                pid,
                tid,
                cpu: sample_cpu,
                chain,
                period,
                user,
            } => {
                self.know_mappings(pid, time_ns)?;
                let (chain, end) = self.user_chain(pid, chain, user.as_ref());
                let stack_id = match &chain {
                    Some(chain) => {
                        // Each context also took one entry, for its marker.
                        // An unwound user part is not the kernel's chain.
                        let entries: usize = chain.iter().map(|c| c.ips.len() + 1).sum();
                        let kernels = matches!(end, None | Some(StackEnd::FramePointers));
                        if kernels && entries >= usize::from(super::perf::MAX_STACK) {
                            self.cut_chains += 1;
                        }
                        self.intern_chain(pid, chain)?
                    }
                    None => None,
                };
                if let Some(end) = end {
                    *self.ends.entry(end).or_default() += 1;
                    if let Some(id) = stack_id
                        && self.ended.insert(id)
                    {
                        self.stack_ends.push(StackEndRow {
                            stack_id: id,
                            end: end.as_str().to_owned(),
                        })?;
                    }
                }
                self.samples.push(Sample {
                    time_ns,
                    pid,
                    tid,
                    cpu: sample_cpu.unwrap_or(cpu),
                    stack_id,
                    event: 0,
                    period,
                })?;
                self.sample_count += 1;
            }
            Event::Mmap {
                time_ns,
                pid,
                start,
                len,
                pgoff,
                path,
                build_id,
            } => self.add_mapping(pid, time_ns, start, len, pgoff, path, build_id)?,
            Event::Comm {
                time_ns,
                pid,
                tid,
                comm,
                exec,
            } => self.tasks.push(TaskEvent {
                time_ns,
                kind: if exec { "exec" } else { "comm" }.into(),
                pid,
                tid,
                ppid: None,
                ptid: None,
                comm: Some(comm),
            })?,
            Event::Fork {
                time_ns,
                pid,
                tid,
                ppid,
                ptid,
            } => {
                if pid != ppid {
                    self.spaces.parents.insert(pid, ppid);
                    self.spaces.generation += 1;
                    self.running.insert(pid);
                }
                self.push_lineage("fork", time_ns, (pid, tid), (ppid, ptid))?;
            }
            Event::Exit {
                time_ns,
                pid,
                tid,
                ppid,
                ptid,
            } => {
                if pid == tid {
                    self.running.remove(&pid);
                    if let Some(u) = &mut self.unwinders {
                        u.forget(pid);
                    }
                }
                self.push_lineage("exit", time_ns, (pid, tid), (ppid, ptid))?;
            }
            Event::Lost { time_ns, count } => self.losses.add(cpu, count, time_ns),
            Event::Throttle => self.throttled += 1,
            // Only the off-CPU rings ask for switch records.
            Event::Switch { .. } => self.unknown_records += 1,
            Event::Ignored => {}
            Event::Unknown => self.unknown_records += 1,
        }
        Ok(())
    }

    /// A record of an off-CPU ring: a switch-out sample (its stack waits for
    /// the switch record that follows it) or a switch record (a row).
    fn handle_off_cpu(&mut self, event: Event, cpu: u32) -> Result<(), TraceError> {
        match event {
            Event::Sample {
                time_ns,
                pid,
                tid,
                chain,
                user,
                ..
            } => {
                self.know_mappings(pid, time_ns)?;
                // How it ended is not counted: the copy is small on purpose.
                let (chain, _) = self.user_chain(pid, chain, user.as_ref());
                let stack_id = match chain {
                    Some(chain) => self.intern_chain(pid, &chain)?,
                    None => None,
                };
                self.leaving.insert(tid, (time_ns, stack_id));
            }
            Event::Switch {
                time_ns,
                pid,
                tid,
                cpu: record_cpu,
                out,
                preempted,
            } => {
                // The sample comes first, at the same switch: within a
                // few microseconds of it.
                let stack_id = match self.leaving.remove(&tid) {
                    Some((t, stack)) if out && time_ns.abs_diff(t) < LEAVING_NS => stack,
                    _ => None,
                };
                if let Some(table) = &mut self.switches {
                    table.push(Switch {
                        time_ns,
                        pid,
                        tid,
                        cpu: record_cpu.unwrap_or(cpu),
                        out,
                        preempted,
                        stack_id,
                    })?;
                }
            }
            Event::Lost { count, .. } => self.switches_lost += count,
            // Task and mapping records come through the CPU rings.
            _ => {}
        }
        Ok(())
    }

    /// The call chain to store for a sample: with `dwarf`, the kernel's
    /// kernel part and the user stack unwound from its copy; with `auto`,
    /// that or the kernel's frame-pointer user chain, whichever reached the
    /// root or, failing that, holds more frames in known mappings. Also
    /// says how the user part ended (`None` with `fp`).
    fn user_chain(
        &mut self,
        pid: u32,
        chain: Option<Vec<Context>>,
        user: Option<&UserStack>,
    ) -> (Option<Vec<Context>>, Option<StackEnd>) {
        let Some(unwinders) = &mut self.unwinders else {
            return (chain, None);
        };
        let Some(user) = user.filter(|u| u.ip != 0 && !u.stack.is_empty()) else {
            return (chain, Some(StackEnd::NoUserStack));
        };
        let unwound = unwinders.unwind(pid, &self.spaces, user);
        let mut contexts: Vec<Context> = chain.unwrap_or_default();
        if self.call_graph == CallGraph::Auto && !unwound.end.reached_root() {
            let fp_known = contexts
                .iter()
                .filter(|c| !c.kernel)
                .flat_map(|c| c.ips.iter())
                .take_while(|&&ip| self.spaces.lookup(pid, ip).is_some())
                .count();
            if fp_known > unwound.ips.len() {
                return (Some(contexts), Some(StackEnd::FramePointers));
            }
        }
        contexts.retain(|c| c.kernel);
        contexts.push(Context {
            kernel: false,
            ips: unwound.ips,
        });
        (Some(contexts), Some(unwound.end))
    }

    /// A fork or exit row: the task and the one it came from.
    fn push_lineage(
        &mut self,
        kind: &str,
        time_ns: u64,
        (pid, tid): (u32, u32),
        (ppid, ptid): (u32, u32),
    ) -> Result<(), TraceError> {
        self.tasks.push(TaskEvent {
            time_ns,
            kind: kind.into(),
            pid,
            tid,
            ppid: Some(ppid),
            ptid: Some(ptid),
            comm: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_mapping(
        &mut self,
        pid: u32,
        time_ns: u64,
        start: u64,
        len: u64,
        pgoff: u64,
        path: String,
        build_id: Option<String>,
    ) -> Result<(), TraceError> {
        let mapping_id = self.next_mapping;
        self.next_mapping += 1;
        self.spaces.generation += 1;
        self.spaces.maps.entry(pid).or_default().push(MapRange {
            mapping_id,
            start,
            end: start + len,
            pgoff,
            path: Arc::from(path.as_str()),
        });
        self.mappings_out.push(Mapping {
            mapping_id,
            pid,
            time_ns,
            start,
            end: start + len,
            pgoff,
            path,
            build_id,
        })
    }

    /// Keeps quiet tables flowing to disk at least every second.
    pub fn flush_if_due(&mut self) -> Result<(), TraceError> {
        if let Some(t) = &mut self.switches {
            t.flush_if_due()?;
        }
        self.samples.flush_if_due()?;
        self.stack_ends.flush_if_due()?;
        self.stacks.flush_if_due()?;
        self.frames_out.flush_if_due()?;
        self.tasks.flush_if_due()?;
        self.mappings_out.flush_if_due()
    }

    /// Makes sure the mappings of a sampled process are known: for one
    /// seen first in a sample, read from /proc once.
    fn know_mappings(&mut self, pid: u32, time_ns: u64) -> Result<(), TraceError> {
        if pid != 0 && !self.spaces.knows(pid) && self.maps_read.insert(pid) {
            self.read_proc_maps(pid, time_ns)?;
        }
        Ok(())
    }

    /// Mappings that existed before the kernel started reporting them (a
    /// process seen only after it was running) come from /proc/PID/maps,
    /// read while the process is still alive.
    fn read_proc_maps(&mut self, pid: u32, time_ns: u64) -> Result<(), TraceError> {
        let Ok(bytes) = std::fs::read(format!("/proc/{pid}/maps")) else {
            return Ok(());
        };
        for m in super::procmaps::parse(&bytes) {
            if m.executable {
                self.add_mapping(
                    pid,
                    time_ns,
                    m.start,
                    m.end - m.start,
                    m.offset,
                    m.path,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Finishes the streaming tables; frames and symbols are written afterwards.
    pub fn finish_streams(self) -> Result<Finished, TraceError> {
        if let Some(t) = self.switches {
            t.finish()?;
        }
        self.samples.finish()?;
        self.stack_ends.finish()?;
        self.stacks.finish()?;
        self.frames_out.finish()?;
        self.tasks.finish()?;
        self.mappings_out.finish()?;
        // A frame first seen before its mapping's record was read (the
        // record sat in another CPU's ring) has no file yet: it gets it
        // now, so symbolization names it.
        let spaces = &self.spaces;
        let mut frames = self.frames;
        for frame in frames
            .iter_mut()
            .filter(|f| f.file.is_none() && !f.key.kernel)
        {
            if let Some(m) = spaces.lookup(frame.key.pid, frame.key.address)
                && (!is_pseudo(&m.path) || &*m.path == VDSO)
            {
                frame.file = Some((Arc::clone(&m.path), frame.key.address - m.start + m.pgoff));
            }
        }
        let mut outlived: Vec<u32> = self.running.into_iter().collect();
        outlived.sort_unstable();
        Ok(Finished {
            ends: self.ends,
            frames,
            sample_count: self.sample_count,
            cut_chains: self.cut_chains,
            throttled: self.throttled,
            losses: self.losses,
            outlived,
            switches_lost: self.switches_lost,
        })
    }
}

/// What symbolization needs once the streams are closed.
pub struct Finished {
    /// Samples per way their user stack ended (`dwarf`, `auto`).
    pub ends: std::collections::BTreeMap<StackEnd, u64>,
    pub frames: Vec<FrameInfo>,
    pub sample_count: u64,
    pub cut_chains: u64,
    pub throttled: u64,
    pub losses: Losses,
    /// Processes of the command's tree forked and not seen exiting (some
    /// may have exited unseen, when their exit record was lost).
    pub outlived: Vec<u32>,
    /// Off-CPU records the kernel lost.
    pub switches_lost: u64,
}

/// Executable mappings per process and the fork tree that shares them.
#[derive(Default)]
pub struct AddressSpaces {
    /// Executable mappings per process, in the order they were reported.
    pub maps: HashMap<u32, Vec<MapRange>>,
    /// Parent of each forked process: a child shares its parent's mappings until it execs.
    pub parents: HashMap<u32, u32>,
    /// Bumped by every change above, so readers can tell nothing changed.
    pub generation: u64,
}

impl AddressSpaces {
    fn chain(&self, pid: u32) -> impl Iterator<Item = u32> + '_ {
        // Bounded: a corrupt fork tree must not loop forever.
        std::iter::successors(Some(pid), |p| self.parents.get(p).copied()).take(64)
    }

    /// Mappings of `pid`, newest first, then those of the processes it was
    /// forked from.
    pub fn ranges(&self, pid: u32) -> impl Iterator<Item = &MapRange> + '_ {
        self.chain(pid)
            .filter_map(|p| self.maps.get(&p))
            .flat_map(|maps| maps.iter().rev())
    }

    /// Whether any mapping is known for `pid` or the processes it was forked from.
    pub fn knows(&self, pid: u32) -> bool {
        self.chain(pid).any(|p| self.maps.contains_key(&p))
    }

    /// The mapping of `pid` (or of the process it was forked from) that holds
    /// `address`; the latest one wins when a range was mapped again.
    pub fn lookup(&self, pid: u32, address: u64) -> Option<&MapRange> {
        self.chain(pid).find_map(|p| {
            self.maps
                .get(&p)?
                .iter()
                .rev()
                .find(|r| r.start <= address && address < r.end)
        })
    }
}

impl super::drain::Sink for Streams {
    fn handle(&mut self, tag: u32, record: Record) -> Result<(), TraceError> {
        Streams::handle(self, Event::from(record), tag)
    }

    fn tick(&mut self) -> Result<(), TraceError> {
        self.flush_if_due()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sofa_trace::{Archive, Meta};

    const BIN: u32 = 10;
    const CHILD: u32 = 11;

    fn mmap(pid: u32, start: u64, len: u64, pgoff: u64, path: &str) -> Event {
        Event::Mmap {
            time_ns: 1,
            pid,
            start,
            len,
            pgoff,
            path: path.to_owned(),
            build_id: None,
        }
    }

    fn sample(pid: u32, chain: Vec<Context>) -> Event {
        Event::Sample {
            time_ns: 5,
            pid,
            tid: pid,
            cpu: None,
            chain: Some(chain),
            period: 1,
            user: None,
        }
    }

    fn context(kernel: bool, ips: &[u64]) -> Context {
        Context {
            kernel,
            ips: ips.to_vec(),
        }
    }

    /// Feeds `events` (read from CPU 3's ring) into a fresh archive and
    /// returns the streams' finish and the frames table.
    fn run(events: Vec<Event>) -> (Finished, Vec<Frame>, Vec<Sample>) {
        run_with(events, CallGraph::Fp)
    }

    fn run_with(events: Vec<Event>, call_graph: CallGraph) -> (Finished, Vec<Frame>, Vec<Sample>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
        let mut streams = Streams::new(&archive, call_graph, 4096, true).unwrap();
        for event in events {
            streams.handle(event, 3).unwrap();
        }
        let finished = streams.finish_streams().unwrap();
        archive.finish().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let frames = archive.read_table::<Frame>().unwrap();
        let samples = archive.read_table::<Sample>().unwrap();
        (finished, frames, samples)
    }

    #[test]
    fn switch_outs_take_the_stack_of_their_sample_and_cpu_samples_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
        let mut streams = Streams::new(&archive, CallGraph::Fp, 4096, true).unwrap();
        let off = super::super::offcpu::TAG | 1;
        let switch = |time_ns, tid, out, preempted| Event::Switch {
            time_ns,
            pid: BIN,
            tid,
            cpu: None,
            out,
            preempted,
        };
        let events = [
            (mmap(BIN, 0x1000, 0x1000, 0, "/bin/app"), 1),
            (sample(BIN, vec![context(false, &[0x1100, 0x1200])]), off),
            (switch(6, BIN, true, false), off),
            (switch(9, BIN, false, false), off),
            // No sample before it (lost): a row without a stack.
            (switch(12, BIN + 1, true, true), off),
            // An old sample is not this switch's.
            (sample(BIN, vec![context(false, &[0x1300])]), off),
            (switch(5 + 2 * LEAVING_NS, BIN, true, false), off),
            (sample(BIN, vec![context(false, &[0x1100])]), 1),
            (
                Event::Lost {
                    time_ns: None,
                    count: 4,
                },
                off,
            ),
        ];
        for (event, tag) in events {
            streams.handle(event, tag).unwrap();
        }
        let finished = streams.finish_streams().unwrap();
        archive.finish().unwrap();
        assert_eq!(finished.switches_lost, 4);
        assert_eq!(
            finished.sample_count, 1,
            "switch-out samples are not CPU samples"
        );
        assert_eq!(finished.losses.total, 0);
        let archive = Archive::open(dir.path()).unwrap();
        let rows = archive.read_table::<Switch>().unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.time_ns,
                    r.tid,
                    r.cpu,
                    r.out,
                    r.preempted,
                    r.stack_id.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (6, BIN, 1, true, false, true),
                (9, BIN, 1, false, false, false),
                (12, BIN + 1, 1, true, true, false),
                (5 + 2 * LEAVING_NS, BIN, 1, true, false, false),
            ]
        );
        assert_eq!(archive.read_table::<Sample>().unwrap().len(), 1);
        // The switch-out stack is in the shared stacks table.
        let stacks = archive.read_table::<StackNode>().unwrap();
        assert!(stacks.iter().any(|n| Some(n.stack_id) == rows[0].stack_id));
    }

    #[test]
    fn return_addresses_move_back_into_the_call_and_markers_are_skipped() {
        let kernel_marker = u64::MAX - 127; // PERF_CONTEXT_KERNEL
        let (finished, frames, samples) = run(vec![
            mmap(BIN, 0x1000, 0x1000, 0, "/bin/app"),
            sample(
                BIN,
                vec![
                    context(true, &[kernel_marker, 0xffff_0010, 0xffff_0020]),
                    context(false, &[0x1100, 0x1200, 0, 0x1300]),
                ],
            ),
        ]);
        // Root first: the outermost user frame was interned first.
        let got: Vec<(u64, bool)> = finished
            .frames
            .iter()
            .map(|f| (f.key.address, f.key.kernel))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x12ff, false),
                (0x11ff, false),
                (0x1100, false),
                (0xffff_001f, true),
                (0xffff_0010, true),
            ]
        );
        // Kernel frames belong to no process: shared by all.
        assert!(
            finished
                .frames
                .iter()
                .all(|f| f.key.kernel == (f.key.pid == 0))
        );
        assert_eq!(frames.len(), 5);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].cpu, 3, "the ring's CPU when the record has none");
        assert_eq!(samples[0].stack_id, Some(4), "the innermost node");
    }

    #[test]
    fn a_forked_child_uses_its_parents_mappings_until_it_maps_its_own() {
        let (finished, frames, _) = run(vec![
            mmap(BIN, 0x1000, 0x1000, 0x200, "/bin/app"),
            Event::Fork {
                time_ns: 2,
                pid: CHILD,
                tid: CHILD,
                ppid: BIN,
                ptid: BIN,
            },
            sample(CHILD, vec![context(false, &[0x1500])]),
            // The child execs something else over the same range.
            mmap(CHILD, 0x1000, 0x1000, 0, "/bin/other"),
            sample(CHILD, vec![context(false, &[0x1600])]),
            sample(BIN, vec![context(false, &[0x1600])]),
        ]);
        let files: Vec<(u32, Option<(String, u64)>)> = finished
            .frames
            .iter()
            .map(|f| {
                (
                    f.key.pid,
                    f.file.as_ref().map(|(p, off)| (p.to_string(), *off)),
                )
            })
            .collect();
        assert_eq!(
            files,
            vec![
                (CHILD, Some(("/bin/app".to_owned(), 0x700))),
                (CHILD, Some(("/bin/other".to_owned(), 0x600))),
                (BIN, Some(("/bin/app".to_owned(), 0x800))),
            ]
        );
        assert_eq!(frames[0].file_offset, Some(0x700));
        assert_eq!(frames[1].mapping_id, Some(1));
    }

    #[test]
    fn frame_kinds_follow_the_mapping() {
        let (finished, frames, _) = run(vec![
            mmap(BIN, 0x1000, 0x1000, 0, "/bin/app"),
            mmap(BIN, 0x7000, 0x1000, 0, "//anon"),
            mmap(BIN, 0x9000, 0x1000, 0, "[vdso]"),
            sample(BIN, vec![context(false, &[0x1100])]),
            sample(BIN, vec![context(false, &[0x7100])]),
            sample(BIN, vec![context(false, &[0x9100])]),
            sample(BIN, vec![context(false, &[0x5000])]),
            sample(BIN, vec![context(true, &[0xffff_0000])]),
        ]);
        let kinds: Vec<&str> = frames.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["user", "jit", "user", "user", "kernel"]);
        // Only real files (and the vDSO, whose image sofa has too) are
        // read for symbols later.
        let files: Vec<bool> = finished.frames.iter().map(|f| f.file.is_some()).collect();
        assert_eq!(files, [true, false, true, false, false]);
        assert_eq!(frames[3].mapping_id, None, "an address in no mapping");
    }

    #[test]
    fn losses_and_unknown_records_are_counted() {
        let (finished, _, _) = run(vec![
            Event::Lost {
                time_ns: Some(9),
                count: 4,
            },
            Event::Lost {
                time_ns: None,
                count: 1,
            },
            Event::Unknown,
            Event::Ignored,
            Event::Throttle,
        ]);
        assert_eq!(finished.throttled, 1);
        assert_eq!(finished.losses.total, 5);
        let rows: Vec<(u64, Option<u32>, u64)> = finished
            .losses
            .rows
            .iter()
            .map(|r| (r.time_ns, r.cpu, r.count))
            .collect();
        assert_eq!(rows, [(9, Some(3), 4), (0, Some(3), 1)]);
        assert!(finished.losses.rows.iter().all(|r| r.collector == "cpu"));
    }

    /// Addresses of the user frames, in the order they were streamed.
    fn user_addresses(frames: &[Frame]) -> Vec<u64> {
        frames
            .iter()
            .filter(|f| f.kind == "user")
            .map(|f| f.address)
            .collect()
    }

    /// A sample whose user stack copy cannot be unwound (its address is in
    /// no file sofa can read) but whose frame-pointer chain is in mappings.
    fn unwindable_only_by_fp() -> Vec<Event> {
        let mut s = sample(
            BIN,
            vec![
                context(true, &[0xffff_ffff_8100_0000]),
                context(false, &[0x1010, 0x1020, 0x1030]),
            ],
        );
        if let Event::Sample { user, .. } = &mut s {
            // A frame pointer past the copy: the unwind stops at once.
            *user = Some(UserStack {
                ip: 0x1010,
                sp: 0x7000,
                bp: 0x9000,
                stack: vec![0; 64],
            });
        }
        vec![mmap(BIN, 0x1000, 0x1000, 0, "/nonexistent/bin"), s]
    }

    #[test]
    fn auto_keeps_the_frame_pointer_chain_when_unwinding_gets_less() {
        let (finished, frames, _) = run_with(unwindable_only_by_fp(), CallGraph::Auto);
        assert_eq!(finished.ends.get(&StackEnd::FramePointers), Some(&1));
        let user = user_addresses(&frames);
        assert_eq!(
            user,
            [0x102f, 0x101f, 0x1010],
            "outermost first, return addresses - 1"
        );
    }

    #[test]
    fn dwarf_keeps_what_it_unwound_and_says_how_it_ended() {
        let (finished, frames, _) = run_with(unwindable_only_by_fp(), CallGraph::Dwarf);
        assert_eq!(finished.ends.len(), 1, "{:?}", finished.ends);
        assert!(!finished.ends.contains_key(&StackEnd::FramePointers));
        assert!(!finished.ends.contains_key(&StackEnd::Root));
        let user = user_addresses(&frames);
        assert_eq!(
            user,
            [0x1010],
            "the kernel's frame-pointer chain is not used"
        );
        assert_eq!(frames.iter().filter(|f| f.kind == "kernel").count(), 1);
    }

    #[test]
    fn a_sample_without_a_user_stack_keeps_its_chain() {
        let (finished, frames, _) = run_with(
            vec![sample(BIN, vec![context(true, &[0xffff_ffff_8100_0000])])],
            CallGraph::Dwarf,
        );
        assert_eq!(finished.ends.get(&StackEnd::NoUserStack), Some(&1));
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn a_frame_seen_before_its_mapping_gets_its_file_at_the_end() {
        // The sample's ring was read before the ring holding the mmap record.
        let (finished, frames, _) = run(vec![
            sample(BIN, vec![context(false, &[0x5010])]),
            mmap(BIN, 0x5000, 0x1000, 0x2000, "/usr/lib/libfoo.so"),
        ]);
        assert_eq!(
            frames[0].mapping_id, None,
            "streamed before the mapping was known"
        );
        let file = finished.frames[0]
            .file
            .as_ref()
            .expect("filled in at the end");
        assert_eq!((&*file.0, file.1), ("/usr/lib/libfoo.so", 0x2010));
    }
}
