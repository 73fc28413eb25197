//! The wall-clock step detector, in two passes over the main process's
//! samples on the wall clock.
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

use super::placement::{local_periods, place_starts, trim_unlike_ends};
use super::signal::{Ties, autocorrelation, mean_and_cv, median_gap, period_peak, refine_period};
use super::{Steps, none};
use crate::Samples;
use crate::fasthash::{FastMap, StackMap};
use sofa_trace::TraceError;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Most bins of the first pass; longer recordings use wider bins.
const MAX_BINS: usize = 8_192;
/// Threads looked at: the busiest, and others with a quarter of its samples.
const MAX_THREADS: usize = 3;
/// Narrowest bin, ns: about one sampling interval at the default rate, so
/// that bins are not alternately hit and missed by the sampling clock.
const MIN_BIN_NS: u64 = 1_000_000;
/// Shortest period looked for, in bins.
const MIN_LAG: usize = 4;
/// Series used in the first pass, per labelling of CPU samples: the
/// innermost user function, its callers, then the innermost Python
/// function (phases of a Python loop that run the same native code — BLAS
/// in both the forward and the backward pass — differ there).
pub(super) const CPU_CHANNELS: [usize; 5] = [16, 8, 4, 2, 8];
/// Windows the first pass also tries, as fractions of the run: a loop that
/// fills a quarter of it (after a long import or data set-up, before a long
/// evaluation) stands out in a window its size, not over the whole run.
const WINDOW_DIVISIONS: [u64; 2] = [2, 4];
/// A window must hold this many of the shortest periods looked for.
const MIN_WINDOW_NS: u64 = 1_000_000_000;
/// A peak must rise this far above the lowest point before it. A loop's
/// functions are anti-correlated half a period apart (the curve dips below
/// zero: -0.1 to -0.2 on the fixtures, peaks 0.17-0.74 after it); a long
/// phase with a timer tick in it gives a bump of ~0.09 on a high plateau.
const MIN_PROMINENCE: f64 = 0.2;
/// Periodic structure is reported only from this confidence on (CPU samples).
const MIN_CONFIDENCE: f64 = 0.12;
/// Second-pass bins per period.
const BINS_PER_PERIOD: f64 = 16.0;
/// More unlike steps than this share inside the loop: not a loop. Real
/// loops measured here: at most 0.016 on a quiet machine, but one on a
/// slow machine went over 0.1; a rhythm of time slices beside a CPU hog:
/// 0.22.
const MAX_UNLIKE: f64 = 0.2;
/// A whole-run confidence from which its parts are not looked at.
const CLEAR: f64 = 0.4;
/// Longest gap between starts that placement makes, in periods.
const MAX_GAP: f64 = 2.5;
/// Step starts with a marker under this share of the median start's are dropped.
const WEAK_START: f64 = 0.3;

/// The period (in bins, sub-bin precision) and its peak height, if the
/// autocorrelation has a prominent peak.
fn find_period(curve: &[f64]) -> Option<(f64, f64)> {
    let max_lag = curve.len() / 3;
    if max_lag < 4 {
        return None;
    }
    let (lag, score) = period_peak(curve, MIN_LAG, max_lag, MIN_PROMINENCE, Ties::Last)?;
    Some((refine_period(curve, lag, max_lag), score))
}

/// What a bin of an event stream measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    /// The share of the thread's samples in the bin that each label has;
    /// bins where the thread did not run are neutral (CPU samples, taken
    /// at a steady rate while the thread runs: what it runs is the signal).
    Shares,
    /// How many events of each label fall in the bin, lightly smoothed
    /// (system calls, which come in bursts: when they come is the signal).
    Counts,
}

/// An event as the detector reads it, 16 bytes: a CPU sample (its key is
/// its stack's), a system call (its name's), a packet, a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Event {
    pub(super) time_ns: u64,
    pub(super) tid: u32,
    /// Index into each labelling's labels.
    pub(super) key: u32,
}

/// A key without a label in a labelling.
pub(super) const NO_LABEL: u32 = u32::MAX;

/// How a stream is read: what its bins measure and how sure an answer
/// must be.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    /// Series of the busiest labels used in the first pass, per labelling.
    pub(super) channels: &'static [usize],
    pub(super) measure: Measure,
    /// What the result's `method` says.
    pub(super) method: &'static str,
    /// Periodic structure is reported only from this confidence on.
    pub(super) min_confidence: f64,
    /// Periods a whole-run window must hold (its parts: 8).
    pub(super) min_periods: f64,
}

/// An event stream as the detector sees it: its events grouped by thread,
/// each thread's in time order (a window of the run is a range of each
/// thread's, found by binary search), and the label of each key per
/// labelling (each labelling its own set of series).
pub(super) struct Stream {
    events: Vec<Event>,
    /// Each thread's events: `events[start..end]`.
    threads: Vec<(u32, usize, usize)>,
    /// `labels[labelling][key]`, `NO_LABEL` for none. Labels are dense
    /// ids (function positions, call names, reasons).
    labels: Vec<Vec<u32>>,
    /// Per labelling, its highest label + 1.
    label_counts: Vec<usize>,
    pub(super) reading: Reading,
}

impl Stream {
    /// The stream of `events` (in any order) whose keys `labels` maps.
    pub(super) fn new(mut events: Vec<Event>, labels: Vec<Vec<u32>>, reading: Reading) -> Stream {
        // (Tests give the CPU stream fewer labellings than it has channels.)
        debug_assert!(labels.len() <= reading.channels.len());
        events.sort_unstable_by_key(|e| (e.tid, e.time_ns, e.key));
        let mut threads: Vec<(u32, usize, usize)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match threads.last_mut() {
                Some(last) if last.0 == e.tid => last.2 = i + 1,
                _ => threads.push((e.tid, i, i + 1)),
            }
        }
        let label_counts = labels
            .iter()
            .map(|of| {
                of.iter()
                    .filter(|&&f| f != NO_LABEL)
                    .max()
                    .map_or(0, |&f| f as usize + 1)
            })
            .collect();
        Stream {
            events,
            threads,
            labels,
            label_counts,
            reading,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// Every event, thread after thread.
    pub(super) fn events(&self) -> &[Event] {
        &self.events
    }

    /// The label of `key` in `labelling`.
    fn label(&self, labelling: usize, key: u32) -> Option<usize> {
        let label = self.labels[labelling][key as usize];
        (label != NO_LABEL).then_some(label as usize)
    }

    /// The channels an event of thread `tid` with `key` counts in.
    pub(super) fn channels_of(&self, tid: u32, key: u32) -> impl Iterator<Item = Channel> + '_ {
        (0..self.labels.len()).filter_map(move |labelling| {
            self.label(labelling, key).map(|function| Channel {
                tid,
                labelling,
                function,
            })
        })
    }

    /// Each thread's events, in time order.
    pub(super) fn thread_events(&self) -> Vec<&[Event]> {
        self.threads
            .iter()
            .map(|&(_, a, b)| &self.events[a..b])
            .collect()
    }

    /// Each thread's events in `[start, end)`, in time order.
    fn per_thread(&self, (start, end): (u64, u64)) -> impl Iterator<Item = (u32, &[Event])> {
        self.threads.iter().map(move |&(tid, a, b)| {
            let own = &self.events[a..b];
            let lo = own.partition_point(|e| e.time_ns < start);
            let hi = own.partition_point(|e| e.time_ns < end);
            (tid, &own[lo..hi.max(lo)])
        })
    }

    /// The first and last event's times.
    fn bounds(&self) -> Option<(u64, u64)> {
        self.threads
            .iter()
            .map(|&(_, a, b)| (self.events[a].time_ns, self.events[b - 1].time_ns))
            .reduce(|x, y| (x.0.min(y.0), x.1.max(y.1)))
    }
}

/// A series of one function (in one labelling) on one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Channel {
    pub(super) tid: u32,
    pub(super) labelling: usize,
    pub(super) function: usize,
}

/// The first pass's autocorrelation of the events in `n` bins of `bin_ns`
/// from `start` (index: lag in bins), with its channels and their series.
struct Curve {
    curve: Vec<f64>,
    channels: Vec<Channel>,
    series: Vec<Vec<f64>>,
}

/// First pass over the events of `n` bins of `bin_ns` from `start`: the
/// period (ns) and its confidence, plus how strictly each channel repeats.
fn period_in(
    stream: &Stream,
    start: u64,
    bin_ns: u64,
    n: usize,
) -> Option<(f64, f64, HashMap<Channel, f64>)> {
    let Curve {
        curve,
        channels,
        series,
    } = curve_in(stream, (start, start + n as u64 * bin_ns), bin_ns, n)?;
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

/// How the CPU samples of `[start, end)` repeat at a period another stream
/// proposes: their autocorrelation at each of `multiples` of the period
/// (the highest within 4 % of the lag; `None` past the stretch). `None`
/// where the stretch holds too few samples.
pub(super) fn support(
    cpu: &Stream,
    (start, end): (u64, u64),
    period_ns: u64,
    multiples: &[f64],
) -> Option<Vec<Option<f64>>> {
    let inside: usize = cpu.per_thread((start, end)).map(|(_, e)| e.len()).sum();
    if inside < 64 {
        return None;
    }
    let span = end.checked_sub(start)?;
    let bin_ns = span.div_ceil(MAX_BINS as u64).max(MIN_BIN_NS);
    let n = span.div_ceil(bin_ns) as usize;
    let curve = curve_in(cpu, (start, end), bin_ns, n)?.curve;
    let at = |lag_ns: f64| -> Option<f64> {
        let lag = lag_ns / bin_ns as f64;
        let (lo, hi) = ((lag * 0.96).floor() as usize, (lag * 1.04).ceil() as usize);
        (lo >= 1 && hi < curve.len()).then(|| {
            curve[lo..=hi]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        })
    };
    Some(multiples.iter().map(|m| at(m * period_ns as f64)).collect())
}

/// The autocorrelation of the stream's busiest channels over the events of
/// `[start, end)` in `n` bins of `bin_ns` from `start` (`end` at most the
/// bins' end).
fn curve_in(stream: &Stream, (start, end): (u64, u64), bin_ns: u64, n: usize) -> Option<Curve> {
    let bin = |t: u64| ((t - start) / bin_ns) as usize;
    // The threads that do the work: one series per (thread, labelling,
    // busiest functions of it). Threads are kept apart, so that threads
    // taking turns on the CPUs (time slices) do not look like a loop.
    let mut threads: Vec<(u32, &[Event])> = stream
        .per_thread((start, end.min(start + n as u64 * bin_ns)))
        .filter(|(_, own)| !own.is_empty())
        .collect();
    threads.sort_by_key(|&(tid, own)| (std::cmp::Reverse(own.len()), tid));
    let busiest_thread = threads.first()?.1.len();
    threads.retain(|&(_, own)| own.len() * 4 >= busiest_thread);
    threads.truncate(MAX_THREADS);
    let mut channels: Vec<Channel> = Vec::new();
    let mut series: Vec<Vec<f64>> = Vec::new();
    let mut shares: Vec<Vec<f64>> = Vec::new();
    for &(tid, own) in &threads {
        let mut total = vec![0.0; n];
        for e in own {
            total[bin(e.time_ns)] += 1.0;
        }
        let first_series = series.len();
        // Per labelling, the series of each label (`NO_LABEL`: not among
        // the busiest): arrays by label, so the work is per event and
        // label, not per distinct stack.
        let mut series_of: Vec<Vec<u32>> = Vec::with_capacity(stream.labels.len());
        for (labelling, (labels, &keep)) in stream
            .labels
            .iter()
            .zip(stream.reading.channels)
            .enumerate()
        {
            let mut totals = vec![0u64; stream.label_counts[labelling]];
            for e in own {
                let f = labels[e.key as usize];
                if f != NO_LABEL {
                    totals[f as usize] += 1;
                }
            }
            let mut busiest: Vec<(u32, u64)> = totals
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c > 0)
                .map(|(f, &c)| (f as u32, c))
                .collect();
            busiest.sort_by_key(|&(f, c)| (std::cmp::Reverse(c), f));
            busiest.truncate(keep);
            let mut of = vec![NO_LABEL; totals.len()];
            for &(function, _) in &busiest {
                of[function as usize] = series.len() as u32;
                channels.push(Channel {
                    tid,
                    labelling,
                    function: function as usize,
                });
                series.push(vec![0.0; n]);
            }
            series_of.push(of);
        }
        for e in own {
            let b = bin(e.time_ns);
            for (labels, of) in stream.labels.iter().zip(&series_of) {
                let f = labels[e.key as usize];
                if f != NO_LABEL && of[f as usize] != NO_LABEL {
                    series[of[f as usize] as usize][b] += 1.0;
                }
            }
        }
        if stream.reading.measure == Measure::Counts {
            // When the events come: counts, spread over ±2 bins (a step's
            // calls come a little earlier or later each time).
            for s in &series[first_series..] {
                shares.push(smooth(s, 2));
            }
            continue;
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
    Some(Curve {
        curve,
        channels,
        series,
    })
}

/// How the wall-clock detector reads CPU samples.
const CPU_READING: Reading = Reading {
    channels: &CPU_CHANNELS,
    measure: Measure::Shares,
    method: "wall clock",
    min_confidence: MIN_CONFIDENCE,
    min_periods: 3.0,
};

/// The CPU samples of `pid` (all when `None`) as the wall-clock detector
/// reads them: each distinct stack a key, labelled by each labelling; about
/// `bound` of them at most (16 bytes each): past that, one in k samples,
/// picked by a hash of its time and thread, so that each thread's share of
/// each function stays as it was. Not every k-th sample: samples come on a
/// 1 ms grid, and every third one fills every third 1 ms bin only (a 37 ms
/// step then never meets itself); nor a multiplying hash (Fx), whose
/// choices of times a millisecond apart follow a pattern of their own.
/// SipHash's look random: a 37 ms loop is found with one in three samples
/// as with all of them. Returns the stream, the samples in it and the
/// process's samples.
pub(super) fn cpu_stream(
    samples: &Samples,
    labellings: &[&StackMap<usize>],
    pid: Option<u32>,
    bound: u64,
) -> Result<(Stream, u64, u64), TraceError> {
    let all: u64 = samples
        .tally()
        .per_stack_thread()
        .filter(|((_, p, _), _)| pid.is_none_or(|pid| *p == pid))
        .map(|(_, n)| n)
        .sum();
    let every = all.div_ceil(bound.max(1)).max(1);
    let below = u64::MAX / every;
    let mut keys: StackMap<u32> = StackMap::default();
    let mut labels: Vec<Vec<u32>> = vec![Vec::new(); labellings.len()];
    // Made as large as it will be (doubling, 10^7 samples took room for
    // 2^24): all of them, or about one in `every` (SipHash keeps a share
    // that strays by a few thousand from it; 1 % more is room enough).
    let expected = match every {
        1 => all,
        _ => all / every + all / every / 100,
    };
    let mut events = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    samples.for_each(|s| {
        if pid.is_some_and(|p| s.pid != p) {
            return;
        }
        if every > 1 && {
            let mut h = std::hash::DefaultHasher::new();
            (s.time_ns, s.tid).hash(&mut h);
            h.finish() > below
        } {
            return;
        }
        let next = keys.len() as u32;
        let key = *keys.entry(s.stack_id()).or_insert_with(|| {
            for (labels, of) in labels.iter_mut().zip(labellings) {
                labels.push(of.get(&s.stack_id()).map_or(NO_LABEL, |&f| f as u32));
            }
            next
        });
        events.push(Event {
            time_ns: s.time_ns,
            tid: s.tid,
            key,
        });
    })?;
    let kept = events.len() as u64;
    Ok((Stream::new(events, labels, CPU_READING), kept, all))
}

/// The wall-clock detector on the CPU samples of a [`cpu_stream`].
pub(super) fn detect(cpu: &Stream) -> Steps {
    if cpu.len() < 64 {
        return none("too few samples to look for steps", 0.0);
    }
    detect_in(cpu)
}

/// The first pass's windows, as (start, bin width, bins): the whole run in
/// 1 ms bins when it fits in `MAX_BINS` of them, else that many in the middle
/// of the run (where the loop is) and then the whole run in wider bins (wide
/// bins would alias short steps into false long ones); then its halves and
/// quarters (overlapping by half), each of at least `MIN_WINDOW_NS`. The
/// last field says whether the window is one of the first two (needs only
/// three periods in it).
fn windows(first: u64, span: u64) -> Vec<(u64, u64, usize, bool)> {
    let fit = |start: u64, len: u64| {
        let bin = len.div_ceil(MAX_BINS as u64).max(MIN_BIN_NS);
        (start, bin, len.div_ceil(bin) as usize)
    };
    let part = |(start, bin, n)| (start, bin, n, false);
    let main = |(start, bin, n)| (start, bin, n, true);
    let mut out = Vec::new();
    if span.div_ceil(MIN_BIN_NS) as usize <= MAX_BINS {
        out.push(main(fit(first, span)));
    } else {
        let window = MAX_BINS as u64 * MIN_BIN_NS;
        out.push((first + (span - window) / 2, MIN_BIN_NS, MAX_BINS, true));
        out.push(main(fit(first, span)));
    }
    for parts in WINDOW_DIVISIONS {
        let len = span / parts;
        if len < MIN_WINDOW_NS {
            break;
        }
        for k in 0..2 * parts - 1 {
            out.push(part(fit(first + k * len / 2, len)));
        }
    }
    out
}

/// The wall-clock detector on any event stream of the process.
pub(super) fn detect_in(stream: &Stream) -> Steps {
    let Some((first, last)) = stream.bounds() else {
        return none("no events to look for steps in", 0.0);
    };
    let span = last - first + 1;
    if span < 16 * MIN_BIN_NS {
        return none("recording too short to look for steps", 0.0);
    }
    // The most confident window; a part of the run must hold at least 8
    // of its periods (the whole run, the stream's minimum).
    let mut best_confidence = 0.0f64;
    let mut found: Option<(f64, f64, HashMap<Channel, f64>)> = None;
    for (start, bin_ns, n, whole) in windows(first, span) {
        // Parts of the run are looked at only when the run as a whole gave
        // no clear answer (they cost ten more passes).
        if !whole && found.as_ref().is_some_and(|f| f.1 >= CLEAR) {
            break;
        }
        let Some((period, confidence, strictness)) = period_in(stream, start, bin_ns, n) else {
            continue;
        };
        best_confidence = best_confidence.max(confidence);
        if confidence < stream.reading.min_confidence
            || period
                * if whole {
                    stream.reading.min_periods
                } else {
                    8.0
                }
                > (n as u64 * bin_ns) as f64
            || found.as_ref().is_some_and(|f| f.1 >= confidence)
        {
            continue;
        }
        found = Some((period, confidence, strictness));
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
    // Work per distinct (thread, key), not per event.
    let mut per_pair: FastMap<(u32, u32), u64> = FastMap::default();
    for e in stream.events() {
        *per_pair.entry((e.tid, e.key)).or_default() += 1;
    }
    let channels_of = |&(tid, key): &(u32, u32)| stream.channels_of(tid, key);
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
    let weight_of_pair: FastMap<(u32, u32), f64> = per_pair
        .keys()
        .filter_map(|pair| {
            let w: f64 = channels_of(pair).filter_map(|c| weights.get(&c)).sum();
            (w > 0.0).then_some((*pair, w))
        })
        .collect();
    let mut marker = vec![0.0; m];
    for e in stream.events() {
        if let Some(w) = weight_of_pair.get(&(e.tid, e.key)) {
            marker[((e.time_ns - first) / coarse_ns) as usize] += w;
        }
    }
    // Light smoothing (in place: the bin before as it was), then scale so
    // a typical busy bin is 1. (The marker is a bin per sixteenth of a step
    // over the whole run; the placement adds a byte a bin.)
    let mut before: Option<f64> = None;
    for i in 0..m {
        let own = marker[i];
        let after = marker.get(i + 1).copied();
        let mut sum = 0.0;
        for v in [before, Some(own), after].into_iter().flatten() {
            sum += v;
        }
        let count = 1 + usize::from(before.is_some()) + usize::from(after.is_some());
        marker[i] = sum / count as f64;
        before = Some(own);
    }
    let scale = ninth_decile_of_positive(&marker);
    let Some(scale) = scale else {
        return none("no periodic structure found", confidence);
    };
    marker.iter_mut().for_each(|v| *v /= scale);

    let period_coarse = period_ns / coarse_ns as f64;
    // Centred, an ordinary stretch earns nothing: only where the marker
    // rises does a start pay for its gap penalty (else the dynamic programme
    // would crowd in starts).
    let average = marker.iter().sum::<f64>() / m as f64;
    let all = place_starts(&marker, average, &local_periods(&marker, period_coarse));
    let mut strengths: Vec<f64> = all.iter().map(|&t| marker[t]).collect();
    strengths.sort_by(f64::total_cmp);
    let median = strengths.get(strengths.len() / 2).copied().unwrap_or(0.0);
    let starts: Vec<usize> = all
        .into_iter()
        .filter(|&t| marker[t] >= WEAK_START * median)
        .collect();
    let time_of = |t: usize| first + t as u64 * coarse_ns;
    let (starts, unlike) = trim_unlike_ends(
        &starts,
        time_of,
        &stream.thread_events(),
        &weights,
        &channels_of,
    );
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
    // A start separated from the loop by a gap the placement cannot make
    // (over 2.5 typical steps: starts between were dropped as weak) is in
    // set-up or tear-down: one PyTorch run had a first "step" of 437 ms
    // before 118 of ~23 ms.
    drop_detached_ends(&mut boundaries);
    if boundaries.len() < 3 {
        return none("no periodic structure found", confidence);
    }
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
    let (mean, period_cv) = mean_and_cv(&lengths);
    // The last step ends a typical step after it starts, or with the samples.
    let last_start = *boundaries.last().expect("three starts");
    boundaries.push((last_start + mean.round() as u64).min(last.max(last_start + 1)));
    // The period and its variation are the starts' (the last step's end is
    // an estimate).
    Steps {
        period_ns: Some(mean.round() as u64),
        period_cv,
        ..Steps::between(boundaries, confidence, stream.reading.method)
    }
}

/// The value a sort of the positive values of `values` puts at nine
/// tenths of their count, found without a copy of them (the marker has a
/// bin per sixteenth of a step of the whole run): positive `f64`s order as
/// their bits do, so the digits of its bits are found 16 at a time, a
/// pass over `values` each.
fn ninth_decile_of_positive(values: &[f64]) -> Option<f64> {
    let mut prefix = 0u64;
    let mut k = None;
    for shift in [48, 32, 16, 0] {
        let above = u64::MAX.checked_shl(shift + 16).unwrap_or(0);
        let mut counts = vec![0usize; 1 << 16];
        for bits in values.iter().filter(|&&v| v > 0.0).map(|v| v.to_bits()) {
            if bits & above == prefix {
                counts[((bits >> shift) & 0xffff) as usize] += 1;
            }
        }
        let k = k.get_or_insert_with(|| counts.iter().sum::<usize>() * 9 / 10);
        let mut digit = None;
        for (d, &n) in counts.iter().enumerate() {
            if *k < n {
                digit = Some(d as u64);
                break;
            }
            *k -= n;
        }
        prefix |= digit? << shift;
    }
    Some(f64::from_bits(prefix))
}

/// Drops starts at either end that are more than `MAX_GAP` median gaps
/// from their neighbour.
fn drop_detached_ends(starts: &mut Vec<u64>) {
    if starts.len() < 4 {
        return;
    }
    let limit = median_gap(starts) as f64 * MAX_GAP;
    while starts.len() >= 3 && (starts[1] - starts[0]) as f64 > limit {
        starts.remove(0);
    }
    while starts.len() >= 3 && (starts[starts.len() - 1] - starts[starts.len() - 2]) as f64 > limit
    {
        starts.pop();
    }
}

/// `s` spread over ±`reach` bins by a triangle of weights.
fn smooth(s: &[f64], reach: usize) -> Vec<f64> {
    let weights: Vec<f64> = (0..=reach).map(|d| (reach + 1 - d) as f64).collect();
    (0..s.len())
        .map(|i| {
            let lo = i.saturating_sub(reach);
            let hi = (i + reach).min(s.len() - 1);
            (lo..=hi).map(|j| s[j] * weights[i.abs_diff(j)]).sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;
    use crate::steps::tests::{loop_37_ms, samples};

    #[test]
    fn a_stream_finds_each_threads_events_of_a_window_as_a_scan_would() {
        // Three threads' events out of order, keys 0..4 with labels
        // (key 3 unlabelled in the first labelling).
        let mut y = 0x2545f4914f6cdd1du64;
        let events: Vec<Event> = (0..3000)
            .map(|_| {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                Event {
                    time_ns: y % 1_000_000,
                    tid: 7 + (y >> 40) as u32 % 3,
                    key: (y >> 20) as u32 % 4,
                }
            })
            .collect();
        let labels = vec![vec![0, 1, 1, NO_LABEL], vec![0, 0, 0, 0]];
        let stream = Stream::new(events.clone(), labels, CPU_READING);
        assert_eq!(stream.len(), 3000);
        assert_eq!(stream.label_counts, [2, 1]);
        for window in [
            (0, 1_000_000),
            (250_000, 250_001),
            (400_000, 700_000),
            (5, 5),
        ] {
            for (tid, own) in stream.per_thread(window) {
                let mut scan: Vec<Event> = events
                    .iter()
                    .filter(|e| e.tid == tid && e.time_ns >= window.0 && e.time_ns < window.1)
                    .copied()
                    .collect();
                scan.sort_by_key(|e| (e.time_ns, e.key));
                assert_eq!(own, scan.as_slice(), "{tid} {window:?}");
            }
        }
        let lo = events.iter().map(|e| e.time_ns).min().unwrap();
        let hi = events.iter().map(|e| e.time_ns).max().unwrap();
        assert_eq!(stream.bounds(), Some((lo, hi)));
        let channels: Vec<Channel> = stream.channels_of(8, 3).collect();
        assert_eq!(
            channels,
            [Channel {
                tid: 8,
                labelling: 1,
                function: 0
            }]
        );
    }

    #[test]
    fn the_ninth_decile_is_what_a_sort_of_the_positive_values_gives() {
        let mut next = crate::steps::tests::xorshift(11);
        for round in 0..30 {
            let n = [0, 1, 2, 9, 10, 11, 1000, 20_000][round % 8];
            let values: Vec<f64> = (0..n)
                .map(|_| match next() % 9 {
                    0 => 0.0,
                    1 => -((next() % 100) as f64),
                    2 => f64::MIN_POSITIVE / 4.0,
                    3 => 1e300,
                    4 => 0.25,
                    _ => (next() % 1000) as f64 / 7.0,
                })
                .collect();
            let mut positive: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
            positive.sort_by(f64::total_cmp);
            let want = positive.get(positive.len() * 9 / 10).copied();
            assert_eq!(ninth_decile_of_positive(&values), want, "round {round}");
        }
    }

    #[test]
    fn starts_detached_from_the_loop_are_dropped() {
        let mut starts = vec![0, 500, 520, 541, 560, 580, 600, 700];
        drop_detached_ends(&mut starts);
        assert_eq!(starts, [500, 520, 541, 560, 580, 600]);
        let mut short = vec![0, 500, 520];
        drop_detached_ends(&mut short);
        assert_eq!(short, [0, 500, 520]);
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
    fn a_stream_past_its_bound_keeps_one_in_k_of_each_threads_samples_and_the_loop() {
        // Two threads sampled every ms through 150 steps of 37 ms (three
        // phases), another process beside them: bound to a half, a third.
        let (rows, map) = loop_37_ms(5550);
        let mut all = Vec::new();
        for s in rows {
            all.push(s);
            let mut twin = s;
            twin.tid = 2;
            all.push(twin);
            all.push(Sample::new(s.time_ns, Some(7), 9, 9));
        }
        let samples = Samples::from_rows(all);
        let (whole, kept, of) = cpu_stream(&samples, &[&map], Some(1), 1 << 22).unwrap();
        assert_eq!((kept, of), (11_100, 11_100));
        let mut streams = vec![whole];
        for (bound, every) in [(5_550, 2), (3_700, 3)] {
            let (thinned, kept, of) = cpu_stream(&samples, &[&map], Some(1), bound).unwrap();
            assert_eq!((thinned.len() as u64, of), (kept, 11_100));
            assert!(kept.abs_diff(bound) < 200, "{kept} of {bound}");
            for t in &thinned.threads {
                let n = (t.2 - t.1) as u64;
                assert!(n.abs_diff(5_550 / every) < 150, "one in {every}: {t:?}");
            }
            streams.push(thinned);
        }
        for stream in &streams {
            let steps = detect(stream);
            assert!(
                steps.count.abs_diff(150) <= 1,
                "{} {:?}",
                steps.count,
                steps.note
            );
        }
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
        let steps = detect(
            &cpu_stream(&Samples::from_rows(rows.clone()), &[&map], Some(1), 1 << 22)
                .unwrap()
                .0,
        );
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
        let steps = detect(
            &cpu_stream(&Samples::from_rows(rows.clone()), &[&map], Some(1), 1 << 22)
                .unwrap()
                .0,
        );
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
}
