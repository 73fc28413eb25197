//! Streaming archive writer: bounded memory while recording, whole files on disk at every instant.

use crate::meta::{Meta, RecordingStatus, TableInfo};
use crate::output::OutputDir;
use crate::{META_FILE, Table, TraceError, tables};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Name of the single file a table is compacted into when recording ends.
pub(crate) const COMPACT_FILE: &str = "data.parquet";
/// Prefix of the part files written while recording.
pub(crate) const PART_PREFIX: &str = "part-";
/// Suffix of files being written; a reader ignores (and reports) them.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Rows per batch when compacting parts into one file: large enough for
/// efficient row groups, small enough to keep compaction memory bounded.
pub(crate) const COMPACT_BATCH_ROWS: usize = 256 * 1024;

/// When a table writer turns its buffer into a part file.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Flush once this many rows are buffered (bounds memory). Default 65 536.
    pub max_rows: usize,
    /// Flush buffered rows at least this often (bounds what a crash can lose). Default 1 s.
    pub max_age: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: 64 * 1024,
            max_age: Duration::from_secs(1),
        }
    }
}

#[derive(Debug)]
enum WriterState {
    Open,
    Finished { rows: u64 },
    Failed(String),
}

type Registry = Arc<Mutex<BTreeMap<&'static str, WriterState>>>;

/// Writes one archive. Create it, open a [`TableWriter`] per table (each may
/// live on its own thread), finish those, then [`ArchiveWriter::finish`].
pub struct ArchiveWriter {
    dir: PathBuf,
    meta: Meta,
    policy: FlushPolicy,
    registry: Registry,
    /// The locked directory; `None` once finished or abandoned.
    output: Option<OutputDir>,
    /// Dropped unfinished while provisional, the recording is abandoned.
    provisional: bool,
}

impl ArchiveWriter {
    /// Creates the archive directory, locks it for this writer alone, and
    /// writes `meta.json` with status `recording`. An earlier sofa archive at
    /// `dir` is moved aside and deleted when this one is finished; a directory
    /// holding anything sofa did not write is refused, untouched.
    pub fn create(dir: impl AsRef<Path>, meta: Meta) -> Result<ArchiveWriter, TraceError> {
        Self::create_with_policy(dir, meta, FlushPolicy::default())
    }

    pub fn create_with_policy(
        dir: impl AsRef<Path>,
        mut meta: Meta,
        policy: FlushPolicy,
    ) -> Result<ArchiveWriter, TraceError> {
        let dir = dir.as_ref().to_path_buf();
        let output = OutputDir::claim(&dir)?;
        meta.status = RecordingStatus::Recording;
        meta.tables.clear();
        let mut writer = ArchiveWriter {
            dir,
            meta,
            policy,
            registry: Arc::default(),
            output: Some(output),
            provisional: true,
        };
        if let Err(e) = writer.write_meta() {
            writer.abandon()?;
            return Err(e);
        }
        writer.provisional = false;
        Ok(writer)
    }

    /// While provisional, a writer dropped without [`ArchiveWriter::finish`]
    /// abandons the recording (see [`ArchiveWriter::abandon`]); otherwise
    /// what it flushed stays, readable as a recording cut short, and the
    /// archive it replaced stays in `.sofa-previous/`. A recorder is
    /// provisional until the recorded command starts. Default: not provisional.
    pub fn set_provisional(&mut self, provisional: bool) {
        self.provisional = provisional;
    }

    /// Gives up a recording that produced nothing worth keeping: removes what
    /// it wrote, puts back the archive it was replacing (or removes the
    /// directory it created) and releases the directory.
    pub fn abandon(mut self) -> Result<(), TraceError> {
        match self.output.take() {
            Some(output) => output.abandon(),
            None => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Changes to the metadata take effect on disk at the next
    /// [`ArchiveWriter::write_meta`] or at [`ArchiveWriter::finish`].
    pub fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    /// Atomically replaces `meta.json` (write to a temporary file, rename).
    pub fn write_meta(&self) -> Result<(), TraceError> {
        let path = self.dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|e| TraceError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = tmp_path(&path);
        let mut file = File::create(&tmp).map_err(|e| TraceError::io(&tmp, e))?;
        file.write_all(&json)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| TraceError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| TraceError::io(&path, e))
    }

    /// Opens the writer of table `T`. Each table has at most one writer.
    pub fn table<T: Table>(&self) -> Result<TableWriter<T>, TraceError> {
        let dir = self.dir.join(T::NAME);
        {
            let mut registry = self.registry.lock().expect("registry lock");
            if registry.contains_key(T::NAME) {
                return Err(TraceError::Write {
                    path: dir,
                    reason: format!("table `{}` already has a writer", T::NAME),
                });
            }
            registry.insert(T::NAME, WriterState::Open);
        }
        fs::create_dir_all(&dir).map_err(|e| TraceError::io(&dir, e))?;
        Ok(TableWriter {
            dir,
            buf: Vec::new(),
            policy: self.policy,
            last_flush: Instant::now(),
            next_part: 0,
            rows: 0,
            parts: 0,
            finished: false,
            registry: Arc::clone(&self.registry),
            _table: PhantomData,
        })
    }

    /// Compacts every table into one file, records row counts and writes
    /// `meta.json` with status `complete`. Every table writer must have been
    /// finished or dropped before.
    pub fn finish(mut self) -> Result<Meta, TraceError> {
        {
            let registry = self.registry.lock().expect("registry lock");
            for (name, state) in registry.iter() {
                match state {
                    WriterState::Open => {
                        return Err(TraceError::Write {
                            path: self.dir.join(name),
                            reason: format!("table `{name}` still has an open writer"),
                        });
                    }
                    WriterState::Failed(reason) => {
                        return Err(TraceError::Write {
                            path: self.dir.join(name),
                            reason: reason.clone(),
                        });
                    }
                    WriterState::Finished { .. } => {}
                }
            }
        }
        let mut infos = BTreeMap::new();
        for spec in tables::all() {
            let schema = Schema::from_iter(
                spec.columns
                    .iter()
                    .map(|c| Field::new(PlSmallStr::from_static(c.name), c.dtype.clone())),
            );
            let rows = compact_table(&self.dir.join(spec.name), &schema)?;
            if let Some(WriterState::Finished { rows: written }) =
                self.registry.lock().expect("registry lock").get(spec.name)
                && *written != rows
            {
                return Err(TraceError::Write {
                    path: self.dir.join(spec.name),
                    reason: format!("wrote {written} rows but the table files hold {rows}"),
                });
            }
            let compact = self.dir.join(spec.name).join(COMPACT_FILE);
            let crc = file_crc32(&compact)?;
            infos.insert(
                spec.name.to_owned(),
                TableInfo {
                    rows,
                    files: vec![COMPACT_FILE.to_owned()],
                    crc32: BTreeMap::from([(COMPACT_FILE.to_owned(), crc)]),
                },
            );
        }
        self.meta.tables = infos;
        self.meta.status = RecordingStatus::Complete;
        self.write_meta()?;
        if let Some(output) = self.output.take() {
            output.commit()?;
        }
        Ok(std::mem::replace(&mut self.meta, Meta::new(Vec::new())))
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.provisional
            && let Some(output) = self.output.take()
        {
            // Nothing to report to: the error that dropped us is on its way up.
            let _ = output.abandon();
        }
    }
}

/// Rows written to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSummary {
    pub rows: u64,
    pub parts: u64,
}

/// Buffers rows of one table and writes them as Parquet part files.
pub struct TableWriter<T: Table> {
    dir: PathBuf,
    buf: Vec<T>,
    policy: FlushPolicy,
    last_flush: Instant,
    next_part: u64,
    rows: u64,
    parts: u64,
    finished: bool,
    registry: Registry,
    _table: PhantomData<fn(T)>,
}

impl<T: Table> TableWriter<T> {
    /// Adds a row; flushes when the buffer is full or old.
    pub fn push(&mut self, row: T) -> Result<(), TraceError> {
        self.buf.push(row);
        // Reading the clock on every row would cost more than the row itself.
        if self.buf.len() >= self.policy.max_rows
            || (self.buf.len().is_multiple_of(64)
                && self.last_flush.elapsed() >= self.policy.max_age)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes if rows have waited longer than the policy allows. Collectors
    /// call this from their loops so quiet tables still reach disk in time.
    pub fn flush_if_due(&mut self) -> Result<(), TraceError> {
        if !self.buf.is_empty() && self.last_flush.elapsed() >= self.policy.max_age {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows buffered or written so far.
    pub fn rows(&self) -> u64 {
        self.rows + self.buf.len() as u64
    }

    /// Writes the buffered rows as one new part file.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buf);
        let n = rows.len() as u64;
        let mut frame = T::to_frame(rows);
        let path = self
            .dir
            .join(format!("{PART_PREFIX}{:06}.parquet", self.next_part));
        self.next_part += 1;
        write_parquet_atomic(&path, &mut frame, ParquetCompression::Lz4Raw)?;
        self.rows += n;
        self.parts += 1;
        Ok(())
    }

    /// Flushes what is left and marks the table finished.
    pub fn finish(mut self) -> Result<TableSummary, TraceError> {
        let result = self.flush();
        self.finished = true;
        let state = match &result {
            Ok(()) => WriterState::Finished { rows: self.rows },
            Err(e) => WriterState::Failed(e.with_causes()),
        };
        self.registry
            .lock()
            .expect("registry lock")
            .insert(T::NAME, state);
        result.map(|()| TableSummary {
            rows: self.rows,
            parts: self.parts,
        })
    }
}

impl<T: Table> Drop for TableWriter<T> {
    /// A writer dropped without `finish` (e.g. on an error path) still
    /// flushes; a failure is remembered and reported by `ArchiveWriter::finish`.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let state = match self.flush() {
            Ok(()) => WriterState::Finished { rows: self.rows },
            Err(e) => WriterState::Failed(e.with_causes()),
        };
        if let Ok(mut registry) = self.registry.lock() {
            registry.insert(T::NAME, state);
        }
    }
}

/// `dir/.name.tmp`: hidden, so that Parquet readers globbing `*.parquet` or
/// reading the directory as a data set (pyarrow skips dot files) never see a
/// half-written file.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TMP_SUFFIX}"))
}

fn write_parquet_atomic(
    path: &Path,
    frame: &mut DataFrame,
    compression: ParquetCompression,
) -> Result<(), TraceError> {
    let tmp = tmp_path(path);
    let mut out = buffered(&tmp)?;
    ParquetWriter::new(&mut out)
        .with_compression(compression)
        .finish(frame)
        .map_err(|e| TraceError::Write {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
    out.flush().map_err(|e| TraceError::io(&tmp, e))?;
    drop(out);
    fs::rename(&tmp, path).map_err(|e| TraceError::io(path, e))
}

/// A new file behind a buffer: the Parquet writer writes each page header
/// and value run on its own (some of a few bytes), which unbuffered was
/// tens of thousands of `write` calls per second of recording.
fn buffered(path: &Path) -> Result<std::io::BufWriter<File>, TraceError> {
    let file = File::create(path).map_err(|e| TraceError::io(path, e))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// Sorted part files of a table directory.
pub(crate) fn part_files(dir: &Path) -> Result<Vec<PathBuf>, TraceError> {
    let mut parts = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
        Err(e) => return Err(TraceError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| TraceError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PART_PREFIX) && name.ends_with(".parquet") {
            parts.push(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

/// CRC-32 of a file's bytes, as 8 hex digits, read in blocks.
pub(crate) fn file_crc32(path: &Path) -> Result<String, TraceError> {
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    crc32_of(path, file)
}

/// CRC-32 of what `file` (at `path`) reads from where it is.
fn crc32_of(path: &Path, mut file: impl std::io::Read) -> Result<String, TraceError> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| TraceError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:08x}", hasher.finalize()))
}

pub(crate) fn read_parquet(path: &Path) -> Result<DataFrame, TraceError> {
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    decode(path, || ParquetReader::new(file).finish())
}

/// A file opened to be decoded a slice at a time, not read whole (a
/// table of 4 x 10^7 samples is a 145 MB file); its bytes must have CRC-32
/// `crc` (8 hex digits) if given, read in blocks first.
pub(crate) fn open_checked(path: &Path, crc: Option<&str>) -> Result<File, TraceError> {
    let mut file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    if let Some(crc) = crc {
        let actual = crc32_of(path, &file)?;
        std::io::Seek::rewind(&mut file).map_err(|e| TraceError::io(path, e))?;
        if actual != crc {
            return Err(TraceError::CorruptTable {
                path: path.to_path_buf(),
                reason: format!(
                    "its checksum is {actual}, not the {crc} recorded in meta.json: the file was damaged after recording"
                ),
            });
        }
    }
    Ok(file)
}

/// Rows of a Parquet file, from its footer alone.
pub(crate) fn parquet_rows(path: &Path) -> Result<u64, TraceError> {
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    decode(path, || ParquetReader::new(file).num_rows()).map(|rows| rows as u64)
}

/// Runs a Parquet decoding step on `path`. Damaged bytes must become an
/// error naming the file, even if the decoder panics instead of returning one.
pub(crate) fn decode<T>(
    path: &Path,
    step: impl FnOnce() -> PolarsResult<T>,
) -> Result<T, TraceError> {
    let reason = match crate::quiet::catch(step) {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => first_line(&e.to_string()),
        Err(_) => "the Parquet decoder failed on damaged data".to_owned(),
    };
    Err(TraceError::CorruptTable {
        path: path.to_path_buf(),
        reason,
    })
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// Merges a table's parts into [`COMPACT_FILE`], streaming batch by batch.
/// Crash-safe: the merged file appears (by rename) before the parts go, and a
/// reader prefers it to parts that are still lying around.
fn compact_table(dir: &Path, schema: &Schema) -> Result<u64, TraceError> {
    fs::create_dir_all(dir).map_err(|e| TraceError::io(dir, e))?;
    let parts = part_files(dir)?;
    let target = dir.join(COMPACT_FILE);
    match parts.len() {
        0 => {
            let mut empty = DataFrame::empty_with_schema(schema);
            write_parquet_atomic(&target, &mut empty, ParquetCompression::Zstd(None))?;
            return Ok(0);
        }
        1 => {
            let rows = read_parquet(&parts[0])?.height() as u64;
            fs::rename(&parts[0], &target).map_err(|e| TraceError::io(&target, e))?;
            return Ok(rows);
        }
        _ => {}
    }
    let tmp = tmp_path(&target);
    let mut out = buffered(&tmp)?;
    let write_err = |e: PolarsError| TraceError::Write {
        path: tmp.clone(),
        reason: e.to_string(),
    };
    let mut writer = ParquetWriter::new(&mut out)
        .with_compression(ParquetCompression::Zstd(None))
        .batched(schema)
        .map_err(write_err)?;
    let mut pending: Option<DataFrame> = None;
    let mut rows = 0u64;
    for part in &parts {
        let frame = read_parquet(part)?;
        rows += frame.height() as u64;
        match pending.as_mut() {
            Some(acc) => {
                acc.vstack_mut_owned(frame).map_err(write_err)?;
            }
            None => pending = Some(frame),
        }
        if pending
            .as_ref()
            .is_some_and(|p| p.height() >= COMPACT_BATCH_ROWS)
        {
            let mut batch = pending.take().expect("checked above");
            batch.rechunk_mut();
            writer.write_batch(&batch).map_err(write_err)?;
        }
    }
    if let Some(mut batch) = pending {
        batch.rechunk_mut();
        writer.write_batch(&batch).map_err(write_err)?;
    }
    writer.finish().map_err(write_err)?;
    drop(writer);
    out.flush().map_err(|e| TraceError::io(&tmp, e))?;
    drop(out);
    fs::rename(&tmp, &target).map_err(|e| TraceError::io(&target, e))?;
    for part in &parts {
        fs::remove_file(part).map_err(|e| TraceError::io(part, e))?;
    }
    Ok(rows)
}
