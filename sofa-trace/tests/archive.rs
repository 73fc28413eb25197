//! Round trips of every table and every way an archive can be damaged.

use sofa_trace::tables::*;
use sofa_trace::{
    Archive, ArchiveWriter, CollectorState, CollectorStatus, FlushPolicy, Meta, RecordingStatus,
    SampleRef, Table, TraceError, Warning,
};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn small_policy() -> FlushPolicy {
    FlushPolicy {
        max_rows: 100,
        max_age: Duration::from_secs(3600),
    }
}

fn rows<T: Table>(n: u64) -> Vec<T> {
    (0..n).map(T::example).collect()
}

/// Writes `n` example rows of `T`; returns them.
fn write_rows<T: Table + Clone>(writer: &ArchiveWriter, n: u64) -> Vec<T> {
    let expected = rows::<T>(n);
    let mut table = writer.table::<T>().unwrap();
    for row in expected.iter().cloned() {
        table.push(row).unwrap();
    }
    let summary = table.finish().unwrap();
    assert_eq!(summary.rows, n);
    assert_eq!(summary.parts, n.div_ceil(100));
    expected
}

macro_rules! roundtrip_all {
    ($($ty:ty => $n:expr),+ $(,)?) => {{
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arch");
        let mut meta = Meta::new(vec!["python".into(), "train.py".into()]);
        meta.collectors.insert("gpu".into(), CollectorStatus::with(CollectorState::Unavailable, "no NVIDIA driver"));
        let writer = ArchiveWriter::create_with_policy(&path, meta.clone(), small_policy()).unwrap();
        $( write_rows::<$ty>(&writer, $n); )+
        let written = writer.finish().unwrap();
        assert_eq!(written.status, RecordingStatus::Complete);
        let archive = Archive::open(&path).unwrap();
        assert!(!archive.is_truncated());
        assert!(archive.warnings().is_empty(), "{:?}", archive.warnings());
        assert_eq!(archive.meta().command, meta.command);
        assert_eq!(archive.meta().collectors, meta.collectors);
        $(
            let back: Vec<$ty> = archive.read_table::<$ty>().unwrap();
            assert_eq!(back.len() as u64, $n, "{}", <$ty as Table>::NAME);
            assert!(back == rows::<$ty>($n), "table {} differs after round trip", <$ty as Table>::NAME);
            assert_eq!(archive.meta().tables[<$ty as Table>::NAME].rows, $n);
            assert_eq!(archive.table_files(<$ty as Table>::NAME).unwrap().len(), 1, "compacted");
        )+
    }};
}

#[test]
fn every_table_round_trips_through_parts_and_compaction() {
    // Row counts chosen so that some tables have 0, 1 and many parts.
    roundtrip_all!(
        Sample => 1050,
        StackNode => 301,
        Frame => 99,
        Mapping => 100,
        Symbol => 250,
        TaskEvent => 7,
        Syscall => 1000,
        SystemCounter => 1,
        ProcessCounter => 0,
        GpuCounter => 333,
        GpuProcessCounter => 42,
        NetEvent => 205,
        PySample => 260,
        PyStackNode => 17,
        PyFrame => 0,
        PyOuter => 70,
        Binary => 5,
        StackEndRow => 9,
        Switch => 512,
        Untraced => 4,
        LostEvents => 3,
    );
}

#[test]
fn every_declared_table_is_covered_above() {
    // If a table is added, the round-trip test above must learn about it.
    assert_eq!(all().len(), 21);
}

#[test]
fn tables_without_writer_read_as_empty_with_schema() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
    writer.finish().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    for spec in all() {
        let frame = archive.read_frame(spec.name).unwrap();
        assert_eq!(frame.height(), 0);
        assert_eq!(frame.width(), spec.columns.len(), "{}", spec.name);
    }
    assert!(archive.read_table::<Syscall>().unwrap().is_empty());
}

/// Simulates a recorder killed mid-run: parts flushed, nothing finalized,
/// one part half written.
fn killed_recording(path: &Path) -> Vec<Sample> {
    let writer =
        ArchiveWriter::create_with_policy(path, Meta::new(vec!["x".into()]), small_policy())
            .unwrap();
    let mut samples = writer.table::<Sample>().unwrap();
    let expected = rows::<Sample>(250);
    for row in expected.iter().cloned() {
        samples.push(row).unwrap();
    }
    // The 50 rows still buffered die with the process, as does the table
    // writer; the archive's lock is released, as the kernel does for a
    // killed process (dropping the archive writer keeps what it wrote).
    std::mem::forget(samples);
    drop(writer);
    fs::write(
        path.join("samples/.part-000002.parquet.tmp"),
        b"PAR1 half a file",
    )
    .unwrap();
    expected[..200].to_vec()
}

#[test]
fn killed_recorder_leaves_readable_truncated_archive() {
    let dir = tempfile::tempdir().unwrap();
    let flushed = killed_recording(dir.path());
    let archive = Archive::open(dir.path()).unwrap();
    assert!(archive.is_truncated());
    let warnings: Vec<String> = archive.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        archive
            .warnings()
            .iter()
            .any(|w| matches!(w, Warning::Truncated { .. })),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(".part-000002.parquet.tmp")),
        "{warnings:?}"
    );
    assert_eq!(archive.read_table::<Sample>().unwrap(), flushed);
    // Tables never started read as empty.
    assert!(archive.read_table::<Syscall>().unwrap().is_empty());
}

#[test]
fn flush_if_due_writes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let policy = FlushPolicy {
        max_rows: 1_000_000,
        max_age: Duration::from_millis(20),
    };
    let writer = ArchiveWriter::create_with_policy(dir.path(), Meta::new(vec![]), policy).unwrap();
    let mut t = writer.table::<LostEvents>().unwrap();
    t.push(LostEvents::example(1)).unwrap();
    t.flush_if_due().unwrap();
    assert_eq!(fs::read_dir(dir.path().join("lost")).unwrap().count(), 0);
    std::thread::sleep(Duration::from_millis(30));
    t.flush_if_due().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.read_table::<LostEvents>().unwrap().len(), 1);
    t.finish().unwrap();
    writer.finish().unwrap();
}

#[test]
fn missing_directory_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = Archive::open(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, TraceError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope"));
}

#[test]
fn directory_without_meta_is_not_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let err = Archive::open(dir.path()).unwrap_err();
    assert!(matches!(err, TraceError::NotAnArchive { .. }), "{err}");
    // A plain file is not an archive either.
    let file = dir.path().join("f");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Archive::open(&file).unwrap_err(),
        TraceError::NotAnArchive { .. }
    ));
}

#[test]
fn corrupt_meta_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("meta.json"),
        b"{\"format_version\": 1, \"sta",
    )
    .unwrap();
    let err = Archive::open(dir.path()).unwrap_err();
    assert!(matches!(err, TraceError::CorruptMeta { .. }), "{err}");
    assert!(err.to_string().contains("meta.json"), "{err}");
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ArchiveWriter::create(dir.path(), Meta::new(vec![]))
        .unwrap()
        .finish()
        .unwrap();
    let meta_path = dir.path().join("meta.json");
    let text = fs::read_to_string(&meta_path).unwrap();
    let newer = text.replace("\"format_version\": 1", "\"format_version\": 2");
    assert_ne!(text, newer);
    fs::write(&meta_path, newer).unwrap();
    let err = Archive::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            TraceError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

fn complete_archive(path: &Path, n: u64) {
    let writer =
        ArchiveWriter::create_with_policy(path, Meta::new(vec![]), small_policy()).unwrap();
    write_rows::<Syscall>(&writer, n);
    writer.finish().unwrap();
}

#[test]
fn calls_lent_one_at_a_time_are_the_rows_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // Several files before compaction, one after: both read the same.
    let writer =
        ArchiveWriter::create_with_policy(dir.path(), Meta::new(vec![]), small_policy()).unwrap();
    let expected = write_rows::<Syscall>(&writer, 450);
    let archive_of_parts = Archive::open(dir.path()).unwrap();
    assert_eq!(archive_of_parts.table_files("syscalls").unwrap().len(), 5);
    let lent = |archive: &Archive| {
        let mut lent = Vec::new();
        let n = archive
            .for_each_call(None, |c| {
                lent.push((
                    c.time_ns,
                    c.duration_ns,
                    c.pid,
                    c.tid,
                    c.name.to_owned(),
                    c.ret,
                    c.arg0,
                    c.arg1,
                ))
            })
            .unwrap();
        assert_eq!(n, lent.len() as u64);
        lent
    };
    let want: Vec<_> = expected
        .iter()
        .map(|r| {
            let r = r.clone();
            (
                r.time_ns,
                r.duration_ns,
                r.pid,
                r.tid,
                r.name,
                r.ret,
                r.arg0,
                r.arg1,
            )
        })
        .collect();
    assert!(want.iter().any(|w| w.1.is_none()) && want.iter().any(|w| w.5.is_some()));
    assert_eq!(lent(&archive_of_parts), want);
    writer.finish().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.table_files("syscalls").unwrap().len(), 1);
    assert_eq!(lent(&archive), want);
}

#[test]
fn samples_lent_one_at_a_time_are_the_rows_of_the_table_or_the_first_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let writer =
        ArchiveWriter::create_with_policy(dir.path(), Meta::new(vec![]), small_policy()).unwrap();
    let expected = write_rows::<Sample>(&writer, 450);
    let want: Vec<SampleRef> = expected
        .iter()
        .map(|r| SampleRef {
            time_ns: r.time_ns,
            stack_id: r.stack_id,
            pid: r.pid,
            tid: r.tid,
        })
        .collect();
    assert!(want.iter().any(|w| w.stack_id.is_none()) && want.iter().any(|w| w.stack_id.is_some()));
    let lent = |archive: &Archive, rows: Option<u64>| {
        let mut lent = Vec::new();
        let n = archive.for_each_sample(rows, |s| lent.push(*s)).unwrap();
        assert_eq!(n, lent.len() as u64);
        lent
    };
    let parts = Archive::open(dir.path()).unwrap();
    assert_eq!(lent(&parts, None), want);
    // The first rows only: past a part's end, and within one.
    assert_eq!(lent(&parts, Some(250)), want[..250]);
    assert_eq!(lent(&parts, Some(37)), want[..37]);
    writer.finish().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.table_files("samples").unwrap().len(), 1);
    assert_eq!(lent(&archive, None), want);
    assert_eq!(lent(&archive, Some(250)), want[..250]);
}

#[test]
fn a_recording_that_ends_while_it_is_read_is_read_on_in_its_compacted_file() {
    let dir = tempfile::tempdir().unwrap();
    let writer =
        ArchiveWriter::create_with_policy(dir.path(), Meta::new(vec![]), small_policy()).unwrap();
    let expected = write_rows::<Syscall>(&writer, 450);
    let live = Archive::open(dir.path()).unwrap();
    assert!(live.is_truncated());
    assert_eq!(live.table_files("syscalls").unwrap().len(), 5, "parts");
    // The recorder finishes after the first part was read: the other
    // parts are gone, merged into one file.
    let mut writer = Some(writer);
    let mut times = Vec::new();
    let n = live
        .for_each_call(None, |c| {
            if let Some(w) = writer.take() {
                w.finish().unwrap();
            }
            times.push(c.time_ns);
        })
        .unwrap();
    assert!(writer.is_none());
    assert_eq!(
        Archive::open(dir.path())
            .unwrap()
            .table_files("syscalls")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(n, 450);
    assert_eq!(
        times,
        expected.iter().map(|r| r.time_ns).collect::<Vec<_>>()
    );
}

#[test]
fn corrupt_table_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 500);
    let file = dir.path().join("syscalls/data.parquet");
    fs::write(&file, b"this is not parquet at all, not even close").unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let err = archive.read_table::<Syscall>().unwrap_err();
    assert!(matches!(err, TraceError::CorruptTable { .. }), "{err}");
    assert!(err.to_string().contains("syscalls/data.parquet"), "{err}");
    assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
}

#[test]
fn truncated_table_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 500);
    let file = dir.path().join("syscalls/data.parquet");
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = Archive::open(dir.path())
        .unwrap()
        .read_table::<Syscall>()
        .unwrap_err();
    assert!(matches!(err, TraceError::CorruptTable { .. }), "{err}");
    assert!(err.to_string().contains("syscalls/data.parquet"), "{err}");
}

/// Makes `dir`'s meta.json what a sofa before format 1.2 wrote: no checksums.
fn without_checksums(dir: &Path) {
    let meta_path = dir.join("meta.json");
    let mut meta: Meta = serde_json::from_str(&fs::read_to_string(&meta_path).unwrap()).unwrap();
    for info in meta.tables.values_mut() {
        info.crc32.clear();
    }
    fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[test]
fn table_shorter_than_meta_says_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 500);
    let other = tempfile::tempdir().unwrap();
    complete_archive(other.path(), 20);
    fs::copy(
        other.path().join("syscalls/data.parquet"),
        dir.path().join("syscalls/data.parquet"),
    )
    .unwrap();
    let read = || {
        Archive::open(dir.path())
            .unwrap()
            .read_table::<Syscall>()
            .unwrap_err()
    };
    // Its checksum says so first...
    assert!(
        read().to_string().contains("damaged after recording"),
        "{}",
        read()
    );
    // ... and in an archive from before checksums (format 1.1), its rows.
    without_checksums(dir.path());
    let err = read();
    assert!(
        err.to_string()
            .contains("holds 20 rows but meta.json says 500"),
        "{err}"
    );
}

#[test]
fn missing_table_file_in_complete_archive_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 10);
    fs::remove_file(dir.path().join("syscalls/data.parquet")).unwrap();
    let err = Archive::open(dir.path())
        .unwrap()
        .read_frame("syscalls")
        .unwrap_err();
    assert!(matches!(err, TraceError::MissingTable { .. }), "{err}");
}

#[test]
fn wrong_column_type_is_an_error_naming_the_column() {
    use sofa_trace::polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 0);
    // Replace the table with one whose `nr` column is a string.
    let mut frame = df!("time_ns" => [1u64], "nr" => ["read"]).unwrap();
    let file = fs::File::create(dir.path().join("syscalls/data.parquet")).unwrap();
    ParquetWriter::new(file).finish(&mut frame).unwrap();
    let meta_path = dir.path().join("meta.json");
    let mut meta: Meta = serde_json::from_str(&fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta.tables.get_mut("syscalls").unwrap().rows = 1;
    meta.tables.get_mut("syscalls").unwrap().crc32.clear(); // as before format 1.2
    fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let err = archive.read_table::<Syscall>().unwrap_err();
    assert!(
        err.to_string().contains("column `duration_ns` is missing"),
        "{err}"
    );
    let err = archive.for_each_call(None, |_| ()).unwrap_err();
    assert!(matches!(err, TraceError::CorruptTable { .. }), "{err}");
    assert!(err.to_string().contains("syscalls"), "{err}");
    assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
}

#[test]
fn leftover_parts_beside_compacted_file_are_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 150);
    // As if compaction was interrupted after the rename, before the cleanup.
    fs::copy(
        dir.path().join("syscalls/data.parquet"),
        dir.path().join("syscalls/part-000000.parquet"),
    )
    .unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    assert!(
        archive
            .warnings()
            .iter()
            .any(|w| matches!(w, Warning::LeftoverParts { count: 1, .. }))
    );
    assert_eq!(archive.read_table::<Syscall>().unwrap().len(), 150);
}

#[test]
fn existing_archive_is_replaced_but_other_directories_are_not() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 150);
    complete_archive(dir.path(), 3);
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.read_table::<Syscall>().unwrap().len(), 3);

    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("thesis.tex"), b"precious").unwrap();
    let err = ArchiveWriter::create(other.path(), Meta::new(vec![]))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("thesis.tex, which sofa did not write"),
        "{err}"
    );
    assert!(other.path().join("thesis.tex").exists());
}

#[test]
fn finish_refuses_while_a_table_writer_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
    let open = writer.table::<Sample>().unwrap();
    assert!(writer.table::<Sample>().is_err(), "one writer per table");
    let err = writer.finish().unwrap_err();
    assert!(
        err.to_string().contains("still has an open writer"),
        "{err}"
    );
    drop(open);
}

#[test]
fn dropped_table_writer_still_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
    {
        let mut t = writer.table::<TaskEvent>().unwrap();
        t.push(TaskEvent::example(5)).unwrap();
    }
    writer.finish().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(
        archive.read_table::<TaskEvent>().unwrap(),
        vec![TaskEvent::example(5)]
    );
}

#[test]
fn damaged_bytes_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    complete_archive(dir.path(), 500);
    let file = dir.path().join("syscalls/data.parquet");
    let original = fs::read(&file).unwrap();
    let mut errors = 0;
    // Flip bytes at spread-out positions, including the footer and its length.
    for k in 0..64usize {
        let mut bytes = original.clone();
        let pos = (k * 7919) % bytes.len();
        bytes[pos] ^= 0x5a;
        let end = bytes.len() - 1 - (k % 12);
        bytes[end] ^= 0xff;
        fs::write(&file, &bytes).unwrap();
        let result =
            std::panic::catch_unwind(|| Archive::open(dir.path()).unwrap().read_table::<Syscall>());
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                errors += 1;
                assert!(e.to_string().contains("data.parquet"), "{e}");
            }
            Err(_) => panic!("reader panicked on damaged file (flip at {pos}, {end})"),
        }
    }
    assert!(errors > 0);
}
