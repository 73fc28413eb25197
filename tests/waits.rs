//! Off-CPU waits on fixtures whose truth they measure themselves
//! (`fixtures/workloads/waits.py`: the off-CPU time of the main thread in
//! its waiting call, timed around each call): shares within 5 points,
//! reasons, and the hints that should and should not fire.

mod common;

use common::{
    alone, analyze_json, assert_success, hint_titles as titles, python, record_with, root,
};
use serde_json::Value;

/// What the fixture says of itself.
struct Truth {
    share: f64,
    from_ns: u64,
    to_ns: u64,
}

impl Truth {
    fn loop_ns(&self) -> f64 {
        (self.to_ns - self.from_ns) as f64
    }
}

/// Records `waits.py MODE` with default settings and analyses it.
fn run(mode: &str, extra: &[&str]) -> (Truth, Value) {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let script = root().join("fixtures/workloads/waits.py");
    let py = python();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", py.as_str(), script.to_str().unwrap(), mode]);
    let out = record_with(&archive, &args);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("sofa-waits "))
        .unwrap_or_else(|| panic!("no truth line: {stderr}"));
    let field = |name: &str| -> String {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let truth = Truth {
        share: field("share").parse().unwrap(),
        from_ns: field("from_ns").parse().unwrap(),
        to_ns: field("to_ns").parse().unwrap(),
    };
    (truth, analyze_json(&archive))
}

/// The hints that come from waits.
const WAIT_HINTS: &[&str] = &[
    "input-bound",
    "GIL",
    "wait for a CPU",
    "wait for the disk",
    "lock convoy",
];

fn wait_hints(json: &Value) -> Vec<String> {
    titles(json)
        .into_iter()
        .filter(|t| WAIT_HINTS.iter().any(|w| t.contains(w)))
        .collect()
}

/// The main thread's off-CPU time for `reason`, ns.
fn main_reason_ns(json: &Value, reason: &str) -> f64 {
    json["waits"]["main"]["by_reason"][reason]
        .as_u64()
        .unwrap_or(0) as f64
}

fn assert_close(what: &str, got: f64, truth: f64) {
    assert!(
        (got - truth).abs() <= 0.05,
        "{what}: sofa {:.1}% vs truth {:.1}%",
        100.0 * got,
        100.0 * truth
    );
}

#[test]
fn a_thread_that_sleeps_a_known_share() {
    let (truth, json) = run("sleep", &[]);
    // ~30 % on a quiet machine; less when other work stretches the
    // fixture's CPU-time-bound work (the comparison is with its own truth).
    assert!(truth.share > 0.1, "the fixture sleeps: {}", truth.share);
    let got = main_reason_ns(&json, "sleep") / truth.loop_ns();
    assert_close("sleep share", got, truth.share);
    let main = &json["threads"][0];
    assert_eq!(main["top_wait"], "sleep", "{main}");
    assert_eq!(json["run"]["collectors"]["off_cpu"]["status"], "ok");
    assert!(wait_hints(&json).is_empty(), "{:?}", titles(&json));
}

#[test]
fn two_python_threads_wait_half_the_time_each_for_the_gil() {
    let (truth, json) = run("gil", &[]);
    let main = json["waits"]["main"]["tid"].as_u64().unwrap();
    let workers: Vec<&Value> = json["waits"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tid"].as_u64() != Some(main) && t["comm"] != "bash")
        .filter(|t| t["by_reason"]["gil"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(workers.len(), 2, "{}", json["waits"]["threads"]);
    for t in workers {
        let gil =
            t["by_reason"]["gil"].as_u64().unwrap() as f64 / t["span_ns"].as_u64().unwrap() as f64;
        assert_close("GIL wait share", gil, truth.share);
    }
    assert!(
        titles(&json).iter().any(|t| t.contains("GIL")),
        "{:?}",
        titles(&json)
    );
}

#[test]
fn a_loop_fed_by_a_slow_worker_process_is_input_bound() {
    let (truth, json) = run("input", &[]);
    assert!(truth.share > 0.1, "the loop waits: {}", truth.share);
    let main = &json["waits"]["main"];
    let got = main["input_ns"].as_u64().unwrap() as f64 / truth.loop_ns();
    assert_close("input wait share", got, truth.share);
    let hint = json["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["title"].as_str().unwrap().contains("input-bound"))
        .unwrap_or_else(|| panic!("{:?}", titles(&json)));
    // The evidence names where it waited: the queue's read, in Python.
    let evidence = hint["evidence"].as_str().unwrap();
    assert!(evidence.contains("most in"), "{evidence}");
    assert!(main["input_in"].is_string(), "{main}");
}

#[test]
fn reads_past_the_page_cache_wait_for_the_disk() {
    let (truth, json) = run("disk", &[]);
    assert!(truth.share > 0.05, "the reads must wait: {}", truth.share);
    let got = main_reason_ns(&json, "disk") / truth.loop_ns();
    assert_close("disk wait share", got, truth.share);
    // The reads' waits are named by the Python function when a snapshot
    // fell inside the read, else by the interpreter's readv; they hold
    // most of the loop's disk time. (The fixture's set-up writes the file
    // first: its write-back is a disk wait too, sometimes a longer one —
    // 150 ms in one CI run — but outside the loop, under write_file.)
    let stacks = json["waits"]["stacks"].as_array().unwrap();
    let reads: f64 = stacks
        .iter()
        .filter(|s| s["reason"] == "disk")
        .filter(|s| {
            let function = s["function"].as_str().unwrap();
            function.contains("readv") || (function == "main" && s["module"] == "py:waits.py")
        })
        .map(|s| s["wait_ns"].as_f64().unwrap())
        .sum();
    let in_loop = main_reason_ns(&json, "disk");
    assert!(
        reads >= 0.5 * in_loop,
        "reads {reads} of the loop's {in_loop} ns: {:#}",
        json["waits"]["stacks"]
    );
}

#[test]
fn a_cpu_bound_loop_shows_no_waits() {
    let (truth, json) = run("cpu", &[]);
    assert_eq!(truth.share, 0.0);
    // Blocked, that is: a runnable thread preempted by others (sofa's own
    // threads share the two CPUs: a debug build's recorder preempted this
    // loop 3-12 % of its time in CI) waits for a CPU, which the CPU hint
    // rightly reports, and is not asserted away here.
    let main = &json["waits"]["main"];
    let waited = main["wait_ns"].as_u64().unwrap() - main_reason_ns(&json, "preempted") as u64;
    let span = (main["to_ns"].as_u64().unwrap() - main["from_ns"].as_u64().unwrap()) as f64;
    assert!(waited as f64 / span < 0.02, "{main}");
    let blocking: Vec<String> = wait_hints(&json)
        .into_iter()
        .filter(|t| !t.contains("wait for a CPU"))
        .collect();
    assert!(blocking.is_empty(), "{:?}", titles(&json));
}

#[test]
fn no_off_cpu_records_no_switches() {
    let (_, json) = run("sleep", &["--no-off-cpu"]);
    assert!(json["waits"].is_null());
    assert_eq!(json["run"]["collectors"]["off_cpu"]["status"], "disabled");
    assert!(json["threads"][0]["wait_share"].is_null());
}

/// `convoy THREADS`: threads take turns on one mutex (500 us held, 100 us
/// apart); the fixture times its threads' off-CPU time in the lock call.
fn convoy(threads: &str) -> (f64, Value) {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let exe = common::hotspots().parent().unwrap().join("convoy");
    // Every call traced: the fixture's threads read the clock ~10^5 times
    // a second between turns, above the default `--syscall-rate`, and a
    // lock wait is put on its lock by the futex call it began in; with
    // calls traced in windows (65-91 % of the time) the 2-thread share
    // read up to 6 points low (0.349 for 0.412), with every call within
    // 1.4 points in 8 recordings.
    let out = record_with(
        &archive,
        &["--syscall-rate", "0", "--", exe.to_str().unwrap(), threads],
    );
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let share = stderr
        .lines()
        .find(|l| l.starts_with("convoy: "))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("lock_wait_share="))
        })
        .unwrap_or_else(|| panic!("no truth line: {stderr}"))
        .parse()
        .unwrap();
    (share, analyze_json(&archive))
}

#[test]
fn four_threads_queueing_on_one_mutex_are_a_lock_convoy() {
    let (truth, json) = convoy("4");
    let lock = &json["waits"]["locks"][0];
    assert_eq!(lock["tids"].as_array().unwrap().len(), 4, "{lock}");
    assert_eq!(lock["function"], "worker", "{lock}");
    assert_close("lock wait share", lock["share"].as_f64().unwrap(), truth);
    let hints = wait_hints(&json);
    assert!(
        hints.iter().any(|t| t.contains("lock convoy")),
        "{:?}",
        titles(&json)
    );
    // Two threads on a lock are listed but are no convoy.
    let (truth, json) = convoy("2");
    let lock = &json["waits"]["locks"][0];
    assert_eq!(lock["tids"].as_array().unwrap().len(), 2, "{lock}");
    assert_close("lock wait share", lock["share"].as_f64().unwrap(), truth);
    assert!(
        !wait_hints(&json).iter().any(|t| t.contains("lock convoy")),
        "{:?}",
        titles(&json)
    );
}

/// Two threads handing a byte back and forth over pipes on one CPU
/// (~10^6 context switches a second here): above `--switch-rate` switches
/// are recorded in windows, which the archive says, and each thread's wait
/// share of the recorded time is that of a recording of every switch.
/// (Not the fixture's own figure, wall less CPU time: a thread waits, for
/// sofa, from its switch-out to its switch-in, and the switch between is
/// CPU time of the next thread; at 10^6 switches a second that is 14 % of
/// the time.) sofa runs on the other CPU, so that its reader, slower in a
/// debug build and busier with every switch recorded, does not preempt
/// the ping-pong.
#[test]
fn a_ping_pong_faster_than_the_switch_rate_is_recorded_in_windows_with_true_shares() {
    let _alone = alone();
    let exe = common::hotspots().parent().unwrap().join("pingpong");
    let dir = tempfile::tempdir().unwrap();
    let record_pingpong = |name: &str, extra: &[&str]| -> Value {
        let archive = dir.path().join(name);
        let out = std::process::Command::new("taskset")
            .args(["-c", "1", env!("CARGO_BIN_EXE_sofa"), "record", "-o"])
            .arg(&archive)
            .args(extra)
            .args(["--no-syscalls", "--", "taskset", "-c", "0"])
            .arg(&exe)
            .arg("1000000")
            .output()
            .unwrap();
        assert_success(&out);
        analyze_json(&archive)
    };
    // The two threads' wait shares, larger first.
    let shares = |json: &Value| -> Vec<f64> {
        let mut s: Vec<f64> = json["waits"]["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["comm"] == "pingpong")
            .map(|t| t["wait_share"].as_f64().unwrap())
            .collect();
        s.sort_by(|a, b| b.total_cmp(a));
        s
    };
    let windowed = record_pingpong("windows", &[]);
    let every = record_pingpong("every", &["--switch-rate", "0"]);
    let reason = windowed["run"]["collectors"]["off_cpu"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("traced in windows") && reason.contains("--switch-rate 10000"),
        "{reason}"
    );
    let traced = windowed["waits"]["traced_share"].as_f64().unwrap();
    assert!(traced < 0.5, "recorded {traced} of the time");
    assert!(every["waits"]["traced_share"].is_null());
    assert!(every["run"]["collectors"]["off_cpu"]["reason"].is_null());
    let (got, truth) = (shares(&windowed), shares(&every));
    assert_eq!((got.len(), truth.len()), (2, 2), "{got:?} {truth:?}");
    for (got, truth) in got.into_iter().zip(truth) {
        assert!(truth > 0.3, "each thread waits for the other: {truth}");
        assert_close("ping-pong wait share", got, truth);
    }
}
