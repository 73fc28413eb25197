//! `sofa report` on generated archives of 10^5, 10^6 (and, with
//! SOFA_BENCH_MAX=10000000, 10^7) samples: time to analyse and render, and
//! the size of the HTML file (printed after each size, with peak memory).
//!
//! ```text
//! cargo bench --bench report_size
//! SOFA_BENCH_MAX=10000000 cargo bench --bench report_size
//! ```
//!
//! The archives are `sofa_trace::synthetic` ones with every collector (GPU,
//! network, syscalls, /proc counters), so every part of the report is drawn.

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
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    for n in [100_000u64, 1_000_000, 10_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        let dir = tempfile::tempdir().unwrap();
        Synthetic {
            samples: n,
            collectors: true,
            syscalls: None,
        }
        .write(dir.path())
        .unwrap();
        let mut bytes = 0;
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("{n}_samples"), |b| {
            b.iter(|| {
                let archive = Archive::open(dir.path()).unwrap();
                let report =
                    sofa_report::render(&archive, &sofa_analyze::Options::default()).unwrap();
                bytes = report.html.len();
                report
            })
        });
        eprintln!(
            "report {n} samples: {:.2} MiB of HTML, peak RSS so far {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0),
            peak_rss_mib()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
