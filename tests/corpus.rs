//! The fast part of the step-detection corpus (`fixtures/training/`): the
//! entries that need numpy alone, recorded with default settings. The whole
//! corpus (PyTorch, scikit-learn, JAX; several recordings each, a table) is
//! `scripts/step-corpus.py`, outside CI. Its own test binary, so no other
//! recording competes for the two CPUs while these run.

mod common;

use common::{alone, analyze_json, assert_success, python, root, sofa};
use std::path::Path;

/// What the entry printed (steps, mean step ms) and what sofa found (steps,
/// period ms, the steps JSON).
struct Outcome {
    true_steps: u64,
    true_ms: f64,
    steps: u64,
    period_ms: f64,
    json: serde_json::Value,
}

fn record(script: &str, args: &[&str], archive: &Path) -> Outcome {
    let out = sofa()
        .arg("record")
        .arg("-o")
        .arg(archive)
        .args(["--", &python()])
        .arg(root().join("fixtures/training").join(script))
        .args(args)
        .output()
        .unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let truth = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sofa-corpus "))
        .unwrap_or_else(|| panic!("{script} printed no truth line: {stderr}"));
    let field = |name: &str| -> f64 {
        truth
            .split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {truth}"))
    };
    let json = analyze_json(archive)["steps"].clone();
    Outcome {
        true_steps: field("steps") as u64,
        true_ms: field("step_ms"),
        steps: json["count"].as_u64().unwrap(),
        period_ms: json["period_ns"].as_u64().unwrap_or(0) as f64 / 1e6,
        json,
    }
}

/// Count and period within 5 % (the corpus target) in one of three
/// recordings: the target is 90 % of recordings, and this VM's two CPUs
/// are noisy (the corpus table in docs/performance.md has the rates).
fn loop_is_found(script: &str) {
    loop_is_found_by(script, &[], None);
}

/// As `loop_is_found`, with arguments to the script and, when given, a
/// stream that must be among those that found the steps.
fn loop_is_found_by(script: &str, args: &[&str], stream: Option<&str>) {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let mut misses = Vec::new();
    for attempt in 0..3 {
        let o = record(script, args, &dir.path().join(format!("a{attempt}")));
        let count_ok = o.steps.abs_diff(o.true_steps) as f64 <= 0.05 * o.true_steps as f64;
        let period_ok = (o.period_ms - o.true_ms).abs() <= 0.05 * o.true_ms;
        let method = o.json["method"].as_str().unwrap_or_default();
        let by_stream = stream.is_none_or(|s| method.split(" + ").any(|m| m == s));
        if count_ok && period_ok && by_stream {
            return;
        }
        misses.push(format!(
            "{} steps of {:.2} ms found, {} of {:.2} ms run: {}",
            o.steps, o.period_ms, o.true_steps, o.true_ms, o.json
        ));
    }
    panic!("{script}: all three recordings missed: {misses:#?}");
}

/// A loop-less program reports no steps, ever (one recording).
fn no_steps_in(script: &str) {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let o = record(script, &[], &dir.path().join("a"));
    assert_eq!(o.true_steps, 0);
    assert_eq!(o.steps, 0, "{script}: {}", o.json);
    assert!(o.json["note"].as_str().is_some(), "{}", o.json);
}

#[test]
fn numpy_loop_with_a_python_data_phase() {
    loop_is_found("numpy_pyheavy.py");
}

#[test]
fn numpy_loop_of_blas_calls() {
    loop_is_found("numpy_blas.py");
}

/// Steps of ~25-105 ms at random (a stall of 0-80 ms ends each): no
/// period repeats, but the main thread's Python loop counts its iterations.
#[test]
fn numpy_loop_with_uneven_stalls_is_counted_by_its_python_loop() {
    loop_is_found_by("numpy_blas.py", &["--stalls"], Some("python loop"));
}

#[test]
fn sorting_is_not_a_loop() {
    no_steps_in("loopless_sort.py");
}

#[test]
fn a_compile_is_not_a_loop() {
    no_steps_in("loopless_compile.py");
}

#[test]
fn a_server_answering_requests_is_not_a_loop() {
    no_steps_in("loopless_server.py");
}
