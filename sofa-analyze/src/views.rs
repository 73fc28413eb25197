//! What `sofa report` draws, computed once here so the report only renders:
//! folded stacks for flamegraphs (whole run and per swarm), a binned timeline
//! and the time × address scatter. Every view is aggregated to a bounded size
//! (bins, cells, stacks), so a run of 10^7 samples gives a report of a few MB.

use crate::Samples;
use crate::fasthash::FastMap;
use crate::functions::CallStacks;
use crate::labels::{FunctionId, Labelled};
use serde::Serialize;
use sofa_trace::Archive;
use sofa_trace::Metric;
use sofa_trace::WaitReason;
use sofa_trace::tables::{GpuCounter, SystemCounter};
use std::collections::{BTreeMap, HashMap};

/// Time bins of the timeline (fewer for short runs: at least 1 ms a bin).
pub const TIMELINE_BINS: usize = 1500;
/// Time bins of the scatter.
pub const SCATTER_BINS: usize = 600;
/// Scatter cells kept, the heaviest (a cell: one function in one time bin).
pub const SCATTER_CELLS: usize = 60_000;
/// Points kept of each counter series (means of equal time slices beyond).
pub const SERIES_POINTS: usize = 3000;
/// Distinct stacks kept per flamegraph, the heaviest (the rest are counted).
pub const FOLDED_STACKS: usize = 20_000;

/// Everything the report draws besides the analysis tables.
#[derive(Debug, Clone, Serialize)]
pub struct Views {
    pub timeline: Timeline,
    pub scatter: Scatter,
    /// Whole run first, then one per swarm (in swarm id order), then, when
    /// the run has Python frames, the whole run with Python frames only;
    /// with context switches, the off-CPU waits and the wall clock (CPU
    /// samples and waits: one sample per sampling interval waited).
    pub flamegraphs: Vec<Folded>,
}

/// Binned activity on one time axis (ns, CLOCK_MONOTONIC of the archive).
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub start_ns: u64,
    pub end_ns: u64,
    pub bin_ns: u64,
    pub bins: usize,
    /// CPU samples per bin, one row per swarm (by id); a last row for samples
    /// of no swarm when there are any.
    pub swarm_samples: Vec<Vec<u32>>,
    /// System calls started per bin; null when the collector did not run.
    pub syscalls: Option<Vec<u32>>,
    /// Bytes per bin from the net tracepoints; null when none were recorded.
    pub net_tx_bytes: Option<Vec<u64>>,
    pub net_rx_bytes: Option<Vec<u64>>,
    /// All-CPU utilisation from /proc/stat; null without the system collector.
    pub cpu: Option<CpuSeries>,
    /// Memory used (bytes) from /proc/meminfo.
    pub mem_used: Option<Series>,
    pub gpus: Vec<GpuSeries>,
    /// What the busiest threads did per bin; empty without context switches.
    pub thread_states: Vec<ThreadLane>,
    /// Names of the states in `ThreadLane::states`: `running`, then the
    /// wait reasons.
    pub state_names: Vec<String>,
    /// The main process's CPU samples per bin, one row per framework phase
    /// it has (`other` last); empty when the run has no phases.
    pub phase_samples: Vec<PhaseBins>,
}

/// One framework phase's samples per timeline bin.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseBins {
    /// `Phase::name`: forward, backward, optimizer, …, other.
    pub phase: String,
    pub samples: Vec<u32>,
}

/// One thread's state per timeline bin: the index in `state_names` of
/// what it did most in the bin (255: not alive then).
#[derive(Debug, Clone, Serialize)]
pub struct ThreadLane {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub states: Vec<u8>,
}

/// Thread lanes drawn, at most: the threads that waited or ran longest.
const LANES: usize = 12;

/// Points of one counter (columnar: `t_ns[i]` goes with `value[i]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub t_ns: Vec<u64>,
    pub value: Vec<f64>,
}

/// Fractions (0..1) of all CPUs' time between two /proc/stat reads, at the later read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuSeries {
    pub t_ns: Vec<u64>,
    pub user: Vec<f64>,
    pub system: Vec<f64>,
    pub iowait: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuSeries {
    pub gpu: u32,
    pub util: Series,
    pub mem_used_bytes: Series,
    pub power_w: Series,
}

/// The time × address view: each cell is one function's self samples in one
/// time bin; functions are ordered by module, then address.
#[derive(Debug, Clone, Serialize)]
pub struct Scatter {
    pub start_ns: u64,
    pub bin_ns: u64,
    /// Functions on the y axis, bottom first.
    pub functions: Vec<ScatterFunction>,
    /// `[time bin, index into functions, samples]`, by bin then function.
    pub cells: Vec<[u32; 3]>,
    /// Cells left out (the lightest) to bound the size.
    pub dropped_cells: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScatterFunction {
    pub name: String,
    pub module: String,
    /// Lowest sampled address in the function.
    pub address: u64,
    /// Swarm id; null for none.
    pub swarm: Option<usize>,
}

/// Folded stacks (`root;...;leaf`) with their sample counts, heaviest first.
#[derive(Debug, Clone, Serialize)]
pub struct Folded {
    pub title: String,
    pub samples: u64,
    pub stacks: Vec<(String, u64)>,
    /// Samples of stacks left out (the lightest) to bound the size.
    pub dropped_samples: u64,
}

/// What the analysis already worked out, reused here.
/// What the views need besides the labelled samples.
pub(crate) struct Inputs<'a> {
    pub function_names: Vec<(&'a str, &'a str)>,
    pub swarm_captions: Vec<String>,
    pub system: &'a [SystemCounter],
    pub stacks: &'a CallStacks,
    pub duration_ns: Option<u64>,
    /// Off-CPU waits, when context switches were recorded.
    pub waits: Option<&'a crate::WaitList>,
    /// When switches were not recorded (above `--switch-rate`).
    pub untraced_waits: &'a crate::Gaps,
    /// One sampling interval, ns: the weight of one sample, in which waits
    /// are counted too.
    pub period_ns: u64,
    /// Thread names.
    pub thread_name: &'a dyn Fn(u32) -> String,
    /// Each sample's framework phase, when the run has phases.
    pub phases: Option<&'a crate::phases::SamplePhases>,
}

struct Axis {
    start: u64,
    bin_ns: u64,
    bins: usize,
}

impl Axis {
    fn new(start: u64, end: u64, max_bins: usize) -> Axis {
        let span = end.saturating_sub(start).max(1);
        let bins = (span / 1_000_000).clamp(1, max_bins as u64);
        let bin_ns = span.div_ceil(bins).max(1);
        Axis {
            start,
            bin_ns,
            bins: span.div_ceil(bin_ns) as usize,
        }
    }

    fn bin(&self, t: u64) -> Option<usize> {
        let i = (t.checked_sub(self.start)? / self.bin_ns) as usize;
        (i < self.bins).then_some(i)
    }
}

/// Mean of the points in each of `SERIES_POINTS` equal slices when there are more.
fn downsample(points: Vec<(u64, f64)>) -> Series {
    let mut series = Series::default();
    if points.len() <= SERIES_POINTS {
        for (t, v) in points {
            series.t_ns.push(t);
            series.value.push(v);
        }
        return series;
    }
    let per = points.len().div_ceil(SERIES_POINTS);
    for chunk in points.chunks(per) {
        let n = chunk.len() as f64;
        series
            .t_ns
            .push((chunk.iter().map(|p| p.0 as f64).sum::<f64>() / n) as u64);
        series
            .value
            .push(chunk.iter().map(|p| p.1).sum::<f64>() / n);
    }
    series
}

fn cpu_series(rows: &[SystemCounter]) -> Option<CpuSeries> {
    // Cumulative seconds per part at each read of /proc/stat ("all" CPUs).
    let mut reads: BTreeMap<u64, [f64; 5]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.device == "all") {
        if let Some(p) = Metric::CPU_TIMES.iter().position(|m| r.metric == *m) {
            reads.entry(r.time_ns).or_default()[p] = r.value;
        }
    }
    let reads: Vec<(u64, [f64; 5])> = reads.into_iter().collect();
    if reads.len() < 2 {
        return None;
    }
    let mut points = Vec::with_capacity(reads.len() - 1);
    for w in reads.windows(2) {
        let d: Vec<f64> = (0..5).map(|i| (w[1].1[i] - w[0].1[i]).max(0.0)).collect();
        let total: f64 = d.iter().sum();
        if total > 0.0 {
            points.push((w[1].0, [d[0] / total, d[1] / total, d[2] / total]));
        }
    }
    let per = points.len().div_ceil(SERIES_POINTS).max(1);
    let mut cpu = CpuSeries::default();
    for chunk in points.chunks(per) {
        let n = chunk.len() as f64;
        cpu.t_ns.push(chunk[chunk.len() - 1].0);
        cpu.user.push(chunk.iter().map(|p| p.1[0]).sum::<f64>() / n);
        cpu.system
            .push(chunk.iter().map(|p| p.1[1]).sum::<f64>() / n);
        cpu.iowait
            .push(chunk.iter().map(|p| p.1[2]).sum::<f64>() / n);
    }
    Some(cpu)
}

fn gpu_series(rows: &[GpuCounter]) -> Vec<GpuSeries> {
    let mut per_gpu: BTreeMap<u32, Vec<&GpuCounter>> = BTreeMap::new();
    for r in rows {
        per_gpu.entry(r.gpu).or_default().push(r);
    }
    per_gpu
        .into_iter()
        .map(|(gpu, mut rows)| {
            rows.sort_by_key(|r| r.time_ns);
            let pick = |f: &dyn Fn(&GpuCounter) -> Option<f64>| {
                downsample(
                    rows.iter()
                        .filter_map(|r| f(r).map(|v| (r.time_ns, v)))
                        .collect(),
                )
            };
            GpuSeries {
                gpu,
                util: pick(&|r| r.util_gpu),
                mem_used_bytes: pick(&|r| r.mem_used_bytes.map(|b| b as f64)),
                power_w: pick(&|r| r.power_w),
            }
        })
        .collect()
}

/// Root frame of stacks whose outer frames were garbage (see `fold_stacks`).
pub const INCOMPLETE_STACK: &str = "[incomplete stack]";

/// Frame names of each sampled stack, root first, as one folded line.
///
/// Frame-pointer unwinding through code built without frame pointers
/// (OpenBLAS, many libc and Python builds) ends in addresses outside any
/// mapping. Those outer frames are dropped and the stack is put under one
/// `[incomplete stack]` root, so the graph's top level is not split into
/// hundreds of garbage roots.
pub(crate) fn fold_stacks(
    stacks: &CallStacks,
    stack_ids: impl Iterator<Item = Option<u64>>,
) -> HashMap<Option<u64>, String> {
    let mut folded = HashMap::new();
    for stack_id in stack_ids {
        let mut names: Vec<String> = Vec::new();
        // Innermost-first length up to the outermost frame in a known module.
        let mut known = 0usize;
        for (function, module) in stacks.names(stack_id) {
            // Folded format: ';' separates frames, the last ' ' the count.
            let name = if function.starts_with("0x") {
                format!("[{module}]+{function}")
            } else if let Some(file) = module.strip_prefix(crate::PY_MODULE_PREFIX) {
                python_frame_name(function, file)
            } else {
                function.clone()
            };
            names.push(name.replace(';', ":"));
            if module != "[unknown]" {
                known = names.len();
            }
        }
        if known > 0 && known < names.len() {
            names.truncate(known);
            names.push(INCOMPLETE_STACK.to_owned());
        }
        if names.is_empty() {
            names.push("[unknown]".to_owned());
        }
        names.reverse();
        folded.insert(stack_id, names.join(";"));
    }
    folded
}

/// Share of samples whose stack `fold_stacks` puts under
/// `[incomplete stack]`: outer frames outside every known module.
pub(crate) fn incomplete_share(stacks: &CallStacks, samples: &Samples) -> f64 {
    let per_stack = samples.tally().per_stack();
    let mut incomplete = 0u64;
    for (stack_id, n) in per_stack {
        let mut known = 0usize;
        let mut len = 0usize;
        for (_, module) in stacks.names(stack_id) {
            len += 1;
            if module != "[unknown]" {
                known = len;
            }
        }
        if known > 0 && known < len {
            incomplete += n;
        }
    }
    incomplete as f64 / samples.len().max(1) as f64
}

/// A Python frame as py-spy names it, so it stands out from native frames.
fn python_frame_name(function: &str, file: &str) -> String {
    format!("{function} ({file})")
}

/// Folded lines of the stacks that have Python frames, with only those
/// frames (named as `fold_stacks` names them); other stacks are absent.
fn fold_python_only(
    stacks: &CallStacks,
    stack_ids: impl Iterator<Item = Option<u64>>,
) -> HashMap<Option<u64>, String> {
    let mut out = HashMap::new();
    for stack_id in stack_ids {
        let mut names: Vec<String> = stacks
            .names(stack_id)
            .filter_map(|(function, module)| {
                let file = module.strip_prefix(crate::PY_MODULE_PREFIX)?;
                Some(python_frame_name(function, file).replace(';', ":"))
            })
            .collect();
        if !names.is_empty() {
            names.reverse();
            out.insert(stack_id, names.join(";"));
        }
    }
    out
}

fn folded(title: String, counts: HashMap<&str, u64>) -> Folded {
    let samples = counts.values().sum();
    let mut stacks: Vec<(String, u64)> =
        counts.into_iter().map(|(s, n)| (s.to_owned(), n)).collect();
    stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let dropped_samples = stacks.iter().skip(FOLDED_STACKS).map(|s| s.1).sum();
    stacks.truncate(FOLDED_STACKS);
    Folded {
        title,
        samples,
        stacks,
        dropped_samples,
    }
}

/// The threads that waited or ran longest, each with its dominant state
/// per bin: running between its waits, else the reason it waited for most.
fn thread_lanes(
    waits: &crate::WaitList,
    gaps: &crate::Gaps,
    axis: &Axis,
    name: &dyn Fn(u32) -> String,
) -> (Vec<String>, Vec<ThreadLane>) {
    let mut names = vec!["running".to_owned()];
    names.extend(WaitReason::ALL.iter().map(|r| r.as_str().to_owned()));
    // Per thread: its first start, last end, and the wait that starts
    // last (of those that start together, the last given).
    #[derive(Clone, Copy)]
    struct Seen {
        first: u64,
        end: u64,
        last_start: u64,
        last_end: u64,
    }
    let mut per_thread: BTreeMap<(u32, u32), Seen> = BTreeMap::new();
    for w in waits.iter() {
        let t = per_thread.entry((w.pid, w.tid)).or_insert(Seen {
            first: u64::MAX,
            end: 0,
            last_start: 0,
            last_end: 0,
        });
        t.first = t.first.min(w.start_ns);
        t.end = t.end.max(w.end_ns);
        if w.start_ns >= t.last_start {
            (t.last_start, t.last_end) = (w.start_ns, w.end_ns);
        }
    }
    let mut threads: Vec<((u32, u32), Seen)> = per_thread.into_iter().collect();
    // Longest observed first.
    let span = |t: &Seen| t.end - t.first;
    threads.sort_by(|a, b| span(&b.1).cmp(&span(&a.1)).then(a.0.cmp(&b.0)));
    threads.truncate(LANES);
    // Time per state per bin and lane; running fills what waits leave.
    let lane_of: FastMap<(u32, u32), usize> =
        threads.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
    let mut times = vec![vec![[0u64; 16]; axis.bins]; threads.len()];
    for w in waits.iter() {
        let Some(&lane) = lane_of.get(&(w.pid, w.tid)) else {
            continue;
        };
        let time = &mut times[lane];
        let state = 1 + WaitReason::ALL
            .iter()
            .position(|r| *r == w.reason)
            .unwrap_or(0);
        let mut t = w.start_ns;
        while t < w.end_ns {
            let Some(b) = axis.bin(t) else { break };
            let bin_end = axis.start + (b as u64 + 1) * axis.bin_ns;
            let until = bin_end.min(w.end_ns);
            time[b][state] += until - t;
            t = until;
        }
    }
    let lanes = threads
        .into_iter()
        .zip(times)
        .map(|(((pid, tid), seen), time)| {
            let (first, last) = (seen.first, seen.last_end);
            let states = time
                .iter()
                .enumerate()
                .map(|(b, per)| {
                    let from = axis.start + b as u64 * axis.bin_ns;
                    let to = from + axis.bin_ns;
                    let (from, to) = (from.max(first), to.min(last));
                    let alive = gaps.covered(from, to);
                    // Mostly not recorded (switches faster than
                    // --switch-rate): no state.
                    if alive == 0 || 2 * alive < to.saturating_sub(from) {
                        return u8::MAX;
                    }
                    let waited: u64 = per.iter().sum();
                    let running = alive.saturating_sub(waited);
                    let (state, most) = per
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                        .map_or((0, 0), |(s, t)| (s, *t));
                    if running >= most { 0 } else { state as u8 }
                })
                .collect();
            ThreadLane {
                pid,
                tid,
                comm: name(tid),
                states,
            }
        })
        .collect();
    (names, lanes)
}

/// Fails only where the system calls or packets, read again, fail to read.
pub(crate) fn build(
    archive: &Archive,
    l: &Labelled,
    i: &Inputs,
) -> Result<Views, sofa_trace::TraceError> {
    let (first, last) = l.samples.tally().span().unwrap_or((u64::MAX, 0));
    let start = archive.meta().clock.start_ns;
    let start = if first < start { first } else { start };
    let end = i
        .duration_ns
        .map_or(last, |d| start.max(archive.meta().clock.start_ns) + d)
        .max(last)
        .max(start + 1);
    let swarm_of = |stack: Option<u64>| -> Option<usize> {
        l.swarm_of(stack)
            .map(|s| s.0)
            .filter(|&s| s < i.swarm_captions.len())
    };

    // Timeline.
    let axis = Axis::new(start, end, TIMELINE_BINS);
    let rows = i.swarm_captions.len();
    let mut swarm_samples = vec![vec![0u32; axis.bins]; rows + 1];
    // Scatter cells and flamegraph counts in the same pass.
    let scatter_axis = Axis::new(start, end, SCATTER_BINS);
    let mut cells: FastMap<(u32, usize), u32> = FastMap::default();
    let mut per_stack: FastMap<Option<u64>, u64> = FastMap::default();
    l.samples.for_each(|s| {
        let swarm = swarm_of(s.stack_id());
        if let Some(b) = axis.bin(s.time_ns) {
            let row = swarm.unwrap_or(rows);
            swarm_samples[row][b] = swarm_samples[row][b].saturating_add(1);
        }
        if let (Some(b), Some(f)) = (scatter_axis.bin(s.time_ns), l.function_of(s.stack_id())) {
            *cells.entry((b as u32, f.0)).or_default() += 1;
        }
        *per_stack.entry(s.stack_id()).or_default() += 1;
    })?;
    if swarm_samples[rows].iter().all(|&n| n == 0) {
        swarm_samples.pop();
    }
    let syscalls = match l.syscalls_recorded.then_some(l.syscalls) {
        Some(calls) => {
            let mut per = vec![0u32; axis.bins];
            calls.for_each(|c| {
                if let Some(b) = axis.bin(c.time_ns) {
                    per[b] = per[b].saturating_add(1);
                }
            })?;
            Some(per)
        }
        None => None,
    };
    let (net_tx_bytes, net_rx_bytes) = {
        let mut tx = vec![0u64; axis.bins];
        let mut rx = vec![0u64; axis.bins];
        let mut any = false;
        l.net.for_each(|e| {
            any = true;
            if let Some(b) = axis.bin(e.time_ns) {
                let slot = if e.tx { &mut tx } else { &mut rx };
                slot[b] += u64::from(e.len);
            }
        })?;
        if any {
            (Some(tx), Some(rx))
        } else {
            (None, None)
        }
    };
    let system = i.system;
    let mem_used = {
        let mut points: Vec<(u64, f64)> = system
            .iter()
            .filter(|r| r.metric == Metric::MemUsed && r.device == "all")
            .map(|r| (r.time_ns, r.value))
            .collect();
        points.sort_by_key(|p| p.0);
        (!points.is_empty()).then(|| downsample(points))
    };
    let (state_names, thread_states) = match i.waits {
        Some(waits) => thread_lanes(waits, i.untraced_waits, &axis, i.thread_name),
        None => (Vec::new(), Vec::new()),
    };
    let phase_samples = match i.phases {
        Some(of) => crate::phases::per_bin(l.samples, of, |t| axis.bin(t), axis.bins)?
            .into_iter()
            .map(|(phase, samples)| PhaseBins {
                phase: phase.name().to_owned(),
                samples,
            })
            .collect(),
        None => Vec::new(),
    };
    let timeline = Timeline {
        phase_samples,
        thread_states,
        state_names,
        start_ns: start,
        end_ns: end,
        bin_ns: axis.bin_ns,
        bins: axis.bins,
        swarm_samples,
        syscalls,
        net_tx_bytes,
        net_rx_bytes,
        cpu: cpu_series(system),
        mem_used,
        gpus: gpu_series(l.gpu),
    };

    // Flamegraphs: one folded line per distinct stack.
    let CallStacks { nodes, frames } = i.stacks;
    let mut stack_ids: Vec<Option<u64>> = per_stack.keys().copied().collect();
    stack_ids.sort();
    let lines = fold_stacks(i.stacks, stack_ids.iter().copied());
    let mut whole: HashMap<&str, u64> = HashMap::new();
    let mut by_swarm: Vec<HashMap<&str, u64>> = vec![HashMap::new(); rows];
    for (stack, n) in &per_stack {
        let line = lines[stack].as_str();
        *whole.entry(line).or_default() += n;
        if let Some(s) = swarm_of(*stack) {
            *by_swarm[s].entry(line).or_default() += n;
        }
    }
    let mut flamegraphs = vec![folded("whole run".to_owned(), whole)];
    for (s, counts) in by_swarm.into_iter().enumerate() {
        flamegraphs.push(folded(
            format!("swarm {s}: {}", i.swarm_captions[s]),
            counts,
        ));
    }
    // The same run, Python frames only (the report's "my code" view).
    let python_lines = fold_python_only(i.stacks, stack_ids.iter().copied());
    if !python_lines.is_empty() {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for (stack, n) in &per_stack {
            let line = python_lines.get(stack).unwrap_or(&lines[stack]);
            *counts.entry(line.as_str()).or_default() += n;
        }
        flamegraphs.push(folded("whole run, Python frames only".to_owned(), counts));
    }

    // Off-CPU waits, and the wall clock: waits in units of one sampling
    // interval, each stack with a last frame naming the reason.
    if let Some(waits) = i.waits.filter(|w| !w.is_empty()) {
        let mut wait_ids: Vec<Option<u64>> = waits.stack_ids().to_vec();
        wait_ids.sort();
        let wait_lines = fold_stacks(i.stacks, wait_ids.into_iter());
        let period = i.period_ns.max(1);
        let mut off: HashMap<String, u64> = HashMap::new();
        for w in waits.iter() {
            let n = (w.duration_ns() + period / 2) / period;
            if n == 0 {
                continue;
            }
            let line = format!("{};[off-CPU: {}]", wait_lines[&w.stack_id], w.reason);
            *off.entry(line).or_default() += n;
        }
        let off_counts: HashMap<&str, u64> = off.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        flamegraphs.push(folded(
            "off-CPU waits (1 sample = 1 sampling interval waited)".to_owned(),
            off_counts.clone(),
        ));
        let mut wall = off_counts;
        for (stack, n) in &per_stack {
            *wall.entry(lines[stack].as_str()).or_default() += n;
        }
        flamegraphs.push(folded(
            "wall clock: CPU samples and off-CPU waits".to_owned(),
            wall,
        ));
    }

    // Scatter: the lowest address each function was sampled at (as self).
    let mut address: HashMap<usize, u64> = HashMap::new();
    for stack in &stack_ids {
        let (Some(id), Some(FunctionId(f))) = (stack, l.function_of(*stack)) else {
            continue;
        };
        if let Some(a) = nodes
            .get(id)
            .and_then(|n| frames.get(&n.frame_id))
            .map(|r| &r.address)
        {
            let slot = address.entry(f).or_insert(*a);
            *slot = (*slot).min(*a);
        }
    }
    let mut used: Vec<usize> = cells.keys().map(|&(_, f)| f).collect();
    used.sort_unstable();
    used.dedup();
    used.sort_by(|&a, &b| {
        let (na, ma) = i.function_names[a];
        let (nb, mb) = i.function_names[b];
        ma.cmp(mb)
            .then(address.get(&a).cmp(&address.get(&b)))
            .then(na.cmp(nb))
    });
    let row_of: HashMap<usize, u32> = used
        .iter()
        .enumerate()
        .map(|(r, &f)| (f, r as u32))
        .collect();
    let functions = used
        .iter()
        .map(|&f| {
            let (name, module) = i.function_names[f];
            ScatterFunction {
                name: name.to_owned(),
                module: module.to_owned(),
                address: address.get(&f).copied().unwrap_or(0),
                swarm: l
                    .swarm_of_function(FunctionId(f))
                    .map(|s| s.0)
                    .filter(|&s| s < rows),
            }
        })
        .collect();
    let mut cells: Vec<[u32; 3]> = cells
        .into_iter()
        .map(|((b, f), n)| [b, row_of[&f], n])
        .collect();
    let mut dropped_cells = 0;
    if cells.len() > SCATTER_CELLS {
        cells.sort_by(|a, b| b[2].cmp(&a[2]).then(a.cmp(b)));
        dropped_cells = (cells.len() - SCATTER_CELLS) as u64;
        cells.truncate(SCATTER_CELLS);
    }
    cells.sort_unstable();
    let scatter = Scatter {
        start_ns: start,
        bin_ns: scatter_axis.bin_ns,
        functions,
        cells,
        dropped_cells,
    };
    Ok(Views {
        timeline,
        scatter,
        flamegraphs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bins_cover_the_span() {
        let a = Axis::new(1_000, 1_000 + 10_000_000_000, 1500);
        assert_eq!(a.bins, 1500);
        assert_eq!(a.bin(1_000), Some(0));
        assert_eq!(a.bin(1_000 + 9_999_999_999), Some(1499));
        assert_eq!(a.bin(999), None);
        let short = Axis::new(0, 3_500_000, 1500);
        assert_eq!(short.bins, 3);
    }

    #[test]
    fn downsample_keeps_means() {
        let points: Vec<(u64, f64)> = (0..SERIES_POINTS as u64 * 2)
            .map(|t| (t, (t % 2) as f64))
            .collect();
        let s = downsample(points);
        assert_eq!(s.t_ns.len(), SERIES_POINTS);
        assert!(s.value.iter().all(|&v| (v - 0.5).abs() < 1e-9));
    }

    #[test]
    fn cpu_series_from_cumulative_seconds() {
        let row = |t: u64, metric: &str, v: f64| SystemCounter {
            time_ns: t,
            metric: metric.to_owned(),
            device: "all".to_owned(),
            value: v,
        };
        let rows = vec![
            row(0, "cpu.user_s", 1.0),
            row(0, "cpu.system_s", 1.0),
            row(0, "cpu.idle_s", 1.0),
            row(100, "cpu.user_s", 1.3),
            row(100, "cpu.system_s", 1.1),
            row(100, "cpu.idle_s", 1.6),
        ];
        let cpu = cpu_series(&rows).unwrap();
        assert_eq!(cpu.t_ns, vec![100]);
        assert!((cpu.user[0] - 0.3).abs() < 1e-9);
        assert!((cpu.system[0] - 0.1).abs() < 1e-9);
        assert_eq!(cpu.iowait[0], 0.0);
    }
}
