use sofa_analyze::{analyze, render_text};
use sofa_trace::tables::GpuCounter;
use sofa_trace::{Archive, ArchiveWriter, GpuInfo, Meta, Table};

#[test]
fn gpu_summary_means_idle_share_and_energy() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = Meta::new(vec!["train".into()]);
    meta.gpus = vec![GpuInfo {
        index: 0,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: None,
        memory_bytes: Some(80 << 30),
    }];
    meta.lost.insert("cpu".into(), 25);
    let w = ArchiveWriter::create(dir.path(), meta).unwrap();
    let mut t = w.table::<GpuCounter>().unwrap();
    // 0.5 s apart: util 0, 100, 100, 0; power 100 W then 300 W then 300 W, 100 W.
    for (i, (util, power)) in [(0.0, 100.0), (100.0, 300.0), (100.0, 300.0), (0.0, 100.0)]
        .into_iter()
        .enumerate()
    {
        let mut row = GpuCounter::example(1);
        row.time_ns = i as u64 * 500_000_000;
        row.gpu = 0;
        row.util_gpu = Some(util);
        row.power_w = Some(power);
        row.mem_used_bytes = Some((i as u64 + 1) << 30);
        t.push(row).unwrap();
    }
    t.finish().unwrap();
    w.finish().unwrap();
    let analysis = analyze(&Archive::open(dir.path()).unwrap()).unwrap();
    assert_eq!(analysis.gpu.len(), 1);
    let g = &analysis.gpu[0];
    assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(g.util_mean, Some(50.0));
    assert_eq!(g.util_idle_share, Some(0.5));
    assert_eq!(g.mem_used_max_bytes, Some(4 << 30));
    assert_eq!(g.power_mean_w, Some(200.0));
    // Trapezoids: 0.5*(100+300)/2 + 0.5*300 + 0.5*(300+100)/2 = 100 + 150 + 100.
    assert!((g.energy_j.unwrap() - 350.0).abs() < 1e-9);
    let json = serde_json::to_value(&analysis).unwrap();
    for key in [
        "index",
        "name",
        "util_mean",
        "util_idle_share",
        "mem_used_max_bytes",
        "power_mean_w",
        "energy_j",
    ] {
        assert!(json["gpu"][0].get(key).is_some(), "{key}");
    }
    assert!(render_text(&analysis, 10).contains("NVIDIA H100 80GB HBM3"));

    // The idle GPU and the lost CPU samples each give a hint with numbers.
    let titles: Vec<&str> = analysis.hints.iter().map(|h| h.title.as_str()).collect();
    let gpu_hint = analysis
        .hints
        .iter()
        .find(|h| h.title.starts_with("GPU idle"))
        .unwrap_or_else(|| panic!("{titles:?}"));
    assert_eq!(gpu_hint.severity, sofa_analyze::Severity::Warning);
    assert!(
        gpu_hint.evidence.contains("idle in 50% of samples"),
        "{}",
        gpu_hint.evidence
    );
    let lost = analysis
        .hints
        .iter()
        .find(|h| h.title == "cpu events were lost")
        .unwrap_or_else(|| panic!("{titles:?}"));
    assert!(
        lost.evidence.starts_with("25 of 25 cpu events lost"),
        "{}",
        lost.evidence
    );
    assert!(json["hints"][0].get("evidence").is_some());
}

#[test]
fn export_writes_every_table_as_csv_and_parquet() {
    use sofa_trace::polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let mut meta = Meta::new(vec!["train".into()]);
    meta.gpus.clear();
    let w = ArchiveWriter::create(dir.path().join("a"), meta).unwrap();
    let mut t = w.table::<GpuCounter>().unwrap();
    for i in 0..3u64 {
        let mut row = GpuCounter::example(1);
        row.time_ns = i * 1_000_000;
        row.gpu = 0;
        row.util_gpu = Some(10.0 * i as f64);
        t.push(row).unwrap();
    }
    t.finish().unwrap();
    w.finish().unwrap();
    let analysis = analyze(&Archive::open(dir.path().join("a")).unwrap()).unwrap();
    let out = dir.path().join("export");
    let written = sofa_analyze::export(&analysis, &out).unwrap();
    assert!(
        written.contains(&"swarms") && written.contains(&"steps") && written.contains(&"hints")
    );
    for name in &written {
        assert!(out.join(format!("{name}.csv")).is_file(), "{name}.csv");
        assert!(
            out.join(format!("{name}.parquet")).is_file(),
            "{name}.parquet"
        );
    }
    let csv = std::fs::read_to_string(out.join("gpu.csv")).unwrap();
    assert!(csv.starts_with("index,name,util_mean,"), "{csv}");
    assert!(csv.contains("GPU 0"), "{csv}");
    let frame = ParquetReader::new(std::fs::File::open(out.join("gpu.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(frame.height(), 1);
    assert_eq!(
        frame.column("util_mean").unwrap().f64().unwrap().get(0),
        Some(10.0)
    );
    assert_eq!(
        frame.column("samples").unwrap().i64().unwrap().get(0),
        Some(3)
    );
}
