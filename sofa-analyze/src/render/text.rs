//! `sofa analyze` in the terminal: one function per section, in [`SECTIONS`].

use super::table::{L, R, pct, seconds, section};
use crate::Analysis;
use sofa_trace::{CollectorName, StackEnd};
use std::fmt::Write;

/// A section: appends itself to the text (nothing when it has nothing to
/// show), with at most `limit` rows per table.
type Section = fn(&mut String, &Analysis, usize);

/// The sections, in the order they are printed.
const SECTIONS: &[Section] = &[
    header,
    collectors,
    tables,
    hints,
    steps,
    system,
    swarms,
    step_breakdown,
    processes,
    threads,
    waits,
    modules,
    gpus,
    network,
    syscalls,
    functions,
];

/// Renders the analysis as aligned plain-text tables, `limit` rows at most
/// per table.
pub fn render_text(analysis: &Analysis, limit: usize) -> String {
    let mut out = String::new();
    for section in SECTIONS {
        section(&mut out, analysis, limit);
    }
    out
}

/// The run: archive, command, host, status, duration, sampling, losses.
fn header(out: &mut String, analysis: &Analysis, _limit: usize) {
    let run = &analysis.run;
    let _ = writeln!(out, "archive    {}", run.archive);
    let _ = writeln!(out, "command    {}", run.command.join(" "));
    if !run.host.is_empty() {
        let _ = writeln!(out, "host       {} (kernel {})", run.host, run.kernel);
    }
    let status = if run.truncated {
        "CUT SHORT: the recorder did not finish; data ends at its last flush"
    } else {
        "complete"
    };
    let _ = writeln!(out, "status     {status}");
    let ended = match (run.exit_code, run.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "exit unknown".to_owned(),
    };
    let duration = run
        .duration_ns
        .map(seconds)
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "duration   {duration}, {ended}");
    if let (Some(event), Some(hz)) = (&run.sample_event, run.frequency_hz) {
        let _ = write!(out, "sampling   {event} at {hz} Hz");
        if let Some(note) = &run.sampling_note {
            let _ = write!(out, " ({note})");
        }
        out.push('\n');
    }
    let cpu_lost = run
        .lost_by_collector
        .get(CollectorName::Cpu.as_str())
        .copied()
        .unwrap_or(0);
    let lost_share = 100.0 * cpu_lost as f64 / (run.samples + cpu_lost).max(1) as f64;
    let _ = writeln!(
        out,
        "samples    {} ({cpu_lost} lost, {lost_share:.2}%)",
        run.samples
    );
    let other_lost: Vec<String> = run
        .lost_by_collector
        .iter()
        .filter(|(name, n)| **name != CollectorName::Cpu && **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !other_lost.is_empty() {
        let _ = writeln!(out, "lost       {}", other_lost.join(", "));
    }
    let stacks = &analysis.stacks;
    if let Some(root) = stacks.root_share {
        let share = |n: u64| 100.0 * n as f64 / stacks.unwound.max(1) as f64;
        let others: Vec<String> = stacks
            .ends
            .iter()
            .filter(|(end, _)| StackEnd::parse(end).is_none_or(|e| !e.reached_root()))
            .map(|(end, n)| format!("{end} {:.1}%", share(*n)))
            .collect();
        let _ = write!(
            out,
            "stacks     --call-graph {}: {:.1}% of samples unwound to their thread's root",
            stacks.call_graph,
            100.0 * root
        );
        let late = stacks.count(StackEnd::RootLate);
        if late > 0 {
            let _ = write!(
                out,
                " ({:.1}% through stack read from the live process after the sample)",
                share(late)
            );
        }
        if !others.is_empty() {
            let _ = write!(out, "; {}", others.join(", "));
        }
        out.push('\n');
    }
    if !analysis.phases.phases.is_empty() {
        let rows: Vec<String> = analysis
            .phases
            .phases
            .iter()
            .map(|p| format!("{} {:.1}%", p.name, 100.0 * p.share))
            .collect();
        let _ = writeln!(
            out,
            "phases     {} (of the main process's {} samples {})",
            rows.join(", "),
            analysis.phases.samples,
            if analysis.phases.in_loop {
                "in the steps"
            } else {
                "in the run"
            }
        );
    }
    if let Some(py) = &analysis.python {
        let share = 100.0 * py.merged as f64 / py.samples_of_python_threads.max(1) as f64;
        let _ = write!(
            out,
            "python     {} of {} samples of Python threads have Python frames ({share:.1}%)",
            py.merged, py.samples_of_python_threads
        );
        if py.without_snapshot > 0 {
            let _ = write!(
                out,
                "; {} had no Python snapshot within {:.1} ms",
                py.without_snapshot,
                py.window_ns as f64 / 1e6
            );
        }
        if py.trampolined > 0 {
            let _ = write!(
                out,
                "; {} named by CPython's perf trampolines",
                py.trampolined
            );
        }
        out.push('\n');
    }
}

/// What each collector did, or why it did not.
fn collectors(out: &mut String, analysis: &Analysis, _limit: usize) {
    let run = &analysis.run;
    if !run.collectors.is_empty() {
        out.push_str("\ncollectors\n");
        let width = run.collectors.keys().map(String::len).max().unwrap_or(0);
        for (name, c) in &run.collectors {
            let _ = write!(out, "  {name:<width$}  {}", c.status);
            if let Some(reason) = &c.reason {
                let _ = write!(out, ": {reason}");
            }
            out.push('\n');
        }
    }
}

/// Rows per table.
fn tables(out: &mut String, analysis: &Analysis, _limit: usize) {
    let run = &analysis.run;
    out.push_str("\ntables (rows)\n");
    let width = run.tables.keys().map(String::len).max().unwrap_or(0);
    for (name, rows) in &run.tables {
        let _ = writeln!(out, "  {name:<width$}  {rows:>12}");
    }
}

/// Likely bottlenecks with their evidence.
fn hints(out: &mut String, analysis: &Analysis, _limit: usize) {
    if !analysis.hints.is_empty() {
        out.push_str("\nhints\n");
        for h in &analysis.hints {
            let _ = writeln!(out, "  [{}] {}\n      {}", h.severity, h.title, h.evidence);
        }
    }
}

/// The training steps found, or why none were.
fn steps(out: &mut String, analysis: &Analysis, _limit: usize) {
    let steps = &analysis.steps;
    match steps.period_ns {
        Some(period) => {
            let _ = writeln!(
                out,
                "\nsteps      {} steps of {:.3} ms (jitter {}, confidence {:.2}), found by {}",
                steps.count,
                period as f64 / 1e6,
                steps
                    .period_cv
                    .map_or_else(|| "-".to_owned(), |cv| format!("{:.1}%", 100.0 * cv)),
                steps.confidence,
                steps.method.as_deref().unwrap_or("wall clock")
            );
            if let Some(expected) = steps.expected {
                let _ = writeln!(out, "           (expected {expected} steps)");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "\nsteps      {}",
                steps.note.as_deref().unwrap_or("none found")
            );
        }
    }
}

/// /proc counters: CPU time split, memory, disks, interfaces.
fn system(out: &mut String, analysis: &Analysis, limit: usize) {
    if let Some(sys) = &analysis.system {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let _ = writeln!(
            out,
            "\nsystem\n  cpu        {:.1}% user, {:.1}% system, {:.1}% iowait, {:.1}% idle, {:.1}% steal\n  \
             memory     {:.2} GiB used at peak of {:.2} GiB",
            100.0 * sys.cpu_user,
            100.0 * sys.cpu_system,
            100.0 * sys.cpu_iowait,
            100.0 * sys.cpu_idle,
            100.0 * sys.cpu_steal,
            gib(sys.mem_used_max_bytes),
            gib(sys.mem_total_bytes)
        );
        let mib = |b: u64| format!("{:.2}", b as f64 / (1u64 << 20) as f64);
        section(
            out,
            "disks",
            &[("device", L), ("read MiB", R), ("written MiB", R)],
            sys.disks
                .iter()
                .filter(|d| d.read_bytes + d.write_bytes > 0)
                .map(|d| vec![d.device.clone(), mib(d.read_bytes), mib(d.write_bytes)]),
            limit,
        );
        section(
            out,
            "network interfaces",
            &[
                ("device", L),
                ("rx MiB", R),
                ("tx MiB", R),
                ("rx pkts", R),
                ("tx pkts", R),
            ],
            sys.interfaces.iter().map(|n| {
                vec![
                    n.device.clone(),
                    mib(n.rx_bytes),
                    mib(n.tx_bytes),
                    n.rx_packets.to_string(),
                    n.tx_packets.to_string(),
                ]
            }),
            limit,
        );
    }
}

/// Functions that run together.
fn swarms(out: &mut String, analysis: &Analysis, limit: usize) {
    // Framework phases, where the job has any.
    let phases = analysis.swarms.iter().any(|s| s.phase.is_some());
    let mut columns = vec![
        ("id", R),
        ("share%", R),
        ("samples", R),
        ("span s", R),
        ("syscalls", R),
        ("syscall ms", R),
    ];
    if phases {
        columns.push(("phase", L));
    }
    columns.extend([("swarm", L), ("modules", L)]);
    section(
        out,
        "swarms (functions that run together)",
        &columns,
        analysis.swarms.iter().map(|s| {
            let mut row = vec![
                s.id.to_string(),
                pct(s.share),
                s.samples.to_string(),
                format!("{:.3}", s.end_ns.saturating_sub(s.start_ns) as f64 / 1e9),
                s.syscalls.to_string(),
                format!("{:.3}", s.syscall_ns as f64 / 1e6),
            ];
            if phases {
                row.push(match (&s.phase, s.phase_share) {
                    (Some(p), Some(share)) => format!("{p} {:.0}%", 100.0 * share),
                    _ => "-".to_owned(),
                });
            }
            row.extend([s.caption.clone(), s.modules.join(", ")]);
            row
        }),
        limit,
    );
}

/// What the first steps spent their time on.
fn step_breakdown(out: &mut String, analysis: &Analysis, limit: usize) {
    // The main thread's waits, where context switches were recorded.
    let waits = analysis
        .step_breakdown
        .iter()
        .any(|b| b.main_waits_ns.is_some());
    let mut columns = vec![
        ("step", R),
        ("ms", R),
        ("samples by swarm", L),
        ("syscall ms", R),
        ("io ms", R),
        ("gpu busy%", R),
        ("net KiB", R),
    ];
    if waits {
        columns.push(("main thread waits ms", L));
    }
    // Framework phases, where the loop's samples have any.
    let phases = analysis
        .step_breakdown
        .iter()
        .any(|b| b.samples_by_phase.is_some());
    if phases {
        columns.push(("samples by phase", L));
    }
    section(
        out,
        if waits {
            "steps (first ones): CPU samples per swarm, system call time, GPU, network, waits"
        } else {
            "steps (first ones): CPU samples per swarm, system call time, GPU, network"
        },
        &columns,
        analysis.step_breakdown.iter().map(|b| {
            let mut row = vec![
                b.step.to_string(),
                format!("{:.3}", b.duration_ns as f64 / 1e6),
                b.samples_by_swarm
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("/"),
                format!("{:.3}", b.syscall_ns as f64 / 1e6),
                format!("{:.3}", b.io_ns as f64 / 1e6),
                b.gpu_busy_share
                    .map_or_else(|| "-".to_owned(), |s| format!("{:.0}", 100.0 * s)),
                format!("{:.1}", b.net_bytes as f64 / 1024.0),
            ];
            if waits {
                row.push(b.main_waits_ns.as_ref().map_or_else(
                    || "-".to_owned(),
                    |by| {
                        let mut by: Vec<(&str, u64)> = by.iter().collect();
                        by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                        by.iter()
                            .take(2)
                            .map(|(r, ns)| format!("{r} {:.1}", *ns as f64 / 1e6))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ));
            }
            if phases {
                row.push(b.samples_by_phase.as_ref().map_or_else(
                    || "-".to_owned(),
                    |by| {
                        by.iter()
                            .filter(|(_, n)| *n > 0)
                            .map(|(phase, n)| format!("{phase} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ));
            }
            row
        }),
        limit.min(10),
    );
}

/// CPU samples per process.
fn processes(out: &mut String, analysis: &Analysis, limit: usize) {
    section(
        out,
        "processes",
        &[("share%", R), ("samples", R), ("pid", R), ("comm", L)],
        analysis.processes.iter().map(|p| {
            vec![
                pct(p.share),
                p.samples.to_string(),
                p.pid.to_string(),
                p.comm.clone(),
            ]
        }),
        limit,
    );
}

/// CPU samples per thread, when there are several.
/// With Python threads, the share of their snapshots holding the GIL.
fn threads(out: &mut String, analysis: &Analysis, limit: usize) {
    if analysis.threads.len() > 1 {
        let gil = analysis.threads.iter().any(|t| t.gil_held.is_some());
        let mut columns = vec![("share%", R), ("samples", R)];
        if gil {
            columns.push(("gil%", R));
        }
        columns.extend([("pid", R), ("tid", R), ("comm", L)]);
        section(
            out,
            "threads",
            &columns,
            analysis.threads.iter().map(|t| {
                let mut row = vec![pct(t.share), t.samples.to_string()];
                if gil {
                    row.push(t.gil_held.map_or_else(|| "-".to_owned(), pct));
                }
                row.extend([t.pid.to_string(), t.tid.to_string(), t.comm.clone()]);
                row
            }),
            limit,
        );
    }
}

/// Off-CPU time per thread and the stacks that waited longest.
fn waits(out: &mut String, analysis: &Analysis, limit: usize) {
    let Some(w) = &analysis.waits else {
        return;
    };
    let ms = |ns: u64| format!("{:.1}", ns as f64 / 1e6);
    if w.impossible > 0 {
        let _ = writeln!(
            out,
            "waits      {} left out: their thread was sampled running during them (a context-switch record was lost)",
            w.impossible
        );
    }
    if let Some(share) = w.traced_share {
        let _ = writeln!(
            out,
            "waits      switches came faster than --switch-rate: recorded {:.1}% of the time; \
             waits and shares are of that time",
            100.0 * share
        );
    }
    if w.own_stack_share < 0.99 {
        let _ = writeln!(
            out,
            "waits      {:.1}% of wait time had a stack of its own: threads switched faster than \
             stacks were taken, the others took their thread's nearest",
            100.0 * w.own_stack_share
        );
    }
    section(
        out,
        "waits: time off the CPU per thread (share of its first to last switch), by reason",
        &[
            ("wait%", R),
            ("wait ms", R),
            ("pid", R),
            ("tid", R),
            ("comm", L),
            ("reasons", L),
        ],
        w.threads.iter().map(|t| {
            let mut reasons: Vec<(&String, &u64)> = t.by_reason.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let reasons: Vec<String> = reasons
                .iter()
                .take(3)
                .map(|(r, ns)| format!("{r} {}", ms(**ns)))
                .collect();
            vec![
                pct(t.wait_share),
                ms(t.wait_ns),
                t.pid.to_string(),
                t.tid.to_string(),
                t.comm.clone(),
                reasons.join(", "),
            ]
        }),
        limit,
    );
    section(
        out,
        "where threads waited (innermost Python or user function)",
        &[
            ("wait ms", R),
            ("waits", R),
            ("reason", L),
            ("function", L),
            ("module", L),
        ],
        w.stacks.iter().map(|s| {
            vec![
                ms(s.wait_ns),
                s.waits.to_string(),
                s.reason.clone(),
                s.function.clone(),
                s.module.clone(),
            ]
        }),
        limit,
    );
    section(
        out,
        "locks threads slept on (futex words waited on by two or more threads)",
        &[
            ("wait%", R),
            ("wait ms", R),
            ("waits", R),
            ("pid", R),
            ("lock", L),
            ("threads", L),
            ("function", L),
        ],
        w.locks.iter().map(|l| {
            let tids: Vec<String> = l.tids.iter().map(u32::to_string).collect();
            vec![
                pct(l.share),
                ms(l.wait_ns),
                l.waits.to_string(),
                l.pid.to_string(),
                l.address.clone(),
                tids.join(" "),
                l.function.clone(),
            ]
        }),
        limit,
    );
}

/// Self time per module.
fn modules(out: &mut String, analysis: &Analysis, limit: usize) {
    section(
        out,
        "modules by self time",
        &[("self%", R), ("samples", R), ("symbols", L), ("module", L)],
        analysis.modules.iter().map(|m| {
            vec![
                pct(m.self_share),
                m.self_samples.to_string(),
                m.symbols.clone().unwrap_or_else(|| "-".to_owned()),
                m.module.clone(),
            ]
        }),
        limit,
    );
}

/// One row per GPU.
fn gpus(out: &mut String, analysis: &Analysis, limit: usize) {
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
    };
    section(
        out,
        "GPUs",
        &[
            ("gpu", R),
            ("name", L),
            ("util%", R),
            ("idle%", R),
            ("mem max GiB", R),
            ("power W", R),
            ("energy J", R),
        ],
        analysis.gpu.iter().map(|g| {
            vec![
                g.index.to_string(),
                g.name.clone(),
                opt(g.util_mean, 1),
                opt(g.util_idle_share.map(|s| 100.0 * s), 1),
                opt(
                    g.mem_used_max_bytes.map(|b| b as f64 / (1u64 << 30) as f64),
                    2,
                ),
                opt(g.power_mean_w, 1),
                opt(g.energy_j, 0),
            ]
        }),
        limit,
    );
}

/// Packets per interface, captured flows, host pairs.
fn network(out: &mut String, analysis: &Analysis, limit: usize) {
    if let Some(net) = &analysis.net {
        let mib = |b: f64| format!("{:.2}", b / (1u64 << 20) as f64);
        section(
            out,
            "network traffic (packets seen by the kernel, all processes)",
            &[
                ("interface", L),
                ("tx MiB", R),
                ("rx MiB", R),
                ("tx pkts", R),
                ("rx pkts", R),
                ("tx peak MiB/s", R),
                ("rx peak MiB/s", R),
            ],
            net.interfaces.iter().map(|i| {
                vec![
                    i.name.clone(),
                    mib(i.tx_bytes as f64),
                    mib(i.rx_bytes as f64),
                    i.tx_packets.to_string(),
                    i.rx_packets.to_string(),
                    mib(i.tx_peak_bytes_per_s),
                    mib(i.rx_peak_bytes_per_s),
                ]
            }),
            limit,
        );
        let endpoint = |addr: &str, port: Option<u32>| match port {
            Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
            Some(p) => format!("{addr}:{p}"),
            None => addr.to_owned(),
        };
        section(
            out,
            "flows (captured headers)",
            &[
                ("proto", L),
                ("source", L),
                ("destination", L),
                ("packets", R),
                ("MiB", R),
            ],
            net.flows.iter().map(|f| {
                vec![
                    f.protocol.clone(),
                    endpoint(&f.src, f.src_port),
                    endpoint(&f.dst, f.dst_port),
                    f.packets.to_string(),
                    mib(f.bytes as f64),
                ]
            }),
            limit,
        );
        section(
            out,
            "host to host",
            &[
                ("source", L),
                ("destination", L),
                ("packets", R),
                ("MiB", R),
            ],
            net.hosts.iter().map(|h| {
                vec![
                    h.src.clone(),
                    h.dst.clone(),
                    h.packets.to_string(),
                    mib(h.bytes as f64),
                ]
            }),
            limit,
        );
    }
}

/// System calls by time.
fn syscalls(out: &mut String, analysis: &Analysis, limit: usize) {
    let ms = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
    let title = match analysis.syscalls_traced_share {
        Some(share) => format!(
            "system calls by time (traced {:.1} % of the time, above --syscall-rate: \
             calls of the traced spans, wall% of their time; a call that outlasted one \
             has no time)",
            100.0 * share
        ),
        None => "system calls by time".to_owned(),
    };
    let left_out: Vec<String> = analysis
        .syscalls_left_out
        .iter()
        .map(|l| format!("{} left out after {:.2} s", l.name, l.after_s))
        .collect();
    let title = if left_out.is_empty() {
        title
    } else {
        format!(
            "{title} ({}: a spin loop's, above --syscall-rate)",
            left_out.join(", ")
        )
    };
    section(
        out,
        &title,
        &[
            ("syscall", L),
            ("count", R),
            ("errors", R),
            ("total ms", R),
            ("mean us", R),
            ("wall%", R),
        ],
        analysis.syscalls.iter().map(|s| {
            vec![
                s.name.clone(),
                s.count.to_string(),
                s.errors.to_string(),
                ms(s.total_ns),
                format!("{:.2}", s.mean_ns as f64 / 1e3),
                pct(s.wall_share),
            ]
        }),
        limit,
    );
}

/// The top functions by self time.
fn functions(out: &mut String, analysis: &Analysis, limit: usize) {
    section(
        out,
        "top functions",
        &[
            ("self%", R),
            ("total%", R),
            ("samples", R),
            ("function", L),
            ("module", L),
        ],
        analysis.functions.iter().map(|f| {
            vec![
                pct(f.self_share),
                pct(f.total_share),
                f.self_samples.to_string(),
                f.name.clone(),
                f.module.clone(),
            ]
        }),
        limit,
    );
}
