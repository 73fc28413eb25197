//! The terminal rendering of an analysis.

use crate::Analysis;
use std::fmt::Write;

fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
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
    let lost_share = if run.samples + run.lost > 0 {
        100.0 * run.lost as f64 / (run.samples + run.lost) as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "samples    {} ({} lost, {lost_share:.2}%)",
        run.samples, run.lost
    );

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

    if !analysis.processes.is_empty() {
        let shown = &analysis.processes[..analysis.processes.len().min(limit)];
        let _ = writeln!(
            out,
            "\nprocesses ({} of {})\n  {:>6}  {:>9}  {:>8}  comm",
            shown.len(),
            analysis.processes.len(),
            "share%",
            "samples",
            "pid"
        );
        for p in shown {
            let _ = writeln!(
                out,
                "  {:>6.2}  {:>9}  {:>8}  {}",
                100.0 * p.share,
                p.samples,
                p.pid,
                p.comm
            );
        }
    }
    if analysis.threads.len() > 1 {
        let shown = &analysis.threads[..analysis.threads.len().min(limit)];
        let _ = writeln!(
            out,
            "\nthreads ({} of {})\n  {:>6}  {:>9}  {:>8}  {:>8}  comm",
            shown.len(),
            analysis.threads.len(),
            "share%",
            "samples",
            "pid",
            "tid"
        );
        for t in shown {
            let _ = writeln!(
                out,
                "  {:>6.2}  {:>9}  {:>8}  {:>8}  {}",
                100.0 * t.share,
                t.samples,
                t.pid,
                t.tid,
                t.comm
            );
        }
    }
    if !analysis.modules.is_empty() {
        let shown = &analysis.modules[..analysis.modules.len().min(limit)];
        let _ = writeln!(
            out,
            "\nmodules by self time ({} of {})\n  {:>6}  {:>9}  module",
            shown.len(),
            analysis.modules.len(),
            "self%",
            "samples"
        );
        for m in shown {
            let _ = writeln!(
                out,
                "  {:>6.2}  {:>9}  {}",
                100.0 * m.self_share,
                m.self_samples,
                m.module
            );
        }
    }

    if !analysis.functions.is_empty() {
        let shown = &analysis.functions[..analysis.functions.len().min(limit)];
        let name_w = shown
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(8)
            .clamp(8, 60);
        let _ = writeln!(
            out,
            "\ntop functions ({} of {})\n  {:>6}  {:>6}  {:>9}  {:<name_w$}  module",
            shown.len(),
            analysis.functions.len(),
            "self%",
            "total%",
            "samples",
            "function"
        );
        for f in shown {
            let name: String = if f.name.chars().count() > name_w {
                let cut: String = f.name.chars().take(name_w - 1).collect();
                cut + "…"
            } else {
                f.name.clone()
            };
            let _ = writeln!(
                out,
                "  {:>6.2}  {:>6.2}  {:>9}  {:<name_w$}  {}",
                100.0 * f.self_share,
                100.0 * f.total_share,
                f.self_samples,
                name,
                f.module
            );
        }
    }
    out
}
