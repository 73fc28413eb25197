//! `sofa analyze` throughput on generated archives of 10^5, 10^6 (and, with
//! SOFA_BENCH_MAX=10000000, 10^7) samples, end to end: open the archive,
//! read every table, functions, processes, steps, swarms, hints.
//!
//! ```text
//! cargo bench --bench analyze_throughput
//! SOFA_BENCH_MAX=10000000 cargo bench --bench analyze_throughput
//! ```
//!
//! The archive imitates a training job: two threads, a loop of 40-sample
//! steps through five phases (each with its own functions and stack depths),
//! 400 frames with symbols. Peak memory (VmHWM) is printed after each size.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sofa_trace::tables::{Frame, Mapping, Sample, StackNode, Symbol, TaskEvent};
use sofa_trace::{Archive, ArchiveWriter, FlushPolicy, Meta, SamplingInfo};
use std::path::Path;
use std::time::Duration;

const FRAMES: u64 = 400;
const STACKS: u64 = 200;

fn generate(dir: &Path, samples: u64) {
    let mut meta = Meta::new(vec!["python".into(), "train.py".into()]);
    meta.sampling = Some(SamplingInfo {
        event: "cpu-clock".into(),
        frequency_hz: 999,
        fallback: None,
    });
    let policy = FlushPolicy {
        max_rows: 1 << 20,
        max_age: Duration::from_secs(3600),
    };
    let w = ArchiveWriter::create_with_policy(dir, meta, policy).unwrap();
    let mut t = w.table::<Mapping>().unwrap();
    t.push(Mapping {
        mapping_id: 0,
        pid: 100,
        time_ns: 0,
        start: 0x1000,
        end: 0x1000 + FRAMES * 0x100,
        pgoff: 0,
        path: "/usr/lib/libtrain.so".into(),
        build_id: None,
    })
    .unwrap();
    t.finish().unwrap();
    let mut t = w.table::<Frame>().unwrap();
    let mut s = w.table::<Symbol>().unwrap();
    for f in 0..FRAMES {
        t.push(Frame {
            frame_id: f,
            pid: 100,
            address: 0x1000 + f * 0x100,
            kind: "user".into(),
            mapping_id: Some(0),
            file_offset: Some(f * 0x100),
        })
        .unwrap();
        s.push(Symbol {
            frame_id: f,
            inline_depth: 0,
            function: format!("phase{}::function_{f}", f % 5),
            module: "libtrain.so".into(),
            file: Some("train.cc".into()),
            line: Some(f as u32),
        })
        .unwrap();
    }
    t.finish().unwrap();
    s.finish().unwrap();
    // Stacks: chains of up to 8 frames; stack i's leaf is frame i % FRAMES.
    let mut t = w.table::<StackNode>().unwrap();
    for i in 0..STACKS {
        t.push(StackNode {
            stack_id: i,
            parent_id: (i >= 5).then_some(i % 5),
            frame_id: (i * 7) % FRAMES,
        })
        .unwrap();
    }
    t.finish().unwrap();
    let mut t = w.table::<TaskEvent>().unwrap();
    t.push(TaskEvent {
        time_ns: 0,
        kind: "exec".into(),
        pid: 100,
        tid: 100,
        ppid: None,
        ptid: None,
        comm: Some("python3".into()),
    })
    .unwrap();
    t.finish().unwrap();
    let mut t = w.table::<Sample>().unwrap();
    let mut x = 0x9e3779b97f4a7c15u64;
    for i in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let step_pos = (i / 2) % 40; // two threads interleaved
        let phase = step_pos / 8;
        // Mostly the phase's own stacks, some noise.
        let stack = if x.is_multiple_of(10) {
            x % STACKS
        } else {
            phase + 5 * ((x >> 8) % (STACKS / 5))
        };
        t.push(Sample {
            time_ns: 1_000_000_000 + i * 500_000,
            pid: 100,
            tid: if i % 2 == 0 { 100 } else { 101 },
            cpu: (i % 2) as u32,
            stack_id: Some(stack),
            event: 0,
            period: 1_001_001,
        })
        .unwrap();
    }
    t.finish().unwrap();
    w.finish().unwrap();
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
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
