//! Samples per process and per thread, named by the kernel's comm records.

use crate::AnalyzeError;
use crate::Samples;
use crate::fasthash::FastMap;
use serde::Serialize;
use sofa_trace::Archive;
use sofa_trace::tables::TaskEvent;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub samples: u64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadRow {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub samples: u64,
    pub share: f64,
    /// Share of the thread's Python snapshots in which it held the GIL;
    /// null for a thread with none (not Python, or `--no-python`).
    pub gil_held: Option<f64>,
    /// Share of its time it waited off the CPU (first to last context
    /// switch); null without context switches (`--no-off-cpu`, before 1.5).
    pub wait_share: Option<f64>,
    /// What it waited for most (a `waits` reason); null as `wait_share`.
    pub top_wait: Option<String>,
}

/// Thread names: each thread's last comm; a thread that never set one has
/// the name of the thread it was forked from.
pub(crate) struct Names {
    own: HashMap<u32, (u64, String)>,
    forked_from: HashMap<u32, u32>,
    /// Each process's last exec: what ran before it was another program.
    pub(crate) last_exec: HashMap<u32, u64>,
}

impl Names {
    pub(crate) fn read(archive: &Archive) -> Result<Names, AnalyzeError> {
        Ok(Names::new(archive.read_table::<TaskEvent>()?))
    }

    fn new(events: Vec<TaskEvent>) -> Names {
        let mut own: HashMap<u32, (u64, String)> = HashMap::new();
        let mut forked_from = HashMap::new();
        let mut last_exec: HashMap<u32, u64> = HashMap::new();
        for e in events {
            if e.kind == "exec" {
                let t = last_exec.entry(e.pid).or_insert(e.time_ns);
                *t = (*t).max(e.time_ns);
            }
            match (e.kind.as_str(), e.comm, e.ptid) {
                ("comm" | "exec", Some(comm), _) => {
                    let slot = own.entry(e.tid).or_insert((e.time_ns, comm.clone()));
                    if e.time_ns >= slot.0 {
                        *slot = (e.time_ns, comm);
                    }
                }
                ("fork", _, Some(ptid)) if ptid != e.tid => {
                    forked_from.insert(e.tid, ptid);
                }
                _ => {}
            }
        }
        Names {
            own,
            forked_from,
            last_exec,
        }
    }

    pub(crate) fn of(&self, tid: u32) -> String {
        let mut current = tid;
        for _ in 0..64 {
            if let Some((_, comm)) = self.own.get(&current) {
                return comm.clone();
            }
            match self.forked_from.get(&current) {
                Some(&parent) => current = parent,
                None => break,
            }
        }
        "[unknown]".to_owned()
    }
}

pub(crate) fn processes_and_threads(
    names: &Names,
    samples: &Samples,
) -> (Vec<ProcessRow>, Vec<ThreadRow>) {
    let per_thread = samples.tally().per_thread();
    let total = samples.len();
    let share = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut per_process: FastMap<u32, u64> = FastMap::default();
    for (&(pid, _), &n) in &per_thread {
        *per_process.entry(pid).or_default() += n;
    }
    let mut processes: Vec<ProcessRow> = per_process
        .into_iter()
        .map(|(pid, samples)| ProcessRow {
            pid,
            comm: names.of(pid),
            samples,
            share: share(samples),
        })
        .collect();
    processes.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.pid.cmp(&b.pid)));
    let mut threads: Vec<ThreadRow> = per_thread
        .into_iter()
        .map(|((pid, tid), samples)| ThreadRow {
            pid,
            tid,
            comm: names.of(tid),
            samples,
            share: share(samples),
            gil_held: None,
            wait_share: None,
            top_wait: None,
        })
        .collect();
    threads.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.tid.cmp(&b.tid)));
    (processes, threads)
}
