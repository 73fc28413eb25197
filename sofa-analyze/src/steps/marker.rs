//! Steps pinned to a marker the user names (`--step-marker NAME`): a system
//! call, or a function (native or Python) anywhere in the sampled stacks.
//!
//! The marker's events (its calls, or the samples with the function on the
//! stack) on the thread that has most of them come in visits: a function
//! runs for a while once per step (samples a millisecond apart, then a gap),
//! a system call may come once per step or in a burst per step. Gaps between
//! events split into two classes where they are bimodal (within a visit,
//! between visits; the split maximises the between-class variance of their
//! logarithms, as Otsu's threshold does); each visit's first event starts a
//! step. Evenly spaced events with nothing in between (a call once per
//! step) each start one.

use super::signal::median_gap;
use super::{Steps, none};
use crate::Samples;
use crate::fasthash::StackMap;
use crate::functions::CallStacks;
use crate::syscalls::Calls;
use std::collections::{HashMap, HashSet};

/// Between-visit gaps must be this many times longer than within-visit ones
/// (by their geometric means) for the gaps to be bimodal.
const BIMODAL: f64 = 4.0;
/// A gap between visits this many times the median one breaks the loop.
const BREAK: u64 = 3;
/// Evenly spaced events at least this far apart (ns) each start a step;
/// closer ones without a longer gap are one long visit (the function is on
/// the stack throughout).
const MIN_STEP_NS: u64 = 2_000_000;

/// Whether a function name is the marker: the name itself, or a qualified
/// name ending in it (`Net.forward`, `torch::autograd::backward`).
fn names_it(function: &str, marker: &str) -> bool {
    function == marker
        || function
            .strip_suffix(marker)
            .is_some_and(|head| head.ends_with('.') || head.ends_with("::"))
}

/// The marker's events, (thread, time), and what kind of marker it is.
pub(crate) type MarkerEvents = (Vec<(u32, u64)>, &'static str);

/// The marker's events in the main process, (thread, time), and what kind
/// of marker it is: a system call of that name if the process made any,
/// else the samples with a function of that name on their stack.
pub(crate) fn events(
    marker: &str,
    samples: &Samples,
    stacks: &CallStacks,
    calls: Option<&Calls>,
    pid: Option<u32>,
    threads: &HashSet<u32>,
) -> Result<MarkerEvents, sofa_trace::TraceError> {
    if let Some(calls) = calls {
        let mut hits: Vec<(u32, u64)> = Vec::new();
        calls.for_each(|c| {
            if threads.contains(&c.tid) && calls.name(c) == marker {
                hits.push((c.tid, c.time_ns));
            }
        })?;
        if !hits.is_empty() {
            return Ok((hits, "system call"));
        }
    }
    let mut on_stack: StackMap<bool> = StackMap::default();
    let mut hits = Vec::new();
    samples.for_each(|s| {
        if pid.is_none_or(|p| s.pid == p)
            && *on_stack.entry(s.stack_id()).or_insert_with(|| {
                stacks
                    .names(s.stack_id())
                    .any(|(function, _)| names_it(function, marker))
            })
        {
            hits.push((s.tid, s.time_ns));
        }
    })?;
    Ok((hits, "function"))
}

/// Steps at the marker's `events`, (thread, time) in any order. With the
/// steps the streams `found`, only events inside the loop (give or take half a
/// step) count — a marker also called at set-up (a `read` of every imported
/// module) would split the gaps wrongly — and visits less than a quarter
/// of a step apart are one (a few samples of the function without Python
/// frames do not split it).
pub(crate) fn steps_at(
    marker: &str,
    events: &[(u32, u64)],
    kind: &str,
    found: Option<&Steps>,
) -> Steps {
    // The loop the streams found, give or take half a step, and its period.
    let found = found.and_then(|f| {
        let period = f.period_ns.unwrap_or(0);
        let (&from, &to) = (f.boundaries_ns.first()?, f.boundaries_ns.last()?);
        Some((from.saturating_sub(period / 2)..=to + period / 2, period))
    });
    let mut per_thread: HashMap<u32, Vec<u64>> = HashMap::new();
    for &(tid, t) in events {
        if found.as_ref().is_none_or(|(inside, _)| inside.contains(&t)) {
            per_thread.entry(tid).or_default().push(t);
        }
    }
    let Some((_, mut times)) = per_thread
        .into_iter()
        .max_by_key(|(tid, times)| (times.len(), std::cmp::Reverse(*tid)))
    else {
        return none(
            &format!(
                "step marker `{marker}` matched no system call and no function of the main process"
            ),
            0.0,
        );
    };
    times.sort_unstable();
    if times.len() < 3 {
        return none(
            &format!(
                "step marker `{marker}` ({kind}) seen {} times: too few to make steps",
                times.len()
            ),
            0.0,
        );
    }
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let floor = found.map_or(0, |(_, period)| period / 4);
    let starts: Vec<u64> = match split(&gaps).map(|t| t.max(floor)) {
        Some(threshold) => std::iter::once(times[0])
            .chain(
                times
                    .windows(2)
                    .filter(|w| w[1] - w[0] > threshold)
                    .map(|w| w[1]),
            )
            .collect(),
        None => {
            if median_gap(&times) < MIN_STEP_NS {
                return none(
                    &format!(
                        "step marker `{marker}` ({kind}) is seen throughout, not once per step: \
                         name a function or system call that runs once in each step"
                    ),
                    0.0,
                );
            }
            times.clone()
        }
    };
    let starts = longest_regular_run(&starts);
    if starts.len() < 3 {
        return none(
            &format!(
                "step marker `{marker}` ({kind}) came in {} visits in a row: too few to make steps",
                starts.len()
            ),
            0.0,
        );
    }
    let lengths: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let median = median_gap(&starts) as f64;
    // The last step: a typical length, or up to the marker's last event.
    let last_start = *starts.last().expect("three starts");
    let last_event = *times.last().expect("three events");
    let end = (last_start + median.round() as u64).max(last_event.min(last_start + 1));
    let mut boundaries = starts;
    boundaries.push(end);
    // Confidence: the share of steps within a fifth of the typical length.
    let even = lengths
        .iter()
        .filter(|&&l| (l - median).abs() <= 0.2 * median)
        .count() as f64
        / lengths.len() as f64;
    Steps::between(boundaries, even, "marker")
}

/// The longest run of consecutive starts without a gap over `BREAK` times
/// the median one: calls of the marker in set-up or tear-down, far from the
/// loop, are not steps.
fn longest_regular_run(starts: &[u64]) -> Vec<u64> {
    if starts.len() < 3 {
        return starts.to_vec();
    }
    let limit = median_gap(starts).saturating_mul(BREAK);
    let mut best = (0, 1);
    let mut from = 0;
    for i in 1..starts.len() {
        if starts[i] - starts[i - 1] > limit {
            from = i;
        }
        if i + 1 - from > best.1 - best.0 {
            best = (from, i + 1);
        }
    }
    starts[best.0..best.1].to_vec()
}

/// The gap length that splits `gaps` into within-visit and between-visit
/// ones, if they are bimodal: the threshold maximising the between-class
/// variance of log gaps, kept when the classes' geometric means differ by
/// `BIMODAL` or more.
fn split(gaps: &[u64]) -> Option<u64> {
    let mut logs: Vec<f64> = gaps.iter().map(|&g| (g.max(1) as f64).ln()).collect();
    logs.sort_by(f64::total_cmp);
    let n = logs.len();
    let total: f64 = logs.iter().sum();
    let mut below = 0.0;
    let mut best: Option<(f64, usize)> = None;
    for k in 1..n {
        below += logs[k - 1];
        if logs[k] <= logs[k - 1] {
            continue;
        }
        let (w0, w1) = (k as f64, (n - k) as f64);
        let (m0, m1) = (below / w0, (total - below) / w1);
        let variance = w0 * w1 * (m1 - m0).powi(2);
        if best.is_none_or(|(v, _)| variance > v) {
            best = Some((variance, k));
        }
    }
    let (_, k) = best?;
    let m0 = logs[..k].iter().sum::<f64>() / k as f64;
    let m1 = logs[k..].iter().sum::<f64>() / (n - k) as f64;
    (m1 - m0 >= BIMODAL.ln()).then(|| ((logs[k - 1] + logs[k]) / 2.0).exp() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_function_sampled_in_visits_starts_a_step_per_visit() {
        // 50 steps of 40 ms; the function is on the stack for the first
        // 15 ms of each (a sample per ms, a few missing); another thread
        // has fewer samples of it.
        let mut events = Vec::new();
        for step in 0..50u64 {
            for ms in 0..15u64 {
                if (step * 7 + ms) % 11 != 3 {
                    events.push((1, 1_000 * MS + step * 40 * MS + ms * MS + 137));
                }
            }
            events.push((2, 1_000 * MS + step * 40 * MS + 20 * MS));
        }
        let steps = steps_at("forward", &events, "function", None);
        assert_eq!(steps.count, 50, "{:?}", steps.note);
        assert_eq!(steps.method.as_deref(), Some("marker"));
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 40.0).abs() < 0.5, "{period}");
        assert_eq!(steps.boundaries_ns[0], 1_000 * MS + 137);
        assert!(steps.confidence > 0.9);
    }

    #[test]
    fn a_call_once_per_step_starts_each_step_and_bursts_start_one() {
        let once: Vec<(u32, u64)> = (0..30).map(|i| (5, i * 25 * MS + (i % 3) * MS)).collect();
        let steps = steps_at("getrandom", &once, "system call", None);
        assert_eq!(steps.count, 30);
        // 32 reads 0.2 ms apart at the start of each 30 ms step.
        let burst: Vec<(u32, u64)> = (0..20u64)
            .flat_map(|s| (0..32u64).map(move |k| (5, s * 30 * MS + k * MS / 5)))
            .collect();
        let steps = steps_at("read", &burst, "system call", None);
        assert_eq!(steps.count, 20);
        assert_eq!(steps.boundaries_ns[1], 30 * MS);
    }

    #[test]
    fn qualified_names_end_in_the_marker() {
        assert!(names_it("forward", "forward"));
        assert!(names_it("Net.forward", "forward"));
        assert!(names_it("torch::autograd::backward", "backward"));
        assert!(!names_it("_forward", "forward"));
        assert!(!names_it("forward_pre_hook", "forward"));
    }

    #[test]
    fn a_marker_seen_throughout_or_never_says_so() {
        let throughout: Vec<(u32, u64)> = (0..3000).map(|i| (1, i * MS)).collect();
        let steps = steps_at("main", &throughout, "function", None);
        assert_eq!(steps.count, 0);
        assert!(steps.note.unwrap().contains("throughout"));
        let steps = steps_at("nothing", &[], "function", None);
        assert!(steps.note.unwrap().contains("matched no"));
    }
}
