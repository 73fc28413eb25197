//! Where a recording writes: a directory it owns alone, that held nothing or
//! only an earlier sofa archive.
//!
//! `sofa record -o DIR` may be pointed at anything a user can type, including
//! a directory full of their own files that happens to hold a `meta.json`.
//! So the rules are strict and checked before anything is written:
//!
//! - A directory is replaced only when *every* entry in it is one sofa
//!   writes (see [`sofa_entry`]) and its `meta.json` is sofa's own. A single
//!   other file, a symlink, or a foreign `meta.json` and the recording is
//!   refused, naming that entry; nothing is touched.
//! - One recorder per directory: an exclusive lock on `DIR/.sofa-lock` for
//!   the whole recording. A second recorder fails at once, naming the pid.
//! - The earlier archive is not deleted up front: it is moved into
//!   `DIR/.sofa-previous/` and deleted only once the new archive is complete.
//!   A recording that fails before the command runs puts it back.

use crate::writer::{PART_PREFIX, TMP_SUFFIX};
use crate::{JIT_MAPS_DIR, META_FILE, TraceError, tables};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Lock file held for the whole recording; holds the recorder's pid.
pub const LOCK_FILE: &str = ".sofa-lock";
/// Where the archive being replaced waits until the new one is complete.
pub const PREVIOUS_DIR: &str = ".sofa-previous";
/// Written into the archive directory by `sofa report` by default.
const REPORT_FILE: &str = "report.html";
/// `format` of `meta.json`: what marks a directory as sofa's.
pub const FORMAT_MARKER: &str = "sofa-archive";

/// What an output directory held when it was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contents {
    /// Nothing, or only what an interrupted recorder leaves besides an archive
    /// (a lock file, an archive moved aside).
    Empty,
    /// A sofa archive, to be moved aside.
    Archive,
}

/// A claimed output directory: locked, and with any earlier archive moved
/// aside. [`OutputDir::commit`] once the new archive is complete deletes the
/// earlier one; [`OutputDir::abandon`] puts it back. Dropped without either
/// (the recorder failed while the command ran), both stay: the partial new
/// archive where it was, the earlier one in `.sofa-previous/`.
#[derive(Debug)]
pub(crate) struct OutputDir {
    dir: PathBuf,
    lock: Option<File>,
    previous: Option<PathBuf>,
    /// The directory did not exist before: abandoning removes it.
    created: bool,
}

impl OutputDir {
    pub(crate) fn claim(dir: &Path) -> Result<OutputDir, TraceError> {
        // First look without touching anything (not even a lock file).
        let created = match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                inspect(dir)?;
                false
            }
            Ok(_) => {
                return Err(TraceError::NotOurs {
                    path: dir.to_path_buf(),
                    reason: "it exists and is not a directory".to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| TraceError::io(dir, e))?;
                true
            }
            Err(e) => return Err(TraceError::io(dir, e)),
        };
        let lock = lock(dir)?;
        let mut out = OutputDir {
            dir: dir.to_path_buf(),
            lock: Some(lock),
            previous: None,
            created,
        };
        // Under the lock, look again: the directory may have changed.
        let previous = dir.join(PREVIOUS_DIR);
        match inspect(dir)? {
            Contents::Archive => {
                move_aside(dir, &previous)?;
                out.previous = Some(previous);
            }
            // A replacement that was interrupted: the earlier archive is
            // still aside, and stays there until this recording completes.
            Contents::Empty if previous.is_dir() => out.previous = Some(previous),
            Contents::Empty => {}
        }
        Ok(out)
    }

    /// The new archive is complete: deletes the one it replaced and the lock.
    pub(crate) fn commit(mut self) -> Result<(), TraceError> {
        if let Some(previous) = self.previous.take() {
            fs::remove_dir_all(&previous).map_err(|e| TraceError::io(&previous, e))?;
        }
        self.unlock();
        Ok(())
    }

    /// The recording failed before producing anything worth keeping: removes
    /// what it wrote and puts the earlier archive back.
    pub(crate) fn abandon(mut self) -> Result<(), TraceError> {
        for entry in fs::read_dir(&self.dir).map_err(|e| TraceError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| TraceError::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == LOCK_FILE || name == PREVIOUS_DIR || sofa_entry(&entry.path()).is_err() {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| TraceError::io(&path, e))?;
        }
        if let Some(previous) = self.previous.take() {
            for entry in fs::read_dir(&previous).map_err(|e| TraceError::io(&previous, e))? {
                let entry = entry.map_err(|e| TraceError::io(&previous, e))?;
                let back = self.dir.join(entry.file_name());
                fs::rename(entry.path(), &back).map_err(|e| TraceError::io(&back, e))?;
            }
            fs::remove_dir(&previous).map_err(|e| TraceError::io(&previous, e))?;
        }
        self.unlock();
        if self.created {
            // Only if nothing else appeared in it meanwhile.
            let _ = fs::remove_dir(&self.dir);
        }
        Ok(())
    }

    /// Removes the lock file while still holding the lock, then releases it.
    /// A recorder that opened the file before it went sees, once it gets the
    /// lock, that it locked a file no longer there and tries again.
    fn unlock(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = fs::remove_file(self.dir.join(LOCK_FILE));
            drop(lock);
        }
    }
}

/// Who is recording into `dir` now ("pid N"), if a recorder holds its lock.
pub(crate) fn recorder_of(dir: &Path) -> Option<String> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(holder.trim().to_owned()).filter(|h| !h.is_empty())
        }
        // Nobody holds it (the lock is released with the file), or it cannot
        // be told: a recorder that was killed.
        _ => None,
    }
}

/// Takes the directory's lock, or says who holds it.
fn lock(dir: &Path) -> Result<File, TraceError> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..8 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TraceError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(TraceError::Busy {
                    path: dir.to_path_buf(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(TraceError::io(&path, e)),
        }
        if !same_file(&file, &path) {
            continue;
        }
        let stamped = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "pid {}", std::process::id()));
        stamped.map_err(|e| TraceError::io(&path, e))?;
        return Ok(file);
    }
    Err(TraceError::Busy {
        path: dir.to_path_buf(),
        holder: "another recorder keeps replacing the lock file".to_owned(),
    })
}

/// Whether `path` still names the file `file` has open.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed, so the name still holds it.
#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Moves every entry of the archive at `dir` (but the lock) into `previous`,
/// which first loses any archive an interrupted replacement left there.
fn move_aside(dir: &Path, previous: &Path) -> Result<(), TraceError> {
    if previous.is_dir() {
        fs::remove_dir_all(previous).map_err(|e| TraceError::io(previous, e))?;
    }
    fs::create_dir(previous).map_err(|e| TraceError::io(previous, e))?;
    for entry in fs::read_dir(dir).map_err(|e| TraceError::io(dir, e))? {
        let entry = entry.map_err(|e| TraceError::io(dir, e))?;
        let name = entry.file_name();
        if name == LOCK_FILE || name == PREVIOUS_DIR {
            continue;
        }
        let to = previous.join(&name);
        fs::rename(entry.path(), &to).map_err(|e| TraceError::io(&to, e))?;
    }
    Ok(())
}

/// What `dir` holds, or the first entry that proves it is not sofa's to replace.
fn inspect(dir: &Path) -> Result<Contents, TraceError> {
    let refuse = |reason: String| TraceError::NotOurs {
        path: dir.to_path_buf(),
        reason,
    };
    let mut has_meta = false;
    let mut other_sofa_entries = false;
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| TraceError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| TraceError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        match name.as_str() {
            LOCK_FILE => {
                if !entry.file_type().is_ok_and(|t| t.is_file()) {
                    return Err(refuse(format!("it holds {name}, which sofa did not write")));
                }
            }
            PREVIOUS_DIR => {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    return Err(refuse(format!("it holds {name}, which sofa did not write")));
                }
                for inner in fs::read_dir(&path).map_err(|e| TraceError::io(&path, e))? {
                    let inner = inner.map_err(|e| TraceError::io(&path, e))?;
                    let inner_name = inner.file_name().to_string_lossy().into_owned();
                    sofa_entry(&inner.path())
                        .map_err(|what| refuse(format!("it holds {name}/{inner_name}{what}")))?;
                }
            }
            _ => {
                sofa_entry(&path).map_err(|what| refuse(format!("it holds {name}{what}")))?;
                if name == META_FILE {
                    has_meta = true;
                } else {
                    other_sofa_entries = true;
                }
            }
        }
    }
    if has_meta {
        return Ok(Contents::Archive);
    }
    if other_sofa_entries {
        return Err(refuse(format!(
            "it has no {META_FILE}, so its files are not provably a sofa archive's"
        )));
    }
    Ok(Contents::Empty)
}

/// `Ok` when `path` is an entry a sofa archive holds at its root: sofa's own
/// `meta.json`, a table directory holding only Parquet files sofa names,
/// copied JIT maps, the default report, or a temporary file of one of these.
/// Otherwise the part of the path (after the entry's name) that is not sofa's,
/// with why: the caller names the entry.
fn sofa_entry(path: &Path) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = fs::symlink_metadata(path).map_err(|e| format!(" ({e})"))?;
    let not_ours = || ", which sofa did not write".to_owned();
    if meta.file_type().is_symlink() {
        return Err(", a symbolic link sofa did not make".to_owned());
    }
    if meta.is_file() {
        return match name.as_str() {
            META_FILE => {
                let bytes = fs::read(path).map_err(|e| format!(" ({e})"))?;
                if is_sofa_meta(&bytes) {
                    Ok(())
                } else {
                    Err(", which is not a sofa archive's metadata".to_owned())
                }
            }
            REPORT_FILE => Ok(()),
            _ if name == format!(".{META_FILE}{TMP_SUFFIX}")
                || name == format!(".{REPORT_FILE}{TMP_SUFFIX}") =>
            {
                Ok(())
            }
            _ => Err(not_ours()),
        };
    }
    if !meta.is_dir() {
        return Err(not_ours());
    }
    let file_ok: fn(&str) -> bool = if name == JIT_MAPS_DIR {
        |f| {
            f.strip_prefix("perf-")
                .and_then(|f| f.strip_suffix(".map"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        }
    } else if tables::all().iter().any(|spec| spec.name == name) {
        |f| {
            let f = f
                .strip_prefix('.')
                .and_then(|f| f.strip_suffix(TMP_SUFFIX))
                .unwrap_or(f);
            f == crate::writer::COMPACT_FILE
                || f.strip_prefix(PART_PREFIX)
                    .and_then(|f| f.strip_suffix(".parquet"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
    } else {
        return Err(not_ours());
    };
    for inner in fs::read_dir(path).map_err(|e| format!(" ({e})"))? {
        let inner = inner.map_err(|e| format!(" ({e})"))?;
        let inner_name = inner.file_name().to_string_lossy().into_owned();
        let is_file = inner.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !file_ok(&inner_name) {
            return Err(format!("/{inner_name}, which sofa did not write"));
        }
    }
    Ok(())
}

/// Whether `bytes` is a `meta.json` sofa wrote: one with the format marker,
/// or (archives from before the marker) one with sofa's own version fields.
pub(crate) fn is_sofa_meta(bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) else {
        return false;
    };
    if map.get("format").and_then(|f| f.as_str()) == Some(FORMAT_MARKER) {
        return true;
    }
    map.get("format_version").is_some_and(|v| v.is_u64())
        && map.get("sofa_version").is_some_and(|v| v.is_string())
        && map
            .get("status")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s == "recording" || s == "complete")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sofa_meta_is_told_from_other_meta_files() {
        assert!(is_sofa_meta(br#"{"format": "sofa-archive"}"#));
        assert!(is_sofa_meta(
            br#"{"format_version": 1, "sofa_version": "0.1.0", "status": "complete"}"#
        ));
        assert!(!is_sofa_meta(br#"{"name": "cfg"}"#));
        assert!(!is_sofa_meta(br#"{"format": "other", "version": 1}"#));
        assert!(!is_sofa_meta(
            br#"{"format_version": 1, "sofa_version": "0.1.0", "status": "draft"}"#
        ));
        assert!(!is_sofa_meta(b"[1, 2]"));
        assert!(!is_sofa_meta(b"\xff\xfe"));
    }

    fn sofa_meta(dir: &Path) {
        fs::write(dir.join(META_FILE), br#"{"format": "sofa-archive"}"#).unwrap();
    }

    #[test]
    fn inspect_accepts_only_sofa_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(inspect(d).unwrap(), Contents::Empty);
        fs::write(d.join(LOCK_FILE), b"pid 1\n").unwrap();
        assert_eq!(inspect(d).unwrap(), Contents::Empty);

        sofa_meta(d);
        fs::create_dir(d.join("samples")).unwrap();
        fs::write(d.join("samples/part-000001.parquet"), b"x").unwrap();
        fs::write(d.join("samples/.part-000002.parquet.tmp"), b"x").unwrap();
        fs::write(d.join("samples/data.parquet"), b"x").unwrap();
        fs::create_dir(d.join(JIT_MAPS_DIR)).unwrap();
        fs::write(d.join("jitmaps/perf-42.map"), b"x").unwrap();
        fs::write(d.join(REPORT_FILE), b"x").unwrap();
        assert_eq!(inspect(d).unwrap(), Contents::Archive);

        // Each of these alone makes the directory not sofa's.
        let foreign: [(&str, &[u8]); 5] = [
            ("samples/keep.txt", b"mine"),
            ("samples/part-x.parquet", b"mine"),
            ("jitmaps/notes.map", b"mine"),
            ("notes.txt", b"mine"),
            (".sofa-previous/thesis.tex", b"mine"),
        ];
        for (file, bytes) in foreign {
            let path = d.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            let err = inspect(d).unwrap_err().to_string();
            let shown = file.rsplit('/').next().unwrap();
            assert!(err.contains(shown), "{file}: {err}");
            fs::remove_file(&path).unwrap();
        }
        fs::create_dir(d.join("data")).unwrap();
        assert!(inspect(d).unwrap_err().to_string().contains("data"));
        fs::remove_dir(d.join("data")).unwrap();

        fs::write(d.join(META_FILE), br#"{"name": "cfg"}"#).unwrap();
        let err = inspect(d).unwrap_err().to_string();
        assert!(err.contains("not a sofa archive's"), "{err}");
        fs::remove_file(d.join(META_FILE)).unwrap();
        // Table directories without meta.json prove nothing.
        let err = inspect(d).unwrap_err().to_string();
        assert!(err.contains("no meta.json"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = tempfile::tempdir().unwrap();
        fs::write(mine.path().join("data.parquet"), b"mine").unwrap();
        sofa_meta(dir.path());
        std::os::unix::fs::symlink(mine.path(), dir.path().join("samples")).unwrap();
        let err = inspect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn an_archive_being_recorded_says_so_when_read() {
        use crate::{Archive, ArchiveWriter, Meta, Warning};
        let dir = tempfile::tempdir().unwrap();
        let writer = ArchiveWriter::create(dir.path(), Meta::new(vec![])).unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let pid = format!("pid {}", std::process::id());
        assert!(
            matches!(archive.warnings(), [Warning::BeingRecorded { holder, .. }] if *holder == pid),
            "{:?}",
            archive.warnings()
        );
        drop(writer); // as a killed recorder leaves it: unlocked, unfinished
        let archive = Archive::open(dir.path()).unwrap();
        assert!(
            matches!(archive.warnings(), [Warning::Truncated { .. }]),
            "{:?}",
            archive.warnings()
        );
    }

    #[test]
    fn a_second_claim_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputDir::claim(dir.path()).unwrap();
        let err = OutputDir::claim(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        first.commit().unwrap();
        assert!(!dir.path().join(LOCK_FILE).exists());
        OutputDir::claim(dir.path()).unwrap().commit().unwrap();
    }

    #[test]
    fn abandon_puts_the_earlier_archive_back() {
        let parent = tempfile::tempdir().unwrap();
        let d = parent.path().join("out");
        fs::create_dir(&d).unwrap();
        sofa_meta(&d);
        fs::create_dir(d.join("samples")).unwrap();
        fs::write(d.join("samples/data.parquet"), b"old").unwrap();

        let claim = OutputDir::claim(&d).unwrap();
        assert!(!d.join(META_FILE).exists());
        assert!(d.join(PREVIOUS_DIR).join("samples/data.parquet").exists());
        // What the failed recording wrote.
        fs::write(
            d.join(META_FILE),
            br#"{"format": "sofa-archive", "new": 1}"#,
        )
        .unwrap();
        fs::create_dir(d.join("stacks")).unwrap();
        claim.abandon().unwrap();
        assert_eq!(fs::read(d.join("samples/data.parquet")).unwrap(), b"old");
        assert_eq!(
            fs::read(d.join(META_FILE)).unwrap(),
            br#"{"format": "sofa-archive"}"#
        );
        assert!(!d.join("stacks").exists());
        assert!(!d.join(PREVIOUS_DIR).exists());
        assert!(!d.join(LOCK_FILE).exists());

        // A directory the claim created is removed again.
        let fresh = parent.path().join("fresh");
        OutputDir::claim(&fresh).unwrap().abandon().unwrap();
        assert!(!fresh.exists());
    }

    #[test]
    fn a_leftover_previous_archive_waits_for_the_next_complete_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join(PREVIOUS_DIR)).unwrap();
        sofa_meta(&d.join(PREVIOUS_DIR));
        let claim = OutputDir::claim(d).unwrap();
        assert!(d.join(PREVIOUS_DIR).join(META_FILE).exists());
        claim.commit().unwrap();
        assert!(!d.join(PREVIOUS_DIR).exists());
    }
}
