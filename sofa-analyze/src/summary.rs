use crate::AnalyzeError;
use crate::breakdown::{StepBreakdown, step_breakdown};
use crate::fasthash::StackMap;
use crate::functions::{CallStacks, FunctionRow, Functions, ModuleRow, functions_of, modules};
use crate::gpu::{GpuRow, gpu_table};
use crate::hints::{Hint, hints};
use crate::labels::Labelled;
use crate::net::{NetSummary, Packets, net_summary};
use crate::overlap::add_overlaps;
use crate::python::GilByThread;
use crate::steps::{StepInputs, Steps, detect_steps};
use crate::swarms::{Swarm, find_swarms};
use crate::syscalls::{Calls, SyscallRow, syscall_table};
use crate::system::SystemSummary;
use crate::tasks::{Names, ProcessRow, ThreadRow, processes_and_threads};
use crate::views::Views;
use crate::waits::{Switches, WaitSummary};
use crate::{Sample, Samples};
use serde::Serialize;
use sofa_trace::CollectorName;
use sofa_trace::tables::{Binary, GpuCounter, StackEndRow, SystemCounter};
use sofa_trace::{Archive, CollectorState};
use std::collections::BTreeMap;

/// A system call left out of the tracing from `after_s` on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeftOut {
    pub name: String,
    /// Seconds into the recording.
    pub after_s: f64,
}

/// Everything `sofa analyze` prints; `--json` serializes it as is, so field
/// names are part of the interface scripts rely on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    pub run: RunSummary,
    pub functions: Vec<FunctionRow>,
    pub modules: Vec<ModuleRow>,
    pub processes: Vec<ProcessRow>,
    pub threads: Vec<ThreadRow>,
    /// Training steps found from how the sampled functions repeat.
    pub steps: Steps,
    /// Groups of functions that run together (phases of a step).
    pub swarms: Vec<Swarm>,
    /// What each step spent its time on.
    pub step_breakdown: Vec<StepBreakdown>,
    pub syscalls: Vec<SyscallRow>,
    /// Share of the recording in which system calls were traced, when they
    /// came too fast to trace them all (`--syscall-rate`); `syscalls`
    /// counts and times are then of the traced spans, and `wall_share` of
    /// their time. Absent when every call was traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_traced_share: Option<f64>,
    /// Calls left out of the tracing on their own, from some time on (a
    /// spin loop's `sched_yield` above `--syscall-rate`): their counts in
    /// `syscalls` are of the time before. Absent when none was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syscalls_left_out: Vec<LeftOut>,
    /// /proc counters; null when the system collector did not run.
    pub system: Option<SystemSummary>,
    /// One row per GPU that the gpu collector sampled.
    pub gpu: Vec<GpuRow>,
    /// Packets per interface; null when the net collector recorded none.
    pub net: Option<NetSummary>,
    /// How Python snapshots were merged into the stacks; null when the
    /// archive has none (not a Python job, or `--no-python`).
    pub python: Option<crate::PythonSummary>,
    /// How user call stacks were taken and, unwound, how they ended.
    pub stacks: crate::StackSummary,
    /// Where threads waited off the CPU; null without context switches
    /// (`--no-off-cpu`, archives before 1.5).
    pub waits: Option<WaitSummary>,
    /// CPU samples of the main process per framework phase (forward,
    /// backward, optimizer, data loading, communication, other); empty
    /// phases when no frame of a known framework was sampled.
    pub phases: crate::PhaseSummary,
    /// Thread pools busy-waiting (samples in their spin loops).
    pub spin: crate::SpinSummary,
    /// More of the job's threads runnable than CPUs; null without context
    /// switches.
    pub oversubscription: Option<crate::Oversubscription>,
    /// Likely bottlenecks, each with its evidence.
    pub hints: Vec<Hint>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub archive: String,
    pub command: Vec<String>,
    pub host: String,
    pub kernel: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ns: Option<u64>,
    /// Wall-clock start of the recording (ns since the Unix epoch).
    pub start_wall_ns: u64,
    pub sample_event: Option<String>,
    pub frequency_hz: Option<u64>,
    pub sampling_note: Option<String>,
    pub samples: u64,
    /// Lost events of all collectors.
    pub lost: u64,
    /// Lost events per collector (`cpu`, `syscalls`, `net`).
    pub lost_by_collector: BTreeMap<String, u64>,
    pub truncated: bool,
    pub collectors: BTreeMap<String, CollectorJson>,
    /// Rows per table, from the Parquet footers.
    pub tables: BTreeMap<String, u64>,
    /// Problems that did not stop the analysis (cut-short archive, ignored files).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectorJson {
    pub status: String,
    pub reason: Option<String>,
}

fn state_name(state: CollectorState) -> &'static str {
    match state {
        CollectorState::Ok => "ok",
        CollectorState::Unavailable => "unavailable",
        CollectorState::Disabled => "disabled",
        CollectorState::Failed => "failed",
    }
}

/// Choices the user can make about an analysis.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Number of swarms; `None` picks it by silhouette.
    pub swarms: Option<usize>,
    /// Known number of training steps, to check the detection against.
    pub expected_steps: Option<u64>,
    /// A system call or function (native or Python) that runs once per
    /// step: steps start at its first call or sample in each step
    /// (`--step-marker`).
    pub step_marker: Option<String>,
    /// Keep only the Python frames of stacks that have any (`--python-only`).
    pub python_only: bool,
}

/// What merging Python frames found: its summary and the GIL per thread.
type PythonMerge = (
    crate::PythonSummary,
    GilByThread,
    crate::steps::pyloop::MainThreads,
);

/// What analysis reads of the stacks: the samples and their stacks, Python
/// frames merged in, the switch-outs (their stacks merged the same way),
/// the Python merge, and how the stacks as recorded ended.
struct Sampled<'a> {
    samples: Samples<'a>,
    stacks: CallStacks,
    switches: Option<Switches>,
    python: Option<PythonMerge>,
    ends: crate::StackSummary,
}

/// The CPU samples and their stacks, Python frames merged in (and, with
/// `python_only`, native frames of Python stacks left out).
fn samples_and_stacks<'a>(
    archive: &'a Archive,
    options: &Options,
) -> Result<Sampled<'a>, AnalyzeError> {
    let mut samples = Samples::read(archive)?;
    let sampling = archive.meta().sampling.as_ref();
    let ends = crate::unwinding::summarize(
        sampling.and_then(|s| s.call_graph.as_deref()),
        sampling.and_then(|s| s.stack_bytes),
        &samples,
        &archive.read_table::<StackEndRow>()?,
    );
    let mut stacks = CallStacks::read(archive)?;
    let mut switches = Switches::read(archive)?;
    let outs: &mut [(Sample, u64)] = match &mut switches {
        Some(s) => &mut s.outs,
        None => &mut [],
    };
    let python = crate::python::merge(archive, &mut samples, outs, &mut stacks)?;
    if options.python_only {
        crate::python::python_only(&mut samples, &mut stacks)?;
    }
    Ok(Sampled {
        samples,
        stacks,
        switches,
        python,
        ends,
    })
}

/// Every sampled stack as a folded line (frames root first, separated by
/// `;`) with its number of samples, most first: what flamegraph tools
/// (inferno, flamegraph.pl, speedscope) read.
pub fn folded_stacks(
    archive: &Archive,
    options: &Options,
) -> Result<Vec<(String, u64)>, AnalyzeError> {
    let Sampled {
        samples, stacks, ..
    } = samples_and_stacks(archive, options)?;
    let per_stack = samples.tally().per_stack();
    let mut ids: Vec<Option<u64>> = per_stack.keys().copied().collect();
    ids.sort();
    let lines = crate::views::fold_stacks(&stacks, ids.into_iter());
    let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (stack, n) in per_stack {
        *counts.entry(lines[&stack].clone()).or_default() += n;
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Analyses an opened archive with default options.
pub fn analyze(archive: &Archive) -> Result<Analysis, AnalyzeError> {
    analyze_with(archive, &Options::default())
}

/// Analyses an opened archive.
pub fn analyze_with(archive: &Archive, options: &Options) -> Result<Analysis, AnalyzeError> {
    analyze_inner(archive, options, false).map(|(analysis, _)| analysis)
}

/// Analyses an opened archive and computes what the HTML report draws
/// (flamegraph stacks, timeline, scatter) from the same tables.
pub fn analyze_with_views(
    archive: &Archive,
    options: &Options,
) -> Result<(Analysis, Views), AnalyzeError> {
    let (analysis, views) = analyze_inner(archive, options, true)?;
    let views = views.expect("views are built when asked for");
    Ok((analysis, views))
}

fn analyze_inner(
    archive: &Archive,
    options: &Options,
    with_views: bool,
) -> Result<(Analysis, Option<Views>), AnalyzeError> {
    let meta = archive.meta();
    let mut tables = BTreeMap::new();
    for spec in sofa_trace::tables::all() {
        tables.insert(spec.name.to_owned(), archive.table_rows(spec.name)?);
    }
    let samples = tables.get("samples").copied().unwrap_or(0);
    let run = RunSummary {
        archive: archive.dir().display().to_string(),
        command: meta.command.clone(),
        host: meta.host.hostname.clone(),
        kernel: meta.host.kernel.clone(),
        exit_code: meta.exit.as_ref().and_then(|e| e.code),
        signal: meta.exit.as_ref().and_then(|e| e.signal),
        duration_ns: meta.duration_ns(),
        start_wall_ns: (i128::from(meta.clock.start_ns) + i128::from(meta.clock.realtime_offset_ns))
            .clamp(0, i128::from(u64::MAX)) as u64,
        sample_event: meta.sampling.as_ref().map(|s| s.event.clone()),
        frequency_hz: meta.sampling.as_ref().map(|s| s.frequency_hz),
        sampling_note: meta.sampling.as_ref().and_then(|s| s.fallback.clone()),
        samples,
        lost: meta.lost.values().sum(),
        lost_by_collector: meta.lost.clone(),
        truncated: archive.is_truncated(),
        collectors: meta
            .collectors
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    CollectorJson {
                        status: state_name(c.status).to_owned(),
                        reason: c.reason.clone(),
                    },
                )
            })
            .collect(),
        tables,
        warnings: archive.warnings().iter().map(|w| w.to_string()).collect(),
    };
    let Sampled {
        samples,
        stacks,
        mut switches,
        python,
        ends: mut stack_summary,
    } = samples_and_stacks(archive, options)?;
    stack_summary.incomplete_share = crate::views::incomplete_share(&stacks, &samples);
    let Functions {
        rows: functions,
        self_of_stack,
        user_chain_of_stack,
        python_of_stack,
    } = functions_of(&stacks, &samples);
    let names = Names::read(archive)?;
    let (processes, mut threads) = processes_and_threads(&names, &samples);
    let mut impossible = 0;
    // What the calls add up comes from one read; the passes that need
    // single calls read them again (`Calls::for_each`).
    let calls = Calls::read(archive)?;
    let wait_rows = switches.as_mut().map(|sw| {
        let mut rows = sw.waits(&stacks);
        impossible = crate::waits::drop_impossible(&mut rows, &samples)?;
        crate::waits::reasons_from_calls(&mut rows, &calls)?;
        Ok::<_, AnalyzeError>(rows)
    });
    let wait_rows = wait_rows.transpose()?;
    let mut waits = switches
        .as_ref()
        .zip(wait_rows.as_ref())
        .map(|(sw, rows)| crate::waits::summarize(rows, sw, &stacks, |tid| Some(names.of(tid))));
    if let Some(w) = &mut waits {
        w.impossible = impossible;
        // Of the recording: spans off may run to its end, after a
        // thread's last recorded switch.
        if let Some(sw) = switches.as_ref().filter(|sw| !sw.gaps.is_empty()) {
            let end = meta
                .end_ns
                .or_else(|| sw.gaps.spans().last().map(|g| g.1))
                .unwrap_or(0);
            w.traced_share = Some(
                sw.gaps
                    .traced_share(end.saturating_sub(meta.clock.start_ns)),
            );
        }
    }
    if let Some(w) = &waits {
        for t in &mut threads {
            if let Some(tw) = w
                .threads
                .iter()
                .find(|tw| tw.tid == t.tid && tw.pid == t.pid)
            {
                t.wait_share = Some(tw.wait_share);
                t.top_wait = tw
                    .by_reason
                    .iter()
                    .max_by_key(|(_, ns)| **ns)
                    .map(|(r, _)| r.clone());
            } else {
                t.wait_share = Some(0.0);
            }
        }
    }
    let (python, py_main_threads) = match python {
        Some((summary, gil, snapshots)) => (Some((summary, gil)), Some(snapshots)),
        None => (None, None),
    };
    let python = python.map(|(summary, gil)| {
        for t in &mut threads {
            if let Some(&(snapshots, held)) = gil.get(&(t.pid, t.tid)) {
                t.gil_held = Some(held as f64 / snapshots.max(1) as f64);
            }
        }
        summary
    });
    let labellings: Vec<&StackMap<usize>> = user_chain_of_stack
        .iter()
        .chain(std::iter::once(&python_of_stack))
        .collect();
    let packets = Packets::read(archive)?;
    let syscalls_ok = meta
        .collectors
        .get(CollectorName::Syscalls.as_str())
        .is_some_and(|c| c.status == CollectorState::Ok);
    let main_pid = processes.first().map(|p| p.pid);
    let main_threads: std::collections::HashSet<u32> = threads
        .iter()
        .filter(|t| Some(t.pid) == main_pid)
        .map(|t| t.tid)
        .collect();
    let calls_since = calls.complete_since(meta.clock.start_ns, meta.end_ns);
    // Likewise waits: those after the last gap in switch records, if most
    // of the recording.
    let all_recorded = crate::Gaps::default();
    let gaps = switches.as_ref().map_or(&all_recorded, |s| &s.gaps);
    let waits_since = wait_rows.as_ref().and_then(|rows| {
        let end = meta
            .end_ns
            .unwrap_or_else(|| rows.iter().map(|w| w.end_ns).max().unwrap_or(0));
        gaps.complete_since(meta.clock.start_ns, end)
    });
    let mut steps = detect_steps(&StepInputs {
        samples: &samples,
        self_of_stack: &self_of_stack,
        labellings: &labellings,
        pid: main_pid,
        // Calls traced in windows make no stream (the gaps would read as
        // steps of their own); after a burst at start-up they do.
        calls: (!calls.is_empty() && calls_since.is_some()).then_some(&calls),
        calls_since_ns: calls_since.unwrap_or(0),
        packets: (!packets.is_empty()).then_some(&packets),
        threads: &main_threads,
        waits: wait_rows.as_ref().zip(waits_since),
        py_loop: py_main_threads
            .as_ref()
            .zip(main_pid)
            .and_then(|(m, pid)| m.get(&pid))
            .map(Vec::as_slice),
        marker: options.step_marker.as_deref().map(|name| (name, &stacks)),
    })?;
    steps.expected = options.expected_steps;
    if let (Some(w), Some(rows)) = (&mut waits, &wait_rows) {
        w.locks = crate::waits::lock_rows(rows, &calls.futex_waits, &w.threads, &stacks);
    }
    if let (Some(w), Some(rows), Some(pid)) = (&mut waits, &wait_rows, main_pid) {
        let span = steps.span();
        let exec_ns = names.last_exec.get(&pid).copied().unwrap_or(0);
        w.main = crate::waits::loop_waits(rows, gaps, &stacks, (pid, pid), span, exec_ns);
    }
    let (mut swarms, swarm_of_function) =
        find_swarms(&samples, &self_of_stack, &functions, &steps, options.swarms)?;
    crate::swarms::name_python_functions(
        &mut swarms,
        &samples,
        &self_of_stack,
        &swarm_of_function,
        &python_of_stack,
        &functions,
    )?;
    let gpu_rows = archive.read_table::<GpuCounter>()?;
    let labelled = Labelled::new(
        &samples,
        &self_of_stack,
        &swarm_of_function,
        swarms.len(),
        &calls,
        syscalls_ok || !calls.is_empty(),
        &gpu_rows,
        &packets,
    );
    // Per step only where every switch of the step was recorded: a step
    // in a gap would show waits missing.
    let main_waits = wait_rows.as_ref().zip(main_pid);
    let mut step_breakdown = step_breakdown(&labelled, &steps.boundaries_ns, main_waits, gaps)?;
    add_overlaps(&mut swarms, &labelled)?;
    let syscalls = syscall_table(&calls, run.duration_ns);
    let syscalls_traced_share = (!calls.complete())
        .then(|| run.duration_ns.map(|d| calls.traced_share(d)))
        .flatten();
    let system = crate::system::system_summary(archive)?;
    let gpu = gpu_table(&gpu_rows, &archive.meta().gpus);
    let net = net_summary(&packets, run.duration_ns)?;
    let phases_of = crate::phases::phase_map(&samples, &stacks, main_pid)?;
    let phase_counts =
        crate::phases::count(&samples, &phases_of, steps.span(), &steps.boundaries_ns)?;
    let phases = crate::phases::phase_summary(&phase_counts);
    if !phases.phases.is_empty() {
        let per_swarm = crate::phases::per_swarm(
            &phase_counts,
            |stack| labelled.swarm_of(stack).map(|s| s.0),
            swarms.len(),
        );
        for (swarm, phase) in swarms.iter_mut().zip(per_swarm) {
            swarm.phase = phase.map(|(p, _)| p.name().to_owned());
            swarm.phase_share = phase.map(|(_, share)| share);
        }
        let per_step = crate::phases::per_step(phase_counts);
        for (row, by) in step_breakdown.iter_mut().zip(per_step) {
            row.samples_by_phase = Some(by);
        }
    }
    let mut analysis = Analysis {
        run,
        modules: modules(&functions, &archive.read_table::<Binary>()?),
        functions,
        processes,
        threads,
        steps,
        swarms,
        step_breakdown,
        syscalls,
        syscalls_traced_share,
        syscalls_left_out: calls
            .left_out
            .iter()
            .map(|(name, since)| LeftOut {
                name: name.clone(),
                after_s: since.saturating_sub(meta.clock.start_ns) as f64 / 1e9,
            })
            .collect(),
        system,
        gpu,
        net,
        python,
        stacks: stack_summary,
        waits,
        phases,
        spin: crate::spin::spin_summary(&samples, &stacks),
        oversubscription: crate::spin::oversubscription(
            &samples,
            wait_rows.as_ref(),
            meta.host.cpus,
        )?,
        hints: Vec::new(),
    };
    analysis.hints = hints(&analysis);
    let views = with_views
        .then(|| {
            // The report's timeline draws every counter: read them again.
            let system_rows = archive.read_table::<SystemCounter>()?;
            crate::views::build(
                archive,
                &labelled,
                &crate::views::Inputs {
                    function_names: analysis
                        .functions
                        .iter()
                        .map(|f| (f.name.as_str(), f.module.as_str()))
                        .collect(),
                    swarm_captions: analysis.swarms.iter().map(|s| s.caption.clone()).collect(),
                    system: &system_rows,
                    stacks: &stacks,
                    duration_ns: analysis.run.duration_ns,
                    waits: wait_rows.as_ref(),
                    untraced_waits: gaps,
                    period_ns: 1_000_000_000 / analysis.run.frequency_hz.unwrap_or(999).max(1),
                    thread_name: &|tid| names.of(tid),
                    phases: (!analysis.phases.phases.is_empty()).then_some(&phases_of),
                },
            )
        })
        .transpose()?;
    Ok((analysis, views))
}
