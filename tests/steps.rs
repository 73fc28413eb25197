//! Step detection on the numpy training loop, recorded for real. Its own test
//! binary, so no other recording competes for the two CPUs while it runs
//! (cargo runs test binaries one after another).

mod common;

use common::{record_with, root, sofa};

/// The interpreter itself, not a wrapper such as a pyenv shim.
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 (scripts/setup.sh installs it with numpy)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Per-step times (ms) the fixture printed on stderr.
fn step_times(stderr: &[u8]) -> Vec<f64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .filter_map(|l| l.split(": ").nth(1)?.split(" ms").next()?.parse().ok())
        .collect()
}

/// Not yet reliable, so not in the default run: at 4999 Hz the count is
/// within ±5 % and the period within 5 % of the median step in about 5 of 8
/// runs; otherwise confidence falls under the threshold (0.12–0.22) and no
/// steps are reported. Run it with `cargo test --test steps -- --ignored`
/// when working on step detection (see docs/design.md).
#[test]
#[ignore = "numpy step detection passes about 5 runs in 8; tracked in issue 5"]
fn steps_of_the_numpy_training_loop_are_found_without_hints() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("numpy");
    let script = root().join("fixtures/workloads/train_numpy.py");
    // 60 steps of ~25 ms; 4999 Hz gives ~100 samples per step on the loop
    // thread (at 999 Hz a step holds ~25, too few to rely on).
    let out = record_with(
        &archive,
        &[
            "-F",
            "4999",
            "--",
            &python(),
            script.to_str().unwrap(),
            "--steps",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times = step_times(&out.stderr);
    assert_eq!(times.len(), 60, "the fixture printed its steps");
    times.sort_by(f64::total_cmp);
    // The typical step: the first steps (warm-up) and scheduler hiccups run
    // far longer, so the median, not the mean, is what a period is.
    let median = (times[29] + times[30]) / 2.0;

    let json = sofa()
        .args(["analyze", "--json"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(json.status.success());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let steps = &value["steps"];
    let count = steps["count"].as_u64().unwrap();
    assert!(
        count.abs_diff(60) <= 3,
        "{count} steps found, 60 run (±5 %): {steps}"
    );
    let period = steps["period_ns"].as_u64().unwrap() as f64 / 1e6;
    assert!(
        (period - median).abs() <= 0.05 * median,
        "period {period:.2} ms, median step {median:.2} ms: {steps}"
    );
}
