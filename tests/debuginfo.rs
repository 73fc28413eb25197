//! Functions named from detached debug files, as gdb and perf find them:
//! `.gnu_debuglink` next to the binary, and the build-id layout under a
//! debug directory (`sofa record --debug-dir`); a debug file whose CRC or
//! build-id does not match is not used.

mod common;

use common::{analyze_json, assert_success, record_with, root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert_success(&out);
}

/// The C fixture built with `-g` into `dir`, its debug info split off into
/// `hotspots.debug` and the binary stripped of every symbol table but the
/// dynamic one; `link` adds a `.gnu_debuglink` to it.
fn split_fixture(dir: &Path, opt: &str, link: bool) -> PathBuf {
    let exe = dir.join("hotspots");
    let debug = dir.join("hotspots.debug");
    run(Command::new("cc")
        .args([opt, "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(root().join("fixtures/workloads/hotspots.c")));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug));
    run(Command::new("strip").arg("--strip-all").arg(&exe));
    if link {
        run(Command::new("objcopy")
            .arg(format!("--add-gnu-debuglink={}", debug.display()))
            .arg(&exe)
            .current_dir(dir));
    }
    exe
}

fn build_id(file: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .expect("a build-id note")
}

/// Self share of `compute_heavy` in the hotspots binary's samples.
fn heavy_share(json: &Value) -> f64 {
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "compute_heavy")
        .map(|f| f["self_share"].as_f64().unwrap())
        .sum()
}

/// Where a module's names came from, as `sofa analyze --json` says.
fn symbols_of(json: &Value, module: &str) -> String {
    let row = json["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == module)
        .unwrap_or_else(|| panic!("{module} not among the modules"));
    row["symbols"].as_str().unwrap_or("null").to_owned()
}

fn record(archive: &Path, exe: &Path, debug_dir: Option<&Path>) -> Value {
    let mut args: Vec<String> = vec!["--no-syscalls".into()];
    if let Some(dir) = debug_dir {
        args.push("--debug-dir".into());
        args.push(dir.display().to_string());
    }
    args.extend([
        "--".into(),
        exe.display().to_string(),
        "10".into(),
        "0".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&record_with(archive, &args));
    analyze_json(archive)
}

#[test]
fn functions_are_named_from_a_debuglink_next_to_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let exe = split_fixture(dir.path(), "-O1", true);
    let json = record(&dir.path().join("a"), &exe, None);
    // compute_heavy is not exported: only the detached symbol table names it.
    let share = heavy_share(&json);
    assert!(share > 0.3, "compute_heavy {share}");
    assert_eq!(symbols_of(&json, "hotspots"), "debuglink");

    // The same debug file changed after linking: its CRC no longer
    // matches, so it is not used.
    let debug = dir.path().join("hotspots.debug");
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.push(0);
    std::fs::write(&debug, bytes).unwrap();
    let json = record(&dir.path().join("b"), &exe, None);
    assert_eq!(heavy_share(&json), 0.0);
}

#[test]
fn functions_are_named_from_the_build_id_layout_of_a_debug_dir() {
    let dir = tempfile::tempdir().unwrap();
    let exe = split_fixture(dir.path(), "-O1", false);
    let id = build_id(&exe);
    let root_dir = dir.path().join("debug-root");
    let target = root_dir
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(dir.path().join("hotspots.debug"), &target).unwrap();
    let json = record(&dir.path().join("a"), &exe, Some(&root_dir));
    let share = heavy_share(&json);
    assert!(share > 0.3, "compute_heavy {share}");
    assert_eq!(symbols_of(&json, "hotspots"), "build-id");

    // A debug file of another build at that path: its build-id differs,
    // so it is not used.
    let other = tempfile::tempdir().unwrap();
    split_fixture(other.path(), "-O2", false);
    assert_ne!(build_id(&other.path().join("hotspots")), id);
    std::fs::copy(other.path().join("hotspots.debug"), &target).unwrap();
    let json = record(&dir.path().join("b"), &exe, Some(&root_dir));
    assert_eq!(heavy_share(&json), 0.0);
}

/// The C fixture stripped as Fedora's `find-debuginfo` strips it: the
/// local function symbols that `.dynsym` lacks go, xz-compressed, into a
/// `.gnu_debugdata` section (MiniDebugInfo); no debug file anywhere.
fn minidebuginfo_fixture(dir: &Path) -> PathBuf {
    let exe = dir.join("hotspots");
    run(Command::new("cc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(root().join("fixtures/workloads/hotspots.c")));
    let script = r#"
        set -e
        nm -D --defined-only --format=posix hotspots | awk '{print $1}' | sort > dynsyms
        nm --defined-only --format=posix hotspots | awk '$2 ~ /^[Tt]$/ {print $1}' | sort > funcsyms
        comm -13 dynsyms funcsyms > keep
        objcopy --only-keep-debug hotspots debug
        objcopy -S --remove-section .gdb_index --remove-section .comment --keep-symbols=keep debug mini
        strip --strip-all -R .comment hotspots
        xz -f mini
        objcopy --add-section .gnu_debugdata=mini.xz hotspots
        rm debug
    "#;
    run(Command::new("sh").args(["-c", script]).current_dir(dir));
    exe
}

#[test]
fn functions_are_named_from_minidebuginfo() {
    let dir = tempfile::tempdir().unwrap();
    let exe = minidebuginfo_fixture(dir.path());
    let json = record(&dir.path().join("a"), &exe, None);
    let share = heavy_share(&json);
    assert!(share > 0.3, "compute_heavy {share}");
    assert_eq!(symbols_of(&json, "hotspots"), "minidebuginfo");

    // The same binary without the section: an executable exports no
    // functions, so nothing names them.
    run(Command::new("objcopy")
        .args(["--remove-section", ".gnu_debugdata", "hotspots"])
        .current_dir(dir.path()));
    let json = record(&dir.path().join("b"), &exe, None);
    assert_eq!(heavy_share(&json), 0.0);
    assert_eq!(symbols_of(&json, "hotspots"), "none");
}

/// Share of libc's samples that perf leaves as raw addresses, from
/// `perf report --sort dso,sym` (no call graph).
fn perf_raw_libc_share(data: &Path) -> f64 {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,sym",
            "-q",
            "-i",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert_success(&out);
    let (mut all, mut raw) = (0.0, 0.0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(pct), Some(dso), Some(_), Some(sym)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        if dso.starts_with("libc.so") {
            all += pct;
            if sym.starts_with("0x") {
                raw += pct;
            }
        }
    }
    assert!(all > 50.0, "perf saw little libc: {all}%");
    raw / all
}

#[test]
fn libc_internals_are_named_as_perf_names_them() {
    // memset and memcpy's internal variants are named only by libc's
    // symbol table or its detached debug file (Debian: libc6-dbg, which
    // scripts/setup.sh --tests installs); sofa may leave no more of libc's
    // samples unnamed than perf does, plus 2 points.
    let fixture = common::hotspots().with_file_name("memwork");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let out = record_with(
        &archive,
        &["--no-syscalls", "--", fixture.to_str().unwrap(), "6000"],
    );
    assert_success(&out);
    let json = analyze_json(&archive);
    let libc: Vec<&Value> = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["module"].as_str().unwrap().starts_with("libc.so"))
        .collect();
    let samples = |raw: bool| -> u64 {
        libc.iter()
            .filter(|f| f["name"].as_str().unwrap().starts_with("0x") == raw)
            .map(|f| f["self_samples"].as_u64().unwrap())
            .sum()
    };
    let (named, raw) = (samples(false), samples(true));
    assert!(named + raw > 300, "few libc samples: {named} + {raw}");
    let sofa_raw = raw as f64 / (named + raw) as f64;

    let data = dir.path().join("perf.data");
    let out = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&fixture)
        .arg("6000")
        .output()
        .unwrap();
    assert_success(&out);
    let perf_raw = perf_raw_libc_share(&data);
    assert!(
        sofa_raw <= perf_raw + 0.02,
        "libc samples left unnamed: sofa {sofa_raw:.3}, perf {perf_raw:.3}"
    );
    let memset = libc
        .iter()
        .find(|f| f["name"].as_str().unwrap().starts_with("__memset_"))
        .unwrap_or_else(|| panic!("no __memset_* among {libc:?}"));
    assert!(memset["self_share"].as_f64().unwrap() > 0.15, "{memset}");
}
