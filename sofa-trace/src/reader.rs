//! Reading an archive, complete or cut short.

use crate::meta::{FORMAT_VERSION, Meta, RecordingStatus};
use crate::writer::{
    COMPACT_FILE, PART_PREFIX, TMP_SUFFIX, decode, first_line, open_checked, parquet_rows,
    part_files,
};
use crate::{META_FILE, Table, TraceError, tables};
use polars::prelude::*;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Rows decoded at once when a table is read slice by slice: the size of
/// the row groups the writer makes, so a slice decodes one of them.
pub const SLICE_ROWS: usize = crate::writer::COMPACT_BATCH_ROWS;

/// The columns of the `syscalls` table that [`Archive::for_each_call`] reads.
const CALL_COLUMNS: [&str; 8] = [
    "time_ns",
    "duration_ns",
    "pid",
    "tid",
    "name",
    "ret",
    "arg0",
    "arg1",
];

/// A row of the `syscalls` table as [`Archive::for_each_call`] lends it:
/// the columns analysis reads, the name borrowed (see
/// [`tables::Syscall`] for what each means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef<'a> {
    pub time_ns: u64,
    pub duration_ns: Option<u64>,
    pub pid: u32,
    pub tid: u32,
    pub name: &'a str,
    pub ret: Option<i64>,
    pub arg0: u64,
    pub arg1: u64,
}

/// A row of the `net` table as [`Archive::for_each_packet`] lends it
/// (see [`tables::NetEvent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    pub time_ns: u64,
    pub source: &'a str,
    pub ifname: Option<&'a str>,
    pub len: u32,
}

/// A row of the `samples` table as [`Archive::for_each_sample`] lends
/// it: the columns analysis reads (see [`tables::Sample`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub time_ns: u64,
    pub stack_id: Option<u64>,
    pub pid: u32,
    pub tid: u32,
}

/// The error of a file that is not there (any more).
fn is_not_found(e: &TraceError) -> bool {
    matches!(e, TraceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// A decoded slice's columns, typed, for readers that borrow its values;
/// errors name the table's `path`.
struct Columns<'f> {
    frame: &'f DataFrame,
    path: &'f Path,
}

impl<'f> Columns<'f> {
    /// Column `name` as `typed` reads it, checked to hold no null unless
    /// `nullable`.
    fn get<T: PolarsDataType>(
        &self,
        name: &str,
        nullable: bool,
        typed: impl FnOnce(&'f Column) -> PolarsResult<&'f ChunkedArray<T>>,
    ) -> Result<&'f ChunkedArray<T>, TraceError> {
        let corrupt = |reason: String| TraceError::CorruptTable {
            path: self.path.to_path_buf(),
            reason,
        };
        let column = self
            .frame
            .column(name)
            .map_err(|_| corrupt(format!("no column `{name}`")))?;
        let values =
            typed(column).map_err(|_| corrupt(format!("column `{name}` has the wrong type")))?;
        match values.null_count() {
            nulls if nulls > 0 && !nullable => Err(corrupt(format!(
                "column `{name}` holds {nulls} nulls but may not be null"
            ))),
            _ => Ok(values),
        }
    }
}

/// Something a reader should tell the user about an archive that can still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The recorder never finished: data ends at its last flush.
    Truncated { meta: PathBuf },
    /// A recorder is writing the archive now (it holds its lock): what is
    /// read is what it has flushed so far.
    BeingRecorded { dir: PathBuf, holder: String },
    /// A file the recorder was writing when it stopped; its rows are lost.
    IncompleteFile { path: PathBuf },
    /// Parts left beside a compacted table by an interrupted compaction; they
    /// duplicate rows of the compacted file and are not read.
    LeftoverParts { dir: PathBuf, count: usize },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Truncated { meta } => write!(
                f,
                "archive was cut short: the recorder did not finish ({} says `recording`); \
                 data ends at its last flush",
                meta.display()
            ),
            Warning::BeingRecorded { dir, holder } => write!(
                f,
                "{} is still being recorded ({holder}): this is what it has flushed so far",
                dir.display()
            ),
            Warning::IncompleteFile { path } => write!(
                f,
                "ignored {}: the recorder stopped while writing it",
                path.display()
            ),
            Warning::LeftoverParts { dir, count } => write!(
                f,
                "ignored {count} part files in {}: already merged into {COMPACT_FILE}",
                dir.display()
            ),
        }
    }
}

/// An opened archive: its metadata, and its tables read on demand.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    meta: Meta,
    warnings: Vec<Warning>,
}

impl Archive {
    /// Opens the archive at `dir`, checking its metadata and format version.
    pub fn open(dir: impl AsRef<Path>) -> Result<Archive, TraceError> {
        let dir = dir.as_ref().to_path_buf();
        // Only a path that is not there is "not found"; one we may not look
        // into is a permission problem, and says so.
        match fs::metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TraceError::NotFound { path: dir });
            }
            Err(e) => return Err(TraceError::io(&dir, e)),
            Ok(m) if !m.is_dir() => return Err(TraceError::NotAnArchive { path: dir }),
            Ok(_) => {}
        }
        let meta_path = dir.join(META_FILE);
        let bytes = match fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                ) =>
            {
                return Err(TraceError::NotAnArchive { path: dir });
            }
            Err(e) => return Err(TraceError::io(&meta_path, e)),
        };
        let meta = parse_meta(&bytes).map_err(|e| match e {
            MetaError::Newer(found) => TraceError::NewerFormat {
                path: meta_path.clone(),
                found,
                supported: FORMAT_VERSION,
            },
            MetaError::Invalid(reason) => TraceError::CorruptMeta {
                path: meta_path.clone(),
                reason,
            },
        })?;

        let mut warnings = Vec::new();
        if meta.status != RecordingStatus::Complete {
            warnings.push(match crate::output::recorder_of(&dir) {
                Some(holder) => Warning::BeingRecorded {
                    dir: dir.clone(),
                    holder,
                },
                None => Warning::Truncated {
                    meta: meta_path.clone(),
                },
            });
        }
        for spec in tables::all() {
            let table_dir = dir.join(spec.name);
            let Ok(entries) = fs::read_dir(&table_dir) else {
                continue;
            };
            let mut parts = 0;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(TMP_SUFFIX) {
                    warnings.push(Warning::IncompleteFile { path: entry.path() });
                } else if name.starts_with(PART_PREFIX) {
                    parts += 1;
                }
            }
            if parts > 0 && table_dir.join(COMPACT_FILE).is_file() {
                warnings.push(Warning::LeftoverParts {
                    dir: table_dir,
                    count: parts,
                });
            }
        }
        warnings.sort_by_key(|w| w.to_string());
        Ok(Archive {
            dir,
            meta,
            warnings,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// True when the recorder did not finish the archive.
    pub fn is_truncated(&self) -> bool {
        self.meta.status != RecordingStatus::Complete
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The Parquet files that hold a table, in order.
    pub fn table_files(&self, table: &str) -> Result<Vec<PathBuf>, TraceError> {
        let table_dir = self.dir.join(table);
        let compact = table_dir.join(COMPACT_FILE);
        if compact.is_file() {
            return Ok(vec![compact]);
        }
        if !self.is_truncated() && self.meta.tables.contains_key(table) {
            // A complete archive always compacts every table it lists.
            return Err(TraceError::MissingTable {
                table: table.to_owned(),
                path: compact,
            });
        }
        part_files(&table_dir)
    }

    /// Number of rows of a table, from the Parquet footers alone.
    pub fn table_rows(&self, table: &str) -> Result<u64, TraceError> {
        // A complete archive says; its files are checked when read.
        if !self.is_truncated()
            && let Some(info) = self.meta.tables.get(table)
        {
            return Ok(info.rows);
        }
        // Parts merged away by a recording that ended meanwhile: count
        // again in what it left.
        let mut relisted = 0;
        'count: loop {
            let mut rows = 0;
            for file in self.table_files(table)? {
                match parquet_rows(&file) {
                    Ok(n) => rows += n,
                    Err(e) if relisted < 3 && is_not_found(&e) => {
                        relisted += 1;
                        continue 'count;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(rows);
        }
    }

    /// Reads a whole table as one frame (one chunk per column). A table the
    /// recorder never wrote reads as empty (with its schema); a damaged file
    /// is an error naming it.
    pub fn read_frame(&self, table: &str) -> Result<DataFrame, TraceError> {
        let spec = tables::all()
            .into_iter()
            .find(|s| s.name == table)
            .ok_or_else(|| TraceError::MissingTable {
                table: table.to_owned(),
                path: self.dir.join(table),
            })?;
        let mut frame = DataFrame::empty_with_schema(&Schema::from_iter(
            spec.columns
                .iter()
                .map(|c| Field::new(PlSmallStr::from_static(c.name), c.dtype.clone())),
        ));
        let mut first = true;
        self.for_each_slice(table, |slice| {
            if std::mem::take(&mut first) {
                frame = slice.clone();
                return Ok(());
            }
            frame
                .vstack_mut(slice)
                .map(|_| ())
                .map_err(|e| TraceError::CorruptTable {
                    path: self.dir.join(table),
                    reason: first_line(&e.to_string()),
                })
        })?;
        frame.rechunk_mut();
        Ok(frame)
    }

    /// Reads a whole table as typed rows, a slice of the file at a time:
    /// besides the rows, memory holds one file's bytes and one decoded
    /// slice, not the whole table decoded (which took as much again).
    pub fn read_table<T: Table>(&self) -> Result<Vec<T>, TraceError> {
        let mut rows: Vec<T> = Vec::new();
        if let Ok(n) = self.table_rows(T::NAME) {
            rows.reserve_exact(n as usize);
        }
        self.for_each_rows(|slice: Vec<T>| rows.extend(slice))?;
        Ok(rows)
    }

    /// Calls `f` with the typed rows of each slice of table `T` (see
    /// [`Archive::for_each_slice`]): for readers that keep less than the rows.
    pub fn for_each_rows<T: Table>(&self, mut f: impl FnMut(Vec<T>)) -> Result<(), TraceError> {
        self.for_each_slice(T::NAME, |frame| {
            let rows = T::from_frame(frame).map_err(|reason| TraceError::CorruptTable {
                path: self.dir.join(T::NAME),
                reason,
            })?;
            f(rows);
            Ok(())
        })
        .map(|_| ())
    }

    /// Calls `f` with each system call of the `syscalls` table, in the
    /// table's order, its name borrowed from the decoded slice: a pass
    /// over 10^7 calls that keeps none of them allocates nothing per row
    /// (typed rows cost a `String` each, and the unread `nr` and `arg2`
    /// columns are not decoded). Only the first `rows` when given (a
    /// second read of an archive still being recorded: what the first
    /// read saw). Returns the calls read.
    pub fn for_each_call(
        &self,
        rows: Option<u64>,
        mut f: impl FnMut(&CallRef<'_>),
    ) -> Result<u64, TraceError> {
        let path = self.dir.join(tables::Syscall::NAME);
        let table = tables::Syscall::NAME;
        self.for_each_projected_slice(table, Some(&CALL_COLUMNS), rows, |frame| {
            let c = Columns { frame, path: &path };
            let time = c.get("time_ns", false, Column::u64)?;
            let duration = c.get("duration_ns", true, Column::u64)?;
            let (pid, tid) = (
                c.get("pid", false, Column::u32)?,
                c.get("tid", false, Column::u32)?,
            );
            let name = c.get("name", false, Column::str)?;
            let ret = c.get("ret", true, Column::i64)?;
            let arg0 = c.get("arg0", false, Column::u64)?;
            let arg1 = c.get("arg1", false, Column::u64)?;
            let rows = time
                .into_no_null_iter()
                .zip(duration.iter())
                .zip(pid.into_no_null_iter().zip(tid.into_no_null_iter()))
                .zip(name.iter().map(Option::unwrap_or_default).zip(ret.iter()))
                .zip(arg0.into_no_null_iter().zip(arg1.into_no_null_iter()));
            for ((((time_ns, duration_ns), (pid, tid)), (name, ret)), (arg0, arg1)) in rows {
                f(&CallRef {
                    time_ns,
                    duration_ns,
                    pid,
                    tid,
                    name,
                    ret,
                    arg0,
                    arg1,
                });
            }
            Ok(())
        })
    }

    /// Calls `f` with each CPU sample of the `samples` table, in the
    /// table's order, decoding only the columns analysis reads (not the
    /// CPU, event and period). Only the first `rows` when given, as
    /// [`Archive::for_each_call`]. Returns the rows read.
    pub fn for_each_sample(
        &self,
        rows: Option<u64>,
        mut f: impl FnMut(&SampleRef),
    ) -> Result<u64, TraceError> {
        let path = self.dir.join(tables::Sample::NAME);
        let columns = ["time_ns", "stack_id", "pid", "tid"];
        let table = tables::Sample::NAME;
        self.for_each_projected_slice(table, Some(&columns), rows, |frame| {
            let c = Columns { frame, path: &path };
            let time = c.get("time_ns", false, Column::u64)?;
            let stack = c.get("stack_id", true, Column::u64)?;
            let pid = c.get("pid", false, Column::u32)?;
            let tid = c.get("tid", false, Column::u32)?;
            let rows = time
                .into_no_null_iter()
                .zip(stack.iter())
                .zip(pid.into_no_null_iter().zip(tid.into_no_null_iter()));
            for ((time_ns, stack_id), (pid, tid)) in rows {
                f(&SampleRef {
                    time_ns,
                    stack_id,
                    pid,
                    tid,
                });
            }
            Ok(())
        })
    }

    /// Calls `f` with each packet of the `net` table, in the table's
    /// order, its strings borrowed from the decoded slice (the capture
    /// columns are not decoded; [`Archive::read_table`] has them). Only
    /// the first `rows` when given, as [`Archive::for_each_call`]. Returns
    /// the rows read.
    pub fn for_each_packet(
        &self,
        rows: Option<u64>,
        mut f: impl FnMut(&PacketRef<'_>),
    ) -> Result<u64, TraceError> {
        let path = self.dir.join(tables::NetEvent::NAME);
        let columns = ["time_ns", "source", "ifname", "len"];
        let table = tables::NetEvent::NAME;
        self.for_each_projected_slice(table, Some(&columns), rows, |frame| {
            let c = Columns { frame, path: &path };
            let time = c.get("time_ns", false, Column::u64)?;
            let source = c.get("source", false, Column::str)?;
            let ifname = c.get("ifname", true, Column::str)?;
            let len = c.get("len", false, Column::u32)?;
            let rows = time
                .into_no_null_iter()
                .zip(source.iter().map(Option::unwrap_or_default))
                .zip(ifname.iter().zip(len.into_no_null_iter()));
            for ((time_ns, source), (ifname, len)) in rows {
                f(&PacketRef {
                    time_ns,
                    source,
                    ifname,
                    len,
                });
            }
            Ok(())
        })
    }

    /// Calls `f` with each slice of at most [`SLICE_ROWS`] rows of a
    /// table's files, in order, each file checked against its checksum
    /// first and the whole table against the rows meta.json lists; returns
    /// the rows read.
    pub fn for_each_slice(
        &self,
        table: &str,
        f: impl FnMut(&DataFrame) -> Result<(), TraceError>,
    ) -> Result<u64, TraceError> {
        self.for_each_projected_slice(table, None, None, f)
    }

    /// [`Archive::for_each_slice`] decoding only `columns` (all when
    /// `None`), and only the first `limit` rows when given.
    fn for_each_projected_slice(
        &self,
        table: &str,
        columns: Option<&[&str]>,
        limit: Option<u64>,
        mut f: impl FnMut(&DataFrame) -> Result<(), TraceError>,
    ) -> Result<u64, TraceError> {
        let limit = limit.unwrap_or(u64::MAX);
        let checksums = self
            .meta
            .tables
            .get(table)
            .filter(|_| !self.is_truncated())
            .map(|info| &info.crc32);
        let mut total = 0u64;
        let mut files = self.table_files(table)?;
        // A recording that ends while its archive is read compacts each
        // table's parts into one file and deletes them: the same rows in
        // the same order, so reading goes on there past the rows read.
        let (mut relisted, mut skip, mut i) = (0, 0usize, 0);
        while let Some(file) = files.get(i).cloned().filter(|_| total < limit) {
            i += 1;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let crc = checksums.and_then(|c| c.get(name.as_deref()?));
            // Open from here on: a compaction that deletes the file leaves
            // it readable.
            let handle = match open_checked(&file, crc.map(String::as_str)) {
                Ok(handle) => handle,
                Err(e) if self.is_truncated() && relisted < 3 && is_not_found(&e) => {
                    relisted += 1;
                    files = self.table_files(table)?;
                    (skip, i) = (total as usize, 0);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let reader = || handle.try_clone().map_err(|e| TraceError::io(&file, e));
            let first = reader()?;
            let rows = decode(&file, || ParquetReader::new(first).num_rows())?;
            if skip >= rows {
                skip -= rows;
                continue;
            }
            for offset in (std::mem::take(&mut skip)..rows).step_by(SLICE_ROWS) {
                let wanted =
                    usize::try_from(limit - total).map_or(SLICE_ROWS, |w| w.min(SLICE_ROWS));
                if wanted == 0 {
                    break;
                }
                let handle = reader()?;
                let slice = decode(&file, || {
                    ParquetReader::new(handle)
                        .with_slice(Some((offset, wanted)))
                        .with_columns(
                            columns.map(|c| c.iter().map(|&name| name.to_owned()).collect()),
                        )
                        .finish()
                })?;
                total += slice.height() as u64;
                f(&slice)?;
            }
        }
        // A read of the first rows only leaves the rest unread: the read
        // of them all (an earlier one) checked the count.
        if limit == u64::MAX {
            self.check_rows(table, total)?;
        }
        Ok(total)
    }

    /// In a complete archive, a table must hold the rows meta.json lists.
    fn check_rows(&self, table: &str, rows: u64) -> Result<(), TraceError> {
        if !self.is_truncated()
            && let Some(info) = self.meta.tables.get(table)
            && info.rows != rows
        {
            return Err(TraceError::CorruptTable {
                path: self.dir.join(table),
                reason: format!("holds {rows} rows but meta.json says {}", info.rows),
            });
        }
        Ok(())
    }
}

enum MetaError {
    Newer(u32),
    Invalid(String),
}

/// Checks the version before the full parse, so that a newer archive whose
/// fields changed shape is reported as newer rather than as corrupt.
fn parse_meta(bytes: &[u8]) -> Result<Meta, MetaError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| MetaError::Invalid(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| MetaError::Invalid("no numeric `format_version`".to_owned()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(MetaError::Newer(u32::try_from(version).unwrap_or(u32::MAX)));
    }
    serde_json::from_value(value).map_err(|e| MetaError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_parser_checks_version_first() {
        let newer = br#"{"format_version": 9, "status": {"weird": true}}"#;
        assert!(matches!(parse_meta(newer), Err(MetaError::Newer(9))));
        assert!(matches!(
            parse_meta(b"{not json"),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(
            parse_meta(br#"{"status": "complete"}"#),
            Err(MetaError::Invalid(r)) if r.contains("format_version")
        ));
        let minimal = br#"{"format_version": 1, "sofa_version": "0.0.1", "status": "complete",
                           "some_future_field": [1, 2]}"#;
        let meta = parse_meta(minimal).ok().expect("older/minimal meta parses");
        assert_eq!(meta.status, RecordingStatus::Complete);
        assert!(meta.collectors.is_empty());
    }
}
