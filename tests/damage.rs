//! Damaged archives: single-bit flips anywhere in any table's file give a
//! clear error naming the file, or (where the analysis never reads the
//! bytes) the very same analysis, never a silently different one, and
//! never a library's panic message on stderr.

mod common;

use common::{record_with, sofa};
use std::path::{Path, PathBuf};

fn analyze(archive: &Path) -> std::process::Output {
    sofa()
        .args(["analyze", "--json", "--top", "1000"])
        .arg(archive)
        .output()
        .unwrap()
}

#[test]
fn bit_flips_in_any_table_are_errors_or_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    // System calls on, so that every table the recorder fills has rows.
    let fixture = common::hotspots();
    common::assert_success(&record_with(
        &archive,
        &["--", fixture.to_str().unwrap(), "4", "200"],
    ));
    let baseline = analyze(&archive);
    common::assert_success(&baseline);

    let mut files: Vec<PathBuf> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.join("data.parquet"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let (mut errors, mut unchanged) = (0, 0);
    for file in &files {
        let original = std::fs::read(file).unwrap();
        let len = original.len();
        // Spread over the file, the footer and its length field included.
        let positions = [
            len / 7,
            len / 3,
            len / 2,
            (4 * len) / 5,
            len - 9,
            len - 5,
            len - 1,
        ];
        for (k, &pos) in positions.iter().enumerate() {
            let mut bytes = original.clone();
            bytes[pos] ^= 1 << (k % 8);
            std::fs::write(file, &bytes).unwrap();
            let out = analyze(&archive);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let name = file.strip_prefix(&archive).unwrap().display().to_string();
            assert!(!stderr.contains("panicked"), "{name} @{pos}: {stderr}");
            if out.status.success() {
                assert_eq!(
                    out.stdout, baseline.stdout,
                    "{name} @{pos}: a flip changed the analysis silently"
                );
                unchanged += 1;
            } else {
                assert_eq!(out.status.code(), Some(1), "{name} @{pos}: {stderr}");
                assert!(stderr.contains(&name), "{name} @{pos}: {stderr}");
                errors += 1;
            }
        }
        std::fs::write(file, &original).unwrap();
    }
    // The tables the analysis reads are checked: most flips are errors.
    assert!(errors > unchanged, "{errors} errors, {unchanged} unchanged");
}
