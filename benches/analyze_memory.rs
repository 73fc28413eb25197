//! `sofa analyze` on generated archives: peak memory and rows per second,
//! end to end (open, read every table, the whole analysis). The goal: ≤ 2
//! GB at 10^7 samples + 10^7 system calls, growing less than linearly
//! beyond, at ≥ 1 M rows/s.
//!
//! ```text
//! cargo bench --bench analyze_memory                              # 10^6 + 10^6
//! SOFA_BENCH_MAX=10000000 cargo bench --bench analyze_memory      # and 10^7 + 10^7
//! SOFA_BENCH_MAX=20000000 cargo bench --bench analyze_memory      # and 2 x 10^7 each
//! SOFA_BENCH_MAX=0 SOFA_BENCH_CALLS_MAX=40000000 cargo bench --bench analyze_memory
//! ```
//!
//! The first group has as many system calls as samples; the second
//! (`SOFA_BENCH_CALLS_MAX`) 10^6 samples and 10^7, 2 x 10^7 and 4 x 10^7
//! calls (up to the maximum): what calls alone add, as in a job that
//! makes a million small reads a second.
//!
//! Peak memory is the process's VmHWM over the analyses of a size, reset
//! after the archive's generation (`/proc/self/clear_refs`); where the
//! kernel cannot reset it, the peak so far (generation included) is
//! printed and said so. After two sizes or more, the growth between the
//! last two: memory per row added.

mod common;
use common::{peak_rss_mib, reset_peak_rss};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use sofa_trace::Archive;
use sofa_trace::synthetic::Synthetic;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Generates an archive of `samples` and `calls`, times its analysis and
/// prints the peak and, after an earlier size in `peaks`, the growth.
fn measure(
    group: &mut BenchmarkGroup<WallTime>,
    samples: u64,
    calls: u64,
    peaks: &mut Vec<(u64, f64)>,
) {
    let dir = tempfile::tempdir().unwrap();
    Synthetic {
        samples,
        collectors: true,
        syscalls: Some(calls),
    }
    .write(dir.path())
    .unwrap();
    eprintln!(
        "generated {samples} + {calls}: peak RSS so far {:.0} MiB",
        peak_rss_mib()
    );
    let reset = reset_peak_rss();
    let rows = samples + calls;
    group.throughput(Throughput::Elements(rows));
    group.bench_function(format!("{samples}_samples_{calls}_syscalls"), |b| {
        b.iter(|| {
            let archive = Archive::open(dir.path()).unwrap();
            let analysis = sofa_analyze::analyze(&archive).unwrap();
            assert_eq!(analysis.run.samples, samples);
            let counted: u64 = analysis.syscalls.iter().map(|s| s.count).sum();
            // The generator spaces calls evenly: as many as asked, give
            // or take its rounding.
            assert!(counted.abs_diff(calls) <= calls / 100, "{counted} {calls}");
            analysis
        })
    });
    let peak = peak_rss_mib();
    if reset {
        eprintln!("analyze {samples} + {calls}: peak RSS {peak:.0} MiB");
        if let Some(&(before_rows, before)) = peaks.last() {
            eprintln!(
                "  growth from {before_rows} rows: {:.1} bytes per row ({:.0} MiB for {} more rows)",
                (peak - before) * 1048576.0 / (rows - before_rows) as f64,
                peak - before,
                rows - before_rows
            );
        }
        peaks.push((rows, peak));
    } else {
        eprintln!(
            "analyze {samples} + {calls}: peak RSS so far {peak:.0} MiB (generation included)"
        );
    }
}

fn bench(c: &mut Criterion) {
    let max = env("SOFA_BENCH_MAX", 1_000_000);
    let mut group = c.benchmark_group("analyze_with_syscalls");
    group.sample_size(10);
    let mut peaks = Vec::new();
    for n in [1_000_000u64, 10_000_000, 20_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        measure(&mut group, n, n, &mut peaks);
    }
    group.finish();
    let calls_max = env("SOFA_BENCH_CALLS_MAX", 0);
    let mut group = c.benchmark_group("analyze_many_syscalls");
    group.sample_size(10);
    let mut peaks = Vec::new();
    for calls in [10_000_000u64, 20_000_000, 40_000_000]
        .into_iter()
        .filter(|&n| n <= calls_max)
    {
        measure(&mut group, 1_000_000, calls, &mut peaks);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
