//! Turns the kernel's perf records into archive rows, as they stream in.

use super::collector::Losses;
use perf_event_open::sample::record::Record;
use perf_event_open::sample::record::sample::CallChain;
use sofa_trace::tables::{Frame, Mapping, Sample, StackNode, TaskEvent};
use sofa_trace::{ArchiveWriter, CollectorName, FrameKind, TableWriter, TraceError};
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

/// Paths that name no file we could open for symbols.
fn is_pseudo(path: &str) -> bool {
    is_anonymous(path) || path.starts_with('[') || path.starts_with("/memfd:")
}

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
    pub sample_count: u64,
    pub unknown_records: u64,
}

impl Streams {
    pub fn new(archive: &ArchiveWriter) -> Result<Streams, TraceError> {
        Ok(Streams {
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
            sample_count: 0,
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
            .filter(|m| !is_pseudo(&m.path))
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
    fn intern_chain(&mut self, pid: u32, chain: &[CallChain]) -> Result<Option<u64>, TraceError> {
        // Innermost first: (address, kernel). Within each context the first
        // address is where execution was; the others are return addresses,
        // moved back by one byte into the call instruction so they resolve
        // to the calling line and function.
        let mut frames: Vec<(u64, bool)> = Vec::new();
        for segment in chain {
            let (ips, kernel) = match segment {
                CallChain::Kernel(ips) => (ips, true),
                CallChain::User(ips) => (ips, false),
                _ => continue,
            };
            for (i, &ip) in ips.iter().enumerate() {
                if ip == 0 || ip >= u64::MAX - 4095 {
                    continue;
                }
                frames.push((if i == 0 { ip } else { ip - 1 }, kernel));
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

    pub fn handle(&mut self, record: Record, cpu: u32) -> Result<(), TraceError> {
        match record {
            Record::Sample(s) => {
                let id = &s.record_id;
                let task = id.task.clone().map(|t| (t.pid, t.tid)).unwrap_or((0, 0));
                if task.0 != 0 && !self.spaces.knows(task.0) && self.maps_read.insert(task.0) {
                    self.read_proc_maps(task.0, id.time.unwrap_or(0))?;
                }
                let stack_id = match &s.call_chain {
                    Some(chain) => self.intern_chain(task.0, chain)?,
                    None => None,
                };
                self.samples.push(Sample {
                    time_ns: id.time.unwrap_or(0),
                    pid: task.0,
                    tid: task.1,
                    cpu: id.cpu.unwrap_or(cpu),
                    stack_id,
                    event: 0,
                    period: s.period.unwrap_or(0),
                })?;
                self.sample_count += 1;
            }
            Record::Mmap(m) => {
                if !m.executable {
                    return Ok(());
                }
                let path = m.file.to_string_lossy().into_owned();
                let build_id = m.ext.as_ref().and_then(|ext| match &ext.info {
                    perf_event_open::sample::record::mmap::Info::BuildId(bytes) => {
                        Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
                    }
                    _ => None,
                });
                let time_ns = m.record_id.as_ref().and_then(|r| r.time).unwrap_or(0);
                self.add_mapping(
                    m.task.pid,
                    time_ns,
                    m.addr,
                    m.len,
                    m.page_offset,
                    path,
                    build_id,
                )?;
            }
            Record::Comm(c) => {
                let time_ns = c.record_id.as_ref().and_then(|r| r.time).unwrap_or(0);
                self.tasks.push(TaskEvent {
                    time_ns,
                    kind: if c.by_execve { "exec" } else { "comm" }.into(),
                    pid: c.task.pid,
                    tid: c.task.tid,
                    ppid: None,
                    ptid: None,
                    comm: Some(c.comm.to_string_lossy().into_owned()),
                })?;
            }
            Record::Fork(f) => {
                if f.task.pid != f.parent_task.pid {
                    self.spaces.parents.insert(f.task.pid, f.parent_task.pid);
                }
                self.tasks.push(TaskEvent {
                    time_ns: f.time,
                    kind: "fork".into(),
                    pid: f.task.pid,
                    tid: f.task.tid,
                    ppid: Some(f.parent_task.pid),
                    ptid: Some(f.parent_task.tid),
                    comm: None,
                })?;
            }
            Record::Exit(e) => {
                self.tasks.push(TaskEvent {
                    time_ns: e.time,
                    kind: "exit".into(),
                    pid: e.task.pid,
                    tid: e.task.tid,
                    ppid: Some(e.parent_task.pid),
                    ptid: Some(e.parent_task.tid),
                    comm: None,
                })?;
            }
            Record::LostRecords(_) | Record::LostSamples(_) => self.losses.count(cpu, &record),
            Record::Throttle(_) | Record::Unthrottle(_) => {}
            _ => self.unknown_records += 1,
        }
        Ok(())
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
        self.samples.flush_if_due()?;
        self.stacks.flush_if_due()?;
        self.frames_out.flush_if_due()?;
        self.tasks.flush_if_due()?;
        self.mappings_out.flush_if_due()
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
        self.samples.finish()?;
        self.stacks.finish()?;
        self.frames_out.finish()?;
        self.tasks.finish()?;
        self.mappings_out.finish()?;
        Ok(Finished {
            frames: self.frames,
            sample_count: self.sample_count,
            losses: self.losses,
        })
    }
}

/// What symbolization needs once the streams are closed.
pub struct Finished {
    pub frames: Vec<FrameInfo>,
    pub sample_count: u64,
    pub losses: Losses,
}

/// Executable mappings per process and the fork tree that shares them.
#[derive(Default)]
pub struct AddressSpaces {
    /// Executable mappings per process, in the order they were reported.
    pub maps: HashMap<u32, Vec<MapRange>>,
    /// Parent of each forked process: a child shares its parent's mappings until it execs.
    pub parents: HashMap<u32, u32>,
}

impl AddressSpaces {
    fn chain(&self, pid: u32) -> impl Iterator<Item = u32> + '_ {
        // Bounded: a corrupt fork tree must not loop forever.
        std::iter::successors(Some(pid), |p| self.parents.get(p).copied()).take(64)
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
        Streams::handle(self, record, tag)
    }

    fn tick(&mut self) -> Result<(), TraceError> {
        self.flush_if_due()
    }
}
