//! Training-step detection, without any hint from the user: two detectors
//! over the main process's samples, and the choice between them.
//!
//! - [`sequence`]: the busiest thread's samples in order, labelled by self
//!   function; a categorical autocorrelation. Robust on a loaded machine
//!   (time descheduled does not smear it); needs dense sampling.
//! - [`wall`]: all busy threads on the wall clock, several caller levels;
//!   works with a few samples per step and with warm-up steps of odd length.
//!   Its steps are placed on a marker signal by [`placement`].
//!
//! [`signal`] holds what they share: autocorrelation, peak picking, period
//! refinement, step-length statistics. A further detector (another event
//! stream) is one more module here and one more candidate in
//! [`detect_steps`].

mod placement;
mod sequence;
mod signal;
mod wall;

use crate::fasthash::StackMap;
use serde::Serialize;
use sofa_trace::tables::Sample;

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

/// A sequence result this confident is taken as is.
const STRONG_SEQUENCE: f64 = 0.5;

/// Detects steps in the samples of `pid` (all samples when `None`).
/// `self_of_stack` maps each stack to its self function (the sequence
/// detector's labels); `labellings` are the wall-clock detector's: the
/// innermost user-space function, then its callers (any ids: each
/// labelling is its own set of series).
///
/// Two detectors: the sequence of the busiest thread's samples
/// (`sequence`, robust when the machine is loaded, needs dense sampling)
/// and the wall-clock one (several threads and caller levels, works
/// with a few samples per step and with warm-up steps of odd length). A
/// strong sequence result wins; else the wall clock's; else a weak sequence
/// result.
pub fn detect_steps(
    samples: &[Sample],
    self_of_stack: &StackMap<usize>,
    labellings: &[&StackMap<usize>],
    pid: Option<u32>,
) -> Steps {
    let sequence = sequence::detect(samples, self_of_stack, pid);
    if sequence.count > 0 && sequence.confidence >= STRONG_SEQUENCE {
        return sequence;
    }
    let wall = wall::detect(samples, labellings, pid);
    if wall.count > 0 || sequence.count == 0 {
        return wall;
    }
    sequence
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Samples every 1 ms following `phase(t_ms)` as the self function.
    pub(crate) fn samples(
        ms: u64,
        mut phase: impl FnMut(u64) -> u64,
    ) -> (Vec<Sample>, StackMap<usize>) {
        let rows = (0..ms)
            .map(|t| crate::test_sample(1_000_000_000 + t * 1_000_000, phase(t)))
            .collect();
        let map = (0..8).map(|i| (Some(i), i as usize)).collect();
        (rows, map)
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
