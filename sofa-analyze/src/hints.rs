//! Rule-based hints: each names a likely bottleneck and the numbers behind
//! it. One function per rule, in [`RULES`]; each has a unit test that fires
//! it and one that does not.

use crate::Analysis;
use crate::syscalls::IO_CALLS;
use serde::Serialize;
use sofa_trace::{CollectorName, SymbolSource, WaitReason};

/// How much a hint matters; serialized as `warning` / `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Likely costs time.
    Warning,
    /// Worth knowing.
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hint {
    pub severity: Severity,
    pub title: String,
    pub evidence: String,
}

fn hint(severity: Severity, title: &str, evidence: String) -> Hint {
    Hint {
        severity,
        title: title.to_owned(),
        evidence,
    }
}

/// A rule: the hints it gives for an analysis (most give one or none).
type Rule = fn(&Analysis) -> Vec<Hint>;

/// Every rule, in the order their hints are listed.
const RULES: &[Rule] = &[
    lost_events,
    cut_short,
    gpu_idle,
    io_bound,
    serial_bottleneck,
    input_bound,
    gil_bound,
    lock_convoy,
    pool_spin,
    oversubscribed,
    waits_for_cpu,
    waits_for_disk,
    iowait,
    kernel_heavy,
    unnamed_code,
    incomplete_stacks,
    step_count_differs,
    no_steps,
];

pub fn hints(a: &Analysis) -> Vec<Hint> {
    RULES.iter().flat_map(|rule| rule(a)).collect()
}

/// The recording's wall time, ns, when known and not zero.
fn wall_ns(a: &Analysis) -> Option<f64> {
    a.run.duration_ns.filter(|&d| d > 0).map(|d| d as f64)
}

/// More than 1 % of a collector's events lost.
fn lost_events(a: &Analysis) -> Vec<Hint> {
    let run = &a.run;
    let mut out = Vec::new();
    for (collector, &lost) in &run.lost_by_collector {
        let Some(name) = CollectorName::parse(collector) else {
            continue;
        };
        // What the collector did record, in events.
        let recorded = match name {
            CollectorName::Cpu => run.samples,
            CollectorName::Syscalls => 2 * run.tables.get("syscalls").copied().unwrap_or(0),
            CollectorName::Net => run.tables.get("net").copied().unwrap_or(0),
            _ => continue,
        };
        let share = lost as f64 / (lost + recorded).max(1) as f64;
        if share > 0.01 {
            let advice = match name {
                CollectorName::Cpu => "record with a lower -F",
                CollectorName::Syscalls => {
                    "use --no-syscalls for programs making millions of calls"
                }
                _ => "expect gaps in this collector's tables",
            };
            out.push(hint(
                Severity::Warning,
                &format!("{collector} events were lost"),
                format!(
                    "{lost} of {} {collector} events lost ({:.1}%); {advice}",
                    lost + recorded,
                    100.0 * share
                ),
            ));
        }
    }
    out
}

fn cut_short(a: &Analysis) -> Vec<Hint> {
    if !a.run.truncated {
        return Vec::new();
    }
    vec![hint(
        Severity::Warning,
        "the archive was cut short",
        "the recorder did not finish; everything after its last flush is missing".to_owned(),
    )]
}

/// A GPU idle in more than 30 % of its samples.
fn gpu_idle(a: &Analysis) -> Vec<Hint> {
    let mut out = Vec::new();
    for g in &a.gpu {
        if let Some(idle) = g.util_idle_share
            && idle > 0.3
        {
            let cpu_top = a.functions.first().map_or_else(String::new, |f| {
                format!(
                    "; the busiest CPU function is {} ({:.1}% of samples)",
                    f.name,
                    100.0 * f.self_share
                )
            });
            out.push(hint(
                Severity::Warning,
                "GPU idle much of the time: input-bound or CPU-bound step",
                format!(
                    "GPU {} ({}) idle in {:.0}% of samples, mean utilisation {:.0}%{cpu_top}",
                    g.index,
                    g.name,
                    100.0 * idle,
                    g.util_mean.unwrap_or(0.0)
                ),
            ));
        }
    }
    out
}

/// More than 30 % of wall time inside I/O system calls. With context
/// switches the waits tell more (a blocking pipe read waits for input, not
/// for I/O): the input-bound and disk rules speak instead.
fn io_bound(a: &Analysis) -> Vec<Hint> {
    let Some(wall) = wall_ns(a) else {
        return Vec::new();
    };
    if a.waits.is_some() {
        return Vec::new();
    }
    let io = || {
        a.syscalls
            .iter()
            .filter(|s| IO_CALLS.contains(&s.name.as_str()))
    };
    let io_share = io().map(|s| s.total_ns).sum::<u64>() as f64 / wall;
    if io_share <= 0.3 {
        return Vec::new();
    }
    let top = io()
        .take(3)
        .map(|s| {
            format!(
                "{} {:.0} ms in {} calls",
                s.name,
                s.total_ns as f64 / 1e6,
                s.count
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    vec![hint(
        Severity::Warning,
        "I/O-bound: threads spend much of the run in read/write system calls",
        format!(
            "{:.0}% of wall time inside I/O system calls ({top})",
            100.0 * io_share
        ),
    )]
}

/// One thread has most CPU samples while threads wait in futex more than
/// half the wall time (summed over threads). Not with context switches:
/// they name what the futex waits were (the GIL, a queue of batches, idle
/// pool threads), and a futex total would blame idle pools.
fn serial_bottleneck(a: &Analysis) -> Vec<Hint> {
    let Some(wall) = wall_ns(a) else {
        return Vec::new();
    };
    if a.waits.is_some() {
        return Vec::new();
    }
    let Some(futex) = a.syscalls.iter().find(|s| s.name == "futex") else {
        return Vec::new();
    };
    let Some(t) = a.threads.first() else {
        return Vec::new();
    };
    if futex.total_ns as f64 / wall <= 0.5 || t.share <= 0.5 {
        return Vec::new();
    }
    vec![hint(
        Severity::Warning,
        "serial bottleneck or lock contention: one thread works while others wait",
        format!(
            "thread {} ({}) has {:.0}% of CPU samples while threads spend {:.1} s in futex waits ({:.0}% of wall time, summed over threads)",
            t.tid,
            t.comm,
            100.0 * t.share,
            futex.total_ns as f64 / 1e9,
            100.0 * futex.total_ns as f64 / wall
        ),
    )]
}

/// The main thread waits for input (pipe, queue and socket reads, poll,
/// queue locks) at least 10 % of the loop: batches come too slowly.
fn input_bound(a: &Analysis) -> Vec<Hint> {
    let Some(m) = a.waits.as_ref().and_then(|w| w.main.as_ref()) else {
        return Vec::new();
    };
    let span = m.to_ns.saturating_sub(m.from_ns);
    // Of the time switches were recorded (all of it, unless they came
    // faster than --switch-rate).
    let traced = m.traced_ns;
    if traced == 0 || (m.input_ns as f64) < INPUT_SHARE * traced as f64 {
        return Vec::new();
    }
    let share = m.input_ns as f64 / traced as f64;
    // Per step only for steps found with some confidence (a doubtful
    // period would make up the figure) and every switch recorded.
    let per_step = match a.steps.count {
        n if m.in_steps && n > 0 && a.steps.confidence >= STEP_CONFIDENCE && traced == span => {
            format!(
                ", {:.1} ms of each {:.1} ms step on average",
                m.input_ns as f64 / n as f64 / 1e6,
                span as f64 / n as f64 / 1e6
            )
        }
        _ => String::new(),
    };
    let place = m
        .input_in
        .as_deref()
        .map_or_else(String::new, |f| format!(", most in {f}"));
    vec![hint(
        Severity::Warning,
        "input-bound: the training loop waits for its data",
        format!(
            "the main thread ({}) waited for input (pipe, queue or socket reads, poll) {:.0}% of {}{per_step}{place}; \
             load batches faster: more DataLoader workers (num_workers), a larger prefetch_factor, \
             pin_memory=True, or cheaper preprocessing",
            m.tid,
            100.0 * share,
            if m.in_steps { "the loop" } else { "its time" },
        ),
    )]
}

/// Share of the loop waiting for input from which the hint fires.
const INPUT_SHARE: f64 = 0.1;

/// Step confidence from which the input hint speaks per step.
const STEP_CONFIDENCE: f64 = 0.3;

/// Share of a thread's time waiting for the GIL from which it counts.
const GIL_WAIT_SHARE: f64 = 0.1;

/// Python threads of one process wait for the GIL (off-CPU, `take_gil`)
/// at least 10 % of their time each; without context switches, two or
/// more hold it in at least 10 % of their snapshots, together most of
/// the time. Either way they run Python one at a time.
fn gil_bound(a: &Analysis) -> Vec<Hint> {
    if let Some(w) = &a.waits {
        return gil_waits(w);
    }
    let mut by_process: std::collections::BTreeMap<u32, Vec<(u32, f64)>> = Default::default();
    for t in &a.threads {
        if let Some(held) = t.gil_held.filter(|&h| h >= 0.1) {
            by_process.entry(t.pid).or_default().push((t.tid, held));
        }
    }
    let mut out = Vec::new();
    for (pid, mut threads) in by_process {
        let together: f64 = threads.iter().map(|t| t.1).sum();
        if threads.len() < 2 || together < 0.6 {
            continue;
        }
        threads.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let each: Vec<String> = threads
            .iter()
            .map(|(tid, held)| format!("{tid} {:.0}%", 100.0 * held))
            .collect();
        out.push(hint(
            Severity::Warning,
            GIL_TITLE,
            format!(
                "{} threads of process {pid} held the GIL (thread {}), {:.0}% of the time together; {GIL_REMEDY}",
                threads.len(),
                each.join(", "),
                100.0 * together.min(1.0)
            ),
        ));
    }
    out
}

const GIL_TITLE: &str = "Python threads take turns on the GIL: they run Python one at a time";
const GIL_REMEDY: &str = "move CPU-bound Python work to processes (multiprocessing, DataLoader \
     workers) or into code that releases the GIL (numpy, torch operators)";

/// The GIL waits of a process's threads together, against its longest
/// thread's span, from which the waits hint fires: one helper thread that
/// waits for the GIL now and then does not make a process GIL-bound.
const GIL_PROCESS_SHARE: f64 = 0.2;

fn gil_waits(w: &crate::WaitSummary) -> Vec<Hint> {
    let mut by_process: std::collections::BTreeMap<u32, Vec<(u32, f64, u64)>> = Default::default();
    let mut longest: std::collections::BTreeMap<u32, u64> = Default::default();
    for t in &w.threads {
        let span = longest.entry(t.pid).or_default();
        *span = (*span).max(t.span_ns);
        let gil = t
            .by_reason
            .get(WaitReason::Gil.as_str())
            .copied()
            .unwrap_or(0);
        if t.span_ns > 0 && gil as f64 >= GIL_WAIT_SHARE * t.span_ns as f64 {
            by_process
                .entry(t.pid)
                .or_default()
                .push((t.tid, gil as f64 / t.span_ns as f64, gil));
        }
    }
    by_process
        .into_iter()
        .filter(|(pid, threads)| {
            let together: u64 = threads.iter().map(|t| t.2).sum();
            together as f64 >= GIL_PROCESS_SHARE * longest[pid] as f64
        })
        .map(|(pid, mut threads)| {
            threads.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            let each: Vec<String> = threads
                .iter()
                .map(|(tid, share, _)| format!("{tid} {:.0}%", 100.0 * share))
                .collect();
            hint(
                Severity::Warning,
                GIL_TITLE,
                format!(
                    "{} thread{} of process {pid} waited for the GIL (thread {} of its time), {:.2} s in all; {GIL_REMEDY}",
                    threads.len(),
                    if threads.len() == 1 { "" } else { "s" },
                    each.join(", "),
                    threads.iter().map(|t| t.2).sum::<u64>() as f64 / 1e9
                ),
            )
        })
        .collect()
}

/// Threads on one lock from which it is a convoy: with two, a lock
/// handed back and forth is a producer and its consumer as often as it is
/// contention.
const CONVOY_THREADS: usize = 3;

/// Share of its threads' time queued on the lock from which the convoy
/// hint fires.
const CONVOY_SHARE: f64 = 0.2;

/// Three or more threads sleep on the same lock (futex word) for a fifth
/// of their time or more: they queue on it and run one at a time.
fn lock_convoy(a: &Analysis) -> Vec<Hint> {
    let Some(w) = &a.waits else {
        return Vec::new();
    };
    w.locks
        .iter()
        .filter(|l| l.tids.len() >= CONVOY_THREADS && l.share >= CONVOY_SHARE)
        .map(|l| {
            let tids: Vec<String> = l.tids.iter().map(u32::to_string).collect();
            hint(
                Severity::Warning,
                "lock convoy: threads queue on one lock and run one at a time",
                format!(
                    "{} threads of process {} ({}) slept on the lock at {} for {:.0}% of their time, \
                     {:.2} s in {} waits, most in {}; hold it for less (move work out of the critical \
                     section), split it (per thread or per shard), or use fewer threads",
                    l.tids.len(),
                    l.pid,
                    tids.join(", "),
                    l.address,
                    100.0 * l.share,
                    l.wait_ns as f64 / 1e9,
                    l.waits,
                    l.function
                ),
            )
        })
        .collect()
}

/// Runnable threads waited for a CPU (preempted) at least 10 % of their
/// time, summed over threads: more busy threads than CPUs.
fn waits_for_cpu(a: &Analysis) -> Vec<Hint> {
    let Some(w) = &a.waits else {
        return Vec::new();
    };
    let span: u64 = w.threads.iter().map(|t| t.span_ns).sum();
    let reason = WaitReason::Preempted.as_str();
    let waited: u64 = w
        .threads
        .iter()
        .filter_map(|t| t.by_reason.get(reason))
        .sum();
    if span == 0 || (waited as f64) < 0.1 * span as f64 || is_oversubscribed(a) {
        return Vec::new();
    }
    let mut worst: Vec<&crate::ThreadWaits> = w.threads.iter().collect();
    worst.sort_by_key(|t| std::cmp::Reverse(t.by_reason.get(reason).copied().unwrap_or(0)));
    let names: Vec<String> = worst
        .iter()
        .take(3)
        .map(|t| format!("{} ({})", t.tid, t.comm))
        .collect();
    vec![hint(
        Severity::Warning,
        "threads wait for a CPU: more runnable threads than CPUs",
        format!(
            "runnable threads were preempted and waited for a CPU {:.0}% of their time ({:.2} s in all; most: {}); \
             fewer threads (OMP_NUM_THREADS, torch.set_num_threads, fewer DataLoader workers) or \
             fewer other processes on these CPUs",
            100.0 * waited as f64 / span as f64,
            waited as f64 / 1e9,
            names.join(", ")
        ),
    )]
}

/// Share of CPU samples in pools' spin loops from which [`pool_spin`] fires.
const SPIN_SHARE: f64 = 0.1;

/// Thread pools busy-wait for at least a tenth of the CPU samples.
fn pool_spin(a: &Analysis) -> Vec<Hint> {
    let s = &a.spin;
    if s.share < SPIN_SHARE {
        return Vec::new();
    }
    let pools: Vec<String> = s
        .pools
        .iter()
        .filter(|p| p.share >= 0.01)
        .map(|p| {
            let functions: Vec<&str> = p.functions.iter().take(2).map(|f| f.0.as_str()).collect();
            let threads: Vec<String> = p
                .threads
                .iter()
                .take(3)
                .map(|t| format!("{} {:.0}%", t.tid, 100.0 * t.share))
                .collect();
            format!(
                "{} {:.1}% in {} on {} thread{} (spinning share of each: {}{}): {}",
                p.name,
                100.0 * p.share,
                functions.join(", "),
                p.threads.len(),
                if p.threads.len() == 1 { "" } else { "s" },
                threads.join(", "),
                if p.threads.len() > 3 { ", …" } else { "" },
                p.pool.remedy()
            )
        })
        .collect();
    vec![hint(
        Severity::Warning,
        "thread pools busy-wait between parallel regions",
        format!(
            "{:.1}% of CPU samples are idle pool threads spinning for their next task, not \
             working; {}. The spinning costs the job only where its threads outnumber the \
             CPUs or other work could run there",
            100.0 * s.share,
            pools.join("; ")
        ),
    )]
}

/// Share of the job's busy time from which [`oversubscribed`] fires.
const OVERSUBSCRIBED_SHARE: f64 = 0.2;

/// Whether [`oversubscribed`] fires (the CPU-wait hint then yields to it).
fn is_oversubscribed(a: &Analysis) -> bool {
    a.oversubscription
        .as_ref()
        .is_some_and(|o| o.share >= OVERSUBSCRIBED_SHARE && o.bins >= 10)
}

/// More of the job's threads runnable than CPUs for a fifth of its time.
fn oversubscribed(a: &Analysis) -> Vec<Hint> {
    let Some(o) = a.oversubscription.as_ref().filter(|_| is_oversubscribed(a)) else {
        return Vec::new();
    };
    let processes = a.processes.len();
    vec![hint(
        Severity::Warning,
        "oversubscribed: more of the job's threads runnable than CPUs",
        format!(
            "for {:.0}% of the job's busy time ({} of {} 10 ms intervals) its threads wanted \
             {:.1} CPUs on average and the machine has {} ({} threads in {} process{} \
             sampled); they take turns and each parallel region waits for its slowest \
             thread: threads per process × processes ≤ CPUs (torch.set_num_threads, \
             OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS; DataLoader workers and \
             ranks count too)",
            100.0 * o.share,
            o.over_bins,
            o.bins,
            o.runnable,
            o.cpus,
            a.threads.len(),
            processes,
            if processes == 1 { "" } else { "es" },
        ),
    )]
}

/// A thread waited for disk at least 10 % of its time.
fn waits_for_disk(a: &Analysis) -> Vec<Hint> {
    let Some(w) = &a.waits else {
        return Vec::new();
    };
    let reason = WaitReason::Disk.as_str();
    let slow: Vec<(&crate::ThreadWaits, u64)> = w
        .threads
        .iter()
        .filter_map(|t| Some((t, *t.by_reason.get(reason)?)))
        .filter(|(t, ns)| t.span_ns > 0 && *ns as f64 >= 0.1 * t.span_ns as f64)
        .collect();
    if slow.is_empty() {
        return Vec::new();
    }
    let each: Vec<String> = slow
        .iter()
        .take(3)
        .map(|(t, ns)| {
            format!(
                "{} ({}) {:.0}%",
                t.tid,
                t.comm,
                100.0 * *ns as f64 / t.span_ns as f64
            )
        })
        .collect();
    let function = w
        .stacks
        .iter()
        .find(|s| s.reason == reason)
        .map_or_else(String::new, |s| format!(", most in {}", s.function));
    vec![hint(
        Severity::Warning,
        "I/O-bound: threads wait for the disk",
        format!(
            "threads waited for disk reads or writes (thread {} of its time){function}; \
             cache the data in memory or on faster storage, read ahead (more loader workers), \
             or read larger blocks",
            each.join(", ")
        ),
    )]
}

/// More than 20 % of CPU time in iowait.
fn iowait(a: &Analysis) -> Vec<Hint> {
    match &a.system {
        Some(sys) if sys.cpu_iowait > 0.2 => vec![hint(
            Severity::Warning,
            "CPUs wait for disk I/O",
            format!("{:.0}% of CPU time was iowait", 100.0 * sys.cpu_iowait),
        )],
        _ => Vec::new(),
    }
}

/// More than 30 % of samples in kernel code.
fn kernel_heavy(a: &Analysis) -> Vec<Hint> {
    match a.modules.iter().find(|m| m.module == "[kernel]") {
        Some(kernel) if kernel.self_share > 0.3 => vec![hint(
            Severity::Info,
            "much of the CPU time is in the kernel",
            format!(
                "{:.0}% of samples are in kernel code; see the system call table and the kernel functions among the top functions",
                100.0 * kernel.self_share
            ),
        )],
        _ => Vec::new(),
    }
}

/// A fifth of the samples have stacks cut short by frame-pointer walks
/// (`[incomplete stack]`): unwinding the stack copies would complete them.
fn incomplete_stacks(a: &Analysis) -> Vec<Hint> {
    let s = &a.stacks;
    if s.call_graph != "fp" || s.incomplete_share < 0.2 || a.run.samples < 100 {
        return Vec::new();
    }
    vec![hint(
        Severity::Info,
        "call stacks cut short",
        format!(
            "{:.0}% of samples have stacks whose callers were lost where frame-pointer walking \
             met code built without frame pointers (`[incomplete stack]` in the flamegraph): \
             record with `--call-graph auto` to unwind them with the binaries' unwind tables",
            100.0 * s.incomplete_share
        ),
    )]
}

/// A library holds at least 5 % of the samples and most of its samples
/// have no function name (a stripped library without debug symbols found).
fn unnamed_code(a: &Analysis) -> Vec<Hint> {
    let mut per_module: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for f in &a.functions {
        let module = f.module.as_str();
        // Kernel, JIT (anonymous memory) and unknown code, and Python
        // frames: no debug package names those.
        if module.starts_with('[')
            || module.starts_with(crate::PY_MODULE_PREFIX)
            || module == "anon"
            || module.starts_with("memfd:")
        {
            continue;
        }
        let slot = per_module.entry(module).or_default();
        slot.0 += f.self_samples;
        if f.name.starts_with("0x") {
            slot.1 += f.self_samples;
        }
    }
    let total = a.run.samples.max(1) as f64;
    let source = |module: &str| {
        let symbols = a
            .modules
            .iter()
            .find(|m| m.module == module)?
            .symbols
            .as_deref()?;
        Some(match SymbolSource::parse(symbols)? {
            SymbolSource::Dynsym => " (it has only its exported symbols, .dynsym)".to_owned(),
            SymbolSource::None => " (it has no symbol table)".to_owned(),
            other => format!(" (its names came from: {other})"),
        })
    };
    per_module
        .into_iter()
        .filter(|(_, (all, raw))| *all as f64 >= 0.05 * total && *raw * 2 > *all)
        .map(|(module, (all, raw))| {
            hint(
                Severity::Info,
                "code without function names",
                format!(
                    "{:.0}% of samples are in {module}, {:.0}% of them at addresses no symbol names{}: \
                     install its debug symbols (Debian/Ubuntu: the library package's -dbg or -dbgsym \
                     package; Fedora: debuginfo-install) or point `sofa record --debug-dir` at them, \
                     and record again",
                    100.0 * all as f64 / total,
                    100.0 * raw as f64 / all as f64,
                    source(module).unwrap_or_default()
                ),
            )
        })
        .collect()
}

/// `--steps N` given and the count found is more than 5 % off.
fn step_count_differs(a: &Analysis) -> Vec<Hint> {
    let Some(expected) = a.steps.expected else {
        return Vec::new();
    };
    let found = a.steps.count;
    if found.abs_diff(expected) as f64 <= 0.05 * expected as f64 {
        return Vec::new();
    }
    vec![hint(
        Severity::Warning,
        "step count differs from the expected one",
        format!(
            "found {found} steps, expected {expected} (--steps); period {}, confidence {:.2}",
            a.steps.period_ns.map_or_else(
                || "none".to_owned(),
                |p| format!("{:.3} ms", p as f64 / 1e6)
            ),
            a.steps.confidence
        ),
    )]
}

/// No steps in a recording of at least 1,000 samples (and no `--steps`).
fn no_steps(a: &Analysis) -> Vec<Hint> {
    if a.steps.count != 0 || a.run.samples < 1000 || a.steps.expected.is_some() {
        return Vec::new();
    }
    vec![hint(
        Severity::Info,
        "no training steps found",
        no_steps_evidence(a),
    )]
}

/// Samples per step, on the thread that runs the loop, below which step
/// detection rarely finds the period.
const SAMPLES_PER_STEP: u64 = 30;

/// Why no steps were found, and what to try: detection needs a few dozen
/// samples per step on the thread that runs the loop.
fn no_steps_evidence(a: &Analysis) -> String {
    let note = a
        .steps
        .note
        .clone()
        .unwrap_or_else(|| "no periodic structure found".to_owned());
    // What each stream said, when it said something else than the note.
    let streams: Vec<String> = a
        .steps
        .streams
        .iter()
        .filter_map(|s| {
            let said = match (&s.note, s.period_ns) {
                (Some(n), _) => n.clone(),
                (None, Some(p)) => format!(
                    "{} steps of {:.1} ms, not reported",
                    s.count,
                    p as f64 / 1e6
                ),
                (None, None) => "found none".to_owned(),
            };
            (said != note).then(|| format!("{}: {said}", s.stream))
        })
        .collect();
    let mut out = note;
    if !streams.is_empty() {
        out.push_str(&format!(" ({})", streams.join("; ")));
    }
    // Detection needs a few dozen samples per step on the loop's thread;
    // the step's length is unknown here, so say what rate that takes
    // rather than assume one.
    if let Some(hz) = a.run.frequency_hz.filter(|&hz| hz < 4000) {
        out.push_str(&format!(
            "; detection needs about {SAMPLES_PER_STEP} samples per step on the loop's thread: \
             at {hz} Hz, steps of at least {:.0} ms; if the job's steps are shorter, record with \
             a higher rate (sofa record -F 4999)",
            SAMPLES_PER_STEP as f64 * 1000.0 / hz as f64
        ));
    }
    if !a
        .steps
        .streams
        .iter()
        .any(|s| s.stream.starts_with("marker"))
    {
        out.push_str(
            "; a function or system call that runs once per step can mark them: \
             sofa analyze --step-marker NAME",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpuRow, ModuleRow, SyscallRow, SystemSummary, ThreadRow};

    fn function(name: &str, module: &str, self_samples: u64) -> crate::FunctionRow {
        crate::FunctionRow {
            name: name.into(),
            module: module.into(),
            self_samples,
            self_share: self_samples as f64 / 10_000.0,
            total_samples: self_samples,
            total_share: self_samples as f64 / 10_000.0,
        }
    }

    #[test]
    fn unnamed_code_fires_for_a_busy_library_without_names() {
        let mut a = quiet();
        a.functions = vec![
            function("0x7f8ff441de62", "libgomp.so.1", 800),
            function("0x7f8ff441e02a", "libgomp.so.1", 500),
            function("GOMP_parallel", "libgomp.so.1", 100),
        ];
        let h = unnamed_code(&a);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].evidence
                .starts_with("14% of samples are in libgomp.so.1, 93% of them"),
            "{}",
            h[0].evidence
        );
        // With the archive's word on where its names came from.
        a.modules = vec![ModuleRow {
            module: "libgomp.so.1".into(),
            self_samples: 1400,
            self_share: 0.14,
            symbols: Some("dynsym".into()),
        }];
        let h = unnamed_code(&a);
        assert!(
            h[0].evidence
                .contains("no symbol names (it has only its exported symbols, .dynsym): install"),
            "{}",
            h[0].evidence
        );
    }

    #[test]
    fn unnamed_code_is_quiet_for_named_rare_or_kernel_code() {
        let mut a = quiet();
        a.functions = vec![
            // Mostly named.
            function("0x7f00", "libc.so.6", 100),
            function("__memset_avx2_unaligned_erms", "libc.so.6", 900),
            // Unnamed but rare.
            function("0x7f01", "libfoo.so", 300),
            // Named elsewhere.
            function("0xffffffff81000000", "[kernel]", 2000),
            function("0x1234", "[jit]", 2000),
            function("0x7f1234", "anon", 2000),
        ];
        assert!(unnamed_code(&a).is_empty());
    }

    #[test]
    fn cut_short_stacks_suggest_unwinding_only_in_fp_mode() {
        let mut a = quiet();
        a.stacks.call_graph = "fp".into();
        a.stacks.incomplete_share = 0.19;
        assert!(incomplete_stacks(&a).is_empty());
        a.stacks.incomplete_share = 0.37;
        let h = incomplete_stacks(&a);
        assert!(h[0].evidence.starts_with("37% of samples"), "{h:?}");
        assert!(h[0].evidence.contains("--call-graph auto"));
        a.stacks.call_graph = "auto".into();
        assert!(incomplete_stacks(&a).is_empty());
    }

    fn python_thread(tid: u32, gil_held: Option<f64>) -> ThreadRow {
        ThreadRow {
            pid: 7,
            tid,
            comm: "python3".into(),
            samples: 100,
            share: 0.25,
            gil_held,
            wait_share: None,
            top_wait: None,
        }
    }

    #[test]
    fn gil_bound_fires_for_threads_taking_turns() {
        let mut a = quiet();
        a.threads = (1..=4).map(|t| python_thread(t, Some(0.24))).collect();
        let h = gil_bound(&a);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].evidence.starts_with("4 threads of process 7"),
            "{}",
            h[0].evidence
        );
        assert!(h[0].evidence.contains("96% of the time together"));
    }

    #[test]
    fn gil_bound_is_quiet_for_one_python_thread_or_a_free_gil() {
        let mut a = quiet();
        // One Python thread and native threads.
        a.threads = vec![python_thread(1, Some(0.9)), python_thread(2, None)];
        assert!(gil_bound(&a).is_empty());
        // Threads that mostly release the GIL (numpy, I/O).
        a.threads = (1..=4).map(|t| python_thread(t, Some(0.12))).collect();
        assert!(gil_bound(&a).is_empty());
    }

    /// A ten-second run of 10,000 samples in which every rule is quiet.
    fn quiet() -> Analysis {
        let mut a = Analysis::default();
        a.run.duration_ns = Some(10_000_000_000);
        a.run.samples = 10_000;
        a.run.frequency_hz = Some(999);
        a.steps.count = 100;
        a
    }

    fn titles(rule: Rule, a: &Analysis) -> Vec<String> {
        rule(a).into_iter().map(|h| h.title).collect()
    }

    fn syscall(name: &str, total_ms: u64) -> SyscallRow {
        SyscallRow {
            name: name.to_owned(),
            count: 10,
            errors: 0,
            total_ns: total_ms * 1_000_000,
            mean_ns: total_ms * 100_000,
            wall_share: 0.0,
        }
    }

    #[test]
    fn a_quiet_run_gets_no_hint() {
        assert_eq!(hints(&quiet()), vec![]);
    }

    #[test]
    fn lost_events_over_one_percent() {
        let mut a = quiet();
        a.run.lost_by_collector.insert("cpu".into(), 100); // 1.0 %: quiet
        a.run.tables.insert("syscalls".into(), 1000);
        a.run.lost_by_collector.insert("syscalls".into(), 21); // 1.04 %
        a.run.lost_by_collector.insert("future".into(), 9999); // unknown collector
        assert_eq!(titles(lost_events, &a), ["syscalls events were lost"]);
        a.run.lost_by_collector.insert("syscalls".into(), 20);
        assert!(lost_events(&a).is_empty());
    }

    #[test]
    fn cut_short_archives() {
        let mut a = quiet();
        assert!(cut_short(&a).is_empty());
        a.run.truncated = true;
        assert_eq!(titles(cut_short, &a), ["the archive was cut short"]);
    }

    #[test]
    fn idle_gpus() {
        let gpu = |idle| GpuRow {
            index: 0,
            name: "H200".into(),
            util_mean: Some(40.0),
            util_idle_share: Some(idle),
            mem_used_max_bytes: None,
            power_mean_w: None,
            energy_j: None,
            samples: 100,
        };
        let mut a = quiet();
        a.gpu = vec![gpu(0.3)];
        assert!(gpu_idle(&a).is_empty());
        a.gpu = vec![gpu(0.31)];
        let h = gpu_idle(&a);
        assert_eq!(h.len(), 1);
        assert!(h[0].evidence.contains("H200"), "{}", h[0].evidence);
    }

    #[test]
    fn io_bound_runs() {
        let mut a = quiet();
        a.syscalls = vec![syscall("read", 2_000), syscall("futex", 9_000)];
        assert!(io_bound(&a).is_empty(), "20 % in read, futex is no I/O");
        a.syscalls.push(syscall("write", 1_100));
        let h = io_bound(&a);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].evidence.starts_with("31% of wall time"),
            "{}",
            h[0].evidence
        );
        a.run.duration_ns = None;
        assert!(io_bound(&a).is_empty(), "no wall time, no share");
    }

    fn waits_of(threads: Vec<crate::ThreadWaits>) -> crate::WaitSummary {
        crate::WaitSummary {
            threads,
            ..Default::default()
        }
    }

    fn thread_waits(tid: u32, span_ms: u64, reasons: &[(&str, u64)]) -> crate::ThreadWaits {
        let by_reason: std::collections::BTreeMap<String, u64> = reasons
            .iter()
            .map(|(r, ms)| (r.to_string(), ms * 1_000_000))
            .collect();
        let wait_ns: u64 = by_reason.values().sum();
        crate::ThreadWaits {
            pid: 7,
            tid,
            comm: "python3".into(),
            span_ns: span_ms * 1_000_000,
            wait_ns,
            wait_share: wait_ns as f64 / (span_ms * 1_000_000) as f64,
            by_reason,
        }
    }

    #[test]
    fn input_bound_fires_when_the_loop_waits_for_batches() {
        let mut a = quiet();
        assert!(input_bound(&a).is_empty(), "no switches, no rule");
        let mut w = waits_of(vec![]);
        w.main = Some(crate::LoopWaits {
            pid: 7,
            tid: 7,
            from_ns: 0,
            to_ns: 1_000_000_000,
            in_steps: true,
            traced_ns: 1_000_000_000,
            input_ns: 99_000_000,
            input_in: Some("Queue.get".into()),
            ..Default::default()
        });
        a.waits = Some(w.clone());
        assert!(input_bound(&a).is_empty(), "9.9 %: quiet");
        w.main.as_mut().unwrap().input_ns = 400_000_000;
        a.waits = Some(w);
        a.steps.confidence = 0.1;
        let h = input_bound(&a);
        assert!(
            !h[0].evidence.contains("step"),
            "a doubtful period: {}",
            h[0].evidence
        );
        a.steps.confidence = 0.6;
        let h = input_bound(&a);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].evidence.contains("40% of the loop"),
            "{}",
            h[0].evidence
        );
        assert!(
            h[0].evidence.contains("4.0 ms of each 10.0 ms step"),
            "{}",
            h[0].evidence
        );
        assert!(h[0].evidence.contains("most in Queue.get"));
        assert!(h[0].evidence.contains("num_workers"));
    }

    #[test]
    fn gil_waits_name_each_thread_that_waits() {
        let mut a = quiet();
        a.waits = Some(waits_of(vec![
            thread_waits(1, 1000, &[("gil", 500)]),
            thread_waits(2, 1000, &[("gil", 490), ("preempted", 20)]),
            thread_waits(3, 1000, &[("gil", 90)]),
        ]));
        let h = gil_bound(&a);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].evidence.contains("2 threads of process 7"),
            "{}",
            h[0].evidence
        );
        assert!(h[0].evidence.contains("1 50%, 2 49%"), "{}", h[0].evidence);
        a.waits = Some(waits_of(vec![thread_waits(
            1,
            1000,
            &[("gil", 99), ("lock", 800)],
        )]));
        assert!(gil_bound(&a).is_empty());
        // A helper thread that waits 14 % of its time, in a process whose
        // main thread runs a second: under a fifth of the process's time.
        a.waits = Some(waits_of(vec![
            thread_waits(1, 1000, &[("pipe", 450)]),
            thread_waits(2, 900, &[("gil", 130)]),
        ]));
        assert!(gil_bound(&a).is_empty());
    }

    #[test]
    fn waiting_for_a_cpu_over_a_tenth_of_the_threads_time() {
        let mut a = quiet();
        a.waits = Some(waits_of(vec![
            thread_waits(1, 1000, &[("preempted", 150), ("sleep", 500)]),
            thread_waits(2, 1000, &[("preempted", 60)]),
        ]));
        let h = waits_for_cpu(&a);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].evidence.contains("10% of their time"),
            "{}",
            h[0].evidence
        );
        assert!(h[0].evidence.starts_with("runnable threads"));
        a.waits = Some(waits_of(vec![thread_waits(1, 1000, &[("preempted", 99)])]));
        assert!(waits_for_cpu(&a).is_empty());
    }

    #[test]
    fn waiting_for_disk_over_a_tenth_of_a_threads_time() {
        let mut a = quiet();
        a.waits = Some(waits_of(vec![thread_waits(1, 1000, &[("disk", 99)])]));
        assert!(waits_for_disk(&a).is_empty());
        a.waits = Some(waits_of(vec![thread_waits(1, 1000, &[("disk", 300)])]));
        let h = waits_for_disk(&a);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].evidence.contains("1 (python3) 30%"),
            "{}",
            h[0].evidence
        );
    }

    #[test]
    fn syscall_time_rules_yield_to_waits() {
        let mut a = quiet();
        a.syscalls = vec![syscall("read", 6_000), syscall("futex", 6_000)];
        a.threads = vec![python_thread(7, None)];
        a.threads[0].share = 0.9;
        assert_eq!(io_bound(&a).len(), 1);
        assert_eq!(serial_bottleneck(&a).len(), 1);
        a.waits = Some(waits_of(vec![]));
        assert!(io_bound(&a).is_empty());
        assert!(serial_bottleneck(&a).is_empty());
    }

    #[test]
    fn one_busy_thread_while_others_wait() {
        let thread = |share| ThreadRow {
            pid: 1,
            tid: 7,
            comm: "python".into(),
            samples: 100,
            share,
            gil_held: None,
            wait_share: None,
            top_wait: None,
        };
        let mut a = quiet();
        a.syscalls = vec![syscall("futex", 6_000)];
        a.threads = vec![thread(0.5)];
        assert!(serial_bottleneck(&a).is_empty());
        a.threads = vec![thread(0.8)];
        assert_eq!(serial_bottleneck(&a).len(), 1);
        a.syscalls = vec![syscall("futex", 5_000)];
        assert!(serial_bottleneck(&a).is_empty());
    }

    #[test]
    fn iowait_over_a_fifth() {
        let mut a = quiet();
        a.system = Some(SystemSummary {
            cpu_iowait: 0.2,
            ..SystemSummary::default()
        });
        assert!(iowait(&a).is_empty());
        a.system.as_mut().unwrap().cpu_iowait = 0.25;
        assert_eq!(titles(iowait, &a), ["CPUs wait for disk I/O"]);
    }

    #[test]
    fn kernel_heavy_profiles() {
        let module = |name: &str, share| ModuleRow {
            module: name.to_owned(),
            self_samples: 0,
            self_share: share,
            symbols: None,
        };
        let mut a = quiet();
        a.modules = vec![module("libtorch.so", 0.9), module("[kernel]", 0.1)];
        assert!(kernel_heavy(&a).is_empty());
        a.modules[1].self_share = 0.35;
        let h = kernel_heavy(&a);
        assert_eq!(h[0].severity, Severity::Info);
    }

    #[test]
    fn step_count_against_the_expected_one() {
        let mut a = quiet();
        a.steps.expected = Some(104); // 100 found: within 5 %
        assert!(step_count_differs(&a).is_empty());
        a.steps.expected = Some(110);
        assert_eq!(titles(step_count_differs, &a).len(), 1);
        // An expected count silences "no steps found".
        a.steps.count = 0;
        assert!(no_steps(&a).is_empty());
    }

    #[test]
    fn no_steps_in_a_long_enough_run() {
        let mut a = quiet();
        a.steps.count = 0;
        let h = no_steps(&a);
        assert!(h[0].evidence.contains("-F 4999"), "{}", h[0].evidence);
        // The step length is not known: no length is assumed.
        assert!(
            h[0].evidence.contains("at 999 Hz, steps of at least 30 ms"),
            "{}",
            h[0].evidence
        );
        assert!(h[0].evidence.contains("--step-marker NAME"));
        a.steps.streams = vec![crate::StreamEvidence {
            stream: "system calls".to_owned(),
            note: Some("too few system calls to look for steps".to_owned()),
            ..Default::default()
        }];
        assert!(
            no_steps(&a)[0]
                .evidence
                .contains("(system calls: too few system calls to look for steps)"),
            "{}",
            no_steps(&a)[0].evidence
        );
        a.run.frequency_hz = Some(4999);
        assert!(!no_steps(&a)[0].evidence.contains("-F 4999"));
        a.run.samples = 999;
        assert!(no_steps(&a).is_empty(), "too few samples to expect steps");
    }

    #[test]
    fn severities_serialize_as_before() {
        assert_eq!(
            serde_json::to_string(&Severity::Warning).unwrap(),
            "\"warning\""
        );
        assert_eq!(Severity::Info.to_string(), "info");
    }
}
