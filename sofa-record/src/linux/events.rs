//! The CPU collector's one boundary with the kernel: perf records become
//! plain events here, so everything after (collect.rs) is tested on
//! hand-made events, without root or a kernel.

use perf_event_open::sample::record::ctx::Switch;
use perf_event_open::sample::record::sample::CallChain;
use perf_event_open::sample::record::{Record, RecordId};

/// One context of a call chain: its addresses, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub kernel: bool,
    pub ips: Vec<u64>,
}

/// What a sample copied of the user context, for unwinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStack {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Stack bytes from `sp` up.
    pub stack: Vec<u8>,
}

/// A perf record as the CPU collector uses it ([`Event::from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sample {
        time_ns: u64,
        pid: u32,
        tid: u32,
        /// The CPU the record says; else the ring buffer's.
        cpu: Option<u32>,
        chain: Option<Vec<Context>>,
        period: u64,
        /// User registers and the copy of the user stack from SP
        /// (`--call-graph dwarf|auto`).
        user: Option<UserStack>,
    },
    /// An executable mapping.
    Mmap {
        time_ns: u64,
        pid: u32,
        start: u64,
        len: u64,
        pgoff: u64,
        path: String,
        build_id: Option<String>,
    },
    Comm {
        time_ns: u64,
        pid: u32,
        tid: u32,
        comm: String,
        /// Renamed by `execve` rather than by `prctl`.
        exec: bool,
    },
    Fork {
        time_ns: u64,
        pid: u32,
        tid: u32,
        ppid: u32,
        ptid: u32,
    },
    Exit {
        time_ns: u64,
        pid: u32,
        tid: u32,
        ppid: u32,
        ptid: u32,
    },
    Lost {
        time_ns: Option<u64>,
        count: u64,
    },
    /// A thread left a CPU (`out`; `preempted` if still runnable) or got one.
    Switch {
        time_ns: u64,
        pid: u32,
        tid: u32,
        cpu: Option<u32>,
        out: bool,
        preempted: bool,
    },
    /// The kernel stopped sampling for a while: too much time in sampling
    /// interrupts (kernel.perf_cpu_time_max_percent).
    Throttle,
    /// Known and of no use here (data mappings, throttling).
    Ignored,
    /// A record this collector does not know; counted.
    Unknown,
}

impl From<Record> for Event {
    fn from(record: Record) -> Event {
        let time = |id: &Option<RecordId>| id.as_ref().and_then(|r| r.time);
        match record {
            Record::Sample(s) => {
                let id = &s.record_id;
                let (pid, tid) = id.task.as_ref().map_or((0, 0), |t| (t.pid, t.tid));
                let chain = s.call_chain.map(|chain| {
                    chain
                        .into_iter()
                        .filter_map(|segment| match segment {
                            CallChain::Kernel(ips) => Some(Context { kernel: true, ips }),
                            CallChain::User(ips) => Some(Context { kernel: false, ips }),
                            _ => None,
                        })
                        .collect()
                });
                // Registers in the order of their bits: BP, SP, IP. A
                // kernel thread has none (ABI "none": an empty list).
                let user = match (s.user_regs, s.user_stack) {
                    (Some((regs, _)), Some(stack)) if regs.len() == 3 => Some(UserStack {
                        bp: regs[0],
                        sp: regs[1],
                        ip: regs[2],
                        stack,
                    }),
                    _ => None,
                };
                Event::Sample {
                    time_ns: id.time.unwrap_or(0),
                    pid,
                    tid,
                    cpu: id.cpu,
                    chain,
                    period: s.period.unwrap_or(0),
                    user,
                }
            }
            Record::Mmap(m) if m.executable => Event::Mmap {
                time_ns: time(&m.record_id).unwrap_or(0),
                pid: m.task.pid,
                start: m.addr,
                len: m.len,
                pgoff: m.page_offset,
                path: m.file.to_string_lossy().into_owned(),
                build_id: m.ext.as_ref().and_then(|ext| match &ext.info {
                    perf_event_open::sample::record::mmap::Info::BuildId(bytes) => {
                        Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
                    }
                    _ => None,
                }),
            },
            Record::Comm(c) => Event::Comm {
                time_ns: time(&c.record_id).unwrap_or(0),
                pid: c.task.pid,
                tid: c.task.tid,
                comm: c.comm.to_string_lossy().into_owned(),
                exec: c.by_execve,
            },
            Record::Fork(f) => Event::Fork {
                time_ns: f.time,
                pid: f.task.pid,
                tid: f.task.tid,
                ppid: f.parent_task.pid,
                ptid: f.parent_task.tid,
            },
            Record::Exit(e) => Event::Exit {
                time_ns: e.time,
                pid: e.task.pid,
                tid: e.task.tid,
                ppid: e.parent_task.pid,
                ptid: e.parent_task.tid,
            },
            Record::LostRecords(l) => Event::Lost {
                time_ns: time(&l.record_id),
                count: l.lost_records,
            },
            Record::LostSamples(l) => Event::Lost {
                time_ns: time(&l.record_id),
                count: l.lost_samples,
            },
            Record::CtxSwitch(c) => {
                let id = c.record_id.as_ref();
                let (pid, tid) = id
                    .and_then(|r| r.task.as_ref())
                    .map_or((0, 0), |t| (t.pid, t.tid));
                let (out, preempted) = match c.info {
                    Switch::OutTo { preempt, .. } => (true, preempt),
                    Switch::InFrom(_) => (false, false),
                };
                Event::Switch {
                    time_ns: id.and_then(|r| r.time).unwrap_or(0),
                    pid,
                    tid,
                    cpu: id.and_then(|r| r.cpu),
                    out,
                    preempted,
                }
            }
            Record::Throttle(_) => Event::Throttle,
            Record::Mmap(_) | Record::Unthrottle(_) => Event::Ignored,
            _ => Event::Unknown,
        }
    }
}
