//! Helpers shared by the integration tests that run `sofa` on real processes.
#![allow(dead_code)] // each test crate uses its own subset

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Taken by each recording of a test binary whose recordings must have the
/// two CPUs alone (step detection): they take turns.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The C fixture, built once per test run.
pub fn hotspots() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = std::process::Command::new(root().join("scripts/build-fixtures.sh"))
                .output()
                .expect("run scripts/build-fixtures.sh");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            PathBuf::from(stdout.lines().next().unwrap())
        })
        .clone()
}

pub fn sofa() -> Command {
    Command::cargo_bin("sofa").unwrap()
}

pub fn record(archive: &Path, cmd: &[&str]) -> std::process::Output {
    record_with(archive, &[&["--"], cmd].concat())
}

/// `sofa record -o ARCHIVE --no-syscalls -- hotspots ARGS...`.
pub fn record_hotspots(archive: &Path, args: &[&str]) -> std::process::Output {
    let fixture = hotspots();
    let command = [&["--no-syscalls", "--", fixture.to_str().unwrap()], args].concat();
    record_with(archive, &command)
}

/// `sofa record -o ARCHIVE ARGS...`: flags, then `--` and the command.
pub fn record_with(archive: &Path, args: &[&str]) -> std::process::Output {
    sofa()
        .arg("record")
        .arg("-o")
        .arg(archive)
        .args(args)
        .output()
        .unwrap()
}

/// `sofa analyze --json --top 1000 ARCHIVE`, which must succeed.
pub fn analyze_json(archive: &Path) -> serde_json::Value {
    analyze_json_of(&[archive])
}

/// `sofa analyze --json --top 1000 ARCHIVE...` (several archives on one
/// wall clock), which must succeed.
pub fn analyze_json_of(archives: &[&Path]) -> serde_json::Value {
    let out = sofa()
        .args(["analyze", "--json", "--top", "1000"])
        .args(archives)
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A command that must have succeeded; its stderr says why not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python interpreter itself, not a wrapper such as a pyenv shim
/// (scripts/setup.sh installs it with numpy).
pub fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 (run scripts/setup.sh)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The row of `name` in `sofa analyze --json`'s functions table.
pub fn function<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not among the functions"))
}

/// Its self share.
pub fn self_share(json: &serde_json::Value, name: &str) -> f64 {
    function(json, name)["self_share"].as_f64().unwrap()
}

/// The titles of `sofa analyze --json`'s hints.
pub fn hint_titles(json: &serde_json::Value) -> Vec<String> {
    json["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap().to_owned())
        .collect()
}
