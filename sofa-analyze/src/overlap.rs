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
use crate::varint::{get, put};
use sofa_trace::TraceError;

/// Samples further than this from an event do not say what ran then.
const TOLERANCE_NS: u64 = 5_000_000;

/// Per thread, its samples' swarms as runs: each run a stretch of samples
/// of one swarm, none more than twice the tolerance after the one before.
struct Timelines(FastMap<u32, Timeline>);

impl Timelines {
    fn swarm_at(&self, tid: u32, t: u64) -> Option<usize> {
        self.0.get(&tid)?.swarm_at(t)
    }
}

/// Samples of one swarm in a row: the first's time, the last's after it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    first: u64,
    span: u32,
    swarm: u32,
}

impl Run {
    fn last(&self) -> u64 {
        self.first + u64::from(self.span)
    }
}

/// Runs per block of a [`Timeline`]: a lookup reads at most this many.
const BLOCK: usize = 16;

/// One thread's runs, in time order, packed: each run its gap after the
/// run before (left out for a block's first, whose time the block's entry
/// has), its span and its swarm, as LEB128 bytes (~6.5 bytes a run where
/// a struct took 16: the synthetic benchmark's swarm changes every ~4
/// samples).
#[derive(Debug, Default)]
struct Timeline {
    bytes: Vec<u8>,
    /// Per block of `BLOCK` runs: its first run's first time, and where
    /// its bytes start.
    blocks: Vec<(u64, usize)>,
    runs: usize,
    /// The run samples still join.
    open: Option<Run>,
    /// The last packed run's last time.
    packed_last: u64,
}

impl Timeline {
    /// Adds a sample at `time` of `swarm`, no earlier than the last one
    /// added (at the same time, of no lower swarm).
    fn push(&mut self, time: u64, swarm: usize) {
        if let Some(run) = &mut self.open
            && run.swarm as usize == swarm
            && time - run.last() <= 2 * TOLERANCE_NS
            && let Ok(span) = u32::try_from(time - run.first)
        {
            run.span = span;
            return;
        }
        self.seal();
        self.open = Some(Run {
            first: time,
            span: 0,
            swarm: swarm as u32,
        });
    }

    /// Packs the open run: after the last sample, before a lookup.
    fn seal(&mut self) {
        let Some(run) = self.open.take() else {
            return;
        };
        if self.runs.is_multiple_of(BLOCK) {
            self.blocks.push((run.first, self.bytes.len()));
        } else {
            put(&mut self.bytes, run.first - self.packed_last);
        }
        put(&mut self.bytes, u64::from(run.span));
        put(&mut self.bytes, u64::from(run.swarm));
        self.packed_last = run.last();
        self.runs += 1;
    }

    /// The runs of block `b`, in order.
    fn block(&self, b: usize) -> impl Iterator<Item = Run> + '_ {
        let (first, mut at) = self.blocks[b];
        let n = BLOCK.min(self.runs - b * BLOCK);
        let mut last = None;
        (0..n).map(move |_| {
            let first = match last {
                None => first,
                Some(last) => last + get(&self.bytes, &mut at),
            };
            let span = get(&self.bytes, &mut at) as u32;
            let swarm = get(&self.bytes, &mut at) as u32;
            let run = Run { first, span, swarm };
            last = Some(run.last());
            run
        })
    }

    #[cfg(test)]
    fn runs(&self) -> Vec<Run> {
        (0..self.blocks.len()).flat_map(|b| self.block(b)).collect()
    }

    /// The swarm of the sample nearest `t` (the earlier of two as near),
    /// if within the tolerance. Inside a run, every point is within it of
    /// a sample of the run. The first run that ends at `t` or later is in
    /// the last block that starts before `t`, or starts the next block.
    fn swarm_at(&self, t: u64) -> Option<usize> {
        debug_assert!(self.open.is_none(), "sealed before lookups");
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.blocks.partition_point(|&(first, _)| first < t);
        let b = b.saturating_sub(1);
        let mut before = None;
        let next = self.blocks.get(b + 1).map(|_| self.block(b + 1).take(1));
        let mut after = None;
        for run in self.block(b).chain(next.into_iter().flatten()) {
            if run.last() >= t {
                if run.first <= t {
                    return Some(run.swarm as usize);
                }
                after = Some((run.first, run.swarm));
                break;
            }
            before = Some((run.last(), run.swarm));
        }
        [before, after]
            .into_iter()
            .flatten()
            .filter(|(time, _)| time.abs_diff(t) <= TOLERANCE_NS)
            .min_by_key(|(time, _)| time.abs_diff(t))
            .map(|(_, swarm)| swarm as usize)
    }
}

/// A thread's timeline as its samples come: as runs where they come in
/// order, else kept and sorted first.
enum Building {
    InOrder(Timeline),
    Unordered(Vec<(u64, usize)>),
}

impl Building {
    fn push(&mut self, time: u64, swarm: usize) {
        match self {
            Building::InOrder(line) => line.push(time, swarm),
            Building::Unordered(samples) => samples.push((time, swarm)),
        }
    }

    fn finish(self) -> Timeline {
        let mut line = match self {
            Building::InOrder(line) => line,
            Building::Unordered(mut samples) => {
                samples.sort_unstable();
                let mut line = Timeline::default();
                for (time, swarm) in samples {
                    line.push(time, swarm);
                }
                line
            }
        };
        line.seal();
        line
    }
}

/// Fills the overlap fields of `swarms`.
/// Fails only where the system calls or packets, read again, fail to read.
pub(crate) fn add_overlaps(swarms: &mut [Swarm], i: &Labelled) -> Result<(), TraceError> {
    // Timelines of the threads that made system calls and of the busiest
    // thread (GPU and network samples), not of every thread: ~6 bytes a
    // run of samples of one swarm.
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
    let in_order = i.samples.tally().tids_in_order();
    let building = |tid: u32| {
        if in_order.get(&tid).copied().unwrap_or(true) {
            Building::InOrder(Timeline::default())
        } else {
            Building::Unordered(Vec::with_capacity(per_thread[&tid]))
        }
    };
    let mut lines: FastMap<u32, Building> = per_thread
        .keys()
        .filter(|tid| i.syscalls.made_calls(**tid))
        .map(|&tid| (tid, building(tid)))
        .collect();
    if let Some(tid) = busiest {
        lines.entry(tid).or_insert_with(|| building(tid));
    }
    i.samples.for_each(|s| {
        if let Some(line) = lines.get_mut(&s.tid).filter(|_| in_swarm(s.stack_id())) {
            let swarm = i.swarm_of(s.stack_id()).expect("in a swarm");
            line.push(s.time_ns, swarm.0);
        }
    })?;
    let timelines = Timelines(
        lines
            .into_iter()
            .map(|(tid, line)| (tid, line.finish()))
            .collect(),
    );

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The swarm of the sample nearest `t` within the tolerance, the earlier
    /// where two are as near, looked up in the samples themselves.
    fn nearest(samples: &[(u64, usize)], t: u64) -> Option<usize> {
        let i = samples.partition_point(|&(time, _)| time < t);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| samples.get(j))
            .filter(|(time, _)| time.abs_diff(t) <= TOLERANCE_NS)
            .min_by_key(|(time, _)| time.abs_diff(t))
            .map(|&(_, swarm)| swarm)
    }

    #[test]
    fn runs_answer_as_the_nearest_sample_would() {
        let mut next = crate::steps::tests::xorshift(7);
        for round in 0..20 {
            // Samples 0.5-12 ms apart (past twice the tolerance too), a few
            // at the same time, of 1-3 swarms in stretches; times asked on
            // a grid of 0.5 ms that hits the tolerance's edges.
            let swarms = 1 + round % 3;
            let mut samples = Vec::new();
            let mut t = 1_000_000_000u64;
            let mut swarm = 0;
            for _ in 0..400 {
                t += [0, 500_000, 1_000_000, 5_000_000, 12_000_000][next() as usize % 5];
                if next().is_multiple_of(4) {
                    swarm = next() as usize % swarms;
                }
                samples.push((t, swarm));
            }
            samples.sort_unstable();
            samples.dedup();
            let mut in_order = Building::InOrder(Timeline::default());
            let mut shuffled = samples.clone();
            shuffled.reverse();
            let mut unordered = Building::Unordered(Vec::new());
            for &(time, swarm) in &samples {
                in_order.push(time, swarm);
            }
            for &(time, swarm) in &shuffled {
                unordered.push(time, swarm);
            }
            let (a, b) = (in_order.finish(), unordered.finish());
            assert!(
                a.runs < samples.len() && a.runs > 4 * BLOCK,
                "{} runs",
                a.runs
            );
            assert_eq!(a.runs(), b.runs());
            for q in (samples[0].0 - 10_000_000..t + 10_000_000).step_by(500_000) {
                let want = nearest(&samples, q);
                assert_eq!(a.swarm_at(q), want, "round {round} at {q}");
                assert_eq!(b.swarm_at(q), want, "round {round} at {q}");
            }
        }
    }
}
