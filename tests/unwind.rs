//! `--call-graph dwarf|auto`: user stacks unwound from copies with the
//! binaries' `.eh_frame`, through code built without frame pointers.

mod common;

use common::{analyze_json, assert_success, record_with};
use serde_json::Value;
use std::path::Path;

/// `nofp` (main -> outer_a -> middle_b -> leaf_work, -O2
/// -fomit-frame-pointer) recorded in `mode`; its folded stacks.
fn record_nofp(dir: &Path, mode: &str) -> (Value, Vec<(String, u64)>) {
    let fixture = common::hotspots().with_file_name("nofp");
    let archive = dir.join(mode);
    let out = record_with(
        &archive,
        &[
            "--no-syscalls",
            "--no-python",
            "--call-graph",
            mode,
            "--",
            fixture.to_str().unwrap(),
            "300",
        ],
    );
    assert_success(&out);
    let folded = dir.join(format!("{mode}.folded"));
    let out = common::sofa()
        .arg("analyze")
        .arg(&archive)
        .arg("--folded")
        .arg(&folded)
        .output()
        .unwrap();
    assert_success(&out);
    let lines = std::fs::read_to_string(&folded)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.to_owned(), n.parse().unwrap())
        })
        .collect();
    (analyze_json(&archive), lines)
}

/// Share of `leaf_work`'s samples whose stack has the whole chain to main.
fn whole_chain_share(lines: &[(String, u64)]) -> f64 {
    let leaf: Vec<&(String, u64)> = lines
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == "leaf_work"))
        .collect();
    let all: u64 = leaf.iter().map(|l| l.1).sum();
    assert!(all > 100, "few leaf_work samples: {lines:?}");
    let whole: u64 = leaf
        .iter()
        .filter(|(s, _)| s.contains("main;outer_a;middle_b;leaf_work"))
        .map(|l| l.1)
        .sum();
    whole as f64 / all as f64
}

#[test]
fn leaf_samples_have_their_whole_chain_with_dwarf_and_auto_not_fp() {
    let dir = tempfile::tempdir().unwrap();
    let (json, fp) = record_nofp(dir.path(), "fp");
    assert!(
        whole_chain_share(&fp) < 0.05,
        "frame pointers cannot cross -fomit-frame-pointer code: {fp:?}"
    );
    assert_eq!(json["stacks"]["call_graph"], "fp");
    for mode in ["dwarf", "auto"] {
        let (json, lines) = record_nofp(dir.path(), mode);
        let share = whole_chain_share(&lines);
        assert!(share > 0.95, "{mode}: {share} {lines:?}");
        let stacks = &json["stacks"];
        assert_eq!(stacks["call_graph"], mode);
        assert_eq!(stacks["stack_bytes"], 65528);
        let root = stacks["root_share"].as_f64().unwrap();
        assert!(root > 0.95, "{mode}: {stacks}");
        // The chain goes on above main, to the process's entry point.
        assert!(lines[0].0.starts_with("_start;"), "{mode}: {:?}", lines[0]);
    }
}

#[test]
fn a_bad_stack_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_with(
        &dir.path().join("a"),
        &[
            "--call-graph",
            "dwarf",
            "--stack-size",
            "100000",
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--stack-size"), "{err}");
}
