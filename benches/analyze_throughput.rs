//! `sofa analyze` throughput on generated archives of 10^5, 10^6 (and, with
//! SOFA_BENCH_MAX=10000000, 10^7) samples, end to end: open the archive,
//! read every table, functions, processes, steps, swarms, hints.
//!
//! ```text
//! cargo bench --bench analyze_throughput
//! SOFA_BENCH_MAX=10000000 cargo bench --bench analyze_throughput
//! ```
//!
//! The archive (`sofa_trace::synthetic`) imitates a training job: two
//! threads, a loop of 80-sample steps through five phases (each with its own
//! functions and stack depths), 400 frames with symbols. Peak memory (VmHWM)
//! is printed after each size.

mod common;
use common::peak_rss_mib;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sofa_trace::Archive;
use sofa_trace::synthetic::Synthetic;
use std::path::Path;

fn generate(dir: &Path, samples: u64) {
    Synthetic {
        samples,
        collectors: false,
        syscalls: None,
    }
    .write(dir)
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let max: u64 = std::env::var("SOFA_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10);
    for n in [100_000u64, 1_000_000, 10_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), n);
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("{n}_samples"), |b| {
            b.iter(|| {
                let archive = Archive::open(dir.path()).unwrap();
                let analysis = sofa_analyze::analyze(&archive).unwrap();
                assert_eq!(analysis.run.samples, n);
                analysis
            })
        });
        eprintln!(
            "analyze {n} samples: peak RSS so far {:.0} MiB",
            peak_rss_mib()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
