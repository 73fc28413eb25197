//! `sofa analyze` on archives with as many system calls as samples: peak
//! memory and rows per second, end to end (open, read every table, the
//! whole analysis). The goal: ≤ 2 GB at 10^7 samples + 10^7 system calls,
//! growing less than linearly beyond, at ≥ 1 M rows/s.
//!
//! ```text
//! cargo bench --bench analyze_memory                              # 10^6 + 10^6
//! SOFA_BENCH_MAX=10000000 cargo bench --bench analyze_memory      # and 10^7 + 10^7
//! SOFA_BENCH_MAX=20000000 cargo bench --bench analyze_memory      # and 2 x 10^7 each
//! ```
//!
//! Peak memory is the process's VmHWM over the analyses of a size, reset
//! after the archive's generation (`/proc/self/clear_refs`); where the
//! kernel cannot reset it, the peak so far (generation included) is
//! printed and said so. After two sizes or more, the growth between the
//! last two: memory per row added.

mod common;
use common::{peak_rss_mib, reset_peak_rss};
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
    let mut peaks: Vec<(u64, f64)> = Vec::new();
    for n in [1_000_000u64, 10_000_000, 20_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
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
        let reset = reset_peak_rss();
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
        let peak = peak_rss_mib();
        if reset {
            eprintln!("analyze {n} + {n}: peak RSS {peak:.0} MiB");
            if let Some(&(m, before)) = peaks.last() {
                eprintln!(
                    "  growth from {m} + {m}: {:.1} bytes per row ({:.0} MiB for {} more rows)",
                    (peak - before) * 1048576.0 / (2 * (n - m)) as f64,
                    peak - before,
                    2 * (n - m)
                );
            }
            peaks.push((n, peak));
        } else {
            eprintln!("analyze {n} + {n}: peak RSS so far {peak:.0} MiB (generation included)");
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
