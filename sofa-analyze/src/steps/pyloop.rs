//! The Python-loop stream: steps counted as the iterations of the loop the
//! main thread runs, read from its Python snapshots.
//!
//! A training loop is a `for` loop in Python: each iteration runs the body's
//! lines in order, and the next one starts over at the top. Between two
//! snapshots of the main thread, the outermost frame whose line went *back*
//! (same function, same callers, an earlier line) started a new iteration
//! (or, for a loop whose body is one call, a new call of the step
//! function). Those wraps count the loop's iterations wherever they fall in
//! time: a step that takes three times as long beside a busy neighbour, or
//! a warm-up step, is still one wrap. The period-based streams need steps
//! of similar length (a loop beside a CPU hog on this 2-CPU machine has step
//! lengths varying by 50-90 %, and they find nothing or the time slices).
//!
//! Snapshots come ~100 per second, so a wrap is seen only when a snapshot
//! falls before and one after the loop's top: iterations need a few
//! snapshots each (shorter ones are merged and the count is short). A loop
//! that is not a training loop (a client sending requests of random sizes)
//! wraps too; what tells a training step is that every iteration does the
//! same work: the CPU samples per iteration vary little. The confidence is
//! 1 − their interquartile range over their median.
//!
//! On CPython 3.11-3.13 the recorder also reads the main thread's outermost
//! frames ~1000 times a second (`py_outer`, `--py-loop-hz`): rows where
//! they changed, merged here with the full snapshots. Those reads also say
//! when a frame ran its line again (its locals rebound), which is a wrap
//! too: a loop whose body is one long call is counted by them.

use super::{Steps, none};
use crate::Samples;
use crate::fasthash::FastMap;
use sofa_trace::TraceError;
use sofa_trace::tables::{PyFrame, PyOuter, PySample, PyStackNode};
use std::collections::HashMap;

/// One snapshot of a main thread: (code, line) of each frame, outermost
/// first; code ids stand for (file, function). A full snapshot has every
/// frame and comes at a steady rate (`py_samples`); a read of the outer
/// frames (`py_outer`) has the outermost few and comes where they changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) time_ns: u64,
    pub(crate) frames: Vec<(u32, u32)>,
    pub(crate) full: bool,
    /// Of a read of the outer frames: bit k, frame k ran its line again
    /// since the read before (its local variables were rebound).
    pub(crate) reran: u32,
}

/// The snapshots of each process's main thread (thread id = process id),
/// in time order, by process id.
pub(crate) type MainThreads = FastMap<u32, Vec<Snapshot>>;

/// Fewest iterations that make a loop.
const MIN_WRAPS: usize = 8;
/// Fewest snapshots per iteration (median) for the wraps to count them:
/// with two, a snapshot falls on the same side of the loop's top in
/// consecutive iterations often enough to merge one in ten (PyTorch MLP,
/// 22 ms steps, snapshots every 10 ms: 110-115 wraps of 120 steps).
const MIN_SNAPSHOTS_PER_STEP: usize = 3;
/// Least confidence (1 − interquartile range / median of the CPU samples
/// per iteration) for the loop to stand. Corpus (docs/performance.md):
/// training loops 0.2-0.9 (beside a CPU hog: 0.2-0.9; PyTorch MLP 0.2), the
/// loop-less HTTP client's requests of random sizes -0.1-0.06.
pub(super) const MIN_CONFIDENCE: f64 = 0.2;
/// Most of the loop frame's snapshots on one line: a loop whose body is one
/// long call (a jitted JAX update: 90 % of the snapshots on its line) shows
/// its top to too few snapshots for the wraps to count the iterations
/// (37 of 120 seen). PyTorch and numpy loops: at most 59 %. Not applied
/// where the outer frames were read through the loop (at least once per
/// iteration): their reads see every iteration (a wrap or a rerun).
const MAX_ONE_LINE: f64 = 0.75;

/// The main threads' snapshots from the archive's Python tables, with the
/// reads of their outer frames.
pub(crate) fn main_threads(
    snapshots: &[PySample],
    outer: &[PyOuter],
    nodes: &HashMap<u64, PyStackNode>,
    frames: &HashMap<u64, PyFrame>,
) -> MainThreads {
    let mut codes: HashMap<(&str, &str), u32> = HashMap::new();
    let mut chain_of = |innermost: u64| {
        let mut chain = Vec::new();
        let mut node = Some(innermost);
        // A prefix tree has no cycles; the bound guards a damaged one.
        while let Some(id) = node.filter(|_| chain.len() < 4096) {
            let Some(n) = nodes.get(&id) else { break };
            if let Some(f) = frames.get(&n.frame_id) {
                let next = codes.len() as u32;
                let code = *codes
                    .entry((f.file.as_str(), f.function.as_str()))
                    .or_insert(next);
                chain.push((code, f.line));
            }
            node = n.parent_id;
        }
        chain.reverse();
        chain
    };
    let mut chains: FastMap<u64, Vec<(u32, u32)>> = FastMap::default();
    let mut out = MainThreads::default();
    let full = snapshots
        .iter()
        .filter(|s| s.tid == s.pid && s.tid != 0)
        .map(|s| (s.pid, s.time_ns + s.read_ns / 2, s.stack_id, true, 0));
    let reads = outer
        .iter()
        .map(|o| (o.pid, o.time_ns, o.stack_id, false, o.reran));
    for (pid, time_ns, stack_id, full, reran) in full.chain(reads) {
        let Some(innermost) = stack_id else {
            continue;
        };
        let chain = chains
            .entry(innermost)
            .or_insert_with(|| chain_of(innermost));
        out.entry(pid).or_default().push(Snapshot {
            time_ns,
            frames: chain.clone(),
            full,
            reran,
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|s| s.time_ns);
    }
    out
}

/// A new iteration seen between two snapshots: the frame (depth, code)
/// whose line went back from `from` to `to`.
#[derive(Debug, Clone, Copy)]
struct Wrap {
    /// The snapshot after it.
    at: usize,
    depth: usize,
    code: u32,
    before: u64,
    after: u64,
    from: u32,
    to: u32,
    /// The same line run again (its locals rebound), not a line going back.
    rerun: bool,
}

/// The outermost frame of `b` that differs from `a` in line only, where
/// its line is earlier, or that ran the same line again: a wrap.
fn wrap_between(a: &Snapshot, b: &Snapshot, at: usize) -> Option<Wrap> {
    for (depth, (x, y)) in a.frames.iter().zip(&b.frames).enumerate() {
        if x.0 != y.0 {
            return None;
        }
        let rerun = x.1 == y.1 && depth < 32 && b.reran >> depth & 1 == 1;
        if x.1 != y.1 || rerun {
            return (y.1 < x.1 || rerun).then_some(Wrap {
                at,
                depth,
                code: x.0,
                before: a.time_ns,
                after: b.time_ns,
                from: x.1,
                to: y.1,
                rerun,
            });
        }
    }
    None
}

/// The loop's steps in the main thread's snapshots, their work compared by
/// the CPU samples of `pid` in each, and the median number of snapshots
/// per step (how surely each wrap was seen; 0 when none was found).
pub(super) fn detect(
    snapshots: &[Snapshot],
    samples: &Samples,
    pid: u32,
) -> Result<(Steps, f64), TraceError> {
    let mut seen = 0.0;
    let steps = find(snapshots, samples, pid, &mut seen)?;
    let seen = if steps.count > 0 { seen } else { 0.0 };
    Ok((steps, seen))
}

fn find(
    snapshots: &[Snapshot],
    samples: &Samples,
    pid: u32,
    per_step_seen: &mut f64,
) -> Result<Steps, TraceError> {
    let wraps: Vec<Wrap> = snapshots
        .windows(2)
        .enumerate()
        .filter_map(|(i, w)| wrap_between(&w[0], &w[1], i + 1))
        .collect();
    // The loop: of the frames that wrap often enough, one not inside
    // another's loop (a model's layer loop inside the step wraps more,
    // deeper: the step loop's frame is its caller in most of its wraps),
    // the one that wraps most (the reads see loops the snapshots did not:
    // at exit, CPython's finalizers run in a loop of their own).
    let mut per_frame: FastMap<(usize, u32), Vec<usize>> = FastMap::default();
    for w in &wraps {
        per_frame.entry((w.depth, w.code)).or_default().push(w.at);
    }
    let candidates: Vec<((usize, u32), &Vec<usize>)> = per_frame
        .iter()
        .filter(|(_, at)| at.len() >= MIN_WRAPS)
        .map(|(&k, at)| (k, at))
        .collect();
    let inside = |(depth, _): (usize, u32), at: &[usize]| {
        candidates.iter().any(|&((d, c), _)| {
            d < depth
                && 2 * at
                    .iter()
                    .filter(|&&i| snapshots[i].frames.get(d).is_some_and(|f| f.0 == c))
                    .count()
                    >= at.len()
        })
    };
    let Some(((depth, code), _)) = candidates
        .iter()
        .filter(|&&(k, at)| !inside(k, at))
        .max_by_key(|&&((depth, code), at)| (at.len(), std::cmp::Reverse((depth, code))))
    else {
        return Ok(none("no loop in the main thread's Python snapshots", 0.0));
    };
    let (depth, code) = (*depth, *code);
    // One function may hold several loops (a set-up loop, then the training
    // loop): wraps where the line went back whose line ranges overlap are
    // one loop; the one wrapping most is taken. Reruns (the same line run
    // again) are left out here: a one-line inner loop (`for _ in range(8):
    // x = np.tanh(x @ w)`) reruns its line 8 times a step, inside the
    // step loop's range.
    let (mut own, reruns): (Vec<Wrap>, Vec<Wrap>) = wraps
        .into_iter()
        .filter(|w| w.depth == depth && w.code == code)
        .partition(|w| !w.rerun);
    own.sort_by_key(|w| (w.to, w.from));
    let mut loops: Vec<(u32, u32, Vec<Wrap>)> = Vec::new();
    for w in own {
        match loops.last_mut() {
            Some((_, hi, members)) if w.to <= *hi => {
                *hi = (*hi).max(w.from);
                members.push(w);
            }
            _ => loops.push((w.to, w.from, vec![w])),
        }
    }
    let (mut lo, mut hi, mut members) = loops
        .into_iter()
        .max_by_key(|l| l.2.len())
        .filter(|l| l.2.len() >= MIN_WRAPS)
        .unwrap_or((0, u32::MAX, Vec::new()));
    // A body that is one long call (a jitted JAX update: 90 % of the full
    // snapshots on its line) shows its top to few reads: its iterations
    // are the line's reruns, where the outer frames were read through the
    // loop; without those reads, too few wraps are seen to count them.
    let span = members
        .iter()
        .chain(if members.is_empty() { &reruns[..] } else { &[] })
        .fold((u64::MAX, 0), |(a, b), w| (a.min(w.before), b.max(w.after)));
    let at_frame = |s: &Snapshot| {
        s.time_ns >= span.0
            && s.time_ns <= span.1
            && s.frames
                .get(depth)
                .is_some_and(|&(c, l)| c == code && (lo..=hi).contains(&l))
    };
    let mut lines: FastMap<u32, usize> = FastMap::default();
    for s in snapshots.iter().filter(|s| s.full && at_frame(s)) {
        *lines.entry(s.frames[depth].1).or_default() += 1;
    }
    let on_loop: usize = lines.values().sum();
    let (hot, most) = lines
        .iter()
        .max_by_key(|&(&l, &n)| (n, std::cmp::Reverse(l)))
        .map_or((0, 0), |(&l, &n)| (l, n));
    if most as f64 > MAX_ONE_LINE * on_loop as f64 {
        let reads = snapshots.iter().filter(|s| !s.full && at_frame(s)).count();
        let again: Vec<Wrap> = reruns.iter().filter(|w| w.to == hot).copied().collect();
        if reads < members.len().max(again.len()) {
            return Ok(none(
                &format!(
                    "the main thread's loop wrapped {} times, but {:.0} % of its snapshots are \
                     on one line: too few see where an iteration starts to count them",
                    members.len(),
                    100.0 * most as f64 / on_loop.max(1) as f64
                ),
                0.0,
            ));
        }
        if members.is_empty() {
            (lo, hi) = (hot, hot);
        } else {
            (lo, hi) = (lo.min(hot), hi.max(hot));
        }
        members.extend(again);
    }
    if members.len() < MIN_WRAPS {
        return Ok(none("no loop in the main thread's Python snapshots", 0.0));
    }
    members.sort_by_key(|w| w.after);
    let mut starts: Vec<u64> = members
        .iter()
        .map(|w| midpoint(w.before, w.after))
        .collect();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let typical = median(&gaps);
    // The first iteration began where the loop's lines begin before the
    // first wrap, the last one ends where they end after the last wrap;
    // from full snapshots alone, a first or last iteration much longer than
    // the typical one (warm-up, the loop's end unseen) is cut to one typical
    // step. Where the outer frames were read through the loop, the reads
    // saw where its lines began and ended: a slow first step (a PyTorch
    // MLP's: 1.3 s of lazy set-up, then steps of 34 ms) is one step, from
    // where the loop left its top line the first time (not the time before
    // on it: the loader's set-up and first batch, 0.7 s in one recording).
    let in_loop = |s: &Snapshot| {
        s.frames
            .get(depth)
            .is_some_and(|&(c, l)| c == code && (lo..=hi).contains(&l))
    };
    let first_after = snapshots.partition_point(|s| s.time_ns < members[0].after);
    let read = snapshots.iter().any(|s| !s.full && in_loop(s));
    let limit = if read { u64::MAX / 2 } else { typical * 5 / 2 };
    let mut begin = starts[0].saturating_sub(typical);
    let mut i = first_after.saturating_sub(1);
    let body = |s: &Snapshot| !read || s.frames[depth].1 != lo;
    while i > 0
        && in_loop(&snapshots[i])
        && body(&snapshots[i])
        && starts[0] - snapshots[i].time_ns <= limit
    {
        begin = midpoint(snapshots[i - 1].time_ns, snapshots[i].time_ns);
        i -= 1;
    }
    let last_after = snapshots.partition_point(|s| s.time_ns < members[members.len() - 1].after);
    let end_limit = starts[starts.len() - 1] + limit;
    let mut end = starts[starts.len() - 1] + typical;
    let mut j = last_after;
    while j + 1 < snapshots.len() && in_loop(&snapshots[j]) && snapshots[j].time_ns <= end_limit {
        end = midpoint(snapshots[j].time_ns, snapshots[j + 1].time_ns);
        j += 1;
    }
    starts.insert(0, begin);
    starts.push(end.max(starts[starts.len() - 1] + 1));
    let boundaries = starts;
    let steps = boundaries.len() - 1;

    // Snapshots per iteration, and the work each iteration did.
    let add = |counts: &mut [f64], t: u64| {
        if t >= boundaries[0] && t < boundaries[steps] {
            counts[boundaries.partition_point(|&b| b <= t) - 1] += 1.0;
        }
    };
    let mut seen = vec![0.0; steps];
    for s in snapshots {
        add(&mut seen, s.time_ns);
    }
    *per_step_seen = median_f(&seen);
    if *per_step_seen < MIN_SNAPSHOTS_PER_STEP as f64 {
        return Ok(none(
            &format!(
                "the main thread's loop wrapped {} times, too few Python snapshots per \
                 iteration to count them (more with sofa record --py-hz 250)",
                members.len()
            ),
            0.0,
        ));
    }
    let mut work = vec![0.0; steps];
    samples.for_each(|s| {
        if s.pid == pid {
            add(&mut work, s.time_ns);
        }
    })?;
    let mid = median_f(&work);
    if mid <= 0.0 {
        return Ok(none("no CPU samples in the main thread's loop", 0.0));
    }
    let mut sorted = work.clone();
    sorted.sort_by(f64::total_cmp);
    let iqr = sorted[sorted.len() * 3 / 4] - sorted[sorted.len() / 4];
    let confidence = (1.0 - iqr / mid).clamp(0.0, 1.0);
    if confidence < MIN_CONFIDENCE {
        return Ok(none(
            &format!(
                "the main thread's loop ran {steps} iterations, but their work varies too much \
                 to be training steps (CPU samples per iteration: median {mid:.0}, \
                 interquartile range {iqr:.0})"
            ),
            confidence,
        ));
    }
    Ok(Steps::between(boundaries, confidence, "python loop"))
}

fn midpoint(a: u64, b: u64) -> u64 {
    a + (b - a) / 2
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn median_f(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;
    use crate::steps::tests::xorshift;

    /// A main thread whose `main` (code 1, under `<module>`, code 0) runs
    /// `setup` iterations of a set-up loop on lines 3-4, then a training
    /// loop on lines 10-13: each step's length (ms) and CPU samples from
    /// `step(i)`, lines 10 (a tenth of the step), 11, 12 (the longest) and
    /// 13 (a tenth) in turn; snapshots every 10 ms, CPU samples spread
    /// evenly over each step.
    fn run(
        setup: usize,
        steps: usize,
        mut step: impl FnMut(usize) -> (u64, u64),
    ) -> (Vec<Snapshot>, Vec<Sample>, Vec<u64>) {
        let ms = 1_000_000;
        // (start, end, line) of each stretch of `main`.
        let mut stretches = Vec::new();
        let mut t = 1_000 * ms;
        for i in 0..setup {
            let line = 3 + (i % 2) as u32;
            stretches.push((t, t + 7 * ms, line));
            t += 7 * ms;
        }
        let mut starts = Vec::new();
        let mut samples = Vec::new();
        for i in 0..steps {
            let (length, work) = step(i);
            let length = length * ms;
            starts.push(t);
            let parts = [(10, 10), (11, 30), (12, 50), (13, 10)];
            let mut at = t;
            for (line, share) in parts {
                let end = at + length * share / 100;
                stretches.push((at, end, line));
                at = end;
            }
            for k in 0..work {
                samples.push(crate::test_sample(t + length * k / work.max(1), 7));
            }
            t += length;
        }
        starts.push(t);
        let mut snapshots = Vec::new();
        let mut now = 1_000 * ms;
        let mut i = 0;
        while now < t {
            while stretches[i].1 <= now {
                i += 1;
            }
            snapshots.push(Snapshot {
                time_ns: now,
                frames: vec![(0, 20), (1, stretches[i].2), (2, 5)],
                full: true,
                reran: 0,
            });
            now += 10 * ms;
        }
        (snapshots, samples, starts)
    }

    #[test]
    fn a_loop_is_counted_by_its_wraps_however_long_each_step_takes() {
        // Steps of 40-160 ms (a CPU hog beside the job), the same work.
        let mut rng = xorshift(7);
        let (snapshots, samples, starts) = run(30, 80, |_| (40 + rng() % 120, 40));
        let (steps, _) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert!(
            steps.count.abs_diff(80) <= 2,
            "{} {:?}",
            steps.count,
            steps.note
        );
        assert!(steps.confidence >= 0.8, "{}", steps.confidence);
        // Every found start within one snapshot interval of a true one, and
        // the set-up loop (lines 3-4, 30 wraps) is not steps.
        for b in &steps.boundaries_ns[..steps.boundaries_ns.len() - 1] {
            let near = starts.iter().map(|s| s.abs_diff(*b)).min().unwrap();
            assert!(near <= 10_000_000, "{b} is {near} ns from a true start");
        }
        assert!(steps.boundaries_ns[0] + 20_000_000 >= starts[0]);
    }

    #[test]
    fn iterations_of_random_work_are_not_steps() {
        // A client loop sending requests of random sizes (exponential, as
        // the loop-less corpus server's): iterations of 30 ms and more,
        // with work in proportion.
        let mut rng = xorshift(11);
        let (snapshots, samples, _) = run(0, 60, |_| {
            let u = (rng() % 1_000_000 + 1) as f64 / 1e6;
            let ms = 30 + (-u.ln() * 100.0) as u64;
            (ms, ms)
        });
        let (steps, _) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert_eq!(steps.count, 0);
        assert!(
            steps.note.as_deref().unwrap().contains("work varies"),
            "{:?}",
            steps.note
        );
    }

    #[test]
    fn too_few_snapshots_per_step_count_nothing() {
        // Steps of 20 ms, two snapshots each: wraps are missed.
        let (snapshots, samples, _) = run(0, 100, |_| (20, 20));
        let (steps, _) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
        assert!(steps.note.unwrap().contains("too few Python snapshots"));
    }

    #[test]
    fn reads_of_the_outer_frames_count_short_steps() {
        // Steps of 20 ms with two full snapshots each, and the outer
        // frames read every millisecond (a row where they changed, and
        // the last read before): every step is counted, every start is
        // within 2 ms of a true one.
        let (mut snapshots, samples, starts) = run(0, 100, |_| (20, 20));
        let ms = 1_000_000;
        let line_at = |t: u64| {
            let i = starts.partition_point(|&s| s <= t) - 1;
            let into = (t - starts[i]) * 100 / (starts[i + 1] - starts[i]);
            match into {
                0..10 => 10,
                10..40 => 11,
                40..90 => 12,
                _ => 13,
            }
        };
        let mut last: Option<(u32, u64)> = None;
        let mut t = starts[0];
        while t < starts[starts.len() - 1] {
            let line = line_at(t);
            if let Some((before, at)) = last.filter(|&(l, _)| l != line) {
                for (l, when) in [(before, at), (line, t)] {
                    snapshots.push(Snapshot {
                        time_ns: when,
                        frames: vec![(0, 20), (1, l)],
                        full: false,
                        reran: 0,
                    });
                }
            }
            last = Some((line, t));
            t += ms;
        }
        snapshots.sort_by_key(|s| s.time_ns);
        let (steps, seen) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert_eq!(steps.count, 100, "{:?}", steps.note);
        assert!(seen >= 4.0, "{seen}");
        for b in &steps.boundaries_ns[1..steps.boundaries_ns.len() - 1] {
            let near = starts.iter().map(|s| s.abs_diff(*b)).min().unwrap();
            assert!(near <= 2 * ms, "{b} is {near} ns from a true start");
        }
        // Without them, too few.
        snapshots.retain(|s| s.full);
        assert_eq!(
            detect(&snapshots, &Samples::from_rows(samples.clone()), 1)
                .unwrap()
                .0
                .count,
            0
        );
    }

    #[test]
    fn a_loop_on_one_line_is_not_counted() {
        // The body is one long call: 95 % of the snapshots on one line.
        let (mut snapshots, samples, _) = run(0, 60, |_| (80, 80));
        for (i, s) in snapshots.iter_mut().enumerate() {
            if i % 20 != 0 {
                s.frames[1].1 = 12;
            }
        }
        let (steps, _) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
    }

    #[test]
    fn a_loop_on_one_line_is_counted_by_its_reruns() {
        // The body is one long call (every snapshot on line 12), and the
        // reads of the outer frames see the line run again once per step,
        // a millisecond into it (its locals rebound): every step counted.
        let (mut snapshots, samples, starts) = run(0, 60, |_| (80, 80));
        for s in snapshots.iter_mut() {
            s.frames[1].1 = 12;
        }
        let ms = 1_000_000;
        for &start in &starts[1..starts.len() - 1] {
            for (when, reran) in [(start - ms, 0), (start + ms, 0b10)] {
                snapshots.push(Snapshot {
                    time_ns: when,
                    frames: vec![(0, 20), (1, 12)],
                    full: false,
                    reran,
                });
            }
        }
        snapshots.sort_by_key(|s| s.time_ns);
        let (steps, _) = detect(&snapshots, &Samples::from_rows(samples.clone()), 1).unwrap();
        assert!(
            steps.count.abs_diff(60) <= 1,
            "{} {:?}",
            steps.count,
            steps.note
        );
        for b in &steps.boundaries_ns[1..steps.boundaries_ns.len() - 1] {
            let near = starts.iter().map(|s| s.abs_diff(*b)).min().unwrap();
            assert!(near <= 2 * ms, "{b} is {near} ns from a true start");
        }
    }
}
