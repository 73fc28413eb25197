//! `sofa record` on real child processes (needs perf_event_open: root or
//! kernel.perf_event_paranoid <= 1; `scripts/setup.sh` installs perf and numpy).

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
// Every test here takes `alone()` for its whole run: rate-based ones (a
// spin loop's `sched_yield`, read storms) measure nothing beside another
// test's busy fixture (a spinner's yields then give its CPU away: ~400
// calls a second instead of ~10^6), so the recordings take turns.
use common::{
    alone, analyze_json, analyze_json_of, function, hotspots, python, record, record_hotspots,
    record_with, self_share, sofa,
};

#[test]
#[cfg(target_arch = "x86_64")]
fn jit_code_is_named_from_the_perf_map_and_the_map_is_archived() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let jitloop = hotspots().with_file_name("jitloop");
    let out = record(&dir.path().join("a"), &[jitloop.to_str().unwrap(), "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    let top = &json["functions"][0];
    assert_eq!(top["name"], "jit_spin_loop", "{:#}", json["functions"]);
    assert_eq!(top["module"], "[jit]");
    assert!(top["self_share"].as_f64().unwrap() > 0.8);
    let pid = json["processes"][0]["pid"].as_u64().unwrap();
    let copied = dir.path().join(format!("a/jitmaps/perf-{pid}.map"));
    let text = std::fs::read_to_string(&copied).expect("perf map copied into the archive");
    assert!(text.contains("jit_spin_loop"));
    // The program wrote its map itself, not at sofa's request: it stays.
    let map = format!("/tmp/perf-{pid}.map");
    assert!(std::path::Path::new(&map).exists());
    let _ = std::fs::remove_file(map);
}

#[test]
fn jit_runtimes_are_asked_for_perf_maps_unless_told_otherwise() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    let script = format!(
        "echo \"${{ONEDNN_JIT_PROFILE:-unset}} ${{DNNL_JIT_PROFILE:-unset}}\" > {}",
        file.display()
    );
    let seen = |name: &str, args: &[&str]| {
        let args = [args, &["--", "sh", "-c", &script]].concat();
        let out = record_with(&dir.path().join(name), &args);
        assert!(out.status.success());
        let meta: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(name).join("meta.json")).unwrap(),
        )
        .unwrap();
        (
            std::fs::read_to_string(&file).unwrap().trim().to_owned(),
            meta["command_env"].clone(),
        )
    };
    // oneDNN's perf map only (2; 6 would add jitdump files in ~/.debug).
    let (env, meta) = seen("a", &[]);
    assert_eq!(env, "2 2");
    assert_eq!(meta["ONEDNN_JIT_PROFILE"], "2", "{meta}");
    let (env, meta) = seen("b", &["--no-jit-map", "onednn"]);
    assert_eq!(env, "unset unset");
    assert!(meta.is_null(), "{meta}");
    assert_eq!(seen("c", &["--no-jit-map", "all"]).0, "unset unset");
    // A value the user set is theirs.
    let out = sofa()
        .env("ONEDNN_JIT_PROFILE", "1")
        .args(["record", "-o"])
        .arg(dir.path().join("d"))
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "1 2");
    let out = record_with(
        &dir.path().join("e"),
        &["--no-jit-map", "tvm", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_process_of_a_fork_exec_tree_is_sampled_with_its_name() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let bin = hotspots();
    let script = format!("{0} 8 1000 & {0} 8 1000; wait", bin.display());
    let out = record(&dir.path().join("a"), &["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    let hot: Vec<&Value> = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["comm"] == "hotspots")
        .collect();
    assert_eq!(hot.len(), 2, "{:#}", json["processes"]);
    for p in hot {
        assert!(p["samples"].as_u64().unwrap() > 50, "{p}");
    }
}

#[test]
fn python_multiprocessing_workers_are_sampled() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let code = "import multiprocessing as mp\n\
                def busy(n):\n    return sum(i * i for i in range(n))\n\
                if __name__ == '__main__':\n\
                \x20   with mp.get_context('fork').Pool(2) as pool:\n\
                \x20       print(sum(pool.map(busy, [1_500_000] * 4)))\n";
    let out = record(&dir.path().join("a"), &["python3", "-c", code]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    let busy: Vec<&Value> = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["comm"].as_str().unwrap().starts_with("python") && p["samples"].as_u64().unwrap() > 20
        })
        .collect();
    // The two pool workers do the work; each is its own process.
    assert!(busy.len() >= 2, "{:#}", json["processes"]);
}

#[test]
fn archive_analyzes_the_same_after_moving_it_and_deleting_the_binary() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("hot-copy");
    std::fs::copy(hotspots(), &bin).unwrap();
    // Few reads per step: compute_heavy holds ~2/3 of the samples. With
    // 20 000 it held 0.31-0.34, and under a loaded test run at times less
    // than the 0.3 this test checks names survive with.
    let out = record(
        &dir.path().join("a"),
        &[bin.to_str().unwrap(), "10", "2000"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = analyze_json(&dir.path().join("a"));

    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("copied-archive");
    copy_dir(&dir.path().join("a"), &moved);
    std::fs::remove_file(&bin).unwrap();
    std::fs::remove_dir_all(dir.path().join("a")).unwrap();
    let after = analyze_json(&moved);
    assert_eq!(before["functions"], after["functions"]);
    assert!(self_share(&after, "compute_heavy") > 0.3);
    // The module name survives the move too (the hot function's: on a busy
    // machine a kernel function can outrank it).
    assert_eq!(function(&after, "compute_heavy")["module"], "hot-copy");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn sigkilled_recorder_leaves_an_archive_that_says_it_was_cut_short() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sofa"))
        .arg("record")
        .arg("-o")
        .arg(&archive)
        .arg("--")
        .arg(hotspots())
        .args(["400", "20000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = sofa().arg("analyze").arg(&archive).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut short"));
    let json = analyze_json(&archive);
    // The orphaned workload would run on for seconds: stop it.
    for p in json["processes"].as_array().unwrap() {
        if p["comm"] == "hotspots" {
            kill_pid(p["pid"].as_u64().unwrap());
        }
    }
    assert_eq!(json["run"]["truncated"], true);
    // At least a second of samples was flushed before the kill.
    assert!(
        json["run"]["samples"].as_u64().unwrap() > 500,
        "{}",
        json["run"]
    );
}

#[test]
fn exit_status_is_the_commands() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record(&dir.path().join("a"), &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(analyze_json(&dir.path().join("a"))["run"]["exit_code"], 7);

    let out = record(&dir.path().join("b"), &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let json = analyze_json(&dir.path().join("b"));
    assert_eq!(json["run"]["signal"], 15);
    assert_eq!(json["run"]["truncated"], false);
}

#[test]
fn sigint_and_sigterm_are_forwarded_and_the_archive_finalized() {
    let _alone = alone();
    for (signal, number) in [("-INT", 2), ("-TERM", 15)] {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sofa"))
            .arg("record")
            .arg("-o")
            .arg(&archive)
            .args(["--", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(128 + number), "{signal}");
        let json = analyze_json(&archive);
        assert_eq!(json["run"]["signal"], number);
        assert_eq!(json["run"]["truncated"], false);
    }
}

#[test]
fn command_not_found_exits_127_with_one_error_line() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record(&dir.path().join("a"), &["nosuchcmd-for-sofa"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .contains("nosuchcmd-for-sofa: command not found"),
        "{stderr}"
    );
    assert!(
        stderr.lines().nth(1).unwrap().starts_with("hint: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        !dir.path().join("a").exists(),
        "no archive for a command that never ran"
    );

    let out = record(&dir.path().join("b"), &["./no/such/path"]);
    assert_eq!(out.status.code(), Some(127));
    let out = record(&dir.path().join("c"), &["/etc/hostname"]);
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn python_perf_support_is_set_for_frame_pointer_chains_unless_disabled() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    let script = format!(
        "echo \"${{PYTHONPERFSUPPORT:-unset}}\" > {}",
        file.display()
    );
    let seen = |name: &str, args: &[&str]| {
        let args = [args, &["--", "sh", "-c", &script]].concat();
        let out = record_with(&dir.path().join(name), &args);
        assert!(out.status.success());
        std::fs::read_to_string(&file).unwrap().trim().to_owned()
    };
    assert_eq!(seen("a", &["--call-graph", "fp"]), "1");
    assert_eq!(
        seen("b", &["--call-graph", "fp", "--no-python-perf"]),
        "unset"
    );
    // Unwound stacks: CPython's trampolines would cut them (no frame
    // pointer, no unwind tables).
    assert_eq!(seen("c", &[]), "unset");
    assert_eq!(seen("d", &["--call-graph", "dwarf"]), "unset");
}

#[test]
fn unknown_event_is_refused() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record_with(&dir.path().join("a"), &["-e", "bogus-event", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown event `bogus-event`"));
}

fn kill_pid(pid: u64) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

fn syscall_count(json: &Value, name: &str) -> u64 {
    json["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map_or(0, |s| s["count"].as_u64().unwrap())
}

#[test]
fn read_count_matches_strace() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let bin = hotspots();
    let cmd = [bin.to_str().unwrap(), "5", "4000"];
    // Every call traced (4000 reads a step come faster than the default
    // --syscall-rate): the counts are compared, not sampled.
    let out = record_with(
        &dir.path().join("a"),
        &[&["--syscall-rate", "0", "--"], &cmd[..]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    assert_eq!(
        json["run"]["collectors"]["syscalls"]["status"], "ok",
        "{}",
        json["run"]
    );
    let ours = syscall_count(&json, "read");

    let summary = dir.path().join("strace.txt");
    let status = std::process::Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&summary)
        .args(cmd)
        .stderr(Stdio::null())
        .status()
        .expect("strace not found: run scripts/setup.sh (installs strace)");
    assert!(status.success());
    let text = std::fs::read_to_string(&summary).unwrap();
    let theirs: u64 = text
        .lines()
        .find(|l| l.split_whitespace().last() == Some("read"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("no read line in strace summary:\n{text}"));
    assert_eq!(
        theirs, 20_001,
        "the fixture reads 5 x 4000 times plus the loader's read"
    );
    let diff = (ours as f64 - theirs as f64).abs() / theirs as f64;
    assert!(diff <= 0.01, "sofa {ours} reads vs strace {theirs}");

    let read = json["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "read")
        .unwrap();
    assert_eq!(read["errors"], 0);
    assert!(read["total_ns"].as_u64().unwrap() > 0);
    assert!(read["mean_ns"].as_u64().unwrap() > 0);
    // Every call is attributed to the swarm that was running when it was made.
    let attributed: u64 = json["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["syscalls"].as_u64().unwrap())
        .sum();
    assert!(
        attributed as f64 >= 0.9 * ours as f64,
        "{attributed} of {ours}: {:#}",
        json["swarms"]
    );

    // Arguments and return values are recorded: fd 3, 64 bytes, 64 returned.
    let archive = sofa_trace::Archive::open(dir.path().join("a")).unwrap();
    let calls = archive.read_table::<sofa_trace::tables::Syscall>().unwrap();
    let reads: Vec<_> = calls
        .iter()
        .filter(|c| c.name == "read" && c.arg2 == 64)
        .collect();
    assert!(reads.len() >= 20_000);
    assert!(
        reads
            .iter()
            .all(|c| c.ret == Some(64) && c.duration_ns.is_some())
    );
}

/// Issue 10 item 5: 4 M reads of 64 bytes (~1.5 M calls a second) come far
/// faster than `--syscall-rate`, so by default they are traced in windows
/// and the CPU profile stays close to the one recorded without system
/// calls; traced in full, the tracepoints' own kernel path takes a quarter
/// of the samples and `compute_heavy` loses ~20 points. 2.6 s, not 1.3:
/// the start, whose first 20 000 calls are traced whole, weighs half as
/// much (in the debug build 1.3 s runs were 2.0-4.1 points off, 2.6 s
/// runs 2.4-2.7).
#[test]
fn calls_too_fast_to_trace_are_traced_in_windows_and_leave_the_profile_true() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let bin = hotspots();
    let cmd = [bin.to_str().unwrap(), "80", "50000"];
    let record_json = |name: &str, flags: &[&str]| {
        let out = record_with(&dir.path().join(name), &[flags, &["--"], &cmd[..]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            analyze_json(&dir.path().join(name)),
        )
    };
    let (stderr, windowed) = record_json("windows", &[]);
    let (_, truth) = record_json("none", &["--no-syscalls"]);
    let (_, every) = record_json("every", &["--syscall-rate", "0"]);

    // Said at the end of recording, in the archive and by the analysis.
    assert!(
        stderr.contains("system calls: traced in windows"),
        "{stderr}"
    );
    let status = &windowed["run"]["collectors"]["syscalls"];
    assert_eq!(status["status"], "ok");
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("above --syscall-rate 20000"),
        "{status}"
    );
    let share = windowed["syscalls_traced_share"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&share), "traced {share}");
    assert!(windowed["run"]["tables"]["untraced"].as_u64().unwrap() >= 1);
    assert!(every.get("syscalls_traced_share").is_none());
    assert_eq!(every["run"]["tables"]["untraced"], 0);
    // Calls of the traced windows are kept, with their times.
    let reads = syscall_count(&windowed, "read");
    assert!((1000..2_000_000).contains(&reads), "{reads} reads traced");
    // Traced in full (a debug build's reader loses some of 4 M events).
    let all_reads = syscall_count(&every, "read");
    assert!(all_reads > 4 * reads, "{all_reads} vs {reads}");

    // The profile: the tracepoints' kernel path is a trace, not a quarter.
    let tracing = |json: &Value| {
        [
            "perf_swevent_event",
            "perf_tp_event",
            "perf_trace_buf_alloc",
        ]
        .iter()
        .map(|f| {
            json["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == *f)
                .map_or(0.0, |r| r["self_share"].as_f64().unwrap())
        })
        .sum::<f64>()
    };
    assert!(tracing(&every) > 0.10, "every call: {}", tracing(&every));
    assert!(tracing(&windowed) < 0.05, "windows: {}", tracing(&windowed));
    let heavy = |json: &Value| self_share(json, "compute_heavy");
    assert!(
        heavy(&truth) - heavy(&every) > 0.10,
        "{} vs {}",
        heavy(&truth),
        heavy(&every)
    );
    assert!(
        (heavy(&windowed) - heavy(&truth)).abs() < 0.04,
        "{} vs {} without system calls",
        heavy(&windowed),
        heavy(&truth)
    );
}

/// A Python script: `prelude`, then a thread spinning on `sched_yield`
/// while the main thread makes `getppids` `getppid` calls 2 ms apart.
fn spin_script(prelude: &str, getppids: u32) -> String {
    format!(
        "import os, threading, time\n\
         {prelude}\
         done = False\n\
         def spin():\n    \
             while not done: os.sched_yield()\n\
         t = threading.Thread(target=spin); t.start()\n\
         for _ in range({getppids}):\n    \
             os.getppid(); time.sleep(0.002)\n\
         done = True; t.join()\n"
    )
}

/// A thread spinning on `sched_yield` (as libgomp's pool does in PyTorch
/// jobs: 420 000 calls in 5.6 s of a CPU MLP) is left out on its own: every
/// other call stays traced in full, with no gap.
#[test]
fn a_spin_loops_sched_yield_is_left_out_and_every_other_call_traced() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let script = spin_script("", 600);
    let out = record_with(
        &dir.path().join("a"),
        &["--no-python", "--", &python(), "-c", &script],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sched_yield left out after"), "{stderr}");
    let json = analyze_json(&dir.path().join("a"));
    let left_out = json["syscalls_left_out"].as_array().unwrap();
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0]["name"], "sched_yield");
    assert!(
        json.get("syscalls_traced_share").is_none(),
        "no span with every call off: {}",
        json["run"]["collectors"]["syscalls"]
    );
    assert_eq!(syscall_count(&json, "getppid"), 600, "every other call");
    let yields = syscall_count(&json, "sched_yield");
    assert!(yields >= 1000, "traced until the filter: {yields}");
}

/// The kernel sets a counter's filter once: the first call left out takes
/// `sched_yield` with it, so a spin loop that starts after a storm of
/// another call is left out too, not traced in windows (PyTorch's
/// transformer: `newfstatat` in its imports, then libgomp's spin).
#[test]
fn the_one_filter_leaves_out_sched_yield_with_the_first_storm() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let script = spin_script(
        "for _ in range(750):\n    \
             for _ in range(40): os.stat('/')\n    \
             time.sleep(0.001)\n",
        300,
    );
    // 5 000 calls a second: the stat loop (30 000 calls, ~30 000 a second
    // here; three times slower would still be twice the budget) overspends.
    let out = record_with(
        &dir.path().join("a"),
        &[
            "--no-python",
            "--syscall-rate",
            "5000",
            "--",
            &python(),
            "-c",
            &script,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sched_yield left out with it"), "{stderr}");
    let json = analyze_json(&dir.path().join("a"));
    let left_out: Vec<&str> = json["syscalls_left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(left_out.len(), 2, "{left_out:?}");
    assert!(left_out.contains(&"sched_yield"), "{left_out:?}");
    assert!(
        json.get("syscalls_traced_share").is_none(),
        "no windows: {}",
        json["run"]["collectors"]["syscalls"]
    );
    assert_eq!(syscall_count(&json, "getppid"), 300, "every other call");
    assert_eq!(syscall_count(&json, "sched_yield"), 0);
}

#[test]
fn no_syscalls_switch_disables_the_collector() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record_hotspots(&dir.path().join("a"), &["2", "1000"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("a"));
    assert_eq!(json["run"]["collectors"]["syscalls"]["status"], "disabled");
    assert_eq!(json["syscalls"].as_array().unwrap().len(), 0);
    assert_eq!(json["run"]["tables"]["syscalls"], 0);
}

#[test]
fn system_counters_are_sampled_unless_disabled() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record_with(
        &dir.path().join("a"),
        &[
            "--proc-hz",
            "20",
            "--no-syscalls",
            "--",
            hotspots().to_str().unwrap(),
            "20",
            "0",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    assert_eq!(json["run"]["collectors"]["system"]["status"], "ok");
    let sys = &json["system"];
    let parts: f64 = [
        "cpu_user",
        "cpu_system",
        "cpu_iowait",
        "cpu_idle",
        "cpu_steal",
    ]
    .iter()
    .map(|k| sys[k].as_f64().unwrap())
    .sum();
    assert!((parts - 1.0).abs() < 0.01, "{sys}");
    assert!(
        sys["cpu_user"].as_f64().unwrap() > 0.1,
        "a CPU-bound run: {sys}"
    );
    assert!(sys["mem_used_max_bytes"].as_u64().unwrap() > 0);
    assert!(
        sys["mem_total_bytes"].as_u64().unwrap() >= sys["mem_used_max_bytes"].as_u64().unwrap()
    );
    assert!(
        sys["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["device"] == "lo")
    );

    // The workload itself is sampled from /proc/PID: CPU time grows, RSS is set.
    let archive = sofa_trace::Archive::open(dir.path().join("a")).unwrap();
    let procs = archive
        .read_table::<sofa_trace::tables::ProcessCounter>()
        .unwrap();
    let pid = json["processes"][0]["pid"].as_u64().unwrap() as u32;
    let mine: Vec<_> = procs.iter().filter(|p| p.pid == pid).collect();
    assert!(
        mine.len() >= 5,
        "{} samples of the workload at 20 Hz",
        mine.len()
    );
    assert!(mine.last().unwrap().utime_ns > mine.first().unwrap().utime_ns);
    assert!(
        mine.iter().all(|p| p.rss_bytes > 0 && p.threads == 1),
        "{mine:#?}"
    );

    let out = record_with(&dir.path().join("b"), &["--no-system", "--", "true"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("b"));
    assert_eq!(json["run"]["collectors"]["system"]["status"], "disabled");
    assert!(json["system"].is_null());
    assert_eq!(json["run"]["tables"]["system"], 0);
}

#[test]
fn gpu_collector_says_why_it_is_unavailable_or_is_disabled() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record(&dir.path().join("a"), &["true"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("a"));
    let gpu = &json["run"]["collectors"]["gpu"];
    let has_driver = std::path::Path::new("/proc/driver/nvidia").exists();
    if has_driver {
        assert_eq!(gpu["status"], "ok", "{gpu}");
    } else {
        // No NVIDIA driver here: the recording went on, the status says why,
        // and so did the summary line.
        assert_eq!(gpu["status"], "unavailable", "{gpu}");
        assert!(
            gpu["reason"]
                .as_str()
                .unwrap()
                .contains("libnvidia-ml.so.1"),
            "{gpu}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("GPU counters: not available"), "{stderr}");
        assert_eq!(json["gpu"].as_array().unwrap().len(), 0);
    }
    let out = record_with(&dir.path().join("b"), &["--no-gpu", "--", "true"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("b"));
    assert_eq!(json["run"]["collectors"]["gpu"]["status"], "disabled");
    assert_eq!(json["run"]["collectors"]["gpu"]["reason"], "--no-gpu");
}

const TCP_TRANSFER: &str = r#"
import socket, sys, threading
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
got = []
def serve():
    c, _ = srv.accept(); total = 0
    while True:
        b = c.recv(1 << 16)
        if not b: break
        total += len(b)
    got.append(total)
t = threading.Thread(target=serve); t.start()
cl = socket.create_connection(srv.getsockname()); cl.sendall(b"x" * n); cl.close(); t.join()
assert got == [n], got
"#;

#[test]
fn loopback_tcp_transfer_shows_up_in_the_network_table() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = 8_000_000;
    let py = python();
    let out = record_with(
        &dir.path().join("a"),
        &[
            "--no-syscalls",
            "--net-capture",
            "--",
            &py,
            "-c",
            TCP_TRANSFER,
            &n.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_json(&dir.path().join("a"));
    assert_eq!(
        json["run"]["collectors"]["net"]["status"], "ok",
        "{}",
        json["run"]
    );
    let lo = json["net"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .unwrap_or_else(|| panic!("no lo traffic: {:#}", json["net"]))
        .clone();
    // The tracepoints count every packet on `lo`, system-wide: other
    // programs' loopback traffic during the run (a CI runner's own) is in
    // the totals too. The captured headers see the same packets, so the
    // interface totals must equal the local traffic they saw (to oneself,
    // or between loopback addresses), and hold the transfer.
    let local = |h: &serde_json::Value| {
        let (src, dst) = (h["src"].as_str().unwrap(), h["dst"].as_str().unwrap());
        let loopback = |a: &str| a.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
        src == dst || (loopback(src) && loopback(dst))
    };
    let seen_on_lo: u64 = json["net"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| local(h))
        .map(|h| h["bytes"].as_u64().unwrap())
        .sum();
    for key in ["tx_bytes", "rx_bytes"] {
        let bytes = lo[key].as_u64().unwrap() as f64;
        let error = (bytes - seen_on_lo as f64).abs() / seen_on_lo as f64;
        assert!(
            error <= 0.05 && bytes >= 0.95 * n as f64,
            "{key}: {bytes} bytes for a {n}-byte transfer, {seen_on_lo} bytes of local traffic captured"
        );
    }
    assert!(lo["tx_peak_bytes_per_s"].as_f64().unwrap() > 0.0);
    assert!(json["net"]["tx_bytes"].as_u64().unwrap() >= lo["tx_bytes"].as_u64().unwrap());

    // Captured headers give the flow: client port -> server port, n bytes.
    assert_eq!(json["run"]["collectors"]["net_capture"]["status"], "ok");
    let flow = json["net"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["protocol"] == "tcp" && f["bytes"].as_u64().unwrap() > n / 2)
        .unwrap_or_else(|| panic!("no bulk flow: {:#}", json["net"]["flows"]))
        .clone();
    assert_eq!(
        (flow["src"].as_str(), flow["dst"].as_str()),
        (Some("127.0.0.1"), Some("127.0.0.1"))
    );
    let error = (flow["bytes"].as_u64().unwrap() as f64 - n as f64).abs() / n as f64;
    assert!(error <= 0.05, "{flow}");
    assert!(flow["src_port"].is_u64() && flow["dst_port"].is_u64());
    let hosts = json["net"]["hosts"].as_array().unwrap();
    assert!(
        hosts
            .iter()
            .any(|h| h["src"] == "127.0.0.1" && h["dst"] == "127.0.0.1")
    );

    let out = record_with(&dir.path().join("b"), &["--no-net", "--", "true"]);
    assert!(out.status.success());
    let json = analyze_json(&dir.path().join("b"));
    assert_eq!(json["run"]["collectors"]["net"]["status"], "disabled");
    assert_eq!(
        json["run"]["collectors"]["net_capture"]["status"],
        "disabled"
    );
    assert!(json["net"].is_null());
}

#[test]
fn several_archives_line_up_on_the_wall_clock() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    for name in ["rank0", "rank1"] {
        let out = record_hotspots(&dir.path().join(name), &["5", "1000"]);
        assert!(out.status.success());
    }
    let json = analyze_json_of(&[&dir.path().join("rank0"), &dir.path().join("rank1")]);
    let ranks = json["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert_eq!(ranks[0]["offset_ns"], 0);
    // rank1 was recorded after rank0 ended.
    let offset = ranks[1]["offset_ns"].as_u64().unwrap();
    assert!(
        offset >= ranks[0]["duration_ns"].as_u64().unwrap(),
        "{ranks:#?}"
    );
    let heavy = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "compute_heavy")
        .unwrap();
    let shares = heavy["self_share_by_archive"].as_array().unwrap();
    assert_eq!(shares.len(), 2);
    assert!(shares.iter().all(|s| s.as_f64().unwrap() > 0.3), "{heavy}");
    assert_eq!(json["archives"].as_array().unwrap().len(), 2);

    // A missing one among them is an error naming it.
    let out = sofa()
        .arg("analyze")
        .arg(dir.path().join("rank0"))
        .arg(dir.path().join("rank9"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rank9"));
}

#[test]
fn forks_and_signal_handlers_leave_no_unmatched_system_calls() {
    let _alone = alone();
    // A shell that forks and execs (clone returns in the child without an
    // enter) and handles SIGCHLD (rt_sigreturn returns as call -1).
    let dir = tempfile::tempdir().unwrap();
    let out = record(
        &dir.path().join("a"),
        &[
            "sh",
            "-c",
            "trap 'true' CHLD; for i in 1 2 3; do /bin/true; done",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("had no matching entry"), "{stderr}");
}

#[test]
fn vdso_frames_are_named() {
    let _alone = alone();
    // time.monotonic() is clock_gettime in the vDSO, with no file behind it.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let python = common::python();
    let out = record_with(
        &archive,
        &[
            "--no-syscalls",
            "--",
            &python,
            "-c",
            "import time\nfor _ in range(2_000_000): time.monotonic()",
        ],
    );
    common::assert_success(&out);
    let json = analyze_json(&archive);
    let vdso: Vec<&Value> = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["module"] == "[vdso]")
        .collect();
    assert!(
        vdso.iter()
            .any(|f| f["name"].as_str().unwrap().contains("clock_gettime")),
        "{vdso:?}"
    );
    assert!(
        vdso.iter()
            .all(|f| !f["name"].as_str().unwrap().starts_with("0x")),
        "{vdso:?}"
    );
}

#[test]
fn call_chains_cut_at_the_kernels_limit_are_flagged() {
    let _alone = alone();
    let recurse = hotspots().with_file_name("recurse");
    let dir = tempfile::tempdir().unwrap();
    // The kernel's frame-pointer chains are what the limit cuts.
    let cut = |depth: &str, name: &str| {
        let archive = dir.path().join(name);
        let out = record_with(
            &archive,
            &[
                "--no-syscalls",
                "--call-graph",
                "fp",
                "--",
                recurse.to_str().unwrap(),
                depth,
                "300",
            ],
        );
        common::assert_success(&out);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let reason = analyze_json(&archive)["run"]["collectors"]["cpu"]["reason"].clone();
        (stderr, reason)
    };
    let (stderr, reason) = cut("200", "deep");
    assert!(
        stderr.contains("had call chains cut at 127 entries"),
        "{stderr}"
    );
    assert!(
        reason
            .as_str()
            .unwrap_or("")
            .contains("perf_event_max_stack"),
        "{reason}"
    );
    let (stderr, _) = cut("50", "shallow");
    assert!(!stderr.contains("call chains cut"), "{stderr}");

    // Unwound from stack copies (the default), the same 200-deep chains
    // are not cut: they reach their root.
    let archive = dir.path().join("unwound");
    let out = record_with(
        &archive,
        &[
            "--no-syscalls",
            "--",
            recurse.to_str().unwrap(),
            "200",
            "300",
        ],
    );
    common::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("call chains cut"), "{stderr}");
    let stacks = &analyze_json(&archive)["stacks"];
    assert!(stacks["root_share"].as_f64().unwrap() > 0.9, "{stacks}");
}

#[test]
fn a_costly_sampling_rate_is_warned_about_first() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = record_with(
        &dir.path().join("a"),
        &["-F", "20000", "--no-syscalls", "--", "true"],
    );
    common::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.starts_with("sofa: warning: -F 20000"), "{stderr}");
    let quiet = record_with(
        &dir.path().join("b"),
        &["-F", "4999", "--no-syscalls", "--", "true"],
    );
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));
}
