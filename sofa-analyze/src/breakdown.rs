//! Per-step breakdown: what each training step spent its time on.

use crate::Gaps;
use crate::WaitList;
use crate::labels::Labelled;
use crate::waits::overlap;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

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
    /// null without context switches, and for a step that overlaps a span
    /// in which switches were not recorded (above `--switch-rate`).
    pub main_waits_ns: Option<ByName>,
    /// The main process's CPU samples in the step per framework phase
    /// (forward, backward, optimizer, data loading, communication, other);
    /// null when no sample has a framework phase (`phases`).
    pub samples_by_phase: Option<ByName>,
}

/// Counts by name (wait reasons, framework phases: a few names), in
/// name order; written as a map. A step's take 24 bytes a name (a map of
/// them took a node of ~400 bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ByName(Vec<(&'static str, u64)>);

impl ByName {
    /// Adds `n` to `name`'s count (a name added is there, even with 0).
    pub fn add(&mut self, name: &'static str, n: u64) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&name)) {
            Ok(i) => self.0[i].1 += n,
            Err(i) => self.0.insert(i, (name, n)),
        }
    }

    /// The names and their counts, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The count of `name`, if added.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, n)| *n)
    }
}

impl Serialize for ByName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, n) in &self.0 {
            map.serialize_entry(name, n)?;
        }
        map.end()
    }
}

/// Index of the step holding `t`, if inside the loop.
fn step_of(boundaries: &[u64], t: u64) -> Option<usize> {
    let i = boundaries.partition_point(|&b| b <= t);
    (i > 0 && i < boundaries.len()).then(|| i - 1)
}

/// The breakdown of each step between `boundaries`; `main_waits`: the
/// waits and the main process's id (its main thread's are counted), when
/// context switches were recorded, except in
/// `untraced` (a step that overlaps a span off gets none: it would show
/// waits missing). Fails only where the system calls or packets, read
/// again, fail to read.
pub(crate) fn step_breakdown(
    i: &Labelled,
    boundaries: &[u64],
    main_waits: Option<(&WaitList, u32)>,
    untraced: &Gaps,
) -> Result<Vec<StepBreakdown>, sofa_trace::TraceError> {
    let b = boundaries;
    if b.len() < 2 {
        return Ok(Vec::new());
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
            main_waits_ns: main_waits
                .filter(|_| untraced.covered(w[0], w[1]) == w[1] - w[0])
                .map(|_| ByName::default()),
            samples_by_phase: None,
        })
        .collect();
    // A wait across a boundary counts in each step for its part there.
    let mine = main_waits
        .into_iter()
        .flat_map(|(waits, main)| waits.iter().filter(move |w| w.pid == main && w.tid == main));
    for w in mine {
        let first = b.partition_point(|&t| t <= w.start_ns).saturating_sub(1);
        for (row, win) in rows.iter_mut().zip(b.windows(2)).skip(first) {
            if win[0] >= w.end_ns {
                break;
            }
            let d = overlap(&w, win[0], win[1]);
            if d > 0
                && let Some(by) = &mut row.main_waits_ns
            {
                by.add(w.reason.as_str(), d);
            }
        }
    }
    i.samples.for_each(|s| {
        if let (Some(step), Some(swarm)) = (step_of(b, s.time_ns), i.swarm_of(s.stack_id())) {
            rows[step].samples_by_swarm[swarm.0] += 1;
        }
    })?;
    i.syscalls.for_each(|c| {
        if let (Some(step), Some(d)) = (step_of(b, c.time_ns), c.duration_ns()) {
            rows[step].syscall_ns += d;
            if i.syscalls.is_io(c) {
                rows[step].io_ns += d;
            }
        }
    })?;
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
    i.net.for_each(|e| {
        if let Some(step) = step_of(b, e.time_ns) {
            rows[step].net_bytes += u64::from(e.len);
        }
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fasthash::StackMap;
    use crate::net::Packets;
    use crate::syscalls::Calls;
    use crate::waits::Wait;
    use sofa_trace::WaitReason;

    #[test]
    fn a_step_that_overlaps_a_gap_in_switch_records_has_no_waits() {
        let (stacks, calls, packets) = (StackMap::default(), Calls::default(), Packets::default());
        let samples = crate::Samples::default();
        let labelled = Labelled::new(&samples, &stacks, &[], 0, &calls, false, &[], &packets);
        let wait = |start_ns, end_ns| Wait {
            pid: 1,
            tid: 1,
            start_ns,
            end_ns,
            reason: WaitReason::Lock,
            stack_id: None,
            own_stack: false,
        };
        // Steps of 100 ns; switches not recorded in 150..180.
        let waits = WaitList::from(&[wait(20, 50), wait(120, 150), wait(210, 240)][..]);
        let gaps = Gaps::from(vec![(150, 180)]);
        let rows =
            step_breakdown(&labelled, &[0, 100, 200, 300], Some((&waits, 1)), &gaps).unwrap();
        let lock = |row: &StepBreakdown| row.main_waits_ns.as_ref().and_then(|by| by.get("lock"));
        assert_eq!(
            rows.iter().map(lock).collect::<Vec<_>>(),
            [Some(30), None, Some(30)]
        );
        // Without gaps every step has its waits.
        let rows = step_breakdown(
            &labelled,
            &[0, 100, 200, 300],
            Some((&waits, 1)),
            &Gaps::default(),
        )
        .unwrap();
        assert_eq!(lock(&rows[1]), Some(30));
    }
}
