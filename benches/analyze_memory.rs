//! `sofa analyze` on archives with as many system calls as samples: peak
//! memory and rows per second, end to end (open, read every table, the
//! whole analysis). The goal: ≤ 2 GB at 10^7 samples + 10^7 system calls,
//! growing less than linearly beyond, at ≥ 1 M rows/s.
//!
//! ```text
//! cargo bench --bench analyze_memory                              # 10^6 + 10^6
//! SOFA_BENCH_MAX=10000000 cargo bench --bench analyze_memory      # and 10^7 + 10^7
//! ```
//!
//! Peak memory is the process's VmHWM after the analyses of a size (the
//! archive's generation before it, in the same process, is printed too:
//! the analysis's peak is the larger).

mod common;
use common::peak_rss_mib;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sofa_trace::Archive;
use sofa_trace::synthetic::Synthetic;

fn bench(c: &mut Criterion) {
    let max: u64 = std::env::var("SOFA_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut group = c.benchmark_group("analyze_with_syscalls");
    group.sample_size(10);
    for n in [1_000_000u64, 10_000_000].into_iter().filter(|&n| n <= max) {
        let dir = tempfile::tempdir().unwrap();
        Synthetic {
            samples: n,
            collectors: true,
            syscalls: Some(n),
        }
        .write(dir.path())
        .unwrap();
        eprintln!(
            "generated {n} + {n}: peak RSS so far {:.0} MiB",
            peak_rss_mib()
        );
        group.throughput(Throughput::Elements(2 * n));
        group.bench_function(format!("{n}_samples_{n}_syscalls"), |b| {
            b.iter(|| {
                let archive = Archive::open(dir.path()).unwrap();
                let analysis = sofa_analyze::analyze(&archive).unwrap();
                assert_eq!(analysis.run.samples, n);
                assert_eq!(analysis.syscalls.iter().map(|s| s.count).sum::<u64>(), n);
                analysis
            })
        });
        eprintln!(
            "analyze {n} + {n}: peak RSS so far {:.0} MiB",
            peak_rss_mib()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
