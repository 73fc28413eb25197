//! Thread pools that busy-wait and oversubscribed CPUs, on fixtures that
//! measure their own truth (`fixtures/workloads/ompspin.c`: each OpenMP
//! thread's CPU time outside the work) and on the numpy training loop
//! (OpenBLAS's workers), against sofa's own function table.

mod common;

use common::{
    alone, analyze_json, assert_success, hint_titles as titles, hotspots, python, record_with, root,
};
use serde_json::Value;
use std::path::PathBuf;

fn ompspin() -> PathBuf {
    hotspots().parent().unwrap().join("ompspin")
}

fn evidence<'a>(json: &'a Value, title: &str) -> &'a str {
    json["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["title"].as_str().unwrap().contains(title))
        .unwrap_or_else(|| panic!("no '{title}' hint: {:?}", titles(json)))["evidence"]
        .as_str()
        .unwrap()
}

const SPIN: &str = "busy-wait";
const OVER: &str = "oversubscribed";

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Records `ompspin STEPS PARALLEL_MS SERIAL_MS` with `threads` OpenMP
/// threads under `policy`; the fixture's spin share and the analysis.
fn run_omp(threads: usize, policy: &str, args: &[&str]) -> (f64, Value) {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let exe = ompspin();
    let assignments = [
        format!("OMP_WAIT_POLICY={policy}"),
        format!("OMP_NUM_THREADS={threads}"),
    ];
    let mut full: Vec<&str> = vec!["--", "env", &assignments[0], &assignments[1]];
    full.push(exe.to_str().unwrap());
    full.extend(args);
    let out = record_with(&archive, &full);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let share = stderr
        .lines()
        .find(|l| l.starts_with("ompspin "))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("spin_share="))
        })
        .unwrap_or_else(|| panic!("no truth line: {stderr}"))
        .parse()
        .unwrap();
    (share, analyze_json(&archive))
}

fn pool_share(json: &Value, pool: &str) -> f64 {
    json["spin"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == pool)
        .map_or(0.0, |p| p["share"].as_f64().unwrap())
}

#[test]
fn openmp_workers_spinning_at_barriers_get_the_spin_hint() {
    // Two threads, 4 ms parallel and 6 ms serial per step: the worker
    // spins through the serial part (a third of the CPU time).
    let (truth, json) = run_omp(2, "active", &["200", "4", "6"]);
    assert!(truth > 0.2, "the fixture spun {truth}");
    let found = pool_share(&json, "libgomp");
    assert!(
        (found - truth).abs() <= 0.03,
        "spin share {found:.3}, fixture {truth:.3}"
    );
    let e = evidence(&json, SPIN);
    assert!(e.contains("OpenMP (libgomp)"), "{e}");
    assert!(e.contains("OMP_WAIT_POLICY=passive"), "{e}");
    if cpus() >= 2 {
        assert!(!titles(&json).iter().any(|t| t.contains(OVER)));
    }
    // Passive workers sleep on a futex: no spinning to speak of.
    let (truth, json) = run_omp(2, "passive", &["200", "4", "6"]);
    assert!(truth < 0.05, "passive fixture spun {truth}");
    assert!(pool_share(&json, "libgomp") < 0.05, "{}", json["spin"]);
    assert!(!titles(&json).iter().any(|t| t.contains(SPIN)));
}

#[test]
fn twice_as_many_busy_threads_as_cpus_are_oversubscribed() {
    // Mostly parallel steps on twice the CPUs' threads, passive (so the
    // hint is about runnable work, not spinning).
    let (_, json) = run_omp(2 * cpus(), "passive", &["150", "8", "2"]);
    let o = &json["oversubscription"];
    assert!(o["share"].as_f64().unwrap() > 0.5, "{o}");
    assert!(o["runnable"].as_f64().unwrap() > cpus() as f64, "{o}");
    let e = evidence(&json, OVER);
    assert!(e.contains("OMP_NUM_THREADS"), "{e}");
    // The generic CPU-wait hint yields to it.
    assert!(
        !titles(&json).iter().any(|t| t.contains("wait for a CPU")),
        "{:?}",
        titles(&json)
    );
}

#[test]
fn numpy_loop_openblas_spin_matches_blas_thread_server() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("np");
    let script = root().join("fixtures/workloads/train_numpy.py");
    let py = python();
    let out = record_with(
        &archive,
        &["--", py.as_str(), script.to_str().unwrap(), "--steps", "60"],
    );
    assert_success(&out);
    let json = analyze_json(&archive);
    // OpenBLAS's worker loop spins in blas_thread_server itself (its
    // sched_yield is in there too): the spin share is its self share,
    // give or take the yields' kernel frames.
    let server = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "blas_thread_server")
        .map(|f| f["self_share"].as_f64().unwrap())
        .expect("numpy's OpenBLAS has blas_thread_server named (pip's scipy-openblas does)");
    let found = pool_share(&json, "openblas");
    assert!(
        (found - server).abs() <= 0.03,
        "OpenBLAS spin {found:.3}, blas_thread_server self {server:.3}"
    );
    if found >= 0.1 {
        let e = evidence(&json, SPIN);
        assert!(e.contains("OPENBLAS_NUM_THREADS"), "{e}");
    }
}

#[test]
fn a_single_threaded_loop_gets_no_pool_hints() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("c");
    let exe = hotspots();
    let out = record_with(&archive, &["--", exe.to_str().unwrap(), "60"]);
    assert_success(&out);
    let json = analyze_json(&archive);
    assert!(json["spin"]["share"].as_f64().unwrap() < 0.01);
    let t = titles(&json);
    assert!(
        !t.iter().any(|t| t.contains(SPIN) || t.contains(OVER)),
        "{t:?}"
    );
}
