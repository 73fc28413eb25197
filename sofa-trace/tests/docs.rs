//! docs/archive-format.md embeds the generated table reference; this keeps them equal.
//! `SOFA_BLESS=1 cargo test -p sofa-trace --test docs` regenerates it.

use std::fs;
use std::path::PathBuf;

const BEGIN: &str = "<!-- tables:begin (generated from sofa-trace; SOFA_BLESS=1 cargo test -p sofa-trace --test docs) -->\n";
const END: &str = "<!-- tables:end -->";

#[test]
fn archive_format_doc_lists_every_table_and_column() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/archive-format.md");
    let doc = fs::read_to_string(&path).expect("docs/archive-format.md exists");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let generated = sofa_trace::tables::markdown_reference();
    if std::env::var_os("SOFA_BLESS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], generated, &doc[end..]);
        fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        doc[start..end],
        generated,
        "docs/archive-format.md is out of date: run SOFA_BLESS=1 cargo test -p sofa-trace --test docs"
    );
}
