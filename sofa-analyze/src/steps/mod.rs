//! Training-step detection, without any hint from the user: detectors over
//! each event stream of the main process, and the choice between them.
//!
//! - [`sequence`]: the busiest thread's CPU samples in order, labelled by
//!   self function; a categorical autocorrelation. Robust on a loaded
//!   machine (time descheduled does not smear it); needs dense sampling.
//! - [`wall`]: all busy threads on the wall clock, several caller levels;
//!   works with a few samples per step and with warm-up steps of odd length.
//!   Its steps are placed on a marker signal by [`placement`]. The same
//!   detector reads the other streams: system calls (when each call comes,
//!   per thread and name: DataLoader pipe reads, thread-pool futex
//!   wake-ups, allocator `munmap`s that come once per step).
//!
//! [`signal`] holds what they share: autocorrelation, peak picking, period
//! refinement, step-length statistics. [`detect_steps`] fuses the streams'
//! answers: a period that two streams agree on beats one that a single
//! stream proposes, however confident.

mod marker;
mod placement;
pub(crate) mod pyloop;
mod sequence;
mod signal;
mod wall;

use crate::Samples;
use crate::fasthash::{FastMap, StackMap};
use crate::syscalls::Calls;
use serde::Serialize;
use sofa_trace::TraceError;
use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Steps {
    /// Number of steps; 0 when no periodic structure was found.
    pub count: u64,
    /// Mean step length over the loop, ns.
    pub period_ns: Option<u64>,
    /// Coefficient of variation of the step lengths (jitter).
    pub period_cv: Option<f64>,
    /// 0..1: autocorrelation of the deciding stream at the period.
    pub confidence: f64,
    /// Start of each step, ns (CLOCK_MONOTONIC), plus the end of the last one.
    pub boundaries_ns: Vec<u64>,
    /// Why nothing was found, when nothing was.
    pub note: Option<String>,
    /// The count the user said to expect (`--steps N`), if any.
    pub expected: Option<u64>,
    /// Which streams found the steps, joined by " + " when several agree:
    /// `sequence` (one thread's samples in order), `wall clock` (all busy
    /// threads' samples on the time axis), `system calls`, `network`,
    /// `waits`, `python loop` (the main thread's loop iterations in its
    /// Python snapshots), `marker`. The boundaries are the first one's.
    pub method: Option<String>,
    /// What each stream proposed (`--json`).
    pub streams: Vec<StreamEvidence>,
}

/// One stream's answer, kept as evidence beside the fused result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamEvidence {
    /// `sequence`, `wall clock`, `system calls`, `network`, `waits`,
    /// `python loop` or `marker NAME`.
    pub stream: String,
    /// Steps it found (0: none).
    pub count: u64,
    /// Its mean step length, ns.
    pub period_ns: Option<u64>,
    /// Its autocorrelation at its period.
    pub confidence: f64,
    /// Why it found none.
    pub note: Option<String>,
    /// Whether its period is the one reported (it decided or agreed).
    pub agrees: bool,
    /// For an event stream's answer: the CPU samples' autocorrelation over
    /// its loop at half, one and two of its periods. A lone event-stream
    /// answer stands when the CPU samples repeat with its period (see
    /// [`cpu_backs`]) though their own search found no clear peak.
    pub cpu_support: Option<[f64; 3]>,
    /// Whether its period was doubled: it found half-steps (a PyTorch
    /// MLP's system calls come twice per step) and the CPU samples are out
    /// of step at its period and in step at twice it (`cpu_support` is
    /// then at half, one and two of the doubled period).
    pub doubled: bool,
}

/// What the CPU samples say of an event stream's answer.
#[derive(Debug, Clone, Copy, Default)]
struct Backing {
    /// Their autocorrelation at half, one and two periods.
    curve: Option<[f64; 3]>,
    /// Whether the answer's period was doubled to match them.
    doubled: bool,
}

/// Every other step start of `a`: steps twice as long (a trailing half
/// step is dropped).
fn doubled(a: &Steps) -> Steps {
    let boundaries: Vec<u64> = a.boundaries_ns.iter().copied().step_by(2).collect();
    Steps {
        method: a.method.clone(),
        ..Steps::between(boundaries, a.confidence, "")
    }
}

/// The CPU samples back a period another stream found when they repeat
/// with it: autocorrelation at the period at least [`MIN_BACKING`], above
/// the one at two periods (else the step is longer), and at half a period
/// at most a quarter of it (a loop's phases are out of step half a period
/// apart; a higher value says the step is shorter, or the curve only
/// decays). On the corpus the right lone system-call answers (PyTorch CNN,
/// 5 recordings) had [-0.06..-0.09, 0.06..0.10, 0.01..0.06]; the wrong ones
/// (half or multiples of the step, set-up included) had a curve at the
/// period below 0 or 0.05, or at half of it 0.05-0.35.
fn cpu_backs([half, at, double]: [f64; 3]) -> bool {
    at >= MIN_BACKING && at > double && half <= at / 4.0
}

/// Least CPU autocorrelation at a proposed period that backs it: one lag
/// is tested, not searched for (the CPU streams' own searches need 0.12).
const MIN_BACKING: f64 = 0.05;

/// Whether an answer of `count` steps is doubled: the CPU samples do not
/// back its period but back twice it (`curve`: at half, one, two and four
/// of its periods), and it has the half-steps to tell.
fn doubles(count: u64, [half, at, double, quad]: [f64; 4]) -> bool {
    count >= MIN_HALF_STEPS && !cpu_backs([half, at, double]) && cpu_backs([at, double, quad])
}

/// Half-steps an answer needs to be doubled: the CPU curve is then read
/// four of them apart, and a lag is trusted where the loop holds it at
/// least 8 times (as a window must hold 8 periods of an event stream). A
/// compile's system calls made 18 "half-steps" of 7.3 ms whose CPU curve
/// happened to back 9 steps of 14.6 (one CI run in about 20); the doubled
/// answers of loops had 52 (DataLoader waits) to 240 (PyTorch MLP system
/// calls).
const MIN_HALF_STEPS: u64 = 32;

impl Steps {
    /// The steps between consecutive `boundaries` (each start, then the
    /// last one's end; at least two): their count, mean length and its
    /// variation.
    pub(crate) fn between(boundaries: Vec<u64>, confidence: f64, method: &str) -> Steps {
        let lengths: Vec<f64> = boundaries
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64)
            .collect();
        let (mean, period_cv) = signal::mean_and_cv(&lengths);
        Steps {
            count: lengths.len() as u64,
            period_ns: Some(mean.round() as u64),
            period_cv,
            confidence,
            boundaries_ns: boundaries,
            note: None,
            expected: None,
            method: Some(method.to_owned()),
            streams: Vec::new(),
        }
    }

    /// From the first step's start to the last one's end, when steps were found.
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        let b = &self.boundaries_ns;
        (b.len() >= 2).then(|| (b[0], b[b.len() - 1]))
    }
}

pub(crate) fn none(note: &str, confidence: f64) -> Steps {
    Steps {
        note: Some(note.to_owned()),
        confidence,
        ..Steps::default()
    }
}

/// The streams, in order of preference on a tie; each answer's place in
/// [`fuse`]'s input is its stream.
const STREAMS: [&str; 6] = [
    "sequence",
    "wall clock",
    "system calls",
    "network",
    "waits",
    "python loop",
];
const SEQUENCE: usize = 0;
const WALL_CLOCK: usize = 1;
const SYSCALLS: usize = 2;
const WAITS: usize = 4;
const PY_LOOP: usize = 5;

/// A sequence result this confident beats a lone stream of another kind.
const STRONG_SEQUENCE: f64 = 0.5;
/// Two periods within this ratio of each other agree.
const AGREEMENT: f64 = 0.1;
/// How much more confident than a CPU stream another must be to place the
/// steps when both agree on the period.
const CPU_PLACEMENT: f64 = 2.5;
/// The event streams (system calls, packets) report a period only from this
/// confidence on: loop-less programs' calls reached 0.13-0.23 on the corpus
/// (a compiler's file reads, a server's requests) and a server's packets
/// 0.19-0.29; training loops' calls 0.38-0.67.
const MIN_EVENT_CONFIDENCE: f64 = 0.3;
/// An event stream's most frequent labels used in its first pass, then
/// "any event".
const EVENT_CHANNELS: [usize; 2] = [8, 1];
/// The off-CPU stream's: places, reasons, any wait.
const WAIT_CHANNELS: [usize; 3] = [8, 4, 1];

/// What the detectors read: the CPU samples with their labellings, and the
/// other streams the archive has.
pub(crate) struct StepInputs<'a> {
    pub samples: &'a Samples<'a>,
    /// Each stack's self function (the sequence detector's labels).
    pub self_of_stack: &'a StackMap<usize>,
    /// The wall-clock detector's labellings: the innermost user-space
    /// function, then its callers (any ids: each labelling is its own set
    /// of series).
    pub labellings: &'a [&'a StackMap<usize>],
    /// The main process (all samples when `None`).
    pub pid: Option<u32>,
    /// System calls, when they were recorded.
    pub calls: Option<&'a Calls<'a>>,
    /// Calls before this time are left out: the end of the last span in
    /// which they were not traced (`--syscall-rate`); 0 when all were.
    pub calls_since_ns: u64,
    /// Packets the kernel saw (all processes), when they were recorded.
    pub packets: Option<&'a crate::net::Packets<'a>>,
    /// Threads of the main process (system calls carry only a thread id).
    pub threads: &'a HashSet<u32>,
    /// Off-CPU intervals of every thread, when they were recorded, and
    /// the time from which they are looked at (the end of the last span
    /// in which switches were not recorded; 0 when all were).
    pub waits: Option<(&'a crate::WaitList, u64)>,
    /// The main process's main-thread Python snapshots, when it ran Python.
    pub py_loop: Option<&'a [pyloop::Snapshot]>,
    /// `--step-marker NAME` and the stacks to find a function of that name
    /// in: pins the steps to its visits; what the streams found stays as
    /// evidence.
    pub marker: Option<(&'a str, &'a crate::functions::CallStacks)>,
}

/// Detects steps in every stream of the main process and fuses them;
/// fails only where the system calls or packets, read again, fail to read.
pub(crate) fn detect_steps(inputs: &StepInputs) -> Result<Steps, TraceError> {
    let (py_loop, loop_snapshots) = match (inputs.py_loop, inputs.pid) {
        (Some(snapshots), Some(pid)) => pyloop::detect(snapshots, inputs.samples, pid)?,
        _ => (none("no Python snapshots of the main thread", 0.0), 0.0),
    };
    // The event streams first: each is dropped before the next, and
    // before the CPU samples' (16 bytes an event each).
    let calls = match inputs.calls {
        Some(calls) => syscall_steps(
            calls,
            inputs.calls_since_ns,
            inputs.threads,
            STREAM_EVENTS_MAX,
        )?,
        None => none("no system calls recorded", 0.0),
    };
    let packets = match inputs.packets {
        Some(packets) => network_steps(packets, STREAM_EVENTS_MAX)?,
        None => none("no packets recorded", 0.0),
    };
    let waits = match inputs.waits {
        Some((waits, since_ns)) => wait_steps(waits, since_ns, inputs.pid),
        None => none("no off-CPU waits recorded", 0.0),
    };
    let (cpu, kept, all) = wall::cpu_stream(
        inputs.samples,
        inputs.labellings,
        inputs.pid,
        CPU_EVENTS_MAX,
    )?;
    let mut wall_steps = wall::detect(&cpu);
    if kept < all {
        let thinned = format!(
            "{kept} of the process's {all} CPU samples looked at (one in {} of each thread's)",
            all.div_ceil(CPU_EVENTS_MAX)
        );
        add_note(&mut wall_steps, thinned);
    }
    // Every stream has its place (see STREAMS), recorded or not.
    let mut answers = vec![
        sequence::detect(inputs.samples, inputs.self_of_stack, inputs.pid)?,
        wall_steps,
        calls,
        packets,
        waits,
        py_loop,
    ];
    // How the CPU samples repeat at each event stream's period, over its
    // loop; an answer at half the period the CPU samples repeat with is
    // doubled.
    let backing: Vec<Backing> = answers
        .iter_mut()
        .enumerate()
        .map(|(i, a)| {
            if i <= WALL_CLOCK || i == PY_LOOP || a.count == 0 {
                return Backing::default();
            }
            let Some(curve) = a.span().zip(a.period_ns).and_then(|(span, period)| {
                wall::support(&cpu, span, period, &[0.5, 1.0, 2.0, 4.0])
            }) else {
                return Backing::default();
            };
            let [Some(half), Some(at), Some(double)] = [curve[0], curve[1], curve[2]] else {
                return Backing::default();
            };
            if let Some(quad) = curve[3]
                && doubles(a.count, [half, at, double, quad])
            {
                *a = doubled(a);
                return Backing {
                    curve: Some([at, double, quad]),
                    doubled: true,
                };
            }
            Backing {
                curve: Some([half, at, double]),
                doubled: false,
            }
        })
        .collect();
    let fused = fuse_with(answers, &backing, loop_snapshots);
    let Some((name, stacks)) = inputs.marker else {
        return Ok(fused);
    };
    let (events, kind) = marker::events(
        name,
        inputs.samples,
        stacks,
        // A marker's calls must all be there (a gap would drop steps).
        inputs.calls.filter(|_| inputs.calls_since_ns == 0),
        inputs.pid,
        inputs.threads,
    )?;
    let found = (fused.count > 0).then_some(&fused);
    let mut pinned = marker::steps_at(name, &events, kind, found);
    pinned.streams = fused.streams.clone();
    pinned.streams.push(StreamEvidence {
        stream: format!("marker {name}"),
        count: pinned.count,
        period_ns: pinned.period_ns,
        confidence: pinned.confidence,
        note: pinned.note.clone(),
        agrees: pinned.count > 0,
        cpu_support: None,
        doubled: false,
    });
    Ok(pinned)
}

/// The system-call stream: each call an event of its thread, labelled by
/// its name and by "any call".
fn syscall_steps(
    calls: &Calls,
    since_ns: u64,
    threads: &HashSet<u32>,
    bound: u64,
) -> Result<Steps, TraceError> {
    let looked_at = |c: &crate::Call| {
        c.time_ns >= since_ns && threads.contains(&c.tid) && !calls.is_left_out(c)
    };
    let keys = calls.name_count();
    let (events, all) = bounded_events(keys, calls.len(), bound, |event| {
        calls.for_each(|c| {
            if looked_at(c) {
                event(c.time_ns, c.tid, calls.name_index(c));
            }
        })
    })?;
    let kept = events.len() as u64;
    let mut steps = event_steps(events, keys, "system calls", "system calls");
    if kept < all {
        note_thinning(&mut steps, kept, all, "calls", "names'");
    }
    Ok(steps)
}

/// A stream's events, (time, tid, key) with keys below `keys`, as
/// `each_event` gives them (every time it is called, the same), and how
/// many it gave: all when `total` (events, or more) is within `bound`,
/// else counted per key first and the most frequent keys thinned
/// ([`thinning`]). Made as the detector keeps them (16 bytes each, in
/// place as many as will come).
fn bounded_events(
    keys: usize,
    total: u64,
    bound: u64,
    each_event: impl Fn(&mut dyn FnMut(u64, u32, u32)) -> Result<(), TraceError>,
) -> Result<(Vec<wall::Event>, u64), TraceError> {
    let mut per_key = vec![0u64; keys];
    if total > bound {
        each_event(&mut |_, _, key| per_key[key as usize] += 1)?;
    }
    let every = thinning(&per_key, bound);
    let coming = if total > bound {
        per_key
            .iter()
            .zip(&every)
            .map(|(n, k)| n.div_ceil(*k))
            .sum()
    } else {
        total
    };
    let mut seen = vec![0u64; keys];
    let mut events = Vec::with_capacity(coming as usize);
    each_event(&mut |time_ns, tid, key| {
        let k = key as usize;
        if seen[k].is_multiple_of(every[k]) {
            events.push(wall::Event { time_ns, tid, key });
        }
        seen[k] += 1;
    })?;
    Ok((events, seen.iter().sum()))
}

/// Says in the stream's note that it looked at `kept` of `all` events.
fn note_thinning(steps: &mut Steps, kept: u64, all: u64, what: &str, whose: &str) {
    add_note(
        steps,
        format!(
            "{kept} of the loop's {all} {what} looked at (the most frequent {whose} thinned \
             evenly)"
        ),
    );
}

/// Adds `more` to the note of a stream's answer.
fn add_note(steps: &mut Steps, more: String) {
    steps.note = Some(match steps.note.take() {
        Some(note) => format!("{note}; {more}"),
        None => more,
    });
}

/// The most events an event stream looks at (16 bytes each: 64 MiB, and
/// about as much again while it is looked at), so that its memory stops
/// growing with a job's calls or packets. Thinned to 2^15 events (every
/// stream of the corpus's jobs past 32 Ki events thinned), 56 of the 62
/// step-corpus archives kept their step count and 6 moved towards the
/// loop's true count (120 steps: 122 -> 119, 124 -> 122, 115 -> 120; 100:
/// 101 -> 100; 80: 81 -> 80, 79 -> 80); none of them makes 2^22 calls.
const STREAM_EVENTS_MAX: u64 = 1 << 22;

/// The most CPU samples the wall-clock stream looks at (2^24 of the main
/// process: 4.7 CPU-hours at 999 Hz, 256 MiB; [`wall::cpu_stream`]). Higher
/// than the event streams' bound: thinned samples leave 1 ms bins empty,
/// which the wall clock reads less surely. The synthetic loop of 10^7
/// samples thinned to 2^22 (one in three): the wall clock found 118,811 of
/// 125,000 steps (confidence 0.26, was 0.77; the fused count 124,999). The
/// corpus thinned to 2^13 (18 of the 62 jobs, one sample in 2 to 4 kept):
/// 60 kept their step count; in two the wall clock's weak answer
/// (confidence 0.19) dropped out and the fused count moved towards the
/// truth in one (80 steps: 81 -> 80), away in the other (120: 122 -> 115).
const CPU_EVENTS_MAX: u64 = 1 << 24;

/// Per key, the `k` of "every k-th event kept" that keeps at most `bound`
/// of events `counts` per key: keys with few events keep them all, the
/// rest share what is left evenly (the steps of a loop show as well in
/// every tenth of a million `read`s as in all of them, and a call made
/// once a step is not lost beside them).
fn thinning(counts: &[u64], bound: u64) -> Vec<u64> {
    let mut every = vec![1; counts.len()];
    if counts.iter().sum::<u64>() <= bound {
        return every;
    }
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| counts[i]);
    let mut left = bound;
    for (j, &i) in order.iter().enumerate() {
        let share = left / (order.len() - j) as u64;
        if counts[i] > share {
            every[i] = counts[i].div_ceil(share.max(1));
        }
        left = left.saturating_sub(counts[i].div_ceil(every[i]));
    }
    every
}

/// The network stream: each packet an event, labelled by interface and
/// direction and by "any packet" (data-parallel training all-reduces its
/// gradients once per step: a burst of packets per step).
fn network_steps(packets: &crate::net::Packets, bound: u64) -> Result<Steps, TraceError> {
    let links = 2 * packets.interface_count();
    let (events, all) = bounded_events(links, packets.len(), bound, |event| {
        packets.for_each(|p| {
            event(
                p.time_ns,
                0,
                2 * u32::from(packets.interface_index(p)) + u32::from(p.tx),
            );
        })
    })?;
    let kept = events.len() as u64;
    let mut steps = event_steps(events, links, "network", "packets");
    if kept < all {
        note_thinning(&mut steps, kept, all, "packets", "links'");
    }
    Ok(steps)
}

/// The off-CPU stream: each blocking wait of the main process's threads an
/// event at its start, labelled by where it waited (its stack and reason),
/// by reason alone, and by "any wait". A loop blocks in the same places
/// every step: the main thread's read of the next batch from DataLoader
/// workers, a thread pool's workers parking on a futex after each parallel
/// region. Preemptions are left out: they follow the scheduler's time
/// slices, not the program.
fn wait_steps(waits: &crate::WaitList, since_ns: u64, pid: Option<u32>) -> Steps {
    let mut keys: FastMap<(Option<u64>, sofa_trace::WaitReason), u32> = FastMap::default();
    let mut by_reason: Vec<u32> = Vec::new();
    let wanted = |w: &crate::waits::Wait| {
        w.start_ns >= since_ns
            && pid.is_none_or(|p| w.pid == p)
            && w.reason != sofa_trace::WaitReason::Preempted
    };
    // Counted first (the waits read back in ~5 ns each): a stream grown by
    // doubling held up to twice its 16 bytes a wait.
    let mut events = Vec::with_capacity(waits.iter().filter(wanted).count());
    for w in waits.iter().filter(wanted) {
        let next = keys.len() as u32;
        let key = *keys.entry((w.stack_id, w.reason)).or_insert_with(|| {
            by_reason.push(w.reason as u32);
            next
        });
        events.push(wall::Event {
            time_ns: w.start_ns,
            tid: w.tid,
            key,
        });
    }
    if events.len() < 64 {
        return none("too few off-CPU waits to look for steps", 0.0);
    }
    let by_place: Vec<u32> = (0..keys.len() as u32).collect();
    let any = vec![0; keys.len()];
    let stream = wall::Stream::new(
        events,
        vec![by_place, by_reason, any],
        wall::Reading {
            channels: &WAIT_CHANNELS,
            measure: wall::Measure::Counts,
            method: "waits",
            min_confidence: MIN_EVENT_CONFIDENCE,
            min_periods: 8.0,
        },
    );
    wall::detect_in(&stream)
}

/// Steps in a stream of (time, thread, key) events whose keys are
/// `0..keys`: each key a label, and all of them one ("any event"); counted
/// per bin, not shared.
fn event_steps(events: Vec<wall::Event>, keys: usize, method: &'static str, what: &str) -> Steps {
    if events.len() < 64 {
        return none(&format!("too few {what} to look for steps"), 0.0);
    }
    let by_key: Vec<u32> = (0..keys as u32).collect();
    let stream = wall::Stream::new(
        events,
        vec![by_key, vec![0; keys]],
        wall::Reading {
            channels: &EVENT_CHANNELS,
            measure: wall::Measure::Counts,
            method,
            min_confidence: MIN_EVENT_CONFIDENCE,
            // Beside a CPU hog, set-up's bursts of calls (imports, a
            // DataLoader starting its workers) made "loops" of 7-12 steps
            // of ~2 s.
            min_periods: 8.0,
        },
    );
    wall::detect_in(&stream)
}

/// Whether count `a` is within `slack` (a share) of count `b`.
fn within(a: u64, b: u64, slack: f64) -> bool {
    (a as f64 - b as f64).abs() <= slack * b as f64
}

/// How far another stream's step count may be from the Python loop's for
/// its placement to be used.
const PLACEMENT_SLACK: f64 = 0.05;
/// Snapshots per iteration (median) from which the Python loop's count is
/// trusted over a placement that makes more steps.
const SURE_SNAPSHOTS: f64 = 4.0;
/// Snapshots and outer-frame reads per iteration (median) from which the
/// loop saw every iteration (the reads come every millisecond), and the
/// slack then left to a placement: beside a CPU hog the wall clock's
/// placement made 85 steps where the loop counted 81 of 80.
const SURE_READS: f64 = 8.0;
const READ_SLACK: f64 = 0.02;

/// The largest multiple of the Python loop's iteration that other streams'
/// period is taken for.
const MAX_MULTIPLE: u64 = 4;

/// Whether `a`'s steps are `k` of `lp`'s each: its count a `k`th of
/// theirs (within 10 %) and its period `k` times theirs (within 20 %: the
/// loop's period is its median iteration, which slow batches spread; 116
/// against 2 × 51 ms in a recording whose counts were 59 and 121).
fn multiple_of(a: &Steps, lp: &Steps, k: u64) -> bool {
    match (a.period_ns, lp.period_ns) {
        (Some(x), Some(y)) => {
            let ky = (k * y) as f64;
            (x as f64 - ky).abs() <= 2.0 * AGREEMENT * ky && within(a.count * k, lp.count, 0.1)
        }
        _ => false,
    }
}

fn agree_periods(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x as f64 - y as f64).abs() <= AGREEMENT * x.max(y) as f64,
        _ => false,
    }
}

/// The period other streams' periods are compared with: the mean step,
/// except for the Python loop, its median iteration. Period streams find
/// the typical step; the loop counts every iteration, and a warm-up or
/// a few slow batches lengthen its mean (a PyTorch CNN: iterations of
/// 26.9 ms on average, median 23 ms, where the wall clock found 22.3).
fn compared_period(i: usize, a: &Steps) -> Option<u64> {
    if i != PY_LOOP || a.boundaries_ns.len() < 2 {
        return a.period_ns;
    }
    let mut gaps: Vec<u64> = a.boundaries_ns.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2])
}

/// The streams' answers, in order of preference on a tie (sequence, wall
/// clock, others), fused: the answer with the most others agreeing wins;
/// among lone answers a strong sequence one, else the wall clock's, else
/// the most confident. The most confident of the winner and those agreeing
/// with it (CPU streams favoured) places the steps; the method names it
/// first, then the others.
fn fuse_with(answers: Vec<Steps>, backing: &[Backing], loop_snapshots: f64) -> Steps {
    let periods: Vec<Option<u64>> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| compared_period(i, a))
        .collect();
    let agree = |i: usize, j: usize| agree_periods(periods[i], periods[j]);
    let support = |i: usize| {
        answers
            .iter()
            .enumerate()
            .filter(|&(j, other)| j != i && other.count > 0 && agree(i, j))
            .count()
    };
    let backed = |i: usize| backing.get(i).and_then(|b| b.curve).is_some_and(cpu_backs);
    // Rank among lone answers: the main thread's Python loop (it counts
    // the program's own iterations, however long each takes: beside a CPU
    // hog the wall clock found the time slices, 494 "steps" of 8.6 ms, in a
    // loop of 80 steps of ~50 ms), a strong sequence answer, the wall
    // clock's or one the CPU samples back, then any by confidence.
    let rank = |i: usize| -> (usize, f64) {
        let a = &answers[i];
        let strong_sequence = i == SEQUENCE && a.confidence >= STRONG_SEQUENCE;
        let tier = if i == PY_LOOP {
            4
        } else if strong_sequence {
            3
        } else if i == WALL_CLOCK || backed(i) {
            2
        } else {
            1
        };
        (tier, a.confidence)
    };
    let found: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i].count > 0)
        .collect();
    // The winner and the answers that agree with it.
    let with_winner = |w: usize| {
        found
            .iter()
            .copied()
            .filter(move |&i| i == w || agree(w, i))
    };
    let winner = found.iter().copied().max_by(|&a, &b| {
        (support(a), rank(a).0)
            .cmp(&(support(b), rank(b).0))
            .then(rank(a).1.total_cmp(&rank(b).1))
            .then(b.cmp(&a))
    });
    let evidence = |chosen: Option<usize>| -> Vec<StreamEvidence> {
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| StreamEvidence {
                stream: STREAMS[i].to_owned(),
                count: a.count,
                period_ns: a.period_ns,
                confidence: a.confidence,
                note: a.note.clone(),
                agrees: chosen.is_some_and(|w| a.count > 0 && (i == w || agree(w, i))),
                cpu_support: backing.get(i).and_then(|b| b.curve),
                doubled: backing.get(i).is_some_and(|b| b.doubled),
            })
            .collect()
    };
    // A lone system-call answer does not stand against CPU streams that
    // looked and found nothing: on the corpus, lone system-call answers
    // were right in 1 recording of 10 (multiples of the step, or ~2 s
    // rhythms of set-up beside a busy CPU). It stands where the CPU samples
    // were too few to look (a job waiting on a GPU). A lone network answer
    // stands: it was right in 3 of 3 data-parallel recordings whose CPU
    // streams found 1 (each rank's time slices blur them), and the loop-less
    // server's loopback traffic gave no period in 6 of 6.
    // Nor a weak sequence answer alone (under `STRONG_SEQUENCE`) where the
    // wall clock looked and found nothing: in CI, a loop-less sort of
    // 400,000 words gave one of 9 "steps" of 184 ms (confidence 0.29); of
    // the 62 corpus recordings none was found by the sequence alone.
    let looked = |i: usize| {
        !answers[i]
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("too few") || n.starts_with("recording too short"))
    };
    let lone_other = winner.filter(|&w| {
        support(w) == 0
            && match w {
                SYSCALLS | WAITS => (looked(SEQUENCE) || looked(WALL_CLOCK)) && !backed(w),
                SEQUENCE => answers[w].confidence < STRONG_SEQUENCE && looked(WALL_CLOCK),
                _ => false,
            }
    });
    let winner = if lone_other.is_some() { None } else { winner };
    // Streams that agree on k = 2-4 of the loop's iterations lose to the
    // loop where each iteration was seen by several snapshots: a rhythm
    // that repeats every k steps is the step's multiple, as with two
    // DataLoader workers taking turns (every other batch comes down the
    // same pipe): with slow batches, system calls, waits and the wall
    // clock agreed on 64 steps of 120 ms in a loop of 120 of 60 ms that
    // the Python loop counted 121.
    // (The winner or one agreeing with it: waits and system calls agreed
    // on 49 and 64 steps of a loop of 120 the loop counted 121; the system
    // calls' 64 are half of it, the waits' 49 not quite.)
    // Nor do two streams that agree where neither is sure (the wall clock
    // under `STRONG_SEQUENCE`, no stream the CPU samples back): in a loop
    // of 150 steps of 6 ms fed by a worker process, the waits and a weak
    // wall clock (0.17) agreed on 32 "steps" of 27 ms in one recording of
    // six, against the loop's 150. (Three that agree still do, where the
    // loop's snapshots are too few to be sure of it.)
    let unsure = |w: usize| {
        support(w) <= 1
            && with_winner(w)
                .all(|i| !backed(i) && (i > WALL_CLOCK || answers[i].confidence < STRONG_SEQUENCE))
    };
    let winner = winner.map(|w| {
        let multiple = answers.get(PY_LOOP).is_some_and(|lp| {
            lp.count > 0
                && loop_snapshots >= SURE_SNAPSHOTS
                && with_winner(w)
                    .any(|i| (2..=MAX_MULTIPLE).any(|k| multiple_of(&answers[i], lp, k)))
        });
        let loop_found = answers.get(PY_LOOP).is_some_and(|lp| lp.count > 0);
        if w != PY_LOOP && (multiple || (loop_found && unsure(w))) {
            PY_LOOP
        } else {
            w
        }
    });
    let Some(w) = winner else {
        // Nothing found: the note of the CPU stream that came closest.
        let streams = evidence(None);
        let best = if answers[SEQUENCE].confidence > answers[WALL_CLOCK].confidence
            && lone_other != Some(SEQUENCE)
        {
            SEQUENCE
        } else {
            WALL_CLOCK
        };
        let mut out = answers[best].clone();
        if let Some(lone) = lone_other {
            let a = &answers[lone];
            let why = match lone {
                SEQUENCE => format!(
                    "no other stream agrees and it is not sure (confidence {:.2})",
                    a.confidence
                ),
                _ => "no other stream agrees and the CPU samples do not repeat with that period"
                    .to_owned(),
            };
            out.note = Some(format!(
                "{}; {} alone suggest {} steps of {:.1} ms (not reported: {why})",
                out.note.as_deref().unwrap_or("no periodic structure found"),
                STREAMS[lone],
                a.count,
                a.period_ns.unwrap_or(0) as f64 / 1e6
            ));
        }
        out.streams = streams;
        return out;
    };
    // Of the answers that agree with the winner, the most confident places
    // the steps, a CPU one unless another is clearly more confident: steps
    // placed on the work they do make the per-step CPU breakdown exact. The
    // Python loop places them only alone: its starts are known to a
    // snapshot interval (10 ms), and a wrap no snapshot saw merges two
    // steps.
    let weight = |i: usize| match i {
        PY_LOOP => 0.0,
        _ if i <= WALL_CLOCK => answers[i].confidence * CPU_PLACEMENT,
        _ => answers[i].confidence,
    };
    let placer = with_winner(w)
        .max_by(|&a, &b| weight(a).total_cmp(&weight(b)).then(b.cmp(&a)))
        .unwrap_or(w);
    // A placement that makes more than 1 in 20 steps fewer than the Python
    // loop's iterations is not believed (wraps are missed, not invented),
    // nor one that makes more than 1 in 20 more where each iteration was
    // seen by several snapshots: beside a CPU hog, the wall clock's and
    // system calls' placements agreed with the loop's period but made 74
    // and 86 steps of a loop of 80 (5 snapshots per step). With 3 per step
    // the loop missed wraps: 56 of 60, where the wall clock's 60 were right.
    let slack = if loop_snapshots >= SURE_READS {
        READ_SLACK
    } else {
        PLACEMENT_SLACK
    };
    let distrusted = |placed: u64, iterations: u64| {
        !within(placed, iterations, slack)
            && (placed < iterations || loop_snapshots >= SURE_SNAPSHOTS)
    };
    // The same where the loop is not the winner but agrees with it: its
    // count stands against the placement's (the outer frames' reads see
    // every iteration: a PyTorch MLP's system calls and wall clock agreed
    // on 131 steps of a loop the Python loop counted 119 of 120).
    let loop_agrees =
        w == PY_LOOP || (answers.get(PY_LOOP).is_some_and(|lp| lp.count > 0) && agree(w, PY_LOOP));
    let w = if loop_agrees && distrusted(answers[placer].count, answers[PY_LOOP].count) {
        PY_LOOP
    } else {
        placer
    };
    let streams = evidence(Some(w));
    let mut out = answers[w].clone();
    let mut method: Vec<String> = vec![STREAMS[w].to_owned()];
    method.extend(
        streams
            .iter()
            .enumerate()
            .filter(|&(i, e)| i != w && e.agrees)
            .map(|(_, e)| e.stream.clone()),
    );
    out.method = Some(method.join(" + "));
    out.streams = streams;
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Sample;

    /// Steps from CPU samples alone (process 1).
    pub(crate) fn cpu(
        samples: &[Sample],
        self_of_stack: &StackMap<usize>,
        labellings: &[&StackMap<usize>],
    ) -> Steps {
        detect_steps(&StepInputs {
            samples: &Samples::from_rows(samples.to_vec()),
            self_of_stack,
            labellings,
            pid: Some(1),
            calls: None,
            calls_since_ns: 0,
            packets: None,
            threads: &HashSet::new(),
            waits: None,
            py_loop: None,
            marker: None,
        })
        .expect("no calls to read")
    }

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

    /// Samples every 1 ms of a 37 ms loop of three phases (functions 0,
    /// 1, 2 for 20, 10 and 7 ms).
    pub(crate) fn loop_37_ms(ms: u64) -> (Vec<Sample>, StackMap<usize>) {
        samples(ms, |t| match t % 37 {
            0..=19 => 0,
            20..=29 => 1,
            _ => 2,
        })
    }

    fn fuse(answers: Vec<Steps>) -> Steps {
        fuse_with(answers, &[], SURE_SNAPSHOTS)
    }

    #[test]
    fn finds_a_37_ms_loop_of_three_phases() {
        let (rows, map) = loop_37_ms(3700);
        let steps = cpu(&rows, &map, &[&map]);
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
                s.set_stack_id(Some(phase(i as u64) * 100 + y % 20));
                s
            })
            .collect();
        let leaf: StackMap<usize> = (0..300).map(|i| (Some(i), i as usize)).collect();
        let caller: StackMap<usize> = (0..300)
            .map(|i| (Some(i), 1000 + i as usize / 100))
            .collect();
        // 300 leaves sampled ~13 times each: too faint on their own.
        let by_leaf = cpu(&rows, &leaf, &[&leaf]);
        assert_eq!(by_leaf.count, 0, "{:?}", by_leaf.note);
        let steps = cpu(&rows, &leaf, &[&leaf, &caller]);
        assert!(steps.count.abs_diff(100) <= 1, "{}", steps.count);
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 40.0).abs() < 0.5, "{period}");
    }

    #[test]
    fn long_phases_are_not_steps() {
        // Two long phases, one after the other: decays, never peaks.
        let (rows, map) = samples(3000, |t| if t < 2000 { 0 } else { 1 });
        let steps = cpu(&rows, &map, &[&map]);
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
                s.set_stack_id(Some(y % 5));
                s
            })
            .collect();
        let steps = cpu(&rows, &map, &[&map]);
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
    }

    /// A deterministic pseudo-random sequence (xorshift64).
    pub(crate) fn xorshift(mut y: u64) -> impl FnMut() -> u64 {
        move || {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            y
        }
    }

    /// A step of `length` ms each: 5 reads at its start, a burst of futex
    /// wake-ups a third of the way in (two like bursts exactly half a step
    /// apart would make the marker as periodic at 1.5 steps as at one), all jittered by up to a millisecond,
    /// after `setup` ms of file opens and stats at random times; a random
    /// stray call now and then.
    fn syscall_rows(lengths: &[u64], setup: u64) -> Vec<sofa_trace::tables::Syscall> {
        let mut next = xorshift(0x2545f4914f6cdd1d);
        let ms = 1_000_000u64;
        let mut calls: Vec<(u64, &str)> = Vec::new();
        let mut t = 0;
        while t < setup * ms {
            t += next() % (4 * ms);
            calls.push((
                t,
                if next().is_multiple_of(2) {
                    "openat"
                } else {
                    "newfstatat"
                },
            ));
        }
        let mut start = setup * ms;
        for &len in lengths {
            for k in 0..5 {
                calls.push((start + k * 50_000 + next() % ms, "read"));
            }
            for k in 0..4 {
                calls.push((start + len * ms / 3 + k * 100_000 + next() % ms, "futex"));
            }
            if next().is_multiple_of(4) {
                calls.push((start + next() % (len * ms), "mmap"));
            }
            start += len * ms;
        }
        calls
            .into_iter()
            .map(|(time_ns, name)| {
                crate::test_syscall(1_000_000_000 + time_ns, 1, name, Some(2_000))
            })
            .collect()
    }

    #[test]
    fn system_calls_alone_find_a_loop_after_its_setup() {
        let lengths: Vec<u64> = (0..100).map(|i| 30 + i % 3).collect();
        let calls = Calls::from_rows(&syscall_rows(&lengths, 800));
        let steps = syscall_steps(&calls, 0, &HashSet::from([1]), STREAM_EVENTS_MAX).unwrap();
        assert_eq!(steps.method.as_deref(), Some("system calls"));
        assert!(
            steps.count.abs_diff(100) <= 2,
            "{} {:?} {:?} {:?}",
            steps.count,
            steps.note,
            steps.period_ns,
            steps
                .boundaries_ns
                .windows(2)
                .map(|w| (w[1] - w[0]) / 1_000_000)
                .collect::<Vec<_>>()
        );
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 31.0).abs() < 1.0, "{period}");
        // The setup is not steps: the first starts within a step of the loop.
        let loop_start = 1_000_000_000 + 800 * 1_000_000;
        assert!(
            steps.boundaries_ns[0] + 31_000_000 >= loop_start,
            "{:?}",
            &steps.boundaries_ns[..3]
        );
        // Calls of other threads (another process's) are not looked at.
        assert_eq!(
            syscall_steps(&calls, 0, &HashSet::from([2]), STREAM_EVENTS_MAX)
                .unwrap()
                .count,
            0
        );
    }

    #[test]
    fn a_stream_past_its_bound_thins_the_most_frequent_keys_evenly() {
        assert_eq!(thinning(&[5, 10, 20], 35), [1, 1, 1], "within the bound");
        let counts = [10, 300, 1_000_000, 5_000_000, 0];
        let every = thinning(&counts, 10_000);
        assert_eq!(&every[..2], [1, 1], "few events: all kept");
        let kept: Vec<u64> = counts
            .iter()
            .zip(&every)
            .map(|(n, k)| n.div_ceil(*k))
            .collect();
        assert!(kept.iter().sum::<u64>() <= 10_000, "{kept:?}");
        // The two thinned keys share what is left alike (but for rounding).
        assert!(
            kept[2].abs_diff(kept[3]) <= 50 && kept[2] >= 4_800,
            "{kept:?}"
        );
    }

    #[test]
    fn system_calls_thinned_past_the_bound_still_find_the_loop() {
        let lengths: Vec<u64> = (0..100).map(|i| 30 + i % 3).collect();
        let calls = Calls::from_rows(&syscall_rows(&lengths, 800));
        let all = calls.len();
        let steps = syscall_steps(&calls, 0, &HashSet::from([1]), all / 2).unwrap();
        assert!(
            steps.count.abs_diff(100) <= 2,
            "{} {:?}",
            steps.count,
            steps.note
        );
        let note = steps.note.unwrap_or_default();
        let thinned = note.rsplit("; ").next().unwrap_or_default();
        assert!(
            thinned.ends_with(&format!(
                " of the loop's {all} calls looked at (the most frequent names' thinned evenly)"
            )),
            "{note}"
        );
        let kept: u64 = thinned
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(kept <= all / 2 && kept > all / 3, "{note}");
    }

    /// Packets of a data-parallel loop: 120 steps of 40 ms (+-1 ms), each
    /// ending in an all-reduce (12 packets sent, 12 received on eth0),
    /// beside a steady stream received on `lo` at random times, 5 times as
    /// many.
    fn loop_packets() -> crate::net::Packets<'static> {
        use sofa_trace::tables::NetEvent;
        let mut next = xorshift(0x9e3779b97f4a7c15);
        let ms = 1_000_000u64;
        let packet = |time_ns: u64, source: &str, ifname: &str| NetEvent {
            time_ns,
            source: source.into(),
            ifname: Some(ifname.into()),
            len: 1500,
            pid: None,
            protocol: None,
            src_addr: None,
            dst_addr: None,
            src_port: None,
            dst_port: None,
        };
        let mut rows = Vec::new();
        let mut start = 1_000 * ms;
        for _ in 0..120 {
            let at = start + 30 * ms + next() % ms;
            for k in 0..12 {
                rows.push(packet(at + k * 100_000, "xmit", "eth0"));
                rows.push(packet(at + k * 100_000 + 50_000, "recv", "eth0"));
            }
            for _ in 0..120 {
                rows.push(packet(start + next() % (40 * ms), "recv", "lo"));
            }
            start += 40 * ms;
        }
        rows.sort_by_key(|r| r.time_ns);
        crate::net::Packets::from_rows(rows)
    }

    #[test]
    fn packets_find_a_data_parallel_loop_thinned_or_not() {
        let packets = loop_packets();
        let whole = network_steps(&packets, STREAM_EVENTS_MAX).unwrap();
        assert!(
            whole.count.abs_diff(120) <= 2,
            "{} {:?}",
            whole.count,
            whole.note
        );
        let period = whole.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 40.0).abs() < 1.0, "{period}");
        assert!(
            whole
                .note
                .as_deref()
                .is_none_or(|n| !n.contains("looked at"))
        );
        // A bound of a third: the random stream on lo is thinned, the
        // all-reduce's packets are kept.
        let all = packets.len();
        let thinned = network_steps(&packets, all / 3).unwrap();
        assert!(
            thinned.count.abs_diff(120) <= 2,
            "{} {:?}",
            thinned.count,
            thinned.note
        );
        let note = thinned.note.unwrap_or_default();
        assert!(
            note.contains(&format!(" of the loop's {all} packets looked at")),
            "{note}"
        );
    }

    #[test]
    fn system_calls_at_random_times_are_not_steps() {
        let calls = Calls::from_rows(&syscall_rows(&[], 4000));
        let steps = syscall_steps(&calls, 0, &HashSet::from([1]), STREAM_EVENTS_MAX).unwrap();
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
    }

    /// The waits packed, as analysis gives them to the detector.
    fn list(waits: &[crate::waits::Wait]) -> crate::WaitList {
        crate::WaitList::from(waits)
    }

    /// Waits of a loop of `lengths` ms steps after `setup` ms of random
    /// sleeps: the main thread (tid 1) blocks for its next batch at each
    /// step's start, two pool threads (2, 3) park on a futex after the
    /// parallel region two thirds in, all jittered by up to a millisecond;
    /// and preemptions every 4-6 ms on every thread (time slices beside a
    /// busy neighbour), which are not the program's rhythm.
    fn wait_rows(lengths: &[u64], setup: u64) -> Vec<crate::waits::Wait> {
        use sofa_trace::WaitReason;
        let mut next = xorshift(0x9e3779b97f4a7c15);
        let ms = 1_000_000u64;
        let base = 1_000_000_000u64;
        let wait =
            |tid: u32, start: u64, len: u64, reason: WaitReason, stack: u64| crate::waits::Wait {
                pid: 1,
                tid,
                start_ns: base + start,
                end_ns: base + start + len,
                reason,
                stack_id: Some(stack),
                own_stack: true,
            };
        let mut rows = Vec::new();
        let mut t = 0;
        while t < setup * ms {
            t += 1 + next() % (9 * ms);
            rows.push(wait(1, t, 200_000, WaitReason::Sleep, 10 + next() % 3));
        }
        let mut start = setup * ms;
        for &len in lengths {
            rows.push(wait(1, start + next() % ms, 2 * ms, WaitReason::Pipe, 1));
            for tid in [2, 3] {
                let at = start + len * ms * 2 / 3 + next() % ms;
                rows.push(wait(tid, at, len * ms / 3, WaitReason::Lock, 2));
            }
            start += len * ms;
        }
        let mut t = 0;
        while t < start {
            t += 4 * ms + next() % (2 * ms);
            let tid = 1 + (next() % 3) as u32;
            rows.push(wait(tid, t, 300_000, WaitReason::Preempted, 3));
        }
        rows
    }

    #[test]
    fn waits_alone_find_a_loop_after_its_setup() {
        // Steps of 40-44 ms in no order (a cycle of lengths would be a
        // longer period of its own).
        let mut next = xorshift(0x2545f4914f6cdd1d);
        let lengths: Vec<u64> = (0..100).map(|_| 40 + next() % 5).collect();
        let rows = wait_rows(&lengths, 900);
        let steps = wait_steps(&list(&rows), 0, Some(1));
        assert_eq!(steps.method.as_deref(), Some("waits"));
        assert!(
            steps.count.abs_diff(100) <= 2,
            "{} {:?} {:?}",
            steps.count,
            steps.note,
            steps.period_ns
        );
        let period = steps.period_ns.unwrap() as f64 / 1e6;
        assert!((period - 42.0).abs() < 1.0, "{period}");
        let loop_start = 1_000_000_000 + 900 * 1_000_000;
        assert!(
            steps.boundaries_ns[0] + 42_000_000 >= loop_start,
            "{:?}",
            &steps.boundaries_ns[..3]
        );
        // Another process's waits are not looked at.
        assert_eq!(wait_steps(&list(&rows), 0, Some(2)).count, 0);
    }

    #[test]
    fn preemptions_and_random_sleeps_are_not_steps() {
        let rows = wait_rows(&[], 5000);
        let steps = wait_steps(&list(&rows), 0, Some(1));
        assert_eq!(steps.count, 0, "{:?}", steps.period_ns);
        // Time slices alone: a rhythm of the scheduler, left out.
        let slices: Vec<crate::waits::Wait> = wait_rows(&[40; 100], 0)
            .into_iter()
            .filter(|w| w.reason == sofa_trace::WaitReason::Preempted)
            .collect();
        assert!(slices.len() > 600);
        let steps = wait_steps(&list(&slices), 0, Some(1));
        assert_eq!(steps.count, 0, "{:?}", steps.note);
    }

    #[test]
    fn an_answer_is_doubled_only_with_the_half_steps_to_tell() {
        // The CPU samples out of step at the answer's period, in step at
        // twice it (the flaky compile's curve).
        let curve = [0.03, 0.005, 0.067, 0.010];
        assert!(!doubles(18, curve), "9 doubled steps from 18 halves");
        assert!(doubles(52, curve));
        // Backed at its own period: not doubled.
        assert!(!doubles(240, [-0.05, 0.08, 0.02, 0.07]));
    }

    #[test]
    fn a_lone_answer_stands_where_the_cpu_samples_repeat_with_its_period() {
        let looked = || none("no periodic structure found", 0.1);
        let answers = || vec![looked(), looked(), answer(35, 0.5, "system calls")];
        // A PyTorch CNN's: out of step at half, in step at one period.
        let backed = |curve| {
            [
                Backing::default(),
                Backing::default(),
                Backing {
                    curve: Some(curve),
                    doubled: false,
                },
            ]
        };
        let fused = fuse_with(answers(), &backed([-0.07, 0.09, 0.04]), 0.0);
        assert_eq!(fused.method.as_deref(), Some("system calls"));
        assert_eq!(fused.streams[2].cpu_support, Some([-0.07, 0.09, 0.04]));
        // Half the step (the CPU samples are out of step at its period),
        // a multiple of it (as much in step at half), a decaying curve, a
        // faint one: not backed.
        for backing in [
            [0.07, -0.12, 0.10],
            [0.09, 0.08, 0.05],
            [0.17, 0.15, 0.14],
            [-0.03, 0.02, 0.01],
        ] {
            let fused = fuse_with(answers(), &backed(backing), 0.0);
            assert_eq!(fused.count, 0, "{backing:?}");
        }
    }

    #[test]
    fn waits_that_agree_make_a_system_call_answer_stand() {
        // Alone, neither stands against CPU streams that looked; together
        // they are two streams that agree.
        let looked = || none("no periodic structure found", 0.1);
        let fused = fuse(vec![
            looked(),
            looked(),
            answer(42, 0.4, "system calls"),
            none("no packets recorded", 0.0),
            answer(43, 0.5, "waits"),
        ]);
        assert_eq!(fused.method.as_deref(), Some("waits + system calls"));
        let fused = fuse(vec![
            looked(),
            looked(),
            none("no periodic structure found", 0.1),
            none("no packets recorded", 0.0),
            answer(43, 0.5, "waits"),
        ]);
        assert_eq!(fused.count, 0);
        assert!(fused.note.unwrap().contains("waits alone suggest"));
    }

    fn answer(period_ms: u64, confidence: f64, method: &str) -> Steps {
        let period_ns = period_ms * 1_000_000;
        Steps {
            count: 3_000 / period_ms,
            period_ns: Some(period_ns),
            period_cv: Some(0.02),
            confidence,
            boundaries_ns: (0..=3_000 / period_ms).map(|i| i * period_ns).collect(),
            method: Some(method.to_owned()),
            ..Steps::default()
        }
    }

    #[test]
    fn the_python_loop_outranks_lone_rhythms_and_checks_placements() {
        let nothing = || none("no periodic structure found", 0.0);
        // Beside a CPU hog: the wall clock alone found the time slices
        // (9 ms), the Python loop its 50 ms iterations: the loop wins.
        let fused = fuse(vec![
            nothing(),
            answer(9, 0.3, "wall clock"),
            nothing(),
            nothing(),
            nothing(),
            answer(50, 0.4, "python loop"),
        ]);
        assert_eq!(
            (fused.count, fused.method.as_deref()),
            (60, Some("python loop"))
        );
        // A stream agreeing with the loop places the steps when its count is
        // within 5 % of the loop's...
        let fused = fuse(vec![
            nothing(),
            answer(49, 0.3, "wall clock"),
            nothing(),
            nothing(),
            nothing(),
            answer(50, 0.9, "python loop"),
        ]);
        assert_eq!(fused.count, 61);
        assert_eq!(fused.method.as_deref(), Some("wall clock + python loop"));
        // ...not when it makes more than 1 in 20 more steps.
        let fused = fuse(vec![
            nothing(),
            answer(46, 0.3, "wall clock"),
            nothing(),
            nothing(),
            nothing(),
            answer(50, 0.9, "python loop"),
        ]);
        assert_eq!(fused.count, 60);
        assert_eq!(fused.method.as_deref(), Some("python loop + wall clock"));
        // With three snapshots per iteration the loop may have missed
        // wraps: a placement with more steps stands, one with fewer does not.
        let with = |wall_ms| {
            let answers = vec![
                nothing(),
                answer(wall_ms, 0.3, "wall clock"),
                nothing(),
                nothing(),
                nothing(),
                answer(50, 0.9, "python loop"),
            ];
            fuse_with(answers, &[], 3.0).count
        };
        assert_eq!(with(46), 65);
        assert_eq!(with(54), 60);
        // Three streams that agree on twice the loop's iteration (two
        // DataLoader workers taking turns) lose to a loop seen by four
        // snapshots an iteration; not to one seen by three, nor where
        // theirs is no multiple of it.
        let twice = |loop_ms: u64, snapshots: f64| {
            let answers = vec![
                nothing(),
                answer(100, 0.2, "wall clock"),
                answer(100, 0.7, "system calls"),
                nothing(),
                answer(102, 0.5, "waits"),
                answer(loop_ms, 0.7, "python loop"),
            ];
            fuse_with(answers, &[], snapshots)
        };
        let fused = twice(50, 4.0);
        assert_eq!(
            (fused.count, fused.method.as_deref()),
            (60, Some("python loop"))
        );
        assert_eq!(twice(50, 3.0).count, 30);
        assert_eq!(twice(40, 4.0).count, 30);
        // Two streams that agree, neither sure (a weak wall clock, waits the
        // CPU samples do not back), lose to the loop; not with the wall
        // clock sure of it.
        let pair = |wall_confidence: f64| {
            let answers = vec![
                nothing(),
                answer(28, wall_confidence, "wall clock"),
                nothing(),
                nothing(),
                answer(27, 0.66, "waits"),
                answer(6, 1.0, "python loop"),
            ];
            fuse_with(answers, &[], 0.6).method
        };
        assert_eq!(pair(0.17).as_deref(), Some("python loop"));
        assert_eq!(pair(0.6).as_deref(), Some("wall clock + waits"));
    }

    #[test]
    fn a_placement_agreeing_with_the_loop_gives_way_to_its_count() {
        let nothing = || none("no periodic structure found", 0.0);
        // The wall clock and system calls agree on 46 ms (65 steps), the
        // loop on 50 ms (60): the two outvote the loop but agree with it,
        // and make more than 1 in 20 more steps than it counted.
        let fused = fuse(vec![
            nothing(),
            answer(46, 0.3, "wall clock"),
            answer(47, 0.6, "system calls"),
            nothing(),
            nothing(),
            answer(50, 0.9, "python loop"),
        ]);
        assert_eq!(fused.count, 60);
        assert_eq!(
            fused.method.as_deref(),
            Some("python loop + wall clock + system calls")
        );
        // The loop's period is compared as its median iteration: a loop of
        // 40 ms iterations with one of 1.6 s (warm-up: a mean of 66 ms)
        // agrees with a 40 ms wall clock.
        let mut warm = answer(40, 0.9, "python loop");
        let last = *warm.boundaries_ns.last().unwrap();
        warm.boundaries_ns.push(last + 1_600_000_000);
        warm = Steps::between(warm.boundaries_ns, 0.9, "python loop");
        let fused = fuse(vec![
            nothing(),
            answer(40, 0.3, "wall clock"),
            nothing(),
            nothing(),
            nothing(),
            warm,
        ]);
        assert!(
            fused.streams.iter().all(|s| s.count == 0 || s.agrees),
            "{:?}",
            fused.streams
        );
    }

    #[test]
    fn a_stream_that_lies_loses_to_two_that_agree() {
        // The sequence detector is sure of 50 ms; the wall clock and the
        // system calls agree on 30 ms (within 10 %).
        let fused = fuse(vec![
            answer(50, 0.9, "sequence"),
            answer(30, 0.4, "wall clock"),
            answer(31, 0.5, "system calls"),
        ]);
        assert_eq!(fused.count, 100);
        assert_eq!(fused.method.as_deref(), Some("wall clock + system calls"));
        let agrees: Vec<bool> = fused.streams.iter().map(|s| s.agrees).collect();
        assert_eq!(agrees, [false, true, true]);
        // Alone, a strong sequence answer beats a more confident other one;
        // a weak one does not beat the wall clock.
        let fused = fuse(vec![
            answer(50, 0.6, "sequence"),
            answer(30, 0.2, "wall clock"),
            Steps::default(),
        ]);
        assert_eq!(fused.method.as_deref(), Some("sequence"));
        let fused = fuse(vec![
            answer(50, 0.4, "sequence"),
            answer(30, 0.2, "wall clock"),
            answer(70, 0.9, "system calls"),
        ]);
        assert_eq!(fused.method.as_deref(), Some("wall clock"));
        // System calls alone do not stand against CPU streams that looked,
        // but do where there were too few samples to look.
        let fused = fuse(vec![
            none("no periodic structure found", 0.1),
            none("no periodic structure found", 0.05),
            answer(70, 0.9, "system calls"),
        ]);
        assert_eq!(fused.count, 0);
        assert_eq!(
            fused.note.as_deref(),
            Some(
                "no periodic structure found; system calls alone suggest 42 steps of 70.0 ms \
                 (not reported: no other stream agrees and the CPU samples do not repeat with \
                 that period)"
            )
        );
        let fused = fuse(vec![
            none("too few samples to look for steps", 0.0),
            none("too few samples to look for steps", 0.0),
            answer(70, 0.9, "system calls"),
        ]);
        assert_eq!(fused.count, 42);
        // A weak sequence answer alone does not stand where the wall clock
        // looked; a strong one does, and a weak one where the wall clock
        // had too few samples.
        let fused = fuse(vec![
            answer(184, 0.29, "sequence"),
            none("no periodic structure found", 0.05),
            none("no periodic structure found", 0.0),
        ]);
        assert_eq!(fused.count, 0);
        assert_eq!(
            fused.note.as_deref(),
            Some(
                "no periodic structure found; sequence alone suggest 16 steps of 184.0 ms \
                 (not reported: no other stream agrees and it is not sure (confidence 0.29))"
            )
        );
        assert_eq!(fused.streams[0].count, 16, "the evidence stays");
        let sure = fuse(vec![
            answer(184, 0.6, "sequence"),
            none("no periodic structure found", 0.05),
        ]);
        assert_eq!(sure.count, 16);
        let unlooked = fuse(vec![
            answer(184, 0.29, "sequence"),
            none("recording too short to look for steps", 0.0),
        ]);
        assert_eq!(unlooked.count, 16);
        // A lone network answer stands (data-parallel all-reduce bursts).
        let fused = fuse(vec![
            none("no periodic structure found", 0.1),
            none("no periodic structure found", 0.05),
            none("no periodic structure found", 0.2),
            answer(35, 0.5, "network"),
        ]);
        assert_eq!(fused.method.as_deref(), Some("network"));
        // A clearly (2.5x) more confident agreeing stream places the steps.
        let fused = fuse(vec![
            Steps::default(),
            answer(30, 0.2, "wall clock"),
            answer(31, 0.6, "system calls"),
        ]);
        assert_eq!(fused.period_ns, Some(31_000_000));
        assert_eq!(fused.method.as_deref(), Some("system calls + wall clock"));
    }

    #[test]
    fn nothing_found_keeps_the_cpu_note_and_every_stream_evidence() {
        let fused = fuse(vec![
            none("no periodic structure found", 0.1),
            none("no periodic structure found", 0.05),
            none("too few system calls to look for steps", 0.0),
        ]);
        assert_eq!(fused.count, 0);
        assert_eq!(fused.note.as_deref(), Some("no periodic structure found"));
        assert_eq!(fused.streams.len(), 3);
        assert_eq!(fused.streams[2].stream, "system calls");
    }
}
