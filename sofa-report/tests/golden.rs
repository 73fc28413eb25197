//! Golden test of the report's data part (the `sofa-data` JSON) for a
//! generated archive: the same archive must give the same bytes.
//! `SOFA_BLESS=1 cargo test -p sofa-report --test golden` rewrites the file
//! (pretty-printed: one value per line).

use sofa_trace::Archive;
use sofa_trace::synthetic::Synthetic;
use std::path::PathBuf;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/synthetic-data.json")
}

fn data_of_synthetic() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    Synthetic {
        samples: 4_000,
        collectors: true,
        syscalls: None,
    }
    .write(&path)
    .unwrap();
    let archive = Archive::open(&path).unwrap();
    let report = sofa_report::render(&archive, &sofa_analyze::Options::default()).unwrap();
    let data = sofa_report::data_part(&report.html).expect("the report has a data part");
    let mut value: serde_json::Value = serde_json::from_str(data).unwrap();
    // The temporary directory is the one thing that differs between runs.
    value["analysis"]["run"]["archive"] = "ARCHIVE".into();
    // One value per line: a change reads as a diff.
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[test]
fn data_part_matches_the_golden_file() {
    let data = data_of_synthetic();
    assert_eq!(
        data,
        data_of_synthetic(),
        "the data part is not deterministic"
    );
    sofa_trace::golden::assert_golden(&golden_path(), &data);
}

#[test]
fn partial_archive_has_no_collector_views() {
    let dir = tempfile::tempdir().unwrap();
    Synthetic {
        samples: 2_000,
        collectors: false,
        syscalls: None,
    }
    .write(dir.path())
    .unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let (analysis, views) =
        sofa_analyze::analyze_with_views(&archive, &sofa_analyze::Options::default()).unwrap();
    assert!(views.timeline.syscalls.is_none());
    assert!(views.timeline.net_tx_bytes.is_none());
    assert!(views.timeline.cpu.is_none());
    assert!(views.timeline.gpus.is_empty());
    assert_eq!(analysis.run.collectors["gpu"].status, "unavailable");
    // CPU views are there: every sample lands in a bin and in the flamegraph.
    let binned: u64 = views
        .timeline
        .swarm_samples
        .iter()
        .flatten()
        .map(|&n| u64::from(n))
        .sum();
    assert_eq!(binned, 2_000);
    assert_eq!(views.flamegraphs[0].samples, 2_000);
    let per_swarm: u64 = views.flamegraphs[1..].iter().map(|f| f.samples).sum();
    assert_eq!(per_swarm, 2_000);
    let marks: u64 = views.scatter.cells.iter().map(|c| u64::from(c[2])).sum();
    assert_eq!(marks, 2_000);
}
