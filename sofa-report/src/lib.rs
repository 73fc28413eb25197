//! The HTML report. Not written yet: `sofa report` says so and exits 2.

use std::path::PathBuf;

/// Where `sofa report` writes: `ARCHIVE/report.html` unless `-o` says otherwise.
pub fn default_output(archive: &std::path::Path) -> PathBuf {
    archive.join("report.html")
}
