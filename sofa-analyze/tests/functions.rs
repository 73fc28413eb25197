use sofa_analyze::{analyze, render_text};
use sofa_trace::tables::{Frame, Mapping, Sample, StackNode, Symbol};
use sofa_trace::{Archive, ArchiveWriter, Meta, SamplingInfo};

fn sym(frame_id: u64, depth: u32, function: &str) -> Symbol {
    Symbol {
        frame_id,
        inline_depth: depth,
        function: function.into(),
        module: "app".into(),
        file: None,
        line: None,
    }
}

fn frame(frame_id: u64, address: u64) -> Frame {
    Frame {
        frame_id,
        pid: 10,
        address,
        kind: "user".into(),
        mapping_id: Some(1),
        file_offset: Some(address - 0x1000),
    }
}

fn node(stack_id: u64, parent_id: Option<u64>, frame_id: u64) -> StackNode {
    StackNode {
        stack_id,
        parent_id,
        frame_id,
    }
}

/// main -> a (60 samples), main -> b (30), main -> a -> [inlined helper] (5),
/// an unsymbolized address under main (4), and one sample without a stack.
fn write_archive(dir: &std::path::Path) {
    let mut meta = Meta::new(vec!["./app".into()]);
    meta.sampling = Some(SamplingInfo {
        event: "cpu-clock".into(),
        frequency_hz: 999,
        fallback: Some("no hardware PMU".into()),
        ..Default::default()
    });
    let w = ArchiveWriter::create(dir, meta).unwrap();
    let mut t = w.table::<Mapping>().unwrap();
    t.push(Mapping {
        mapping_id: 1,
        pid: 10,
        time_ns: 0,
        start: 0x1000,
        end: 0x9000,
        pgoff: 0,
        path: "/usr/bin/app".into(),
        build_id: None,
    })
    .unwrap();
    t.finish().unwrap();
    let mut t = w.table::<Frame>().unwrap();
    for (id, addr) in [
        (1, 0x1100),
        (2, 0x1200),
        (3, 0x1300),
        (4, 0x1400),
        (5, 0x1500),
    ] {
        t.push(frame(id, addr)).unwrap();
    }
    t.finish().unwrap();
    let mut t = w.table::<Symbol>().unwrap();
    for s in [
        sym(1, 0, "main"),
        sym(2, 0, "a"),
        sym(3, 0, "b"),
        sym(4, 0, "a"),
        sym(4, 1, "helper"),
    ] {
        t.push(s).unwrap();
    }
    t.finish().unwrap();
    let mut t = w.table::<StackNode>().unwrap();
    for n in [
        node(1, None, 1),
        node(2, Some(1), 2),
        node(3, Some(1), 3),
        node(4, Some(2), 4),
        node(5, Some(1), 5),
    ] {
        t.push(n).unwrap();
    }
    t.finish().unwrap();
    let mut t = w.table::<Sample>().unwrap();
    let mut time = 0;
    for (stack, n) in [
        (Some(2), 60),
        (Some(3), 30),
        (Some(4), 5),
        (Some(5), 4),
        (None, 1),
    ] {
        for _ in 0..n {
            time += 1_000_000;
            t.push(Sample {
                time_ns: time,
                pid: 10,
                tid: 10,
                cpu: 0,
                stack_id: stack,
                event: 0,
                period: 1_001_001,
            })
            .unwrap();
        }
    }
    t.finish().unwrap();
    w.finish().unwrap();
}

#[test]
fn self_and_total_shares_follow_the_stacks() {
    let dir = tempfile::tempdir().unwrap();
    write_archive(dir.path());
    let archive = Archive::open(dir.path()).unwrap();
    let analysis = analyze(&archive).unwrap();
    assert_eq!(analysis.run.samples, 100);
    assert_eq!(analysis.run.sample_event.as_deref(), Some("cpu-clock"));
    let get = |name: &str| {
        analysis
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing: {:?}", analysis.functions))
    };
    assert_eq!(analysis.functions[0].name, "a");
    assert_eq!(get("a").self_samples, 60);
    assert_eq!(get("a").total_samples, 65);
    assert_eq!(get("helper").self_samples, 5);
    assert_eq!(get("b").self_samples, 30);
    assert_eq!(get("main").self_samples, 0);
    assert_eq!(get("main").total_samples, 99);
    assert!((get("main").total_share - 0.99).abs() < 1e-9);
    assert!((get("b").self_share - 0.30).abs() < 1e-9);
    let raw = get("0x1500");
    assert_eq!((raw.self_samples, raw.module.as_str()), (4, "app"));
    assert_eq!(get("[unknown]").self_samples, 1);
    let self_sum: u64 = analysis.functions.iter().map(|f| f.self_samples).sum();
    assert_eq!(self_sum, 100, "every sample has exactly one self function");

    let text = render_text(&analysis, 20);
    assert!(
        text.contains("cpu-clock at 999 Hz (no hardware PMU)"),
        "{text}"
    );
    assert!(text.contains("status     complete"), "{text}");
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["run"]["samples"], 100);
    assert_eq!(json["functions"][0]["name"], "a");
    assert_eq!(json["functions"][0]["self_samples"], 60);
}
