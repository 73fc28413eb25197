//! The binary's contract: exit statuses, one-line errors with hints, output shapes.

use assert_cmd::Command;
use predicates::prelude::*;
use sofa_trace::tables::Sample;
use sofa_trace::{ArchiveWriter, FlushPolicy, Meta, Table};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn sofa() -> Command {
    Command::cargo_bin("sofa").unwrap()
}

fn archive_with_samples(path: &Path, n: u64, finish: bool) {
    let policy = FlushPolicy {
        max_rows: 10,
        max_age: Duration::from_secs(3600),
    };
    let writer =
        ArchiveWriter::create_with_policy(path, Meta::new(vec!["train".into()]), policy).unwrap();
    let mut t = writer.table::<Sample>().unwrap();
    for i in 0..n {
        t.push(Sample::example(i)).unwrap();
    }
    if finish {
        t.finish().unwrap();
        writer.finish().unwrap();
    } else {
        // As a killed recorder: buffered rows lost, the lock released.
        std::mem::forget(t);
        drop(writer);
    }
}

/// `sofa analyze PATH` must fail with exit status 1; returns its stderr.
fn analyze_fails(path: impl AsRef<std::ffi::OsStr>) -> Vec<u8> {
    sofa()
        .arg("analyze")
        .arg(path)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone()
}

/// The error output: exactly one `sofa: error:` line and one hint line.
fn assert_one_error(stderr: &[u8], error_part: &str) {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("sofa: error: "), "{text}");
    assert!(lines[0].contains(error_part), "{text}");
    assert!(lines[1].starts_with("hint: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn help_and_version() {
    sofa()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("sofa record -- python train.py"));
    sofa()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    sofa()
        .args(["record", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sofa record [OPTIONS] -- <CMD>"));
}

#[test]
fn unknown_option_and_missing_command_are_usage_errors() {
    sofa()
        .args(["analyze", "--frobnicate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--frobnicate'",
        ));
    sofa().arg("record").assert().code(2);
    sofa().arg("bogus").assert().code(2);
    sofa()
        .args(["record", "-F", "0", "--", "true"])
        .assert()
        .code(2);
}

#[test]
fn analyze_missing_archive() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = analyze_fails(dir.path().join("nope"));
    assert_one_error(&stderr, "directory not found");
}

#[test]
fn analyze_directory_that_is_not_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = analyze_fails(dir.path());
    assert_one_error(&stderr, "has no meta.json");
}

#[test]
fn analyze_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    archive_with_samples(dir.path(), 5, true);
    let meta = dir.path().join("meta.json");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(
        &meta,
        text.replace("\"format_version\": 1", "\"format_version\": 7"),
    )
    .unwrap();
    let stderr = analyze_fails(dir.path());
    assert_one_error(&stderr, "format version 7");
    assert!(String::from_utf8_lossy(&stderr).contains("upgrade sofa"));
}

#[test]
fn analyze_corrupt_table() {
    let dir = tempfile::tempdir().unwrap();
    archive_with_samples(dir.path(), 50, true);
    let file = dir.path().join("samples/data.parquet");
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() - 20]).unwrap();
    let stderr = analyze_fails(dir.path());
    assert_one_error(&stderr, "samples/data.parquet");
}

#[test]
fn analyze_cut_short_archive_warns_and_reads_what_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    archive_with_samples(dir.path(), 35, false);
    let assert = sofa().arg("analyze").arg(dir.path()).assert().success();
    let out = assert.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sofa: warning: archive was cut short"),
        "{stderr}"
    );
    assert!(stdout.contains("CUT SHORT"), "{stdout}");
    // 30 of 35 rows were flushed (max_rows 10) before the "kill".
    assert!(stdout.contains("samples    30 "), "{stdout}");

    let json = sofa()
        .args(["analyze", "--json"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["run"]["truncated"], true);
    assert_eq!(value["run"]["samples"], 30);
    assert!(value["functions"].is_array());
    assert!(value["run"]["collectors"].is_object());
}

#[test]
fn report_of_a_missing_archive_fails_with_a_hint() {
    sofa()
        .args(["report", "/nonexistent/sofa-out"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("sofa: error:"))
        .stderr(predicate::str::contains("hint:"));
}

#[test]
fn os_errors_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    fs::write(&file, b"x").unwrap();
    let stderr = analyze_fails(file.join("run"));
    assert_one_error(&stderr, "Not a directory");
    let text = String::from_utf8_lossy(&stderr);
    assert_eq!(text.matches("os error 20").count(), 1, "{text}");
}

/// `sofa ARGS` as user `nobody`, when this runs as root (root may read
/// anything: permission messages need an ordinary user). `None` otherwise.
fn sofa_as_nobody(args: &[&std::ffi::OsStr]) -> Option<std::process::Output> {
    let id = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        return None;
    }
    Some(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("sofa"))
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn an_archive_that_cannot_be_read_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    archive_with_samples(&archive, 3, true);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let Some(out) = sofa_as_nobody(&["analyze".as_ref(), archive.as_os_str()]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    assert_one_error(&out.stderr, "Permission denied");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("not found") && !text.contains("no meta.json"),
        "{text}"
    );
}

#[test]
fn tracefs_that_cannot_be_read_is_not_called_unmounted() {
    use std::os::unix::fs::PermissionsExt;
    let tracing = std::path::Path::new("/sys/kernel/tracing");
    let readable_by_all =
        fs::metadata(tracing).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    if readable_by_all || !tracing.join("events").is_dir() {
        return; // nothing to tell here
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let archive = dir.path().join("a");
    let args = [
        "record".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ];
    let Some(out) = sofa_as_nobody(&args) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not readable by this user"), "{text}");
    assert!(!text.contains("not mounted"), "{text}");
}

#[test]
fn a_directory_given_as_the_command_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = sofa()
        .arg("record")
        .arg("-o")
        .arg(dir.path().join("a"))
        .arg("--")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert_one_error(&out.stderr, "Is a directory");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("chmod"), "{text}");
}
