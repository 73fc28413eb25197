//! Step detection on the fixtures' training loops, recorded for real. Its
//! own test binary, so no other recording competes for the two CPUs while
//! it runs (cargo runs test binaries one after another; among 17 parallel
//! recordings the C fixture's sequence confidence fell under 0.5 in CI).

mod common;

use common::{alone, analyze_json, assert_success, python, record_hotspots, root, sofa};
use serde_json::Value;

/// Per-step times (ms) the fixture printed on stderr.
fn step_times(stderr: &[u8]) -> Vec<f64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .filter_map(|l| l.split(": ").nth(1)?.split(" ms").next()?.parse().ok())
        .collect()
}

/// One recording of the fixture: (steps found, period found ms, mean step
/// the fixture printed ms, the steps JSON).
fn record_and_detect(archive: &std::path::Path) -> (u64, f64, f64, serde_json::Value) {
    let script = root().join("fixtures/workloads/train_numpy.py");
    // 60 steps of ~25-45 ms; 4999 Hz gives ~100 samples per step on the
    // loop thread. At the default 999 Hz (~25 per step) 5 of 6 runs measured
    // were within 5 %, one found 56. One BLAS thread: on this VM's two CPUs
    // OpenBLAS's helper thread spins (a third of the samples) against the
    // loop and the recorder; beside a half-busy CPU 1 of 6 recordings with
    // it passed, 4 of 4 without.
    let out = sofa()
        .env("OPENBLAS_NUM_THREADS", "1")
        .arg("record")
        .arg("-o")
        .arg(archive)
        .args(["-F", "4999", "--", &python(), script.to_str().unwrap()])
        .args(["--steps", "60"])
        .output()
        .unwrap();
    assert_success(&out);
    let times = step_times(&out.stderr);
    assert_eq!(times.len(), 60, "the fixture printed its steps");
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let value = analyze_json(archive);
    let steps = value["steps"].clone();
    let count = steps["count"].as_u64().unwrap();
    let period = steps["period_ns"].as_u64().unwrap_or(0) as f64 / 1e6;
    eprintln!("numpy loop: {count} steps of {period:.2} ms found; 60 of {mean:.2} ms run");
    (count, period, mean, steps)
}

/// Count within ±5 % and period within 5 % of the printed mean step. The
/// recording is real and this VM's two CPUs are noisy: when the machine is
/// slow the steps stretch unevenly (35-45 ms instead of 25-30) and a few
/// long ones get split (seen with the default BLAS threads: 64, 66, 68, 75
/// of 60), so up to three recordings are made; all three missing fails.
#[test]
fn steps_of_the_numpy_training_loop_are_found_without_hints() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let mut misses = Vec::new();
    for attempt in 0..3 {
        let (count, period, mean, steps) =
            record_and_detect(&dir.path().join(format!("numpy{attempt}")));
        if count.abs_diff(60) <= 3 && (period - mean).abs() <= 0.05 * mean {
            return;
        }
        misses.push(format!(
            "{count} steps of {period:.2} ms found, 60 of {mean:.2} ms run: {steps}"
        ));
    }
    panic!("all three recordings missed: {misses:#?}");
}

/// (steps, total ms) from the fixture's own summary line on stderr.
fn hotspots_summary(stderr: &[u8]) -> (u64, f64) {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("hotspots: "))
        .expect("hotspots summary line");
    let parts: Vec<&str> = line.split(", ").collect();
    let steps = parts[0].strip_suffix(" steps").unwrap().parse().unwrap();
    let ms = parts[2].strip_suffix(" ms").unwrap().parse().unwrap();
    (steps, ms)
}

#[test]
fn steps_of_the_c_fixture_are_found_without_hints() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record_hotspots(&dir.path().join("a"), &["30", "50000"]);
    assert!(out.status.success());
    let (true_steps, total_ms) = hotspots_summary(&out.stderr);
    let json = analyze_json(&dir.path().join("a"));
    let steps = &json["steps"];
    let count = steps["count"].as_u64().unwrap();
    assert!(
        count.abs_diff(true_steps) as f64 <= 0.05 * true_steps as f64,
        "{steps}"
    );
    let period_ms = steps["period_ns"].as_u64().unwrap() as f64 / 1e6;
    let true_period = total_ms / true_steps as f64;
    assert!(
        (period_ms - true_period).abs() <= 0.05 * true_period,
        "{period_ms} vs {true_period}"
    );
    assert!(steps["confidence"].as_f64().unwrap() > 0.4, "{steps}");
    assert_eq!(
        steps["boundaries_ns"].as_array().unwrap().len() as u64,
        count + 1
    );
    // Wall-clock jitter is real and grows when other tests load the machine.
    assert!(
        (0.0..1.0).contains(&steps["period_cv"].as_f64().unwrap()),
        "{steps}"
    );

    // Swarms: the compute phase and the read() phase are told apart.
    let swarms = json["swarms"].as_array().unwrap();
    let swarm_of = |function: &str| {
        swarms
            .iter()
            .find(|s| {
                s["top_functions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == function)
            })
            .unwrap_or_else(|| panic!("{function} in no swarm: {swarms:#?}"))["id"]
            .as_u64()
            .unwrap()
    };
    let compute = swarm_of("compute_heavy");
    assert_ne!(compute, swarm_of("read"), "{swarms:#?}");
    for key in ["caption", "samples", "share", "start_ns", "end_ns"] {
        assert!(swarms[0].get(key).is_some(), "{key}");
    }
    // The breakdown has one row per step, with samples per swarm.
    let breakdown = json["step_breakdown"].as_array().unwrap();
    assert_eq!(breakdown.len() as u64, count);
    let in_steps: u64 = breakdown
        .iter()
        .map(|b| {
            let per_swarm = b["samples_by_swarm"].as_array().unwrap();
            assert_eq!(per_swarm.len(), swarms.len());
            per_swarm.iter().map(|n| n.as_u64().unwrap()).sum::<u64>()
        })
        .sum();
    let samples = json["run"]["samples"].as_u64().unwrap();
    assert!(
        in_steps > samples / 2 && in_steps <= samples,
        "{in_steps} of {samples}"
    );

    // --steps checks the detection: agreeing gives no warning, a wrong count does.
    let checked = sofa()
        .args(["analyze", "--json", "--steps", "30"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    let checked: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checked["steps"]["expected"], 30);
    let mismatch = |v: &Value| {
        v["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["title"] == "step count differs from the expected one")
    };
    assert!(!mismatch(&checked), "{}", checked["hints"]);
    let wrong = sofa()
        .args(["analyze", "--json", "--steps", "60"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(mismatch(&serde_json::from_slice(&wrong.stdout).unwrap()));

    // --step-marker pins the steps to a function's visits or to a system
    // call's bursts; a name that matches nothing says so.
    for marker in ["compute_heavy", "read"] {
        let pinned = sofa()
            .args(["analyze", "--json", "--step-marker", marker])
            .arg(dir.path().join("a"))
            .output()
            .unwrap();
        assert_success(&pinned);
        let pinned: Value = serde_json::from_slice(&pinned.stdout).unwrap();
        let steps = &pinned["steps"];
        assert_eq!(steps["method"], "marker", "{steps}");
        assert!(
            steps["count"].as_u64().unwrap().abs_diff(true_steps) <= 1,
            "{marker}: {steps}"
        );
        let period_ms = steps["period_ns"].as_u64().unwrap() as f64 / 1e6;
        assert!(
            (period_ms - true_period).abs() <= 0.05 * true_period,
            "{marker}: {period_ms} vs {true_period}"
        );
        // The streams' own answers stay as evidence.
        let streams = steps["streams"].as_array().unwrap();
        assert!(
            streams.iter().any(|s| s["stream"] == "wall clock"),
            "{steps}"
        );
    }
    let unknown = sofa()
        .args(["analyze", "--step-marker", "no_such_function"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert_success(&unknown);
    assert!(
        String::from_utf8_lossy(&unknown.stdout).contains(
            "step marker `no_such_function` matched no system call and no function of the main process"
        ),
        "{}",
        String::from_utf8_lossy(&unknown.stdout)
    );

    let forced = sofa()
        .args(["analyze", "--json", "--swarms", "3"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    let forced: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert!(forced["swarms"].as_array().unwrap().len() <= 3);
    assert!(forced["swarms"].as_array().unwrap().len() >= 2);

    // One long step: two phases, no repetition, no steps invented.
    let out = record_hotspots(&dir.path().join("b"), &["1", "0", "20"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("b"));
    assert_eq!(json["steps"]["count"], 0, "{}", json["steps"]);
    assert_eq!(json["steps"]["note"], "no periodic structure found");
}
