//! Per-step breakdown: what each training step spent its time on.

use crate::labels::Labelled;
use crate::waits::{Wait, overlap};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepBreakdown {
    pub step: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_ns: u64,
    /// CPU samples in the step, per swarm id (index = swarm id).
    pub samples_by_swarm: Vec<u64>,
    /// Time inside system calls that started in the step (summed over threads).
    pub syscall_ns: u64,
    /// The part of `syscall_ns` spent in read/write-like calls.
    pub io_ns: u64,
    /// Share of GPU samples in the step with the GPU busy (utilisation > 0); null without GPU data.
    pub gpu_busy_share: Option<f64>,
    /// Bytes the kernel sent or received in the step (all interfaces, tracepoints).
    pub net_bytes: u64,
    /// The main thread's time off the CPU in the step, per wait reason, ns;
    /// null without context switches.
    pub main_waits_ns: Option<BTreeMap<String, u64>>,
    /// The main process's CPU samples in the step per framework phase
    /// (forward, backward, optimizer, data loading, communication, other);
    /// null when no sample has a framework phase (`phases`).
    pub samples_by_phase: Option<BTreeMap<String, u64>>,
}

/// Index of the step holding `t`, if inside the loop.
fn step_of(boundaries: &[u64], t: u64) -> Option<usize> {
    let i = boundaries.partition_point(|&b| b <= t);
    (i > 0 && i < boundaries.len()).then(|| i - 1)
}

/// The breakdown of each step between `boundaries`; `main_waits`: the
/// main thread's waits, when context switches were recorded.
pub(crate) fn step_breakdown(
    i: &Labelled,
    boundaries: &[u64],
    main_waits: Option<&[Wait]>,
) -> Vec<StepBreakdown> {
    let b = boundaries;
    if b.len() < 2 {
        return Vec::new();
    }
    let mut rows: Vec<StepBreakdown> = b
        .windows(2)
        .enumerate()
        .map(|(step, w)| StepBreakdown {
            step,
            start_ns: w[0],
            end_ns: w[1],
            duration_ns: w[1] - w[0],
            samples_by_swarm: vec![0; i.swarms],
            syscall_ns: 0,
            io_ns: 0,
            gpu_busy_share: None,
            net_bytes: 0,
            main_waits_ns: main_waits.map(|_| BTreeMap::new()),
            samples_by_phase: None,
        })
        .collect();
    // A wait across a boundary counts in each step for its part there.
    for w in main_waits.unwrap_or_default() {
        let first = b.partition_point(|&t| t <= w.start_ns).saturating_sub(1);
        for (row, win) in rows.iter_mut().zip(b.windows(2)).skip(first) {
            if win[0] >= w.end_ns {
                break;
            }
            let d = overlap(w, win[0], win[1]);
            if d > 0
                && let Some(by) = &mut row.main_waits_ns
            {
                *by.entry(w.reason.as_str().to_owned()).or_default() += d;
            }
        }
    }
    for s in i.samples {
        if let (Some(step), Some(swarm)) = (step_of(b, s.time_ns), i.swarm_of(s.stack_id)) {
            rows[step].samples_by_swarm[swarm.0] += 1;
        }
    }
    for c in &i.syscalls.rows {
        if let (Some(step), Some(d)) = (step_of(b, c.time_ns), c.duration_ns()) {
            rows[step].syscall_ns += d;
            if i.syscalls.is_io(c) {
                rows[step].io_ns += d;
            }
        }
    }
    let mut gpu: Vec<(u64, u64)> = vec![(0, 0); rows.len()];
    for g in i.gpu {
        if let (Some(step), Some(util)) = (step_of(b, g.time_ns), g.util_gpu) {
            gpu[step].0 += u64::from(util > 0.0);
            gpu[step].1 += 1;
        }
    }
    for (row, (busy, all)) in rows.iter_mut().zip(gpu) {
        row.gpu_busy_share = (all > 0).then(|| busy as f64 / all as f64);
    }
    for e in &i.net.rows {
        if let Some(step) = step_of(b, e.time_ns) {
            rows[step].net_bytes += u64::from(e.len);
        }
    }
    rows
}
