//! `sofa analyze --export DIR`: every analysis table as CSV and Parquet.
//!
//! Rows are turned into columns through their serde form, so each table is
//! exported exactly as `--json` shows it: numbers stay numbers, missing
//! values are nulls, lists (e.g. a swarm's top functions) become JSON text.

use crate::Analysis;
use serde::Serialize;
use serde_json::Value;
use sofa_trace::polars::prelude::*;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// One column's values, typed by what they hold.
enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

fn column(values: &[&Value]) -> Values {
    let non_null = || values.iter().filter(|v| !v.is_null());
    if non_null().all(|v| v.is_i64() || v.is_u64()) {
        Values::Int(
            values
                .iter()
                .map(|v| v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)))
                .collect(),
        )
    } else if non_null().all(|v| v.is_number()) {
        Values::Float(values.iter().map(|v| v.as_f64()).collect())
    } else if non_null().all(|v| v.is_boolean()) {
        Values::Bool(values.iter().map(|v| v.as_bool()).collect())
    } else {
        Values::Text(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect(),
        )
    }
}

fn csv_cell(v: &Value) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Writes `rows` as `DIR/NAME.csv` and `DIR/NAME.parquet`.
fn write_table<T: Serialize>(dir: &Path, name: &str, rows: &[T]) -> Result<(), ExportError> {
    let csv_path = dir.join(format!("{name}.csv"));
    let parquet_path = dir.join(format!("{name}.parquet"));
    let rows: Vec<serde_json::Map<String, Value>> = rows
        .iter()
        .filter_map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect();
    let names: Vec<String> = rows
        .first()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    let cells = |name: &str| -> Vec<&Value> {
        rows.iter()
            .map(|r| r.get(name).unwrap_or(&Value::Null))
            .collect()
    };

    let mut csv = names.join(",");
    csv.push('\n');
    for r in &rows {
        let line: Vec<String> = names
            .iter()
            .map(|n| csv_cell(r.get(n).unwrap_or(&Value::Null)))
            .collect();
        let _ = writeln!(csv, "{}", line.join(","));
    }
    fs::write(&csv_path, csv).map_err(|source| ExportError::Io {
        path: csv_path.clone(),
        source,
    })?;

    let columns: Vec<Column> = names
        .iter()
        .map(|n| {
            let name = PlSmallStr::from(n.as_str());
            match column(&cells(n)) {
                Values::Int(v) => Column::new(name, v),
                Values::Float(v) => Column::new(name, v),
                Values::Bool(v) => Column::new(name, v),
                Values::Text(v) => Column::new(name, v),
            }
        })
        .collect();
    let write_err = |reason: String| ExportError::Write {
        path: parquet_path.clone(),
        reason,
    };
    let mut frame = DataFrame::new(rows.len(), columns).map_err(|e| write_err(e.to_string()))?;
    let file = fs::File::create(&parquet_path).map_err(|source| ExportError::Io {
        path: parquet_path.clone(),
        source,
    })?;
    ParquetWriter::new(file)
        .finish(&mut frame)
        .map_err(|e| write_err(e.to_string()))?;
    Ok(())
}

/// Writes every table of the analysis into `dir` (created if needed);
/// returns the table names written.
pub fn export(analysis: &Analysis, dir: &Path) -> Result<Vec<&'static str>, ExportError> {
    fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let net = analysis.net.clone().unwrap_or_default();
    let mut written = Vec::new();
    macro_rules! put {
        ($name:literal, $rows:expr) => {
            write_table(dir, $name, $rows)?;
            written.push($name);
        };
    }
    put!("functions", &analysis.functions);
    put!("modules", &analysis.modules);
    put!("processes", &analysis.processes);
    put!("threads", &analysis.threads);
    put!("steps", &analysis.step_breakdown);
    put!("swarms", &analysis.swarms);
    put!("syscalls", &analysis.syscalls);
    put!("gpu", &analysis.gpu);
    put!("net_interfaces", &net.interfaces);
    put!("net_flows", &net.flows);
    put!("hints", &analysis.hints);
    let waits = analysis.waits.clone().unwrap_or_default();
    put!("wait_reasons", &waits.by_reason);
    put!("wait_threads", &waits.threads);
    put!("wait_stacks", &waits.stacks);
    Ok(written)
}
