//! What a recording writes, as a reviewable file: every table's columns and
//! types, the keys of `meta.json`, the collectors and the words stored in
//! the vocabulary columns. A change to the recorder that changes the archive
//! shows up here as a diff (and needs a format revision in
//! docs/archive-format.md); a refactoring must leave it alone.
//! `SOFA_BLESS=1 cargo test --test archive_schema` rewrites the golden file.

mod common;

use common::{assert_success, record_hotspots, root};
use sofa_trace::{Archive, ColumnValue};
use std::collections::BTreeSet;
use std::fmt::Write;

fn describe(archive: &Archive) -> String {
    let mut out = String::new();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.dir().join("meta.json")).unwrap()).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    writeln!(out, "meta.json: {}", keys(&meta).join(", ")).unwrap();
    writeln!(out, "collectors: {}", keys(&meta["collectors"]).join(", ")).unwrap();
    writeln!(out, "lost: {}", keys(&meta["lost"]).join(", ")).unwrap();
    writeln!(out, "tables: {}", keys(&meta["tables"]).join(", ")).unwrap();
    for table in keys(&meta["tables"]) {
        let frame = archive.read_frame(&table).unwrap();
        writeln!(out, "\n{table}").unwrap();
        for (name, dtype) in frame.schema().iter() {
            writeln!(out, "  {name}: {dtype}").unwrap();
        }
    }
    // Words of the vocabulary this recording is sure to contain.
    let words = |table: &str, column: &str| -> String {
        let frame = archive.read_frame(table).unwrap();
        let values: BTreeSet<String> =
            <String as ColumnValue>::from_column(frame.column(column).unwrap())
                .unwrap()
                .into_iter()
                .collect();
        values.into_iter().collect::<Vec<_>>().join(", ")
    };
    writeln!(
        out,
        "\nframes.kind ⊇ user: {}",
        words("frames", "kind").contains("user")
    )
    .unwrap();
    let metrics = words("system", "metric");
    writeln!(out, "system.metric: {metrics}").unwrap();
    out
}

#[test]
fn a_recording_has_the_golden_tables_columns_and_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    assert_success(&record_hotspots(&path, &["2", "20000"]));
    let actual = describe(&Archive::open(&path).unwrap());
    sofa_trace::golden::assert_golden(&root().join("tests/golden/archive-schema.txt"), &actual);
}
