//! `sofa analyze A B ...` in the terminal.

use super::table::{Align, L, R, section};
use super::text::render_text;
use std::fmt::Write;

/// Renders several archives: the ranks lined up on the wall clock, the
/// merged function table, then each archive on its own.
pub fn render_multi_text(multi: &crate::MultiAnalysis, limit: usize) -> String {
    let mut out = String::new();
    let ms =
        |ns: Option<u64>| ns.map_or_else(|| "-".to_owned(), |n| format!("{:.3}", n as f64 / 1e6));
    section(
        &mut out,
        "archives on the wall clock",
        &[
            ("archive", L),
            ("host", L),
            ("start +ms", R),
            ("duration ms", R),
            ("samples", R),
            ("steps", R),
            ("step ms", R),
            ("top function", L),
        ],
        multi.ranks.iter().map(|r| {
            vec![
                r.archive.clone(),
                r.host.clone(),
                ms(Some(r.offset_ns)),
                ms(r.duration_ns),
                r.samples.to_string(),
                r.steps.to_string(),
                ms(r.period_ns),
                r.top_function.clone().unwrap_or_default(),
            ]
        }),
        limit,
    );
    let mut columns: Vec<(String, Align)> = vec![("function".into(), L), ("module".into(), L)];
    columns.extend((0..multi.ranks.len()).map(|i| (format!("self% #{i}"), R)));
    let columns_ref: Vec<(&str, Align)> = columns.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    section(
        &mut out,
        "functions across archives",
        &columns_ref,
        multi.functions.iter().map(|f| {
            let mut row = vec![f.name.clone(), f.module.clone()];
            row.extend(
                f.self_share_by_archive
                    .iter()
                    .map(|s| format!("{:.2}", 100.0 * s)),
            );
            row
        }),
        limit,
    );
    for (i, a) in multi.archives.iter().enumerate() {
        let _ = writeln!(out, "\n== #{i} {} ==", a.run.archive);
        out.push_str(&render_text(a, limit));
    }
    out
}
