//! Step detection on one thread's sequence of samples (its CPU time), the
//! first detector: each sample is labelled with its self function, and the
//! share of samples equal to the one `lag` samples later is a categorical
//! autocorrelation. Time the thread spends descheduled or blocked does not
//! smear this sequence, which makes it robust on a loaded machine; it needs
//! a few dozen samples per step. `steps/mod.rs` combines it with the
//! wall-clock detector.

use super::signal::{Ties, mean_and_cv, period_peak, refine_period};
use super::{Steps, none};
use crate::Samples;
use crate::fasthash::{FastMap, StackMap};
use sofa_trace::TraceError;

/// Longest series analysed; longer recordings use wider bins.
const MAX_BINS: usize = 8_192;
/// A peak must rise this far (in match share) above the lowest point before it.
const MIN_PROMINENCE: f64 = 0.08;
/// Periodic structure is reported only from this confidence on.
pub const MIN_CONFIDENCE: f64 = 0.25;

/// Share of non-empty bin pairs `lag` apart with the same label.
fn matches(labels: &[u32], lag: usize) -> f64 {
    match_share(labels, &labels[lag..])
}

/// Share of the positions where both `a` and `b` have a label (not 0) at
/// which the labels are the same; 0 where none has.
fn match_share(a: &[u32], b: &[u32]) -> f64 {
    let mut same = 0u64;
    let mut both = 0u64;
    for (a, b) in a.iter().zip(b) {
        if *a != 0 && *b != 0 {
            both += 1;
            same += u64::from(a == b);
        }
    }
    if both == 0 {
        0.0
    } else {
        same as f64 / both as f64
    }
}

/// Bins `[first, last)` of the stretch in which labels match the
/// ones `lag` bins later at least `threshold` of the time (over a window of
/// eight periods).
fn periodic_region(labels: &[u32], lag: usize, threshold: f64) -> (usize, usize) {
    let n = labels.len() - lag;
    let mut same = vec![0u32; n + 1];
    let mut both = vec![0u32; n + 1];
    for i in 0..n {
        let (a, b) = (labels[i], labels[i + lag]);
        let pair = a != 0 && b != 0;
        both[i + 1] = both[i] + u32::from(pair);
        same[i + 1] = same[i] + u32::from(pair && a == b);
    }
    // Wide enough that a noisy loop (few samples per step) still averages
    // out, narrow enough to find where the loop starts to within a few steps.
    let half = (4 * lag).max(16);
    let good = |i: usize| {
        let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
        let pairs = both[hi] - both[lo];
        pairs > 0 && f64::from(same[hi] - same[lo]) / f64::from(pairs) >= threshold
    };
    // From the first to the last well-matching window: a noisy loop dips
    // below the threshold here and there without having stopped.
    let Some(first) = (0..n).find(|&i| good(i)) else {
        return (0, labels.len());
    };
    let last = (0..n).rev().find(|&i| good(i)).unwrap_or(first);
    let best = (first, last);
    // Position i compares bin i with bin i + lag: the loop runs one lag further.
    (best.0, (best.1 + lag).min(labels.len()))
}

/// Steps in the busiest thread of `pid`, from its self functions.
pub fn detect(
    samples: &Samples,
    self_of_stack: &StackMap<usize>,
    pid: Option<u32>,
) -> Result<Steps, TraceError> {
    // The busiest thread of the process runs the loop; other threads (BLAS
    // pools, data loaders) would blur its sequence.
    let mut per_thread: FastMap<u32, u64> = FastMap::default();
    for ((_, p, tid), n) in samples.tally().per_stack_thread() {
        if pid.is_none_or(|pid| p == pid) {
            *per_thread.entry(tid).or_default() += n;
        }
    }
    let Some(tid) = per_thread
        .iter()
        .max_by_key(|(tid, n)| (**n, std::cmp::Reverse(**tid)))
        .map(|(tid, _)| *tid)
    else {
        return Ok(none("no samples to look for steps", 0.0));
    };
    let mine = |p: u32, t: u32| pid.is_none_or(|pid| p == pid) && t == tid;
    let (mut n, mut pids, mut in_order) = (0u64, rustc_hash::FxHashSet::default(), true);
    for ((_, p, t), k) in samples.tally().per_stack_thread() {
        if mine(p, t) {
            n += k;
            pids.insert(p);
            in_order &= samples.tally().in_order(p, t);
        }
    }
    if n < 64 {
        return Ok(none("too few samples to look for steps", 0.0));
    }
    // Label 0 is "no sample"; functions are 1-based.
    let label_of = |stack: Option<u64>| {
        self_of_stack
            .get(&stack)
            .map_or(u32::MAX, |&i| i as u32 + 1)
    };
    // One bin per sample (per `group` samples on long runs), in order: the
    // sequence advances with the thread's CPU time, so time it spent
    // descheduled or blocked does not smear the pattern. Each bin: its
    // first sample's time, its last one's label.
    let group = n.div_ceil(MAX_BINS as u64) as usize;
    let (mut labels, mut times, mut end) = (Vec::new(), Vec::new(), 0);
    let mut bin = |i: usize, (time, label): (u64, u32)| {
        if i.is_multiple_of(group) {
            times.push(time);
        }
        if (i + 1).is_multiple_of(group) || i + 1 == n as usize {
            labels.push(label);
        }
        end = time;
    };
    if in_order && pids.len() == 1 {
        // In time order as read: binned as they come, none kept.
        let mut i = 0;
        samples.for_each(|s| {
            if mine(s.pid, s.tid) {
                bin(i, (s.time_ns, label_of(s.stack_id())));
                i += 1;
            }
        })?;
    } else {
        let mut points: Vec<(u64, u32)> = Vec::new();
        samples.for_each(|s| {
            if mine(s.pid, s.tid) {
                points.push((s.time_ns, label_of(s.stack_id())));
            }
        })?;
        points.sort_unstable();
        for (i, &point) in points.iter().enumerate() {
            bin(i, point);
        }
    }
    Ok(detect_in(labels, times, end))
}

/// [`detect`] on the busiest thread's sequence: per bin, its label and
/// its first sample's time; `end` the last sample's time.
fn detect_in(labels: Vec<u32>, times: Vec<u64>, end: u64) -> Steps {
    let n = labels.len();
    let time_at = |bin: usize| times.get(bin).copied().unwrap_or(end);

    // Chance level: two random non-empty bins carry the same label.
    let mut freq: FastMap<u32, u64> = FastMap::default();
    for &l in labels.iter().filter(|l| **l != 0) {
        *freq.entry(l).or_default() += 1;
    }
    let filled: u64 = freq.values().sum();
    let chance: f64 = freq
        .values()
        .map(|&c| (c as f64 / filled as f64).powi(2))
        .sum();

    // Autocorrelation up to a third of the run (at least three periods).
    let max_lag = n / 3;
    if max_lag < 4 {
        return none("recording too short to look for steps", 0.0);
    }
    let curve: Vec<f64> = (0..=max_lag)
        .map(|lag| if lag == 0 { 1.0 } else { matches(&labels, lag) })
        .collect();
    // Local maxima standing above the dip that precedes them.
    let Some((lag, score)) = period_peak(&curve, 2, max_lag, MIN_PROMINENCE, Ties::First) else {
        return none("no periodic structure found", 0.0);
    };
    let confidence = ((score - chance) / (1.0 - chance).max(1e-9)).clamp(0.0, 1.0);
    if confidence < MIN_CONFIDENCE {
        return none("no periodic structure found", confidence);
    }

    let period_bins = refine_period(&curve, lag, max_lag);
    // The loop is where the sequence matches itself one period later; start-up
    // (imports, loading) and shutdown around it are not steps.
    let (first, last) = periodic_region(&labels, lag, (score + chance) / 2.0);
    let count = ((last - first) as f64 / period_bins).round().max(1.0) as u64;

    // Step lengths: re-align each period boundary to where the sequence
    // best matches the one a period earlier (within a quarter period).
    let mut boundaries = vec![time_at(first)];
    let mut lengths = Vec::new();
    let slack = (period_bins / 4.0).floor() as isize;
    let template = period_bins.round() as usize;
    let mut previous = first;
    for step in 1..count {
        let expected = first as isize + (step as f64 * period_bins).round() as isize;
        let mut best_at = expected;
        let mut best_score = -1.0;
        for shift in -slack..=slack {
            let at = expected + shift;
            if at <= previous as isize || at as usize + template > n {
                continue;
            }
            let at = at as usize;
            let len = template.min(at - previous);
            let score = match_share(&labels[previous..previous + len], &labels[at..at + len]);
            if score > best_score {
                (best_score, best_at) = (score, at as isize);
            }
        }
        let at = best_at.max(previous as isize + 1) as usize;
        lengths.push(time_at(at).saturating_sub(time_at(previous)) as f64);
        boundaries.push(time_at(at));
        previous = at;
    }
    let loop_end = time_at(last);
    lengths.push(loop_end.saturating_sub(time_at(previous)) as f64);
    boundaries.push(loop_end);
    let full: Vec<f64> = lengths[..lengths.len().saturating_sub(1)].to_vec();
    // Wall-clock length of a step, over the whole loop.
    let period_ns = (loop_end.saturating_sub(boundaries[0]) as f64 / count as f64).round() as u64;
    let (_, period_cv) = mean_and_cv(&full);
    Steps {
        count,
        period_ns: Some(period_ns),
        period_cv,
        confidence,
        boundaries_ns: boundaries,
        note: None,
        expected: None,
        method: Some("sequence".to_owned()),
        streams: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::loop_37_ms;

    #[test]
    fn samples_out_of_order_give_the_sequence_of_samples_in_order() {
        // A 37 ms loop of three phases over 20,000 samples (three to a
        // bin), the busiest thread's; another thread less busy.
        let (rows, map) = loop_37_ms(20_000);
        let mut in_order = rows.clone();
        in_order.extend(rows.iter().take(500).map(|s| {
            let mut other = *s;
            other.tid = 2;
            other
        }));
        let ordered = Samples::from_rows(in_order.clone());
        assert!(ordered.tally().in_order(1, 1));
        // The same samples, pairs swapped: read out of order.
        let mut shuffled = in_order;
        for pair in shuffled.chunks_mut(2) {
            pair.swap(0, 1);
        }
        let shuffled = Samples::from_rows(shuffled);
        assert!(!shuffled.tally().in_order(1, 1));
        let a = detect(&ordered, &map, Some(1)).unwrap();
        let b = detect(&shuffled, &map, Some(1)).unwrap();
        assert!(a.count.abs_diff(540) <= 2, "{:?} {:?}", a.count, a.note);
        assert_eq!(
            (a.count, a.period_ns, &a.boundaries_ns),
            (b.count, b.period_ns, &b.boundaries_ns)
        );
        // Too few samples of the thread.
        let few = Samples::from_rows(rows[..63].to_vec());
        assert_eq!(
            detect(&few, &map, Some(1)).unwrap().note.as_deref(),
            Some("too few samples to look for steps")
        );
    }
}
