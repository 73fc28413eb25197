//! Rule-based hints: each names a likely bottleneck and the numbers behind it.

use crate::Analysis;
use serde::Serialize;
use sofa_trace::CollectorName;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hint {
    /// `warning` (likely costs time) or `info`.
    pub severity: String,
    pub title: String,
    pub evidence: String,
}

fn hint(severity: &str, title: &str, evidence: String) -> Hint {
    Hint {
        severity: severity.to_owned(),
        title: title.to_owned(),
        evidence,
    }
}

/// System calls that wait for data or space.
pub(crate) const IO_CALLS: &[&str] = &[
    "read",
    "pread64",
    "readv",
    "preadv",
    "preadv2",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "fsync",
    "fdatasync",
    "openat",
    "io_uring_enter",
    "io_getevents",
];

pub fn hints(a: &Analysis) -> Vec<Hint> {
    let mut out = Vec::new();
    let run = &a.run;
    let wall = run.duration_ns.unwrap_or(0) as f64;

    for (collector, &lost) in &run.lost_by_collector {
        // What the collector did record, in events.
        let Some(name) = CollectorName::parse(collector) else {
            continue;
        };
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
                "warning",
                &format!("{collector} events were lost"),
                format!(
                    "{lost} of {} {collector} events lost ({:.1}%); {advice}",
                    lost + recorded,
                    100.0 * share
                ),
            ));
        }
    }
    if run.truncated {
        out.push(hint(
            "warning",
            "the archive was cut short",
            "the recorder did not finish; everything after its last flush is missing".to_owned(),
        ));
    }

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
                "warning",
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

    if wall > 0.0 {
        let io_ns: u64 = a
            .syscalls
            .iter()
            .filter(|s| IO_CALLS.contains(&s.name.as_str()))
            .map(|s| s.total_ns)
            .sum();
        let io_share = io_ns as f64 / wall;
        if io_share > 0.3 {
            let top = a
                .syscalls
                .iter()
                .filter(|s| IO_CALLS.contains(&s.name.as_str()))
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
            out.push(hint(
                "warning",
                "I/O-bound: threads spend much of the run in read/write system calls",
                format!(
                    "{:.0}% of wall time inside I/O system calls ({top})",
                    100.0 * io_share
                ),
            ));
        }
        if let Some(futex) = a.syscalls.iter().find(|s| s.name == "futex")
            && futex.total_ns as f64 / wall > 0.5
            && a.threads.first().is_some_and(|t| t.share > 0.5)
        {
            let t = &a.threads[0];
            out.push(hint(
                "warning",
                "serial bottleneck or lock contention: one thread works while others wait",
                format!(
                    "thread {} ({}) has {:.0}% of CPU samples while threads spend {:.1} s in futex waits ({:.0}% of wall time, summed over threads)",
                    t.tid,
                    t.comm,
                    100.0 * t.share,
                    futex.total_ns as f64 / 1e9,
                    100.0 * futex.total_ns as f64 / wall
                ),
            ));
        }
    }

    if let Some(sys) = &a.system
        && sys.cpu_iowait > 0.2
    {
        out.push(hint(
            "warning",
            "CPUs wait for disk I/O",
            format!("{:.0}% of CPU time was iowait", 100.0 * sys.cpu_iowait),
        ));
    }
    if let Some(kernel) = a.modules.iter().find(|m| m.module == "[kernel]")
        && kernel.self_share > 0.3
    {
        out.push(hint(
            "info",
            "much of the CPU time is in the kernel",
            format!(
                "{:.0}% of samples are in kernel code; see the system call table and the kernel functions among the top functions",
                100.0 * kernel.self_share
            ),
        ));
    }
    if let Some(expected) = a.steps.expected {
        let found = a.steps.count;
        if found.abs_diff(expected) as f64 > 0.05 * expected as f64 {
            out.push(hint(
                "warning",
                "step count differs from the expected one",
                format!(
                    "found {found} steps, expected {expected} (--steps); period {}, confidence {:.2}",
                    a.steps
                        .period_ns
                        .map_or_else(|| "none".to_owned(), |p| format!("{:.3} ms", p as f64 / 1e6)),
                    a.steps.confidence
                ),
            ));
        }
    }
    if a.steps.count == 0 && run.samples >= 1000 && a.steps.expected.is_none() {
        out.push(hint(
            "info",
            "no training steps found",
            no_steps_evidence(a),
        ));
    }
    out
}

/// Why no steps were found, and what to try: detection needs a few dozen
/// samples per step on the thread that runs the loop.
fn no_steps_evidence(a: &Analysis) -> String {
    let note = a
        .steps
        .note
        .clone()
        .unwrap_or_else(|| "no periodic structure found".to_owned());
    match a.run.frequency_hz {
        Some(hz) if hz < 4000 => format!(
            "{note}; at {hz} Hz a 25 ms step holds about {} samples per thread: \
             for short steps record with a higher rate (sofa record -F 4999)",
            (hz as f64 * 0.025).round() as u64
        ),
        _ => note,
    }
}
