//! Golden files for the tests of every crate: compare an output with the
//! file that holds what it should be, show where they differ, and
//! regenerate the file when asked (`SOFA_BLESS=1`). Outputs are written one
//! value per line (pretty-printed JSON, aligned text), so a failure and the
//! change that fixes it read as a diff.

use std::path::{Path, PathBuf};

/// Panics unless `actual` equals the contents of `golden`, after writing
/// `actual` beside it (`NAME.actual.EXT`, ignored by git) for `diff`. With
/// `SOFA_BLESS` set, writes `actual` as the new golden file instead.
pub fn assert_golden(golden: &Path, actual: &str) {
    let beside = actual_path(golden);
    if std::env::var_os("SOFA_BLESS").is_some() {
        if let Some(dir) = golden.parent() {
            std::fs::create_dir_all(dir).expect("create the golden file's directory");
        }
        std::fs::write(golden, actual).expect("write the golden file");
        let _ = std::fs::remove_file(&beside);
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    if expected == actual {
        let _ = std::fs::remove_file(&beside);
        return;
    }
    std::fs::write(&beside, actual).expect("write the actual output beside the golden file");
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    let show = |text: &str| -> String {
        text.lines()
            .nth(line)
            .unwrap_or("(end of file)")
            .chars()
            .take(200)
            .collect()
    };
    panic!(
        "output differs from {} from line {}:\n  golden: {}\n  actual: {}\n\
         diff -u {} {}\n(if the change is intended, rerun with SOFA_BLESS=1)",
        golden.display(),
        line + 1,
        show(&expected),
        show(actual),
        golden.display(),
        beside.display()
    );
}

/// `dir/NAME.actual.EXT` beside `dir/NAME.EXT`.
fn actual_path(golden: &Path) -> PathBuf {
    let stem = golden
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match golden.extension() {
        Some(ext) => format!("{stem}.actual.{}", ext.to_string_lossy()),
        None => format!("{stem}.actual"),
    };
    golden.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_is_shown_and_written_beside() {
        if std::env::var_os("SOFA_BLESS").is_some() {
            return; // blessing turns every comparison into a write
        }
        let dir = tempfile::tempdir().unwrap();
        let golden = dir.path().join("out.txt");
        std::fs::write(&golden, "a\nb\nc\n").unwrap();
        assert_golden(&golden, "a\nb\nc\n");
        let failed = std::panic::catch_unwind(|| assert_golden(&golden, "a\nB\nc\n"));
        let message = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("from line 2"), "{message}");
        assert!(message.contains("golden: b"), "{message}");
        let beside = dir.path().join("out.actual.txt");
        assert_eq!(std::fs::read_to_string(&beside).unwrap(), "a\nB\nc\n");
        assert_golden(&golden, "a\nb\nc\n");
        assert!(
            !beside.exists(),
            "a passing run removes the stale actual file"
        );
    }
}
