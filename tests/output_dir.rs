//! `sofa record -o DIR` never destroys what it did not write, and one
//! recorder at a time owns a directory.

mod common;

use common::{analyze_json, assert_success, record, record_with, sofa};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The one `sofa: error:` line of a refused recording, which must have
/// exited 1 without running the command.
fn refusal(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sofa: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    errors[0].to_owned()
}

/// Every file under `dir` with its bytes, sorted: what must survive.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                files.push((
                    name,
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                files.push((name, fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn recorded_command(archive: &Path) -> String {
    analyze_json(archive)["run"]["command"].to_string()
}

#[test]
fn a_directory_with_a_foreign_meta_json_is_refused_untouched() {
    // The reproduction from the issue: a config file named meta.json.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    fs::create_dir_all(d.join("samples")).unwrap();
    fs::write(d.join("meta.json"), br#"{"name":"cfg"}"#).unwrap();
    fs::write(d.join("samples/keep.txt"), b"mine\n").unwrap();
    let before = snapshot(&d);
    let line = refusal(&record(&d, &["true"]));
    assert!(line.contains("meta.json"), "{line}");
    assert_eq!(snapshot(&d), before);
}

#[test]
fn an_archive_holding_user_files_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("run");
    assert_success(&record(&d, &["true"]));
    let home = tempfile::tempdir().unwrap();
    fs::write(home.path().join("weights.bin"), b"precious").unwrap();

    type Plant = fn(&Path, &Path);
    let plants: [(&str, Plant); 4] = [
        ("notes.txt", |d, _| {
            fs::write(d.join("notes.txt"), b"mine").unwrap()
        }),
        ("keep.txt", |d, _| {
            fs::write(d.join("samples/keep.txt"), b"mine").unwrap()
        }),
        ("checkpoints", |d, _| {
            fs::create_dir(d.join("checkpoints")).unwrap()
        }),
        ("symbolic link", |d, home| {
            fs::rename(d.join("stacks"), d.join("stacks.moved")).unwrap();
            std::os::unix::fs::symlink(home, d.join("stacks")).unwrap();
        }),
    ];
    for (what, plant) in plants {
        let copy = dir.path().join(format!("copy-{what}"));
        assert_success(
            &std::process::Command::new("cp")
                .arg("-a")
                .arg(&d)
                .arg(&copy)
                .output()
                .unwrap(),
        );
        plant(&copy, home.path());
        let before = snapshot(&copy);
        let home_before = snapshot(home.path());
        let line = refusal(&record(&copy, &["true"]));
        assert!(line.contains(what), "{what}: {line}");
        assert_eq!(snapshot(&copy), before, "{what}");
        assert_eq!(snapshot(home.path()), home_before, "{what}");
    }
}

#[test]
fn a_file_or_the_working_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("train.py");
    fs::write(&file, b"print('hi')\n").unwrap();
    let line = refusal(&record(&file, &["true"]));
    assert!(line.contains("not a directory"), "{line}");
    assert_eq!(fs::read(&file).unwrap(), b"print('hi')\n");

    let before = snapshot(dir.path());
    let out = sofa()
        .current_dir(dir.path())
        .args(["record", "-o", ".", "--", "true"])
        .output()
        .unwrap();
    let line = refusal(&out);
    assert!(line.contains("train.py"), "{line}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn an_earlier_archive_is_replaced_only_once_the_new_one_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("run");
    assert_success(&record(&d, &["echo", "first"]));
    assert_success(&sofa().arg("report").arg(&d).output().unwrap());
    assert!(d.join("report.html").exists());
    let first = snapshot(&d);

    // A recording that fails before its command runs puts the archive back.
    let out = record_with(&d, &["-e", "bogus-event", "--", "echo", "second"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(snapshot(&d), first);
    assert!(recorded_command(&d).contains("first"));
    // ... and leaves no directory it created.
    let fresh = dir.path().join("fresh");
    let out = record_with(&fresh, &["-e", "bogus-event", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!fresh.exists());

    assert_success(&record(&d, &["echo", "third"]));
    assert!(recorded_command(&d).contains("third"));
    let names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for gone in ["report.html", ".sofa-previous", ".sofa-lock"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} in {names:?}");
    }
}

#[test]
fn a_second_recorder_into_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("run");
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("sofa"))
        .arg("record")
        .arg("-o")
        .arg(&d)
        .args(["--no-syscalls", "--no-net", "--", "sleep", "4"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !(d.join(".sofa-lock").exists() && d.join("meta.json").exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "first recorder never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = refusal(&record(&d, &["echo", "second"]));
    assert!(line.contains("another sofa"), "{line}");
    assert!(line.contains(&format!("pid {}", first.id())), "{line}");
    let status = first.wait().unwrap();
    assert!(status.success());
    assert!(recorded_command(&d).contains("sleep"));
    assert!(!d.join(".sofa-lock").exists());
}

#[test]
fn an_archive_still_being_recorded_analyses_as_far_as_it_was_flushed() {
    // System calls and packets are read more than once in an analysis:
    // parts flushed in between must not make it fail or count twice.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("live");
    let fixture = common::hotspots();
    let mut recorder = std::process::Command::new(assert_cmd::cargo::cargo_bin("sofa"))
        .arg("record")
        .arg("-o")
        .arg(&d)
        .args(["--", fixture.to_str().unwrap(), "150", "3000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let flushed = |table: &str| {
        fs::read_dir(d.join(table)).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".parquet"))
        })
    };
    let started = Instant::now();
    while !(flushed("syscalls") && flushed("samples")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no system calls flushed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut live = 0;
    while recorder.try_wait().unwrap().is_none() {
        let out = sofa().args(["analyze", "--json"]).arg(&d).output().unwrap();
        assert_success(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let calls: u64 = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert!(calls > 0, "{}", String::from_utf8_lossy(&out.stderr));
        if json["run"]["warnings"]
            .to_string()
            .contains("still being recorded")
        {
            live += 1;
        }
    }
    assert!(recorder.wait().unwrap().success());
    assert!(live >= 1, "no analysis while it was being recorded");
    // Complete, it analyses as any archive.
    let json = analyze_json(&d);
    assert!(json["run"]["truncated"] == false, "{}", json["run"]);
}
