//! Signals as a terminal user sends them: one SIGINT reaches the command per
//! Ctrl-C, repeated Ctrl-C escalates, and the archive is finalized every
//! time. The recorder runs in a real pseudo-terminal (`script`), whose line
//! discipline turns a written ^C into SIGINT for the foreground process group
//! (sofa and the command), exactly as a terminal does. The fixture logs each
//! signal with its sender.

mod common;

use common::{analyze_json, hotspots};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    hotspots().with_file_name("signals")
}

/// `sofa record -o ARCHIVE -- signals LOG MODE 30` inside `script`'s pty.
fn record_in_a_terminal(archive: &Path, log: &Path, mode: &str) -> Child {
    let sofa = assert_cmd::cargo::cargo_bin("sofa");
    let command = format!(
        "exec {} record -o {} --no-syscalls --no-net -- {} {} {mode} 30",
        sofa.display(),
        archive.display(),
        fixture().display(),
        log.display()
    );
    Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs sofa in a pseudo-terminal")
}

/// The log's lines once `done` holds for them (at most 20 s).
fn log_when(log: &Path, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "log never got there: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

/// What sofa prints as it handles the n-th Ctrl-C.
const ACKNOWLEDGED: [&str; 3] = [
    "interrupted: waiting for the command to exit",
    "sent SIGTERM to the command",
    "sent SIGKILL to the command",
];

/// Presses Ctrl-C `presses` times, each once sofa acknowledged the one
/// before (two presses in a row could merge into one pending SIGINT), then
/// waits for sofa to end; returns the log, what the terminal showed and
/// the archive's analysis.
fn ctrl_c(mode: &str, presses: usize) -> (Vec<String>, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (archive, log) = (dir.path().join("a"), dir.path().join("signals.log"));
    let mut script = record_in_a_terminal(&archive, &log, mode);
    let terminal = Arc::new(Mutex::new(String::new()));
    let reader = {
        let terminal = Arc::clone(&terminal);
        let mut stdout = script.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                terminal
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    log_when(&log, |l| count(l, "ready") == 1);
    let mut stdin = script.stdin.take().unwrap();
    for (press, acknowledged) in ACKNOWLEDGED.iter().take(presses).enumerate() {
        stdin.write_all(b"\x03").unwrap();
        stdin.flush().unwrap();
        let started = Instant::now();
        while !terminal.lock().unwrap().contains(acknowledged) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "Ctrl-C {} not acknowledged: {}",
                press + 1,
                terminal.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let status = script.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let terminal = terminal.lock().unwrap().clone();
    assert!(status.code().is_some(), "{terminal}");
    let lines = log_when(&log, |_| true);
    (lines, terminal, analyze_json(&archive))
}

#[test]
fn one_ctrl_c_reaches_the_command_once() {
    let (log, terminal, json) = ctrl_c("exit", 1);
    // From the terminal (SI_KERNEL), and not again from sofa.
    assert_eq!(count(&log, "SIGINT"), 1, "{log:?}\n{terminal}");
    assert_eq!(count(&log, "SIGINT code=128"), 1, "{log:?}");
    assert_eq!(json["run"]["exit_code"], 0, "{terminal}");
    assert_eq!(json["run"]["truncated"], false);
}

#[test]
fn a_command_that_ignores_ctrl_c_is_terminated_at_the_second() {
    let (log, terminal, json) = ctrl_c("ignore", 2);
    assert!(
        terminal.contains("waiting for the command to exit"),
        "{terminal}"
    );
    assert!(terminal.contains("sent SIGTERM"), "{terminal}");
    // Sent by sofa (SI_USER with a pid), once.
    let terms: Vec<&String> = log.iter().filter(|l| l.starts_with("SIGTERM")).collect();
    assert_eq!(terms.len(), 1, "{log:?}");
    assert!(terms[0].starts_with("SIGTERM code=0 pid="), "{log:?}");
    assert_eq!(json["run"]["exit_code"], 0);
    assert_eq!(json["run"]["truncated"], false);
}

#[test]
fn a_command_that_stays_is_killed_at_the_third_ctrl_c() {
    let (log, terminal, json) = ctrl_c("stay", 3);
    assert!(
        terminal.contains("Ctrl-C again sends it SIGTERM"),
        "{terminal}"
    );
    // Each Ctrl-C reached it once from the terminal; the third killed it
    // before it could log (SIGKILL cannot be caught).
    assert!((2..=3).contains(&count(&log, "SIGINT code=128")), "{log:?}");
    assert_eq!(count(&log, "SIGTERM"), 1, "{log:?}");
    assert_eq!(json["run"]["signal"], 9);
    assert_eq!(json["run"]["truncated"], false);
}

#[test]
fn a_sigint_sent_to_sofa_reaches_the_command_once() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, log) = (dir.path().join("a"), dir.path().join("signals.log"));
    let sofa = Command::new(assert_cmd::cargo::cargo_bin("sofa"))
        .arg("record")
        .arg("-o")
        .arg(&archive)
        .args(["--no-syscalls", "--no-net", "--"])
        .arg(fixture())
        .arg(&log)
        .args(["exit", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    log_when(&log, |l| count(l, "ready") == 1);
    let pid = sofa.id();
    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = sofa.wait_with_output().unwrap();
    let lines = log_when(&log, |_| true);
    let ints: Vec<&String> = lines.iter().filter(|l| l.starts_with("SIGINT")).collect();
    assert_eq!(ints.len(), 1, "{lines:?}");
    // Forwarded by sofa: the shell's kill reached sofa only.
    assert_eq!(ints[0], &format!("SIGINT code=0 pid={pid}"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(analyze_json(&archive)["run"]["truncated"], false);
}

#[test]
fn processes_left_behind_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let out = common::record(&archive, &["sh", "-c", "sleep 3 & exit 0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 process outlived the command and was not recorded further"),
        "{stderr}"
    );
    assert!(stderr.contains("sleep"), "{stderr}");
}
