//! Recording overhead, end to end: a CPU-bound workload's own run time alone,
//! under `sofa record` and under `perf record -g`, both at 999 Hz cpu-clock.
//!
//!     cargo bench --bench recorder_overhead
//!     SOFA_BENCH_RUNS=9 SOFA_BENCH_STEPS=80 cargo bench --bench recorder_overhead
//!
//! Runs are interleaved (alone, sofa, perf, alone, ...) so drift in machine
//! load hits every mode alike; medians are reported. The workload times
//! itself (`hotspots` prints its own elapsed ms), which isolates the slowdown
//! the profiled program feels from the recorder's start-up and end-of-run
//! work (symbolization, compaction), reported separately as wall time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs a command; returns (workload's own ms, wall ms).
fn run(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let out = cmd.output().expect("start benchmark command");
    let wall = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let own = stderr
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("hotspots: ")?;
            let ms = rest.split(", ").nth(2)?.strip_suffix(" ms")?;
            ms.parse::<f64>().ok()
        })
        .expect("hotspots summary line");
    (own, wall)
}

fn main() {
    // `cargo bench` passes --bench; a filter that does not match skips us.
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-'))
        && !"recorder_overhead".contains(&filter)
    {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-fixtures.sh"))
        .output()
        .expect("build fixtures");
    let stdout = String::from_utf8(built.stdout).unwrap();
    let workload = PathBuf::from(stdout.lines().next().expect("fixture path"));
    let sofa = Path::new(env!("CARGO_BIN_EXE_sofa"));
    let runs = env_or("SOFA_BENCH_RUNS", 5);
    let steps = env_or("SOFA_BENCH_STEPS", 50).to_string();
    let tmp = std::env::temp_dir().join(format!("sofa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let perf_available = Command::new("perf").arg("--version").output().is_ok();

    let mut alone = (Vec::new(), Vec::new());
    let mut under_sofa = (Vec::new(), Vec::new());
    let mut under_perf = (Vec::new(), Vec::new());
    let args = [steps.as_str(), "0"];
    for _ in 0..runs {
        let (o, w) = run(Command::new(&workload).args(args));
        alone.0.push(o);
        alone.1.push(w);
        let (o, w) = run(Command::new(sofa)
            .args(["record", "-F", "999", "-o"])
            .arg(tmp.join("sofa-out"))
            .arg("--")
            .arg(&workload)
            .args(args));
        under_sofa.0.push(o);
        under_sofa.1.push(w);
        if perf_available {
            let (o, w) = run(Command::new("perf")
                .args(["record", "-q", "-g", "-e", "cpu-clock", "-F", "999", "-o"])
                .arg(tmp.join("perf.data"))
                .arg("--")
                .arg(&workload)
                .args(args));
            under_perf.0.push(o);
            under_perf.1.push(w);
        }
    }
    let base = median(alone.0.clone());
    let base_wall = median(alone.1.clone());
    println!(
        "recorder_overhead: hotspots {steps} steps (CPU-bound), {runs} interleaved runs, medians"
    );
    println!(
        "  {:<28} {:>12} {:>10} {:>12} {:>10}",
        "mode", "own ms", "slowdown", "wall ms", "wall +%"
    );
    let line = |name: &str, (own, wall): &(Vec<f64>, Vec<f64>)| {
        if own.is_empty() {
            println!("  {name:<28} {:>12}", "not run (perf missing)");
            return;
        }
        let (o, w) = (median(own.clone()), median(wall.clone()));
        println!(
            "  {name:<28} {o:>12.1} {:>9.2}% {w:>12.1} {:>9.2}%",
            100.0 * (o / base - 1.0),
            100.0 * (w / base_wall - 1.0)
        );
    };
    line("alone", &alone);
    line("sofa record -F 999", &under_sofa);
    line("perf record -g -F 999", &under_perf);
    let _ = std::fs::remove_dir_all(&tmp);
}
