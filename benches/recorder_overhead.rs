//! Recording overhead, end to end.
//!
//! 1. CPU sampling: a CPU-bound workload's own run time alone, under
//!    `sofa record --no-syscalls` and under `perf record -g`, both at 999 Hz.
//! 2. System calls: a syscall-heavy workload (tiny 64-byte reads) alone,
//!    under `sofa record` (sampling + syscalls), `strace -f -c` and
//!    `perf trace -s`.
//! 4. Call graphs: the CPU-bound C fixture (frame pointers complete) and
//!    the numpy loop (libraries without them) under `sofa record
//!    --call-graph fp|dwarf|auto`, `perf record -g` and `perf record
//!    --call-graph dwarf,16384`; with each sofa archive's size per 10^6
//!    samples (`SOFA_BENCH_ONLY=call`).
//! 3. Python stacks: two Python loops (the numpy training loop, and the
//!    pure-Python `py_hot.py`) alone, under `sofa record --no-python`, under
//!    `sofa record --py-loop-hz 0` (Python stacks at 100 Hz), `sofa record`
//!    (and the loop probe at 1000 Hz) and under
//!    `py-spy record --nonblocking -r 100` (when installed beside python3).
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench recorder_overhead
//! SOFA_BENCH_RUNS=9 SOFA_BENCH_STEPS=80 SOFA_BENCH_READS=200000 cargo bench --bench recorder_overhead
//! SOFA_BENCH_ONLY=python SOFA_BENCH_PY_RUNS=15 cargo bench --bench recorder_overhead
//! ```
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
    // The workloads' summary lines: `NAME: ..., T ms, ...`; the first field
    // in ms is the elapsed time. The training corpus says its loop's span.
    let own = stderr
        .lines()
        .filter(|l| {
            ["hotspots: ", "train_numpy: ", "py_hot: ", "pingpong: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .find_map(|l| {
            l.split(", ")
                .find_map(|f| f.strip_suffix(" ms")?.parse::<f64>().ok())
        })
        .or_else(|| stderr.lines().find_map(corpus_loop_ms))
        .unwrap_or_else(|| panic!("no summary line from {cmd:?}: {stderr}"));
    (own, wall)
}

struct Mode {
    name: &'static str,
    /// Program and arguments placed before the workload.
    prefix: Vec<String>,
}

/// The loop's span in a training-corpus script's truth line
/// (`sofa-corpus steps=N ... from_ns=A to_ns=B`), ms.
fn corpus_loop_ms(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("sofa-corpus ")?;
    let field = |name: &str| -> Option<f64> {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some((field("to_ns")? - field("from_ns")?) / 1e6)
}

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `SOFA_BENCH_ONLY` (words such as `cpu`, `system`, `python`;
/// unset: all) picks the scenario titled `title`.
fn picked(title: &str) -> bool {
    std::env::var("SOFA_BENCH_ONLY")
        .map(|only| only.split(',').any(|w| title.starts_with(w.trim())))
        .unwrap_or(true)
}

/// Runs every mode `runs` times, interleaved, and prints medians relative
/// to the first mode (the workload alone).
///
/// `paired x` is the median of each round's ratio to the round's first
/// mode: runs of one round are seconds apart, so drift of the machine over
/// minutes cancels. Returns each mode's own times, one per round.
fn scenario(
    title: &str,
    workload: &Path,
    args: &[&str],
    modes: &[Mode],
    runs: usize,
) -> Option<Vec<Vec<f64>>> {
    if !picked(title) {
        return None;
    }
    let mut own: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..runs {
        for (i, mode) in modes.iter().enumerate() {
            let mut cmd = match mode.prefix.split_first() {
                Some((program, rest)) => {
                    let mut c = Command::new(program);
                    c.args(rest).arg(workload);
                    c
                }
                None => Command::new(workload),
            };
            cmd.args(args);
            let (o, w) = run(&mut cmd);
            own[i].push(o);
            wall[i].push(w);
        }
    }
    let base = median(own[0].clone());
    let base_wall = median(wall[0].clone());
    println!(
        "{title}: {} {}, {runs} interleaved runs, medians",
        workload.display(),
        args.join(" ")
    );
    println!(
        "  {:<44} {:>12} {:>10} {:>10} {:>12} {:>10}",
        "mode", "own ms", "slowdown", "paired x", "wall ms", "wall x"
    );
    for (i, mode) in modes.iter().enumerate() {
        let (o, w) = (median(own[i].clone()), median(wall[i].clone()));
        print!(
            "  {:<44} {o:>12.1} {:>9.2}x {:>9.3}x {w:>12.1} {:>9.2}x",
            mode.name,
            o / base,
            paired(&own, i, 0),
            w / base_wall
        );
        if let Some(size) = archive_size(mode) {
            print!("  {size}");
        }
        println!();
    }
    Some(own)
}

/// The median over rounds of mode `a`'s own time over mode `b`'s in the
/// same round.
fn paired(own: &[Vec<f64>], a: usize, b: usize) -> f64 {
    median(own[a].iter().zip(&own[b]).map(|(x, y)| x / y).collect())
}

/// How system-call tracing changes the CPU profile (issue 10 item 5):
/// `compute_heavy`'s and `compute_light`'s self shares in the read-heavy
/// fixture (`hotspots 40 50000`: 2 M reads of 64 bytes), in one shaped like
/// the issue's example (`hotspots 40 9000 1 16384`: ~9 % of the time in
/// 16 KiB reads) and in a syscall-free one (`hotspots 40 0`), under `perf
/// record -g` (the reference, where perf runs), recorded without system
/// calls, with the defaults (above `--syscall-rate` the dominant call left
/// out or windows) and with every call traced (`--syscall-rate 0`).
/// `SOFA_BENCH_ONLY=distortion`; `SOFA_BENCH_DISTORTION_STEPS` (40) sets
/// the steps, so the run's length.
fn distortion(sofa: &str, hotspots: &Path, tmp: &Path) {
    if !picked("distortion") {
        return;
    }
    let runs = env_or("SOFA_BENCH_DISTORTION_RUNS", 3);
    // `None`: perf (where it runs), the reference.
    let mut modes: Vec<(&str, Option<&[&str]>)> = vec![
        ("--no-syscalls", Some(&["--no-syscalls"])),
        ("defaults (--syscall-rate 20000)", Some(&[])),
        (
            "--syscall-rate 0 (every call)",
            Some(&["--syscall-rate", "0"]),
        ),
    ];
    if tool_available("perf") {
        modes.insert(0, ("perf record -e cpu-clock -F 999 -g", None));
    }
    let archive = tmp.join("distortion");
    let steps = env_or("SOFA_BENCH_DISTORTION_STEPS", 40).to_string();
    for args in [
        vec![steps.as_str(), "50000"],
        vec![steps.as_str(), "9000", "1", "16384"],
        vec![steps.as_str(), "0"],
    ] {
        // Per mode: (heavy, light) shares of each run.
        let mut shares: Vec<Vec<(f64, f64)>> = vec![Vec::new(); modes.len()];
        for _ in 0..runs {
            for (i, (_, flags)) in modes.iter().enumerate() {
                let Some(flags) = flags else {
                    shares[i].push(perf_shares(hotspots, &args, tmp));
                    continue;
                };
                let out = Command::new(sofa)
                    .args(["record", "-o"])
                    .arg(&archive)
                    .args(*flags)
                    .arg("--")
                    .arg(hotspots)
                    .args(&args)
                    .output()
                    .expect("sofa record");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let json = Command::new(sofa)
                    .args(["analyze", "--json", "--top", "1000"])
                    .arg(&archive)
                    .output()
                    .expect("sofa analyze");
                let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
                let share = |name: &str| {
                    json["functions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|f| f["name"] == name)
                        .and_then(|f| f["self_share"].as_f64())
                        .unwrap_or(0.0)
                        * 100.0
                };
                shares[i].push((share("compute_heavy"), share("compute_light")));
            }
        }
        println!(
            "distortion: hotspots {}, {runs} interleaved runs, medians of self shares, \
             differences to the first row",
            args.join(" ")
        );
        let med = |v: &[(f64, f64)], light: bool| {
            median(v.iter().map(|s| if light { s.1 } else { s.0 }).collect())
        };
        let truth = (med(&shares[0], false), med(&shares[0], true));
        for (i, (name, _)) in modes.iter().enumerate() {
            let (h, l) = (med(&shares[i], false), med(&shares[i], true));
            println!(
                "  {name:<36} compute_heavy {h:5.1} % ({:+.1})  compute_light {l:5.1} % ({:+.1})",
                h - truth.0,
                l - truth.1
            );
        }
    }
}

/// `compute_heavy`'s and `compute_light`'s self shares (percent) in
/// `perf record -e cpu-clock -F 999 -g` of `hotspots ARGS`.
fn perf_shares(hotspots: &Path, args: &[&str], tmp: &Path) -> (f64, f64) {
    let data = tmp.join("distortion.perf.data");
    let status = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
        .arg(&data)
        .arg("--")
        .arg(hotspots)
        .args(args)
        .output()
        .expect("perf record");
    assert!(status.status.success());
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "symbol",
            "-i",
        ])
        .arg(&data)
        .output()
        .expect("perf report");
    let text = String::from_utf8_lossy(&report.stdout);
    let share = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .and_then(|l| {
                l.split_whitespace()
                    .next()?
                    .trim_end_matches('%')
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    (share("compute_heavy"), share("compute_light"))
}

/// For a `sofa record -o DIR` mode: the last run's archive size per 10^6
/// samples, its user-stack ends (`dwarf`, `auto`) and lost samples.
fn archive_size(mode: &Mode) -> Option<String> {
    let i = mode.prefix.iter().position(|a| a == "-o")?;
    let dir = PathBuf::from(mode.prefix.get(i + 1)?);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let samples = meta["tables"]["samples"]["rows"].as_u64()?.max(1);
    let bytes: u64 = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                std::fs::read_dir(&p)
                    .map(|d| d.flatten().map(|f| f.path()).collect::<Vec<_>>())
                    .unwrap_or_default()
            } else {
                vec![p]
            }
        })
        .filter_map(|p| p.metadata().ok().map(|m| m.len()))
        .sum();
    let lost = meta["lost"]["cpu"].as_u64().unwrap_or(0);
    let reason = meta["collectors"]["cpu"]["reason"].as_str().unwrap_or("");
    let ends = reason
        .split("; ")
        .find_map(|r| r.strip_prefix("user stacks unwound: "))
        .unwrap_or("");
    Some(format!(
        "{:.1} MB/10^6 samples, {lost} lost of {samples}; {ends}",
        bytes as f64 * 1e6 / samples as f64 / 1e6
    ))
}

/// Off-CPU (context switches with stacks) against none, every switch, and
/// `perf record -e sched:sched_switch -g`: two threads ping-ponging a byte
/// over pipes on one CPU (`taskset -c 1`: a switch per message, ~10^6 a
/// second here, with no idle CPU between them; and with 10 us of work per
/// message, ~10^5 a second, the issue's benchmark), and, when
/// `SOFA_BENCH_TORCH_PYTHON` names a Python with torch, the corpus's CNN
/// with two DataLoader workers (`SOFA_BENCH_ONLY=off-cpu`): free on both
/// CPUs, where the job and the recorder share them and runs of one mode
/// spread by 30 %, and with the job on CPU 0 (one intra-op thread) and the
/// recorder on CPU 1, where what a collector costs the job itself (its
/// records written in the job's context switches) is told from noise.
/// After each, what off-CPU adds over `--no-off-cpu` and what perf adds
/// over the job alone, as medians of the rounds' ratios.
fn off_cpu(sofa: &str, root: &Path, fixtures: &str, tmp: &Path) {
    let out = |name: &str| tmp.join(name).display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let pingpong = fixtures
        .lines()
        .map(PathBuf::from)
        .find(|p| p.ends_with("pingpong"))
        .expect("pingpong fixture");
    // The recorders run under `recorder` (a CPU pin, or nothing), the job
    // under `runner`; each mode writes its own archive.
    let modes = |recorder: &[&str], runner: &[String], every: bool| {
        let sofa_mode = |name: &'static str, flags: &[&str], dir: &str| Mode {
            name,
            prefix: [
                s(recorder),
                s(&[sofa, "record"]),
                s(flags),
                vec!["-o".into(), out(dir), "--".into()],
                runner.to_vec(),
            ]
            .concat(),
        };
        let mut modes = vec![
            Mode {
                name: "alone",
                prefix: runner.to_vec(),
            },
            sofa_mode(
                "sofa record --no-syscalls --no-off-cpu",
                &["--no-syscalls", "--no-off-cpu"],
                "sofa-nooff",
            ),
            sofa_mode(
                "sofa record --no-syscalls (off-CPU)",
                &["--no-syscalls"],
                "sofa-off",
            ),
        ];
        if every {
            modes.push(sofa_mode(
                "sofa record --no-syscalls --switch-rate 0 (every switch)",
                &["--no-syscalls", "--switch-rate", "0"],
                "sofa-every",
            ));
            modes.push(sofa_mode("sofa record (defaults)", &[], "sofa-defaults"));
        }
        if tool_available("perf") {
            modes.push(Mode {
                name: "perf record -e sched:sched_switch -g",
                prefix: [
                    s(recorder),
                    s(&["perf", "record", "-q", "-e", "sched:sched_switch"]),
                    s(&["-g", "-o"]),
                    vec![out("perf.data"), "--".into()],
                    runner.to_vec(),
                ]
                .concat(),
            });
        }
        modes
    };
    let increments = |own: Option<Vec<Vec<f64>>>, modes: &[Mode]| {
        let Some(own) = own else { return };
        let pct = |a: usize, b: usize| (paired(&own, a, b) - 1.0) * 100.0;
        println!(
            "  off-CPU over --no-off-cpu: {:+.1} % (median of the rounds' ratios)",
            pct(2, 1)
        );
        if modes.last().is_some_and(|m| m.name.starts_with("perf")) {
            println!(
                "  perf sched_switch -g over alone: {:+.1} %",
                pct(modes.len() - 1, 0)
            );
        }
        if let Some(rate) = switch_rate(&tmp.join("sofa-off")) {
            println!("  switch records a second in the off-CPU archive: {rate:.0}");
        }
    };
    let trips = env_or("SOFA_BENCH_TRIPS", 1_000_000).to_string();
    let pinned = modes(&[], &s(&["taskset", "-c", "1"]), true);
    let own = scenario(
        "off-cpu (ping-pong)",
        &pingpong,
        &[&trips, "0"],
        &pinned,
        env_or("SOFA_BENCH_OFF_RUNS", 5),
    );
    increments(own, &pinned);
    let trips = env_or("SOFA_BENCH_WORK_TRIPS", 100_000).to_string();
    let own = scenario(
        "off-cpu (ping-pong, 10 us of work per message)",
        &pingpong,
        &[&trips, "10"],
        &pinned,
        env_or("SOFA_BENCH_OFF_RUNS", 5),
    );
    increments(own, &pinned);
    if let Ok(python) = std::env::var("SOFA_BENCH_TORCH_PYTHON") {
        let cnn = root.join("fixtures/training/torch_cnn.py");
        let free = modes(&[], std::slice::from_ref(&python), true);
        let own = scenario(
            "off-cpu (PyTorch CNN, 2 DataLoader workers)",
            &cnn,
            &["--workers", "2"],
            &free,
            env_or("SOFA_BENCH_OFF_RUNS", 5),
        );
        increments(own, &free);
        let split = modes(
            &["taskset", "-c", "1"],
            &[s(&["taskset", "-c", "0"]), vec![python]].concat(),
            false,
        );
        let own = scenario(
            "off-cpu (PyTorch CNN, 2 DataLoader workers, job on CPU 0, recorder on CPU 1)",
            &cnn,
            &["--workers", "2", "--threads", "1"],
            &split,
            env_or("SOFA_BENCH_OFF_RUNS", 5),
        );
        increments(own, &split);
    }
}

/// Switch records a second of recording in the archive at `dir`.
fn switch_rate(dir: &Path) -> Option<f64> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let rows = meta["tables"]["switches"]["rows"].as_f64()?;
    let span = meta["end_ns"].as_f64()? - meta["clock"]["start_ns"].as_f64()?;
    Some(rows / (span / 1e9))
}

/// `sofa record --call-graph MODE` and perf's two call-graph modes on the
/// C fixture and the numpy loop (`--no-python`: stacks only).
fn call_graphs(sofa: &str, hotspots: &Path, numpy: &Path, python: &str, tmp: &Path) {
    let out = |name: &str| tmp.join(name).display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let runs = env_or("SOFA_BENCH_CALL_RUNS", 7);
    for (title, workload, args, interpreter) in [
        (
            "call graphs (C fixture)",
            hotspots,
            vec![env_or("SOFA_BENCH_STEPS", 50).to_string(), "0".into()],
            None,
        ),
        (
            "call graphs (numpy loop)",
            numpy,
            vec![
                "--steps".into(),
                env_or("SOFA_BENCH_PY_STEPS", 100).to_string(),
            ],
            Some(python.to_owned()),
        ),
    ] {
        let with = |mut v: Vec<String>| {
            v.push("--".into());
            v.extend(interpreter.clone());
            v
        };
        let mut modes = vec![Mode {
            name: "alone",
            prefix: interpreter.iter().cloned().collect(),
        }];
        for (name, mode) in [
            ("sofa record --call-graph fp", "fp"),
            ("sofa record --call-graph dwarf", "dwarf"),
            ("sofa record --call-graph auto", "auto"),
        ] {
            modes.push(Mode {
                name,
                prefix: with(
                    [
                        s(&[sofa, "record", "--no-syscalls", "--no-python"]),
                        s(&["--call-graph", mode, "-o"]),
                        vec![out(&format!("sofa-{mode}"))],
                    ]
                    .concat(),
                ),
            });
        }
        if tool_available("perf") {
            for (name, graph) in [
                ("perf record -g", "fp"),
                ("perf record --call-graph dwarf,16384", "dwarf,16384"),
            ] {
                modes.push(Mode {
                    name,
                    prefix: with(
                        [
                            s(&["perf", "record", "-q", "-e", "cpu-clock", "-F", "999"]),
                            s(&["--call-graph", graph, "-o"]),
                            vec![out("perf.data")],
                        ]
                        .concat(),
                    ),
                });
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        scenario(title, workload, &args, &modes, runs);
    }
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
    let sofa = env!("CARGO_BIN_EXE_sofa").to_owned();
    let runs = env_or("SOFA_BENCH_RUNS", 5);
    let steps = env_or("SOFA_BENCH_STEPS", 50).to_string();
    let reads = env_or("SOFA_BENCH_READS", 200_000).to_string();
    let tmp = std::env::temp_dir().join(format!("sofa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = |name: &str| tmp.join(name).display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let mut cpu_modes = vec![
        Mode {
            name: "alone",
            prefix: vec![],
        },
        Mode {
            name: "sofa record -F 999 --no-syscalls",
            prefix: [
                s(&[&sofa, "record", "-F", "999", "--no-syscalls", "-o"]),
                vec![out("sofa-out"), "--".into()],
            ]
            .concat(),
        },
    ];
    if tool_available("perf") {
        cpu_modes.push(Mode {
            name: "perf record -g -F 999",
            prefix: [
                s(&[
                    "perf",
                    "record",
                    "-q",
                    "-g",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "999",
                    "-o",
                ]),
                vec![out("perf.data"), "--".into()],
            ]
            .concat(),
        });
    }
    scenario("cpu sampling", &workload, &[&steps, "0"], &cpu_modes, runs);

    let mut sys_modes = vec![
        Mode {
            name: "alone",
            prefix: vec![],
        },
        Mode {
            name: "sofa record (samples + syscalls)",
            prefix: [
                s(&[&sofa, "record", "-o"]),
                vec![out("sofa-out"), "--".into()],
            ]
            .concat(),
        },
    ];
    if tool_available("strace") {
        sys_modes.push(Mode {
            name: "strace -f -c",
            prefix: [s(&["strace", "-f", "-c", "-o"]), vec![out("strace.txt")]].concat(),
        });
    }
    if tool_available("perf") {
        sys_modes.push(Mode {
            name: "perf trace -s",
            prefix: [
                s(&["perf", "trace", "-s", "-o"]),
                vec![out("trace.txt"), "--".into()],
            ]
            .concat(),
        });
    }
    scenario(
        "system calls",
        &workload,
        &["1", &reads],
        &sys_modes,
        env_or("SOFA_BENCH_SYSCALL_RUNS", 3),
    );

    distortion(&sofa, &workload, &tmp);

    off_cpu(&sofa, &root, &stdout, &tmp);

    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let py_spy = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("py-spy"))
        .ok()
        .filter(|p| p.is_file());
    let mut py_modes = vec![
        Mode {
            name: "alone",
            prefix: vec![],
        },
        Mode {
            name: "sofa record --no-syscalls --no-python",
            prefix: [
                s(&[&sofa, "record", "--no-syscalls", "--no-python", "-o"]),
                vec![out("sofa-out"), "--".into(), python.clone()],
            ]
            .concat(),
        },
        Mode {
            name: "sofa record --no-syscalls --py-loop-hz 0 (Python 100 Hz)",
            prefix: [
                s(&[&sofa, "record", "--no-syscalls", "--py-loop-hz", "0", "-o"]),
                vec![out("sofa-out"), "--".into(), python.clone()],
            ]
            .concat(),
        },
        Mode {
            name: "sofa record --no-syscalls (Python 100 Hz, loop probe 1000 Hz)",
            prefix: [
                s(&[&sofa, "record", "--no-syscalls", "-o"]),
                vec![out("sofa-out"), "--".into(), python.clone()],
            ]
            .concat(),
        },
    ];
    if let Some(py_spy) = &py_spy {
        py_modes.push(Mode {
            name: "py-spy record --nonblocking -r 100",
            prefix: [
                vec![py_spy.display().to_string()],
                s(&["record", "--nonblocking", "-r", "100", "-f", "raw", "-o"]),
                vec![out("py-spy.txt"), "--".into(), python.clone()],
            ]
            .concat(),
        });
    }
    py_modes[0].prefix = vec![python.clone()];
    let py_runs = env_or("SOFA_BENCH_PY_RUNS", 7);
    let numpy = root.join("fixtures/workloads/train_numpy.py");
    let steps = env_or("SOFA_BENCH_PY_STEPS", 100).to_string();
    scenario(
        "python (numpy loop)",
        &numpy,
        &["--steps", &steps],
        &py_modes,
        py_runs,
    );
    call_graphs(&sofa, &workload, &numpy, &python, &tmp);

    let hot = root.join("fixtures/workloads/py_hot.py");
    let rounds = env_or("SOFA_BENCH_PY_ROUNDS", 300).to_string();
    scenario(
        "python (pure Python)",
        &hot,
        &["--rounds", &rounds],
        &py_modes,
        py_runs,
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
