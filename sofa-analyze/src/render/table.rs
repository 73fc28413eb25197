//! Aligned plain-text tables, as the terminal output is made of.

use std::fmt::Write;

pub(super) fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Align {
    L,
    R,
}
pub(super) use Align::{L, R};

/// Cells longer than this are cut with an ellipsis (long C++ names).
const MAX_CELL: usize = 60;

/// Appends a titled, column-aligned table of at most `limit` of `rows`
/// (nothing when there are none), saying how many were left out.
pub(super) fn section(
    out: &mut String,
    title: &str,
    columns: &[(&str, Align)],
    rows: impl Iterator<Item = Vec<String>>,
    limit: usize,
) {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let shown: Vec<Vec<String>> = rows
        .iter()
        .take(limit)
        .map(|row| {
            row.iter()
                .map(|cell| {
                    if cell.chars().count() > MAX_CELL {
                        cell.chars().take(MAX_CELL - 1).chain(['…']).collect()
                    } else {
                        cell.clone()
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            shown
                .iter()
                .map(|row| row[i].chars().count())
                .chain([name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = writeln!(out, "\n{title} ({} of {})", shown.len(), rows.len());
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            text.push(' ');
            match columns[i].1 {
                R => text.extend(std::iter::repeat_n(' ', pad).chain(cell.chars())),
                L => text.extend(cell.chars().chain(std::iter::repeat_n(' ', pad))),
            }
            text.push(' ');
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(columns.iter().map(|(name, _)| *name).collect());
    for row in &shown {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A share as a percentage with two decimals.
pub(super) fn pct(share: f64) -> String {
    format!("{:.2}", 100.0 * share)
}
