//! What overlaps each swarm: the system calls, GPU activity and network
//! traffic that happen while the swarm's functions are the ones running.
//!
//! A system call belongs to the swarm of its thread's nearest CPU sample (the
//! function that was running when it was made); GPU and network samples,
//! which have no thread, belong to the swarm running on the busiest thread
//! at that moment.

use crate::fasthash::FastMap;
use crate::labels::Labelled;
use crate::swarms::Swarm;
use sofa_trace::TraceError;

/// Samples further than this from an event do not say what ran then.
const TOLERANCE_NS: u64 = 5_000_000;

/// Per thread: (time, swarm id) of its samples, in time order.
struct Timelines(FastMap<u32, Vec<(u64, usize)>>);

impl Timelines {
    fn swarm_at(&self, tid: u32, t: u64) -> Option<usize> {
        let line = self.0.get(&tid)?;
        let i = line.partition_point(|&(time, _)| time < t);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| line.get(j))
            .filter(|(time, _)| time.abs_diff(t) <= TOLERANCE_NS)
            .min_by_key(|(time, _)| time.abs_diff(t))
            .map(|&(_, swarm)| swarm)
    }
}

/// Fills the overlap fields of `swarms`.
/// Fails only where the system calls or packets, read again, fail to read.
pub(crate) fn add_overlaps(swarms: &mut [Swarm], i: &Labelled) -> Result<(), TraceError> {
    // Timelines of the threads that made system calls and of the busiest
    // thread (GPU and network samples), not of every thread: 16 bytes a
    // sample.
    let in_swarm = |stack: Option<u64>| i.swarm_of(stack).is_some_and(|w| w.0 < swarms.len());
    let mut per_thread: FastMap<u32, usize> = FastMap::default();
    for ((stack, _, tid), n) in i.samples.tally().per_stack_thread() {
        if in_swarm(stack) {
            *per_thread.entry(tid).or_default() += n as usize;
        }
    }
    let busiest = per_thread
        .iter()
        .max_by_key(|(tid, n)| (**n, std::cmp::Reverse(**tid)))
        .map(|(tid, _)| *tid);
    let mut lines: FastMap<u32, Vec<(u64, usize)>> = per_thread
        .iter()
        .filter(|(tid, _)| i.syscalls.made_calls(**tid))
        .map(|(&tid, &n)| (tid, Vec::with_capacity(n)))
        .collect();
    if let Some(tid) = busiest {
        lines
            .entry(tid)
            .or_insert_with(|| Vec::with_capacity(per_thread[&tid]));
    }
    i.samples.for_each(|s| {
        if let Some(line) = lines.get_mut(&s.tid).filter(|_| in_swarm(s.stack_id())) {
            let swarm = i.swarm_of(s.stack_id()).expect("in a swarm");
            line.push((s.time_ns, swarm.0));
        }
    })?;
    for line in lines.values_mut() {
        line.sort_unstable();
    }
    let timelines = Timelines(lines);

    i.syscalls.for_each(|c| {
        if let Some(swarm) = timelines.swarm_at(c.tid, c.time_ns) {
            swarms[swarm].syscalls += 1;
            swarms[swarm].syscall_ns += c.duration_ns().unwrap_or(0);
        }
    })?;
    let Some(main) = busiest else { return Ok(()) };
    let mut gpu: Vec<(f64, u64)> = vec![(0.0, 0); swarms.len()];
    for g in i.gpu {
        if let (Some(swarm), Some(util)) = (timelines.swarm_at(main, g.time_ns), g.util_gpu) {
            gpu[swarm].0 += util;
            gpu[swarm].1 += 1;
        }
    }
    for (swarm, (sum, n)) in swarms.iter_mut().zip(gpu) {
        swarm.gpu_util_mean = (n > 0).then(|| sum / n as f64);
    }
    i.net.for_each(|e| {
        if let Some(swarm) = timelines.swarm_at(main, e.time_ns) {
            swarms[swarm].net_bytes += u64::from(e.len);
        }
    })
}
