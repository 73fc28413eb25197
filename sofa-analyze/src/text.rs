//! The terminal rendering of an analysis.

use crate::Analysis;
use sofa_trace::CollectorName;
use std::fmt::Write;

fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    L,
    R,
}
use Align::{L, R};

/// Cells longer than this are cut with an ellipsis (long C++ names).
const MAX_CELL: usize = 60;

/// Appends a titled, column-aligned table of at most `limit` of `rows`
/// (nothing when there are none), saying how many were left out.
fn section(
    out: &mut String,
    title: &str,
    columns: &[(&str, Align)],
    rows: impl Iterator<Item = Vec<String>>,
    limit: usize,
) {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let shown: Vec<Vec<String>> = rows
        .iter()
        .take(limit)
        .map(|row| {
            row.iter()
                .map(|cell| {
                    if cell.chars().count() > MAX_CELL {
                        cell.chars().take(MAX_CELL - 1).chain(['…']).collect()
                    } else {
                        cell.clone()
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            shown
                .iter()
                .map(|row| row[i].chars().count())
                .chain([name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = writeln!(out, "\n{title} ({} of {})", shown.len(), rows.len());
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            text.push(' ');
            match columns[i].1 {
                R => text.extend(std::iter::repeat_n(' ', pad).chain(cell.chars())),
                L => text.extend(cell.chars().chain(std::iter::repeat_n(' ', pad))),
            }
            text.push(' ');
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(columns.iter().map(|(name, _)| *name).collect());
    for row in &shown {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Renders the analysis as aligned plain-text tables, `limit` functions at most.
pub fn render_text(analysis: &Analysis, limit: usize) -> String {
    let run = &analysis.run;
    let mut out = String::new();
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

    out.push_str("\ntables (rows)\n");
    let width = run.tables.keys().map(String::len).max().unwrap_or(0);
    for (name, rows) in &run.tables {
        let _ = writeln!(out, "  {name:<width$}  {rows:>12}");
    }

    let pct = |share: f64| format!("{:.2}", 100.0 * share);
    if !analysis.hints.is_empty() {
        out.push_str("\nhints\n");
        for h in &analysis.hints {
            let _ = writeln!(out, "  [{}] {}\n      {}", h.severity, h.title, h.evidence);
        }
    }
    let steps = &analysis.steps;
    match steps.period_ns {
        Some(period) => {
            let _ = writeln!(
                out,
                "\nsteps      {} steps of {:.3} ms (jitter {}, confidence {:.2}), found from repeating functions",
                steps.count,
                period as f64 / 1e6,
                steps
                    .period_cv
                    .map_or_else(|| "-".to_owned(), |cv| format!("{:.1}%", 100.0 * cv)),
                steps.confidence
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
            &mut out,
            "disks",
            &[("device", L), ("read MiB", R), ("written MiB", R)],
            sys.disks
                .iter()
                .filter(|d| d.read_bytes + d.write_bytes > 0)
                .map(|d| vec![d.device.clone(), mib(d.read_bytes), mib(d.write_bytes)]),
            limit,
        );
        section(
            &mut out,
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
    section(
        &mut out,
        "swarms (functions that run together)",
        &[
            ("id", R),
            ("share%", R),
            ("samples", R),
            ("span s", R),
            ("syscalls", R),
            ("syscall ms", R),
            ("swarm", L),
            ("modules", L),
        ],
        analysis.swarms.iter().map(|s| {
            vec![
                s.id.to_string(),
                pct(s.share),
                s.samples.to_string(),
                format!("{:.3}", s.end_ns.saturating_sub(s.start_ns) as f64 / 1e9),
                s.syscalls.to_string(),
                format!("{:.3}", s.syscall_ns as f64 / 1e6),
                s.caption.clone(),
                s.modules.join(", "),
            ]
        }),
        limit,
    );
    section(
        &mut out,
        "steps (first ones): CPU samples per swarm, system call time, GPU, network",
        &[
            ("step", R),
            ("ms", R),
            ("samples by swarm", L),
            ("syscall ms", R),
            ("io ms", R),
            ("gpu busy%", R),
            ("net KiB", R),
        ],
        analysis.step_breakdown.iter().map(|b| {
            vec![
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
            ]
        }),
        limit.min(10),
    );
    section(
        &mut out,
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
    if analysis.threads.len() > 1 {
        section(
            &mut out,
            "threads",
            &[
                ("share%", R),
                ("samples", R),
                ("pid", R),
                ("tid", R),
                ("comm", L),
            ],
            analysis.threads.iter().map(|t| {
                vec![
                    pct(t.share),
                    t.samples.to_string(),
                    t.pid.to_string(),
                    t.tid.to_string(),
                    t.comm.clone(),
                ]
            }),
            limit,
        );
    }
    section(
        &mut out,
        "modules by self time",
        &[("self%", R), ("samples", R), ("module", L)],
        analysis.modules.iter().map(|m| {
            vec![
                pct(m.self_share),
                m.self_samples.to_string(),
                m.module.clone(),
            ]
        }),
        limit,
    );
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
    };
    section(
        &mut out,
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
    if let Some(net) = &analysis.net {
        let mib = |b: f64| format!("{:.2}", b / (1u64 << 20) as f64);
        section(
            &mut out,
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
            &mut out,
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
            &mut out,
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
    let ms = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
    section(
        &mut out,
        "system calls by time",
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
    section(
        &mut out,
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
    out
}

/// Renders several archives: the ranks lined up on the wall clock, the
/// merged function table, then each archive on its own.
pub fn render_multi_text(multi: &crate::MultiAnalysis, limit: usize) -> String {
    let mut out = String::new();
    let ms =
        |ns: Option<u64>| ns.map_or_else(|| "-".to_owned(), |n| format!("{:.3}", n as f64 / 1e6));
    section(
        &mut out,
        "archives on the wall clock",
        &[
            ("archive", L),
            ("host", L),
            ("start +ms", R),
            ("duration ms", R),
            ("samples", R),
            ("steps", R),
            ("step ms", R),
            ("top function", L),
        ],
        multi.ranks.iter().map(|r| {
            vec![
                r.archive.clone(),
                r.host.clone(),
                ms(Some(r.offset_ns)),
                ms(r.duration_ns),
                r.samples.to_string(),
                r.steps.to_string(),
                ms(r.period_ns),
                r.top_function.clone().unwrap_or_default(),
            ]
        }),
        limit,
    );
    let mut columns: Vec<(String, Align)> = vec![("function".into(), L), ("module".into(), L)];
    columns.extend((0..multi.ranks.len()).map(|i| (format!("self% #{i}"), R)));
    let columns_ref: Vec<(&str, Align)> = columns.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    section(
        &mut out,
        "functions across archives",
        &columns_ref,
        multi.functions.iter().map(|f| {
            let mut row = vec![f.name.clone(), f.module.clone()];
            row.extend(
                f.self_share_by_archive
                    .iter()
                    .map(|s| format!("{:.2}", 100.0 * s)),
            );
            row
        }),
        limit,
    );
    for (i, a) in multi.archives.iter().enumerate() {
        let _ = writeln!(out, "\n== #{i} {} ==", a.run.archive);
        out.push_str(&render_text(a, limit));
    }
    out
}
