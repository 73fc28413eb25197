//! Training-step detection, without any hint from the user, in two passes
//! over the main process's samples on the wall clock.
//!
//! 1. Period: the samples become one count series per function (the busiest
//!    self functions and callers, in bins of ≥ 0.5 ms, all threads). The sum
//!    of the series' autocorrelations (each with its mean removed, computed
//!    with an FFT) peaks at the step period and its multiples; a program that
//!    only goes through long phases gives a curve that just decays, with no
//!    peak standing above the dip before it, and is reported as "no periodic
//!    structure found" instead of inventing steps. The peak height is the
//!    confidence; the period is refined on the peaks at 2, 4, 8... periods.
//! 2. Steps: the functions that repeat most strictly with that period make a
//!    marker signal that rises once per step. Step starts are placed on it by
//!    dynamic programming (as beat trackers place beats on music): strong
//!    marker values, gaps near the period, with room for irregular steps
//!    (warm-up, hiccups) from half to two and a half periods. Starts where
//!    the marker is weak (start-up, shutdown, spurious splits) are dropped.

use crate::fasthash::{FastMap, StackMap};
use serde::Serialize;
use sofa_trace::tables::Sample;
use std::collections::HashMap;

/// Most bins of the first pass; longer recordings use wider bins.
const MAX_BINS: usize = 8_192;
/// Threads looked at: the busiest, and others with a quarter of its samples.
const MAX_THREADS: usize = 3;
/// Narrowest bin, ns: about one sampling interval at the default rate, so
/// that bins are not alternately hit and missed by the sampling clock.
const MIN_BIN_NS: u64 = 1_000_000;
/// Shortest period looked for, in bins.
const MIN_LAG: usize = 4;
/// Series used in the first pass, per labelling (self, callers, ...).
const CHANNELS: [usize; 4] = [16, 8, 4, 2];
/// A peak must rise this far above the lowest point before it. A loop's
/// functions are anti-correlated half a period apart (the curve dips below
/// zero: -0.1 to -0.2 on the fixtures, peaks 0.17-0.74 after it); a long
/// phase with a timer tick in it gives a bump of ~0.09 on a high plateau.
const MIN_PROMINENCE: f64 = 0.2;
/// Periodic structure is reported only from this confidence on.
const MIN_CONFIDENCE: f64 = 0.12;
/// Second-pass bins per period.
const BINS_PER_PERIOD: f64 = 16.0;
/// Weight of keeping gaps near the period against following the marker.
const GAP_WEIGHT: f64 = 4.0;
/// Window of the local period estimate, in periods.
const LOCAL_PERIODS: f64 = 12.0;
/// A local period needs this autocorrelation at its peak.
const LOCAL_MIN_R: f64 = 0.1;
/// Steps at the ends of the loop less alike the typical step than this
/// (cosine of their make-up) are setup or teardown, not steps.
const MIN_LIKENESS: f64 = 0.5;
/// More unlike steps than this share inside the loop: not a loop. Real
/// loops measured here: at most 0.016 on a quiet machine, but one on a
/// slow machine went over 0.1; a rhythm of time slices beside a CPU hog:
/// 0.22.
const MAX_UNLIKE: f64 = 0.2;
/// Step starts with a marker under this share of the median start's are dropped.
const WEAK_START: f64 = 0.3;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Steps {
    /// Number of steps; 0 when no periodic structure was found.
    pub count: u64,
    /// Mean step length over the loop, ns.
    pub period_ns: Option<u64>,
    /// Coefficient of variation of the step lengths (jitter).
    pub period_cv: Option<f64>,
    /// 0..1: autocorrelation of the sampled functions at the period.
    pub confidence: f64,
    /// Start of each step, ns (CLOCK_MONOTONIC), plus the end of the last one.
    pub boundaries_ns: Vec<u64>,
    /// Why nothing was found, when nothing was.
    pub note: Option<String>,
    /// The count the user said to expect (`--steps N`), if any.
    pub expected: Option<u64>,
    /// Which detector found the steps: `sequence` (one thread's samples in
    /// order) or `wall clock` (all busy threads on the time axis).
    pub method: Option<String>,
}

pub(crate) fn none(note: &str, confidence: f64) -> Steps {
    Steps {
        note: Some(note.to_owned()),
        confidence,
        ..Steps::default()
    }
}

/// In-place radix-2 FFT of (re, im); `inverse` leaves the result unscaled.
fn fft(re: &mut [f64], im: &mut [f64], inverse: bool) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    // Twiddle factors of the largest stage; a stage of length `len` uses
    // every (n / len)-th of them.
    let sign = if inverse { 1.0 } else { -1.0 };
    let half = n / 2;
    let (tw_re, tw_im): (Vec<f64>, Vec<f64>) = (0..half)
        .map(|k| {
            let angle = sign * 2.0 * std::f64::consts::PI * k as f64 / n as f64;
            (angle.cos(), angle.sin())
        })
        .unzip();
    let mut len = 2;
    while len <= n {
        let stride = n / len;
        let h = len / 2;
        for start in (0..n).step_by(len) {
            let (lo_re, hi_re) = re[start..start + len].split_at_mut(h);
            let (lo_im, hi_im) = im[start..start + len].split_at_mut(h);
            for k in 0..h {
                let (c_re, c_im) = (tw_re[k * stride], tw_im[k * stride]);
                let t_re = hi_re[k] * c_re - hi_im[k] * c_im;
                let t_im = hi_re[k] * c_im + hi_im[k] * c_re;
                hi_re[k] = lo_re[k] - t_re;
                hi_im[k] = lo_im[k] - t_im;
                lo_re[k] += t_re;
                lo_im[k] += t_im;
            }
        }
        len <<= 1;
    }
}

/// Sum over `series` of each one's autocorrelation (mean removed), lags
/// `0..n`, divided by the overlap length and normalised to 1 at lag 0.
/// Two real series share one complex FFT: for z = x + iy, the summed power
/// |X_k|² + |Y_k|² is (|Z_k|² + |Z_(N-k)|²) / 2.
fn autocorrelation(series: &[Vec<f64>], n: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let size = (2 * n).next_power_of_two();
    // Power spectra of the series, two real series per complex transform,
    // summed per fixed chunk of series on the worker threads and then in
    // chunk order (the same sum whatever the number of threads).
    let partials: Vec<Vec<f64>> = series
        .par_chunks(8)
        .map(|chunk| {
            let mut power = vec![0.0; size];
            let (mut re, mut im) = (vec![0.0; size], vec![0.0; size]);
            for pair in chunk.chunks(2) {
                re.iter_mut().for_each(|v| *v = 0.0);
                im.iter_mut().for_each(|v| *v = 0.0);
                for (out, s) in [&mut re, &mut im].into_iter().zip(pair) {
                    let mean = s.iter().sum::<f64>() / n as f64;
                    for (o, v) in out.iter_mut().zip(s) {
                        *o = v - mean;
                    }
                }
                fft(&mut re, &mut im, false);
                for k in 0..size {
                    let j = (size - k) % size;
                    power[k] +=
                        (re[k] * re[k] + im[k] * im[k] + re[j] * re[j] + im[j] * im[j]) / 2.0;
                }
            }
            power
        })
        .collect();
    let mut power = vec![0.0; size];
    for partial in &partials {
        for (p, v) in power.iter_mut().zip(partial) {
            *p += v;
        }
    }
    let mut im = vec![0.0; size];
    fft(&mut power, &mut im, true);
    let zero = power[0];
    if zero <= 0.0 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|lag| power[lag] / zero * n as f64 / (n - lag) as f64)
        .collect()
}

#[cfg(test)]
/// Direct sum, to check the FFT path.
fn autocorrelation_direct(series: &[Vec<f64>], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for s in series {
        let mean = s.iter().sum::<f64>() / n as f64;
        for (lag, o) in out.iter_mut().enumerate() {
            *o += (0..n - lag)
                .map(|i| (s[i] - mean) * (s[i + lag] - mean))
                .sum::<f64>();
        }
    }
    let zero = out[0];
    (0..n)
        .map(|lag| out[lag] / zero * n as f64 / (n - lag) as f64)
        .collect()
}

/// Refines a period of `lag` bins to below one bin: finds the peak near k
/// periods for k = 2, 4, 8, ..., each time within a third of a period of
/// where the current estimate puts it (so it is the k-th multiple, not a
/// neighbour), and divides its position (interpolated by a parabola through
/// the peak and its neighbours) by k.
pub(crate) fn refine_period(curve: &[f64], lag: usize, max_lag: usize) -> f64 {
    let mut period = lag as f64;
    let mut k = 2usize;
    while (k as f64 * period) as usize + 1 < max_lag {
        let center = k as f64 * period;
        let reach = (period / 3.0).max(1.0);
        let lo = ((center - reach).floor().max(1.0)) as usize;
        let hi = ((center + reach).ceil() as usize).min(max_lag - 1);
        let Some(peak) = (lo..=hi).max_by(|&a, &b| curve[a].total_cmp(&curve[b])) else {
            break;
        };
        let (y0, y1, y2) = (curve[peak - 1], curve[peak], curve[peak + 1]);
        let denom = y0 - 2.0 * y1 + y2;
        let offset = if denom.abs() > 1e-12 {
            (0.5 * (y0 - y2) / denom).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        period = (peak as f64 + offset) / k as f64;
        k *= 2;
    }
    period
}

/// The period (in bins, sub-bin precision) and its peak height, if the
/// autocorrelation has a prominent peak.
fn find_period(curve: &[f64]) -> Option<(f64, f64)> {
    let max_lag = curve.len() / 3;
    if max_lag < 4 {
        return None;
    }
    let mut low = f64::MAX;
    let mut peaks = Vec::new();
    for lag in 2..max_lag {
        low = low.min(curve[lag]);
        if lag < MIN_LAG {
            continue;
        }
        if curve[lag] >= curve[lag - 1]
            && curve[lag] > curve[lag + 1]
            && curve[lag] - low >= MIN_PROMINENCE
        {
            peaks.push((lag, curve[lag]));
        }
    }
    let top = peaks.iter().map(|p| p.1).fold(0.0, f64::max);
    // The period is the first peak nearly as high as the best (multiples are as high).
    let &(lag, score) = peaks.iter().find(|p| p.1 >= 0.9 * top)?;
    let period = refine_period(curve, lag, max_lag);
    Some((period, score))
}

/// The local period around each bin of `marker` (a tempo that drifts: a
/// run slows down when the machine gets busy): autocorrelation of the
/// marker over windows of `LOCAL_PERIODS` periods, every quarter window,
/// searched between 2/3 and 3/2 of the global `period` (so it cannot jump
/// to a multiple), refined by a parabola. A window without a clear peak
/// keeps the global period.
fn local_periods(marker: &[f64], period: f64) -> Vec<f64> {
    let n = marker.len();
    let mut out = vec![period; n];
    let window = (LOCAL_PERIODS * period).round() as usize;
    if n < 2 * window || period < 4.0 {
        return out;
    }
    let hop = (window / 4).max(1);
    let lo = ((period * 2.0 / 3.0).floor() as usize).max(1);
    let hi = (period * 1.5).ceil() as usize;
    let mut centres = Vec::new();
    let mut c = window / 2;
    while c < n {
        let start = c.saturating_sub(window / 2);
        let end = (start + window).min(n);
        let seg = &marker[start..end];
        let mean = seg.iter().sum::<f64>() / seg.len() as f64;
        let x: Vec<f64> = seg.iter().map(|v| v - mean).collect();
        let zero: f64 = x.iter().map(|v| v * v).sum();
        let r = |lag: usize| -> f64 {
            if lag >= x.len() || zero <= 0.0 {
                return 0.0;
            }
            let sum: f64 = (0..x.len() - lag).map(|i| x[i] * x[i + lag]).sum();
            sum / zero * x.len() as f64 / (x.len() - lag) as f64
        };
        let curve: Vec<f64> = (lo - 1..=hi + 1).map(r).collect();
        let best = (1..curve.len() - 1).max_by(|&a, &b| curve[a].total_cmp(&curve[b]));
        let local = best
            .filter(|&i| {
                curve[i] >= LOCAL_MIN_R && curve[i] >= curve[i - 1] && curve[i] >= curve[i + 1]
            })
            .map(|i| {
                let (y0, y1, y2) = (curve[i - 1], curve[i], curve[i + 1]);
                let d = y0 - 2.0 * y1 + y2;
                let shift = if d < 0.0 { 0.5 * (y0 - y2) / d } else { 0.0 };
                (lo - 1 + i) as f64 + shift.clamp(-0.5, 0.5)
            });
        centres.push((c, local.unwrap_or(period)));
        c += hop;
    }
    // Each bin takes the nearest window's period.
    for (t, v) in out.iter_mut().enumerate() {
        let i = centres.partition_point(|&(c, _)| c < t);
        let nearest = match (i.checked_sub(1).map(|j| centres[j]), centres.get(i)) {
            (Some(a), Some(b)) => {
                if t - a.0 <= b.0 - t {
                    a.1
                } else {
                    b.1
                }
            }
            (Some(a), None) => a.1,
            (None, Some(b)) => b.1,
            (None, None) => period,
        };
        *v = nearest;
    }
    out
}

/// Step starts (indices into `marker`) by dynamic programming: each start
/// scores its marker value, each gap a penalty growing with its log-ratio to
/// the local period where the gap ends.
fn place_starts(marker: &[f64], periods: &[f64]) -> Vec<usize> {
    let n = marker.len();
    if n == 0 {
        return Vec::new();
    }
    // Penalty tables per local period, which takes few distinct values.
    let mut tables: HashMap<u64, (usize, usize, Vec<f64>)> = HashMap::new();
    let mut score = vec![0.0; n];
    let mut previous = vec![usize::MAX; n];
    for t in 0..n {
        let period = periods[t];
        let (lo, hi, penalty) = tables.entry(period.to_bits()).or_insert_with(|| {
            let lo = (0.5 * period).floor().max(1.0) as usize;
            let hi = (2.5 * period).ceil() as usize;
            let penalty = (0..=hi)
                .map(|gap| GAP_WEIGHT * (gap.max(1) as f64 / period).ln().powi(2))
                .collect();
            (lo, hi, penalty)
        });
        let mut best = 0.0;
        for gap in *lo..=(*hi).min(t) {
            let v = score[t - gap] - penalty[gap];
            if v > best {
                best = v;
                previous[t] = t - gap;
            }
        }
        score[t] = marker[t] + best;
    }
    let tail = n.saturating_sub((2.0 * periods[n - 1]).ceil() as usize);
    let Some(mut t) = (tail..n).max_by(|&a, &b| score[a].total_cmp(&score[b])) else {
        return Vec::new();
    };
    let mut starts = vec![t];
    while previous[t] != usize::MAX {
        t = previous[t];
        starts.push(t);
    }
    starts.reverse();
    starts
}

/// Drops steps at either end of the loop whose make-up (samples of each
/// strictly periodic channel) is unlike the loop's typical step: the setup
/// before a training loop and the teardown after it are not steps, even
/// when the placement found starts there. A step's make-up is compared by
/// cosine with the mean of the middle half of the steps. Also returns the
/// share of the kept steps that are unlike the typical one.
fn trim_unlike_ends<I: Iterator<Item = Channel>>(
    starts: &[usize],
    time_of: impl Fn(usize) -> u64,
    mine: &[&Sample],
    channels: &HashMap<Channel, f64>,
    channels_of: &impl Fn(&(u32, Option<u64>)) -> I,
) -> (Vec<usize>, f64) {
    if starts.len() < 8 {
        return (starts.to_vec(), 0.0);
    }
    let mut sorted: Vec<Channel> = channels.keys().copied().collect();
    sorted.sort_by_key(|c| (c.tid, c.labelling, c.function));
    let index: HashMap<Channel, usize> = sorted.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let d = index.len();
    let bounds: Vec<u64> = starts.iter().map(|&t| time_of(t)).collect();
    let steps = bounds.len() - 1;
    let mut make_up = vec![0.0f64; steps * d];
    let mut cache: FastMap<(u32, Option<u64>), Vec<usize>> = FastMap::default();
    for s in mine {
        if s.time_ns < bounds[0] || s.time_ns >= bounds[steps] {
            continue;
        }
        let step = bounds.partition_point(|&b| b <= s.time_ns) - 1;
        let chans = cache.entry((s.tid, s.stack_id)).or_insert_with(|| {
            channels_of(&(s.tid, s.stack_id))
                .filter_map(|c| index.get(&c).copied())
                .collect()
        });
        for &c in chans.iter() {
            make_up[step * d + c] += 1.0;
        }
    }
    // Each channel in units of its mean per step, so the busiest one does
    // not decide alone.
    let mut mean = vec![0.0; d];
    for row in make_up.chunks(d) {
        for c in 0..d {
            mean[c] += row[c] / steps as f64;
        }
    }
    for row in make_up.chunks_mut(d) {
        for c in 0..d {
            if mean[c] > 0.0 {
                row[c] /= mean[c];
            }
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let mut reference = vec![0.0; d];
    for step in steps / 4..steps * 3 / 4 {
        for c in 0..d {
            reference[c] += make_up[step * d + c];
        }
    }
    let norm = reference
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    let similarity: Vec<f64> = (0..steps)
        .map(|step| {
            (0..d)
                .map(|c| make_up[step * d + c] * reference[c])
                .sum::<f64>()
                / norm
        })
        .collect();
    // The loop begins with the first run of five steps of which four are
    // alike (one stray setup step that happens to look right does not
    // start it), and ends symmetrically.
    let alike: Vec<bool> = similarity.iter().map(|&v| v >= MIN_LIKENESS).collect();
    let run = 5.min(steps);
    let good = |i: usize| alike[i] && alike[i..i + run].iter().filter(|&&a| a).count() + 1 >= run;
    let first = (0..=steps - run).find(|&i| good(i));
    let last = (run - 1..steps)
        .rev()
        .find(|&i| alike[i] && alike[i + 1 - run..=i].iter().filter(|&&a| a).count() + 1 >= run);
    match (first, last) {
        // Steps first..=last, bounded by their starts and the next one.
        (Some(a), Some(b)) => {
            let kept = &similarity[a..=b];
            let unlike = kept.iter().filter(|&&v| v < MIN_LIKENESS).count();
            // The last start opens the final step, which has no end to
            // compare by; it stays unless the end was trimmed.
            let end = if b + 1 == steps { b + 1 } else { b };
            (starts[a..=end].to_vec(), unlike as f64 / kept.len() as f64)
        }
        _ => (starts.to_vec(), 1.0),
    }
}

/// A series of one function (in one labelling) on one thread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Channel {
    tid: u32,
    labelling: usize,
    function: usize,
}

/// First pass over the samples of `[start, end)` in bins of `bin_ns`: the
/// period (ns) and its confidence, plus how strictly each channel repeats.
fn period_in(
    mine: &[&Sample],
    labellings: &[&StackMap<usize>],
    start: u64,
    bin_ns: u64,
    n: usize,
) -> Option<(f64, f64, HashMap<Channel, f64>)> {
    let inside: Vec<&Sample> = mine
        .iter()
        .copied()
        .filter(|s| s.time_ns >= start && ((s.time_ns - start) / bin_ns) < n as u64)
        .collect();
    let bin = |t: u64| ((t - start) / bin_ns) as usize;
    // The threads that do the work: one series per (thread, labelling,
    // busiest functions of it). Threads are kept apart, so that threads
    // taking turns on the CPUs (time slices) do not look like a loop.
    let mut per_thread: FastMap<u32, u64> = FastMap::default();
    for s in &inside {
        *per_thread.entry(s.tid).or_default() += 1;
    }
    let mut threads: Vec<(u32, u64)> = per_thread.into_iter().collect();
    threads.sort_by_key(|&(tid, c)| (std::cmp::Reverse(c), tid));
    let busiest_thread = threads.first()?.1;
    threads.retain(|&(_, c)| c * 4 >= busiest_thread);
    threads.truncate(MAX_THREADS);
    let mut channels: Vec<Channel> = Vec::new();
    let mut series: Vec<Vec<f64>> = Vec::new();
    let mut shares: Vec<Vec<f64>> = Vec::new();
    for &(tid, _) in &threads {
        let own: Vec<&Sample> = inside.iter().copied().filter(|s| s.tid == tid).collect();
        let mut total = vec![0.0; n];
        for s in &own {
            total[bin(s.time_ns)] += 1.0;
        }
        let first_series = series.len();
        for (labelling, (labels, &keep)) in labellings.iter().zip(CHANNELS.iter()).enumerate() {
            let mut totals: FastMap<usize, u64> = FastMap::default();
            for s in &own {
                if let Some(&f) = labels.get(&s.stack_id) {
                    *totals.entry(f).or_default() += 1;
                }
            }
            let mut busiest: Vec<(usize, u64)> = totals.into_iter().collect();
            busiest.sort_by_key(|&(f, c)| (std::cmp::Reverse(c), f));
            busiest.truncate(keep);
            let index: HashMap<usize, usize> = busiest
                .iter()
                .enumerate()
                .map(|(i, &(f, _))| (f, series.len() + i))
                .collect();
            for &(function, _) in &busiest {
                channels.push(Channel {
                    tid,
                    labelling,
                    function,
                });
                series.push(vec![0.0; n]);
            }
            for s in &own {
                if let Some(&i) = labels.get(&s.stack_id).and_then(|f| index.get(f)) {
                    series[i][bin(s.time_ns)] += 1.0;
                }
            }
        }
        // What the thread ran in each bin, as shares; bins where it did not
        // run at all (descheduled, blocked) are neutral.
        for s in &series[first_series..] {
            let (sum, busy) = s
                .iter()
                .zip(&total)
                .filter(|(_, t)| **t > 0.0)
                .fold((0.0, 0usize), |(a, k), (v, t)| (a + v / t, k + 1));
            let mean = sum / busy.max(1) as f64;
            shares.push(
                s.iter()
                    .zip(&total)
                    .map(|(v, t)| if *t > 0.0 { v / t } else { mean })
                    .collect(),
            );
        }
    }
    let curve = autocorrelation(&shares, n);
    let (period, score) = find_period(&curve)?;
    // How strictly each channel repeats with the period.
    let lag = period.round() as usize;
    let strictness = channels
        .into_iter()
        .zip(&series)
        .map(|(channel, s)| {
            let mean = s.iter().sum::<f64>() / n as f64;
            let (mut same, mut energy) = (0.0, 0.0);
            for i in 0..n {
                let d = s[i] - mean;
                energy += d * d;
                if i + lag < n {
                    same += d * (s[i + lag] - mean);
                }
            }
            (channel, if energy > 0.0 { same / energy } else { 0.0 })
        })
        .collect();
    Some((period * bin_ns as f64, score.clamp(0.0, 1.0), strictness))
}

/// A sequence result this confident is taken as is.
const STRONG_SEQUENCE: f64 = 0.5;

/// Detects steps in the samples of `pid` (all samples when `None`).
/// `self_of_stack` maps each stack to its self function (the sequence
/// detector's labels); `labellings` are the wall-clock detector's: the
/// innermost user-space function, then its callers (any ids: each
/// labelling is its own set of series).
///
/// Two detectors: the sequence of the busiest thread's samples
/// (`steps_seq`, robust when the machine is loaded, needs dense sampling)
/// and the wall-clock one here (several threads and caller levels, works
/// with a few samples per step and with warm-up steps of odd length). A
/// strong sequence result wins; else the wall clock's; else a weak sequence
/// result.
pub fn detect_steps(
    samples: &[Sample],
    self_of_stack: &StackMap<usize>,
    labellings: &[&StackMap<usize>],
    pid: Option<u32>,
) -> Steps {
    let sequence = crate::steps_seq::detect(samples, self_of_stack, pid);
    if sequence.count > 0 && sequence.confidence >= STRONG_SEQUENCE {
        return sequence;
    }
    let wall = detect_wall(samples, labellings, pid);
    if wall.count > 0 || sequence.count == 0 {
        return wall;
    }
    sequence
}

/// The wall-clock detector.
///
/// The first pass looks at 1 ms bins: over the whole run when it fits in
/// `MAX_BINS` of them, else over that many in the middle of the run (where
/// the loop is), and only then at the whole run in wider bins — wide bins
/// would alias short steps into false long ones.
fn detect_wall(samples: &[Sample], labellings: &[&StackMap<usize>], pid: Option<u32>) -> Steps {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| pid.is_none_or(|p| s.pid == p))
        .collect();
    if mine.len() < 64 {
        return none("too few samples to look for steps", 0.0);
    }
    let (first, last) = mine.iter().fold((u64::MAX, 0), |(lo, hi), s| {
        (lo.min(s.time_ns), hi.max(s.time_ns))
    });
    let span = last - first + 1;
    if span < 16 * MIN_BIN_NS {
        return none("recording too short to look for steps", 0.0);
    }
    let fine_n = span.div_ceil(MIN_BIN_NS) as usize;
    let mut attempts = Vec::new();
    if fine_n <= MAX_BINS {
        attempts.push((first, MIN_BIN_NS, fine_n));
    } else {
        let window = MAX_BINS as u64 * MIN_BIN_NS;
        attempts.push((first + (span - window) / 2, MIN_BIN_NS, MAX_BINS));
        let wide = span.div_ceil(MAX_BINS as u64);
        attempts.push((first, wide, span.div_ceil(wide) as usize));
    }
    let mut best_confidence = 0.0f64;
    let mut found = None;
    for (start, bin_ns, n) in attempts {
        match period_in(&mine, labellings, start, bin_ns, n) {
            Some((period, confidence, strictness)) if confidence >= MIN_CONFIDENCE => {
                found = Some((period, confidence, strictness));
                break;
            }
            Some((_, confidence, _)) => best_confidence = best_confidence.max(confidence),
            None => {}
        }
    }
    let Some((period_ns, confidence, strictness)) = found else {
        return none("no periodic structure found", best_confidence);
    };

    // Marker over the whole run: the channels that repeat most strictly
    // with the period, each weighted by how strictly over how often it is
    // sampled, in bins of a sixteenth of a period.
    let strictest = strictness.values().copied().fold(0.0, f64::max);
    // Whole milliseconds, so bins are not alternately hit by more and fewer
    // ticks of the sampling clock.
    let coarse_ns =
        ((period_ns / BINS_PER_PERIOD / MIN_BIN_NS as f64).round() as u64).max(1) * MIN_BIN_NS;
    let m = (span.div_ceil(coarse_ns) as usize).max(1);
    // Work per distinct (thread, stack), not per sample.
    let mut per_pair: FastMap<(u32, Option<u64>), u64> = FastMap::default();
    for s in &mine {
        *per_pair.entry((s.tid, s.stack_id)).or_default() += 1;
    }
    let channels_of = |&(tid, stack): &(u32, Option<u64>)| {
        labellings
            .iter()
            .enumerate()
            .filter_map(move |(labelling, labels)| {
                labels.get(&stack).map(|&function| Channel {
                    tid,
                    labelling,
                    function,
                })
            })
    };
    let mut hits: HashMap<Channel, u64> = HashMap::new();
    for (pair, &count) in &per_pair {
        for channel in channels_of(pair) {
            if strictness.contains_key(&channel) {
                *hits.entry(channel).or_default() += count;
            }
        }
    }
    let weights: HashMap<Channel, f64> = strictness
        .iter()
        .filter(|&(_, &strict)| strict > 0.0 && strict >= 0.5 * strictest)
        .filter_map(|(channel, &strict)| {
            let rate = *hits.get(channel)? as f64 / m as f64;
            (rate > 0.0).then(|| (*channel, strict / rate))
        })
        .collect();
    let weight_of_pair: HashMap<(u32, Option<u64>), f64> = per_pair
        .keys()
        .filter_map(|pair| {
            let w: f64 = channels_of(pair).filter_map(|c| weights.get(&c)).sum();
            (w > 0.0).then_some((*pair, w))
        })
        .collect();
    let mut marker = vec![0.0; m];
    for s in &mine {
        if let Some(w) = weight_of_pair.get(&(s.tid, s.stack_id)) {
            marker[((s.time_ns - first) / coarse_ns) as usize] += w;
        }
    }
    // Light smoothing, then scale so a typical busy bin is 1.
    let raw = marker.clone();
    for (i, v) in marker.iter_mut().enumerate() {
        let lo = i.saturating_sub(1);
        let hi = (i + 2).min(m);
        *v = raw[lo..hi].iter().sum::<f64>() / (hi - lo) as f64;
    }
    let mut positive: Vec<f64> = marker.iter().copied().filter(|&v| v > 0.0).collect();
    positive.sort_by(f64::total_cmp);
    let Some(&scale) = positive.get(positive.len() * 9 / 10) else {
        return none("no periodic structure found", confidence);
    };
    marker.iter_mut().for_each(|v| *v /= scale);

    let period_coarse = period_ns / coarse_ns as f64;
    // Centred, an ordinary stretch earns nothing: only where the marker
    // rises does a start pay for its gap penalty (else the dynamic programme
    // would crowd in starts).
    let average = marker.iter().sum::<f64>() / m as f64;
    let centred: Vec<f64> = marker.iter().map(|v| v - average).collect();
    let all = place_starts(&centred, &local_periods(&marker, period_coarse));
    let mut strengths: Vec<f64> = all.iter().map(|&t| marker[t]).collect();
    strengths.sort_by(f64::total_cmp);
    let median = strengths.get(strengths.len() / 2).copied().unwrap_or(0.0);
    let starts: Vec<usize> = all
        .into_iter()
        .filter(|&t| marker[t] >= WEAK_START * median)
        .collect();
    let time_of = |t: usize| first + t as u64 * coarse_ns;
    let (starts, unlike) = trim_unlike_ends(&starts, time_of, &mine, &weights, &channels_of);
    if starts.len() < 3 {
        return none("no periodic structure found", confidence);
    }
    if unlike > MAX_UNLIKE {
        // A rhythm (time slices beside another busy process, say) whose
        // "steps" do not do the same work is not a training loop.
        return none(
            "no periodic structure found (a rhythm, but its steps do not repeat the same work)",
            confidence,
        );
    }
    let mut boundaries: Vec<u64> = starts.iter().map(|&t| time_of(t)).collect();
    // The ends: starts sit where the marker rises, anywhere in the step, so
    // the recording may begin inside a step and end inside one. A start less
    // than half a step before the last sample opens no step; a recording
    // that begins half a step or more (but not a step and a half: that is
    // setup) before the first start holds one more.
    let typical =
        (boundaries[boundaries.len() - 1] - boundaries[0]) / (boundaries.len() as u64 - 1);
    if last.saturating_sub(boundaries[boundaries.len() - 1]) < typical / 2 {
        boundaries.pop();
    }
    let head = boundaries[0] - first;
    if head >= typical / 2 && head < typical * 3 / 2 {
        boundaries.insert(0, boundaries[0] - head.min(typical));
    }
    let lengths: Vec<f64> = boundaries
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64)
        .collect();
    let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
    let var = lengths.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lengths.len() as f64;
    // The last step ends a typical step after it starts, or with the samples.
    let last_start = *boundaries.last().expect("three starts");
    boundaries.push((last_start + mean.round() as u64).min(last.max(last_start + 1)));
    Steps {
        count: boundaries.len() as u64 - 1,
        period_ns: Some(mean.round() as u64),
        period_cv: (lengths.len() >= 2).then(|| var.sqrt() / mean),
        confidence,
        boundaries_ns: boundaries,
        note: None,
        expected: None,
        method: Some("wall clock".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 1 ms following `phase(t_ms)` as the self function.
    fn samples(ms: u64, mut phase: impl FnMut(u64) -> u64) -> (Vec<Sample>, StackMap<usize>) {
        let rows = (0..ms)
            .map(|t| crate::test_sample(1_000_000_000 + t * 1_000_000, phase(t)))
            .collect();
        let map = (0..8).map(|i| (Some(i), i as usize)).collect();
        (rows, map)
    }

    #[test]
    fn fft_autocorrelation_equals_the_direct_sum() {
        let mut x = 7u64;
        let series: Vec<Vec<f64>> = (0..3)
            .map(|_| {
                (0..100)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (x >> 60) as f64
                    })
                    .collect()
            })
            .collect();
        let fast = autocorrelation(&series, 100);
        let slow = autocorrelation_direct(&series, 100);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn finds_a_37_ms_loop_of_three_phases() {
        let (rows, map) = samples(3700, |t| match t % 37 {
            0..=19 => 0,
            20..=29 => 1,
            _ => 2,
        });
        let steps = detect_steps(&rows, &map, &[&map], Some(1));
        let b = &steps.boundaries_ns;
        assert_eq!(
            steps.count,
            100,
            "{:?} {:?} {:?}",
            steps.period_ns,
            &b[..3],
            &b[b.len() - 3..]
        );
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 37.0).abs() < 0.5, "{period}");
        assert!(steps.confidence > 0.8, "{steps:?}");
        assert!(steps.period_cv.unwrap() < 0.05);
        assert_eq!(steps.boundaries_ns.len(), 101);
    }

    #[test]
    fn noisy_leaf_functions_still_show_the_loop() {
        // Each phase calls one of 20 random leaves: no leaf is sampled in
        // every step, but together (and through their callers) they repeat.
        let (rows, _) = samples(4000, |_| 0);
        let phase = |t: u64| match t % 40 {
            0..=19 => 0,
            20..=29 => 1,
            _ => 2,
        };
        let mut y = 88172645463325252u64;
        let rows: Vec<Sample> = rows
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                s.stack_id = Some(phase(i as u64) * 100 + y % 20);
                s
            })
            .collect();
        let leaf: StackMap<usize> = (0..300).map(|i| (Some(i), i as usize)).collect();
        let caller: StackMap<usize> = (0..300)
            .map(|i| (Some(i), 1000 + i as usize / 100))
            .collect();
        // 300 leaves sampled ~13 times each: too faint on their own.
        let by_leaf = detect_steps(&rows, &leaf, &[&leaf], Some(1));
        assert_eq!(by_leaf.count, 0, "{:?}", by_leaf.note);
        let steps = detect_steps(&rows, &leaf, &[&leaf, &caller], Some(1));
        assert!(steps.count.abs_diff(100) <= 1, "{}", steps.count);
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 40.0).abs() < 0.5, "{period}");
    }

    /// The function at `t` ms of a loop whose steps last `lengths` ms, each
    /// in three phases (half, a quarter, a quarter); `None` after the loop.
    fn phase_in(lengths: &[u64], t: u64) -> Option<u64> {
        let mut start = 0;
        for &len in lengths {
            if t < start + len {
                let pos = (t - start) * 4 / len;
                return Some(match pos {
                    0 | 1 => 0,
                    2 => 1,
                    _ => 2,
                });
            }
            start += len;
        }
        None
    }

    #[test]
    fn a_loop_that_slows_down_is_followed() {
        // 40 steps of 30 ms, then 40 of 34 ms, a fifth of the samples
        // stray: every step is found and the boundaries follow the tempo.
        let slow = 34;
        let lengths: Vec<u64> = (0..80).map(|i| if i < 40 { 30 } else { slow }).collect();
        let total: u64 = lengths.iter().sum();
        let noise = 20;
        let mut y = 0x2545f4914f6cdd1du64;
        let (rows, map) = samples(total, |t| {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            if y % 100 < noise {
                3 + y % 3
            } else {
                phase_in(&lengths, t).unwrap()
            }
        });
        let steps = detect_wall(&rows, &[&map], Some(1));
        assert!(
            steps.count.abs_diff(80) <= 1,
            "{} {:?}",
            steps.count,
            steps.note
        );
        let b = &steps.boundaries_ns;
        let early = (b[11] - b[1]) as f64 / 10e6;
        let late = (b[b.len() - 2] - b[b.len() - 12]) as f64 / 10e6;
        assert!(
            (early - 30.0).abs() < 1.0 && (late - slow as f64).abs() < 1.0,
            "{early} {late}"
        );
    }

    #[test]
    fn setup_before_the_loop_is_not_steps() {
        // 600 ms of setup (other functions in random stretches), then 60
        // steps of 35 ms.
        let lengths = vec![35u64; 60];
        let setup = 600;
        let mut y = 0x9e3779b97f4a7c15u64;
        let mut setup_functions = Vec::new();
        while setup_functions.len() < setup as usize {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            let stretch = 5 + y % 60;
            setup_functions.extend(std::iter::repeat_n(5 + (y >> 20) % 3, stretch as usize));
        }
        let (rows, map) = samples(setup + 35 * 60, |t| {
            if t < setup {
                setup_functions[t as usize]
            } else {
                phase_in(&lengths, t - setup).unwrap()
            }
        });
        let steps = detect_wall(&rows, &[&map], Some(1));
        assert!(
            steps.count.abs_diff(60) <= 1,
            "{} {:?}",
            steps.count,
            steps.note
        );
        let first = steps.boundaries_ns[0];
        assert!(
            first + 5_000_000 >= 1_000_000_000 + setup * 1_000_000,
            "{first}"
        );
    }

    /// Steps of 10 ms over `make_up` (the functions sampled in each step,
    /// one sample per ms) through `trim_unlike_ends`, with functions 0..3 as
    /// the marker channels: (first kept step, last kept start, unlike share).
    fn trim(make_up: &[Vec<u64>]) -> (usize, usize, f64) {
        let mut rows = Vec::new();
        for (step, functions) in make_up.iter().enumerate() {
            for (i, &f) in functions.iter().enumerate() {
                rows.push(crate::test_sample((step * 10 + i) as u64 * 1_000_000, f));
            }
        }
        let mine: Vec<&Sample> = rows.iter().collect();
        let channel = |function| Channel {
            tid: 1,
            labelling: 0,
            function,
        };
        let weights: HashMap<Channel, f64> = (0..3).map(|f| (channel(f), 1.0)).collect();
        let channels_of =
            |&(_, stack): &(u32, Option<u64>)| stack.map(|f| channel(f as usize)).into_iter();
        let starts: Vec<usize> = (0..make_up.len()).map(|s| s * 10).collect();
        let (kept, unlike) = trim_unlike_ends(
            &starts,
            |t| t as u64 * 1_000_000,
            &mine,
            &weights,
            &channels_of,
        );
        (kept[0] / 10, kept[kept.len() - 1] / 10, unlike)
    }

    #[test]
    fn unlike_steps_at_the_ends_are_trimmed_and_unlike_ones_inside_counted() {
        let step = vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 2];
        let one = vec![0; 10]; // one marker function only (cosine 0.58)
        let other = vec![7; 10]; // no marker function at all (cosine 0)
        // Setup with one step that looks right, 20 loop steps, teardown.
        let mut make_up = vec![other.clone(), step.clone(), other.clone(), other.clone()];
        make_up.extend(std::iter::repeat_n(step.clone(), 20));
        make_up.extend([other.clone(), other.clone(), one.clone(), other.clone()]);
        assert_eq!(trim(&make_up), (4, 23, 0.0));
        // Inside the loop, three steps of other work and two of one marker
        // function (alike enough): 3 of the 19 steps with an end are unlike
        // (the last start has none).
        let mut make_up = vec![step.clone(); 20];
        for (i, s) in make_up.iter_mut().enumerate().skip(8).take(5) {
            *s = if i % 2 == 0 {
                other.clone()
            } else {
                one.clone()
            };
        }
        let (first, last, unlike) = trim(&make_up);
        assert_eq!((first, last), (0, 19));
        assert!((unlike - 3.0 / 19.0).abs() < 1e-9, "{unlike}");
    }

    #[test]
    fn long_phases_are_not_steps() {
        // Two long phases, one after the other: decays, never peaks.
        let (rows, map) = samples(3000, |t| if t < 2000 { 0 } else { 1 });
        let steps = detect_steps(&rows, &map, &[&map], Some(1));
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
        assert_eq!(steps.note.as_deref(), Some("no periodic structure found"));
    }

    #[test]
    fn random_functions_are_not_steps() {
        let (rows, map) = samples(4000, |_| 0);
        // Re-label with a deterministic pseudo-random sequence.
        let mut y = 88172645463325252u64;
        let rows: Vec<Sample> = rows
            .into_iter()
            .map(|mut s| {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                s.stack_id = Some(y % 5);
                s
            })
            .collect();
        let steps = detect_steps(&rows, &map, &[&map], Some(1));
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
    }
}
