//! Helpers shared by the integration tests that run `sofa` on real processes.
#![allow(dead_code)] // each test crate uses its own subset

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    let out = sofa()
        .args(["analyze", "--json", "--top", "1000"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
