//! Where the steps are, once the wall-clock detector knows the period: the
//! local tempo, step starts placed on the marker signal by dynamic
//! programming, and the ends of the loop trimmed of steps unlike the typical
//! one.

use super::signal::parabola_offset;
use super::wall::{Channel, Event};
use crate::fasthash::FastMap;
use std::collections::HashMap;

/// Weight of keeping gaps near the period against following the marker.
const GAP_WEIGHT: f64 = 4.0;
/// Window of the local period estimate, in periods.
const LOCAL_PERIODS: f64 = 12.0;
/// A local period needs this autocorrelation at its peak.
const LOCAL_MIN_R: f64 = 0.1;
/// Steps at the ends of the loop less alike the typical step than this
/// (cosine of their make-up) are setup or teardown, not steps.
const MIN_LIKENESS: f64 = 0.5;

/// The local period around each bin of `marker` (a tempo that drifts: a
/// run slows down when the machine gets busy): autocorrelation of the
/// marker over windows of `LOCAL_PERIODS` periods, every quarter window,
/// searched between 2/3 and 3/2 of the global `period` (so it cannot jump
/// to a multiple), refined by a parabola. A window without a clear peak
/// keeps the global period. Kept per window, not per bin (a bin per
/// sixteenth of a step over the run).
pub(super) fn local_periods(marker: &[f64], period: f64) -> Tempo {
    let n = marker.len();
    let mut centres = Vec::new();
    let window = (LOCAL_PERIODS * period).round() as usize;
    if n < 2 * window || period < 4.0 {
        return Tempo { period, centres };
    }
    let hop = (window / 4).max(1);
    let lo = ((period * 2.0 / 3.0).floor() as usize).max(1);
    let hi = (period * 1.5).ceil() as usize;
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
            .map(|i| (lo - 1 + i) as f64 + parabola_offset(&curve, i));
        centres.push((c, local.unwrap_or(period)));
        c += hop;
    }
    Tempo { period, centres }
}

/// The local period of each bin: that of the nearest window's centre (the
/// earlier one where two are as near), the global one without windows.
pub(super) struct Tempo {
    period: f64,
    centres: Vec<(usize, f64)>,
}

impl Tempo {
    fn at(&self, t: usize) -> f64 {
        let i = self.centres.partition_point(|&(c, _)| c < t);
        match (
            i.checked_sub(1).map(|j| self.centres[j]),
            self.centres.get(i),
        ) {
            (Some(a), Some(b)) => {
                if t - a.0 <= b.0 - t {
                    a.1
                } else {
                    b.1
                }
            }
            (Some(a), None) => a.1,
            (None, Some(b)) => b.1,
            (None, None) => self.period,
        }
    }
}

/// The gaps a start may follow its previous one by, `lo..=hi` bins, and
/// the penalty of each gap up to `hi`.
type Penalties = (usize, usize, Vec<f64>);

/// Step starts (indices into `marker`) by dynamic programming: each start
/// scores its marker value less `offset` (centred, an ordinary stretch
/// earns nothing), each gap a penalty growing with its log-ratio to the
/// local period where the gap ends. Per bin it keeps only the gap back to
/// its best previous start (a byte where gaps are under 256 bins: a loop
/// has ~16 bins a step, 24 at most); scores live as long as a gap can
/// reach back.
pub(super) fn place_starts(marker: &[f64], offset: f64, tempo: &Tempo) -> Vec<usize> {
    let n = marker.len();
    if n == 0 {
        return Vec::new();
    }
    // The penalty table of the local period, made again where it changes
    // (bins come in order; a table per window, kept, took ~400 bytes each:
    // 66 MB for 500,000 steps).
    let mut current: Option<(u64, Penalties)> = None;
    let table = |period: f64| {
        let lo = (0.5 * period).floor().max(1.0) as usize;
        let hi = (2.5 * period).ceil() as usize;
        let penalty = (0..=hi)
            .map(|gap| GAP_WEIGHT * (gap.max(1) as f64 / period).ln().powi(2))
            .collect();
        (lo, hi, penalty)
    };
    // The scores a gap or the last steps' choice may look back at.
    let periods = std::iter::once(tempo.period).chain(tempo.centres.iter().map(|c| c.1));
    let reach = periods
        .map(|p| (2.5 * p).ceil() as usize)
        .max()
        .unwrap_or(0)
        + 1;
    let mut score = vec![0.0; reach.min(n)];
    let ring = score.len();
    // The gap to each bin's previous start, 0 for none.
    let mut gap_back = GapBack::new(n, reach);
    for t in 0..n {
        let period = tempo.at(t);
        if current.as_ref().is_none_or(|c| c.0 != period.to_bits()) {
            current = Some((period.to_bits(), table(period)));
        }
        let (lo, hi, penalty) = &current.as_ref().expect("made above").1;
        let mut best = 0.0;
        for gap in *lo..=(*hi).min(t) {
            let v = score[(t - gap) % ring] - penalty[gap];
            if v > best {
                best = v;
                gap_back.set(t, gap);
            }
        }
        score[t % ring] = (marker[t] - offset) + best;
    }
    let tail = n.saturating_sub((2.0 * tempo.at(n - 1)).ceil() as usize);
    let Some(mut t) = (tail..n).max_by(|&a, &b| score[a % ring].total_cmp(&score[b % ring])) else {
        return Vec::new();
    };
    let mut starts = vec![t];
    while gap_back.get(t) != 0 {
        t -= gap_back.get(t);
        starts.push(t);
    }
    starts.reverse();
    starts
}

/// Each bin's gap back to its previous start, in as few bytes as the
/// longest gap needs (a `u32` a bin was 80 MB over a 20,000 s run of 1 ms
/// bins).
enum GapBack {
    Byte(Vec<u8>),
    Short(Vec<u16>),
    Long(Vec<u32>),
}

impl GapBack {
    /// For `n` bins and gaps shorter than `reach`, all 0.
    fn new(n: usize, reach: usize) -> GapBack {
        if reach <= usize::from(u8::MAX) + 1 {
            GapBack::Byte(vec![0; n])
        } else if reach <= usize::from(u16::MAX) + 1 {
            GapBack::Short(vec![0; n])
        } else {
            GapBack::Long(vec![0; n])
        }
    }

    fn set(&mut self, t: usize, gap: usize) {
        match self {
            GapBack::Byte(v) => v[t] = gap as u8,
            GapBack::Short(v) => v[t] = gap as u16,
            GapBack::Long(v) => v[t] = gap as u32,
        }
    }

    fn get(&self, t: usize) -> usize {
        match self {
            GapBack::Byte(v) => usize::from(v[t]),
            GapBack::Short(v) => usize::from(v[t]),
            GapBack::Long(v) => v[t] as usize,
        }
    }
}

/// Drops steps at either end of the loop whose make-up (samples of each
/// strictly periodic channel) is unlike the loop's typical step: the setup
/// before a training loop and the teardown after it are not steps, even
/// when the placement found starts there. A step's make-up is compared by
/// cosine with the mean of the middle half of the steps. Also returns the
/// share of the kept steps that are unlike the typical one. `threads`:
/// each thread's events in time order. A step's make-up is counted again
/// in each of three passes (not kept: steps times channels).
pub(super) fn trim_unlike_ends<I: Iterator<Item = Channel>>(
    starts: &[usize],
    time_of: impl Fn(usize) -> u64,
    threads: &[&[Event]],
    channels: &HashMap<Channel, f64>,
    channels_of: &impl Fn(&(u32, u32)) -> I,
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
    let mut cache: FastMap<(u32, u32), Vec<usize>> = FastMap::default();
    // The samples of each channel in `step`.
    let mut make_up = |step: usize, row: &mut [f64]| {
        row.iter_mut().for_each(|v| *v = 0.0);
        let (from, to) = (bounds[step], bounds[step + 1]);
        for own in threads {
            let lo = own.partition_point(|e| e.time_ns < from);
            let hi = own.partition_point(|e| e.time_ns < to);
            for e in &own[lo..hi.max(lo)] {
                let chans = cache.entry((e.tid, e.key)).or_insert_with(|| {
                    channels_of(&(e.tid, e.key))
                        .filter_map(|c| index.get(&c).copied())
                        .collect()
                });
                for &c in chans.iter() {
                    row[c] += 1.0;
                }
            }
        }
    };
    // Each channel in units of its mean per step, so the busiest one does
    // not decide alone.
    let mut row = vec![0.0; d];
    let mut mean = vec![0.0; d];
    for step in 0..steps {
        make_up(step, &mut row);
        for c in 0..d {
            mean[c] += row[c] / steps as f64;
        }
    }
    let normalize = |row: &mut [f64]| {
        for c in 0..d {
            if mean[c] > 0.0 {
                row[c] /= mean[c];
            }
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    };
    let mut reference = vec![0.0; d];
    for step in steps / 4..steps * 3 / 4 {
        make_up(step, &mut row);
        normalize(&mut row);
        for c in 0..d {
            reference[c] += row[c];
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
            make_up(step, &mut row);
            normalize(&mut row);
            (0..d).map(|c| row[c] * reference[c]).sum::<f64>() / norm
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_back_keep_the_longest_gap_in_as_few_bytes_as_it_needs() {
        for (reach, bytes) in [(10, 1), (256, 1), (257, 2), (65_536, 2), (65_537, 4)] {
            let mut back = GapBack::new(3, reach);
            let width = match &back {
                GapBack::Byte(_) => 1,
                GapBack::Short(_) => 2,
                GapBack::Long(_) => 4,
            };
            assert_eq!(width, bytes, "reach {reach}");
            back.set(1, reach - 1);
            assert_eq!((back.get(0), back.get(1), back.get(2)), (0, reach - 1, 0));
        }
        // The same starts whatever the width: a marker with a peak every
        // 300 bins (gaps past a byte) and every 12.
        for period in [12usize, 300] {
            let marker: Vec<f64> = (0..period * 20)
                .map(|t| if t % period == 3 { 5.0 } else { 0.1 })
                .collect();
            let tempo = Tempo {
                period: period as f64,
                centres: Vec::new(),
            };
            let starts = place_starts(&marker, 0.5, &tempo);
            let want: Vec<usize> = (0..20).map(|k| k * period + 3).collect();
            assert_eq!(starts, want, "period {period}");
        }
    }

    /// Steps of 10 ms over `make_up` (the functions sampled in each step,
    /// one sample per ms) through `trim_unlike_ends`, with functions 0..3 as
    /// the marker channels: (first kept step, last kept start, unlike share).
    fn trim(make_up: &[Vec<u64>]) -> (usize, usize, f64) {
        let mut events = Vec::new();
        for (step, functions) in make_up.iter().enumerate() {
            for (i, &f) in functions.iter().enumerate() {
                events.push(Event {
                    time_ns: (step * 10 + i) as u64 * 1_000_000,
                    tid: 1,
                    key: f as u32,
                });
            }
        }
        let channel = |function| Channel {
            tid: 1,
            labelling: 0,
            function,
        };
        let weights: HashMap<Channel, f64> = (0..3).map(|f| (channel(f), 1.0)).collect();
        let channels_of = |&(_, key): &(u32, u32)| std::iter::once(channel(key as usize));
        let starts: Vec<usize> = (0..make_up.len()).map(|s| s * 10).collect();
        let (kept, unlike) = trim_unlike_ends(
            &starts,
            |t| t as u64 * 1_000_000,
            &[&events],
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
}
