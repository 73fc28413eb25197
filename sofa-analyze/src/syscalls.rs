//! System call table: count, errors and time per call name.

use crate::Gaps;
use serde::Serialize;
use sofa_trace::CollectorName;
use sofa_trace::tables::{Syscall, Untraced};
use sofa_trace::{Archive, CallRef, Table, TraceError};
use std::collections::HashMap;

/// One system call as the analysis keeps it: 24 bytes, against ~140 for a
/// full row with its own name string (10^7 calls: 229 MiB instead of 1.4 GB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub time_ns: u64,
    /// Its duration (ns) in the low 62 bits, `TIMED` and `FAILED` above.
    duration: u64,
    pub tid: u32,
    /// Index into the names of its [`Calls`].
    name: u32,
}

/// The exit was seen (the call has a duration).
const TIMED: u64 = 1 << 63;
/// It returned a negative errno.
const FAILED: u64 = 1 << 62;
const DURATION: u64 = FAILED - 1;

impl Call {
    /// Entry to exit, if the exit was seen.
    pub fn duration_ns(&self) -> Option<u64> {
        (self.duration & TIMED != 0).then_some(self.duration & DURATION)
    }

    /// Returned a negative errno.
    pub fn failed(&self) -> bool {
        self.duration & FAILED != 0
    }
}

/// A `futex` call that waited (`FUTEX_WAIT`, `FUTEX_WAIT_BITSET`,
/// `FUTEX_LOCK_PI`, …): a thread sleeping on a lock, condition or
/// semaphore word at `address`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FutexWait {
    pub time_ns: u64,
    /// Its end; `None` when the exit was not seen.
    pub end_ns: Option<u64>,
    pub pid: u32,
    pub tid: u32,
    pub address: u64,
}

/// Whether futex operation `op` (the call's second argument, its flags
/// included) sleeps: WAIT 0, LOCK_PI 6, WAIT_BITSET 9, WAIT_REQUEUE_PI 11,
/// LOCK_PI2 13 (`linux/futex.h`).
fn futex_op_waits(op: u64) -> bool {
    const PRIVATE: u64 = 128;
    const CLOCK_REALTIME: u64 = 256;
    matches!(op & !(PRIVATE | CLOCK_REALTIME), 0 | 6 | 9 | 11 | 13)
}

/// Per call name: what the table of calls adds up.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    count: u64,
    errors: u64,
    /// Time inside the calls whose exit was seen.
    total_ns: u64,
    /// Calls whose exit was seen.
    timed: u64,
}

/// The `syscalls` table as analysis sees it: what one read adds up (per
/// name totals, the futex waits, the threads that made calls), and the
/// calls themselves read again, compact and one at a time, by each pass
/// that needs them ([`Calls::for_each`]). Memory does not grow with the
/// calls: 10^7 of them held as 24-byte rows took 229 MiB for the whole
/// analysis.
#[derive(Debug, Default)]
pub struct Calls<'a> {
    /// Where the calls are read again from; `None` for calls given in
    /// memory ([`Calls::from_rows`]), which are then kept in `kept`.
    archive: Option<&'a Archive>,
    kept: Vec<Call>,
    /// The latest call's entry time.
    last_ns: Option<u64>,
    /// Per name id.
    totals: Vec<Totals>,
    /// Threads that made calls.
    tids: rustc_hash::FxHashSet<u32>,
    /// The futex waits among the calls, with their address (what a lock
    /// convoy's threads share); few next to all calls.
    pub futex_waits: Vec<FutexWait>,
    /// Spans in which nothing was traced (calls came faster than
    /// `--syscall-rate`).
    pub untraced: Gaps,
    /// Calls left out on their own (a spin loop's `sched_yield`), and from
    /// when on.
    pub left_out: Vec<(String, u64)>,
    names: Vec<String>,
    /// Per name: one of [`IO_CALLS`].
    io: Vec<bool>,
    ids: HashMap<String, u32>,
}

impl<'a> Calls<'a> {
    /// Reads the table once, a slice at a time, keeping what it adds up;
    /// passes that need the calls read them again with [`Calls::for_each`].
    pub fn read(archive: &'a Archive) -> Result<Calls<'a>, TraceError> {
        let mut calls = Calls {
            archive: Some(archive),
            ..Calls::default()
        };
        archive.for_each_call(None, |row| {
            calls.add(row);
        })?;
        for span in archive.read_table::<Untraced>()? {
            if span.collector == CollectorName::Syscalls.as_str()
                && let Some(call) = span.call
            {
                calls.left_out.push((call, span.start_ns));
            }
        }
        calls.untraced = Gaps::read(archive, CollectorName::Syscalls)?;
        Ok(calls)
    }

    /// From full rows, kept in memory (tests, callers that have them).
    pub fn from_rows(rows: &[Syscall]) -> Calls<'static> {
        let mut calls = Calls::default();
        for row in rows {
            let call = calls.add(&CallRef {
                time_ns: row.time_ns,
                duration_ns: row.duration_ns,
                pid: row.pid,
                tid: row.tid,
                name: &row.name,
                ret: row.ret,
                arg0: row.arg0,
                arg1: row.arg1,
            });
            calls.kept.push(call);
        }
        calls
    }

    /// Calls `f` with every call, in the table's order: read again from
    /// the archive (a pass over 10^7 calls takes ~0.4 s), or from memory.
    /// Of an archive still being recorded, the calls of the first read:
    /// parts only come after them, and compacting keeps their order.
    pub fn for_each(&self, mut f: impl FnMut(&Call)) -> Result<(), TraceError> {
        let Some(archive) = self.archive else {
            self.kept.iter().for_each(f);
            return Ok(());
        };
        // Calls come in runs of one name: look a name up when it changes.
        let mut last: Option<(String, u32)> = None;
        let mut unknown: Option<String> = None;
        let first = self.len();
        let read = archive.for_each_call(Some(first), |row| {
            let id = match &last {
                Some((name, id)) if name == row.name => *id,
                _ => match self.ids.get(row.name) {
                    Some(&id) => {
                        last = Some((row.name.to_owned(), id));
                        id
                    }
                    None => {
                        unknown.get_or_insert_with(|| row.name.to_owned());
                        return;
                    }
                },
            };
            f(&compact(row, id));
        })?;
        if read < first || unknown.is_some() {
            return Err(crate::changed_while_analysed(
                archive.dir().join(Syscall::NAME),
                (read, first),
                "calls",
                unknown.map(|n| format!("`{n}`")),
            ));
        }
        Ok(())
    }

    /// Adds a call to what the calls add up; returns it compact.
    fn add(&mut self, row: &CallRef) -> Call {
        let id = match self.ids.get(row.name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(row.name.to_owned());
                self.io.push(IO_CALLS.contains(&row.name));
                self.ids.insert(row.name.to_owned(), id);
                self.totals.push(Totals::default());
                id
            }
        };
        if row.name == "futex" && futex_op_waits(row.arg1) {
            self.futex_waits.push(FutexWait {
                time_ns: row.time_ns,
                end_ns: row.duration_ns.map(|d| row.time_ns + d),
                pid: row.pid,
                tid: row.tid,
                address: row.arg0,
            });
        }
        let call = compact(row, id);
        let totals = &mut self.totals[id as usize];
        totals.count += 1;
        totals.errors += u64::from(call.failed());
        if let Some(d) = call.duration_ns() {
            totals.total_ns += d;
            totals.timed += 1;
        }
        self.last_ns = self.last_ns.max(Some(row.time_ns));
        self.tids.insert(row.tid);
        call
    }

    /// A call of a name left out part of the time (it would come and go
    /// in a stream of events).
    pub fn is_left_out(&self, call: &Call) -> bool {
        !self.left_out.is_empty() && self.left_out.iter().any(|(n, _)| *n == self.name(call))
    }

    /// Whether every call was traced (no span with tracing off).
    pub fn complete(&self) -> bool {
        self.untraced.is_empty()
    }

    /// From when on every call was traced, if that is most of the
    /// recording (`start_ns`..`end_ns`): 0 with no gap, the end of the last
    /// gap when at least half of the recording comes after it (a burst at
    /// start-up, such as an interpreter's imports), else `None`.
    pub fn complete_since(&self, start_ns: u64, end_ns: Option<u64>) -> Option<u64> {
        if self.untraced.is_empty() {
            return Some(0);
        }
        let end = end_ns.or(self.last_ns)?;
        self.untraced.complete_since(start_ns, end)
    }

    /// The share of `duration_ns` in which calls were traced (1 when all were).
    pub fn traced_share(&self, duration_ns: u64) -> f64 {
        self.untraced.traced_share(duration_ns)
    }

    /// Whether thread `tid` made any call.
    pub(crate) fn made_calls(&self, tid: u32) -> bool {
        self.tids.contains(&tid)
    }

    /// The call's name as an index (0.. the number of distinct names).
    pub(crate) fn name_index(&self, call: &Call) -> u32 {
        call.name
    }

    /// How many distinct names there are.
    pub(crate) fn name_count(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, call: &Call) -> &str {
        &self.names[call.name as usize]
    }

    /// A call that waits for data or space ([`IO_CALLS`]).
    pub fn is_io(&self, call: &Call) -> bool {
        self.io[call.name as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many calls there are.
    pub fn len(&self) -> u64 {
        self.totals.iter().map(|t| t.count).sum()
    }
}

/// A row of the table as analysis keeps it, its name as `id`.
fn compact(row: &CallRef, id: u32) -> Call {
    let failed = row.ret.is_some_and(|r| (-4095..0).contains(&r));
    Call {
        time_ns: row.time_ns,
        duration: row.duration_ns.map_or(0, |d| d.min(DURATION) | TIMED)
            | if failed { FAILED } else { 0 },
        tid: row.tid,
        name: id,
    }
}

/// System calls that wait for data or space.
pub(crate) const IO_CALLS: &[&str] = &[
    "read",
    "pread64",
    "readv",
    "preadv",
    "preadv2",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "fsync",
    "fdatasync",
    "openat",
    "io_uring_enter",
    "io_getevents",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyscallRow {
    pub name: String,
    pub count: u64,
    /// Calls that returned a negative errno.
    pub errors: u64,
    /// Time inside the calls (entry to exit), summed over threads, ns.
    pub total_ns: u64,
    pub mean_ns: u64,
    /// `total_ns` over the recording's wall time (can exceed 1 with several threads).
    pub wall_share: f64,
}

/// Most time first. `duration_ns` is the recording's wall time, if known.
/// Where calls were traced only part of the time, counts and times are of
/// the traced spans and `wall_share` is of their time. (Scaling counts up
/// by time would mislead: tracing slows the calls in its windows, so they
/// hold fewer calls than the untraced spans, by a factor nobody measured.)
pub fn syscall_table(calls: &Calls, duration_ns: Option<u64>) -> Vec<SyscallRow> {
    let traced_ns = duration_ns.map(|d| (d as f64 * calls.traced_share(d)) as u64);
    let per = calls
        .totals
        .iter()
        .enumerate()
        .filter(|(_, t)| t.count > 0)
        .map(|(id, t)| (calls.names[id].as_str(), t));
    let mut rows: Vec<SyscallRow> = per
        .into_iter()
        .map(|(name, t)| SyscallRow {
            name: name.to_owned(),
            count: t.count,
            errors: t.errors,
            total_ns: t.total_ns,
            mean_ns: t.total_ns.checked_div(t.timed).unwrap_or(0),
            wall_share: match traced_ns {
                Some(d) if d > 0 => t.total_ns as f64 / d as f64,
                _ => 0.0,
            },
        })
        .collect();
    rows.sort_by(|a, b| {
        b.total_ns
            .cmp(&a.total_ns)
            .then(b.count.cmp(&a.count))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time_ns: u64, name: &str, duration_ns: Option<u64>, ret: Option<i64>) -> Syscall {
        Syscall {
            time_ns,
            duration_ns,
            pid: 1,
            tid: 7,
            nr: 0,
            name: name.to_owned(),
            ret,
            arg0: 0,
            arg1: 0,
            arg2: 0,
        }
    }

    #[test]
    fn futex_waits_keep_their_address_and_wakes_are_left_out() {
        let futex = |t: u64, op: u64, address: u64| Syscall {
            name: "futex".into(),
            arg0: address,
            arg1: op,
            ..row(t, "futex", Some(5), Some(0))
        };
        // WAIT|PRIVATE, WAKE|PRIVATE, WAIT_BITSET|CLOCK_REALTIME, LOCK_PI.
        let calls = Calls::from_rows(&[
            futex(1, 128, 0x10),
            futex(2, 129, 0x10),
            futex(3, 265, 0x20),
            futex(4, 6, 0x30),
            row(5, "read", Some(1), Some(1)),
        ]);
        let kept: Vec<(u64, Option<u64>, u64)> = calls
            .futex_waits
            .iter()
            .map(|f| (f.time_ns, f.end_ns, f.address))
            .collect();
        assert_eq!(
            kept,
            [(1, Some(6), 0x10), (3, Some(8), 0x20), (4, Some(9), 0x30)]
        );
    }

    #[test]
    fn calls_traced_in_windows_count_in_the_traced_time() {
        let rows: Vec<Syscall> = (0..40)
            .map(|i| {
                row(
                    i * 10,
                    "read",
                    Some(2),
                    Some(if i % 4 == 0 { -11 } else { 64 }),
                )
            })
            .collect();
        let mut calls = Calls::from_rows(&rows);
        assert!(calls.complete());
        let whole = syscall_table(&calls, Some(1000));
        assert_eq!(
            (whole[0].count, whole[0].errors, whole[0].total_ns),
            (40, 10, 80)
        );
        // Traced a quarter of the time: 750 ns of 1000 off.
        calls.untraced = Gaps::from(vec![(100, 400), (500, 950)]);
        assert!(!calls.complete());
        assert!((calls.traced_share(1000) - 0.25).abs() < 1e-9);
        assert_eq!(calls.complete_since(0, Some(1000)), None, "gaps to the end");
        assert_eq!(calls.complete_since(0, Some(1900)), Some(950));
        calls.untraced = Gaps::default();
        assert_eq!(calls.complete_since(0, Some(1000)), Some(0));
        calls.untraced = Gaps::from(vec![(100, 400), (500, 950)]);
        let windowed = syscall_table(&calls, Some(1000));
        assert_eq!(
            (windowed[0].count, windowed[0].errors, windowed[0].total_ns),
            (40, 10, 80),
            "what was traced, not scaled"
        );
        assert_eq!(windowed[0].mean_ns, 2);
        assert!((whole[0].wall_share - 0.08).abs() < 1e-9);
        assert!(
            (windowed[0].wall_share - 0.32).abs() < 1e-9,
            "of the 250 ns traced"
        );
    }

    /// An archive at `dir` whose `syscalls` table holds `rows`.
    fn archive_of(dir: &std::path::Path, rows: &[Syscall]) -> Archive {
        let writer = sofa_trace::ArchiveWriter::create(dir, sofa_trace::Meta::new(vec![])).unwrap();
        let mut table = writer.table::<Syscall>().unwrap();
        for row in rows {
            table.push(row.clone()).unwrap();
        }
        table.finish().unwrap();
        writer.finish().unwrap();
        Archive::open(dir).unwrap()
    }

    #[test]
    fn calls_read_again_from_the_archive_are_the_calls_kept_in_memory() {
        let names = ["read", "read", "futex", "write", "read", "openat", "futex"];
        let rows: Vec<Syscall> = (0..700u64)
            .map(|i| Syscall {
                tid: 7 + (i % 3) as u32,
                arg0: 0x40 + i % 2,
                arg1: if i % 5 == 0 { 0 } else { 1 },
                ..row(
                    i * 1000,
                    names[(i / 3) as usize % names.len()],
                    (i % 4 != 0).then_some(i % 97),
                    (i % 4 != 0).then_some(if i % 9 == 0 { -11 } else { 8 }),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let archive = archive_of(dir.path(), &rows);
        let read = Calls::read(&archive).unwrap();
        let kept = Calls::from_rows(&rows);
        let all = |calls: &Calls| {
            let mut all = Vec::new();
            calls
                .for_each(|c| all.push((*c, calls.name(c).to_owned())))
                .unwrap();
            all
        };
        assert_eq!(all(&read).len(), 700);
        assert_eq!(all(&read), all(&kept));
        assert_eq!(read.futex_waits, kept.futex_waits);
        assert!(!read.futex_waits.is_empty());
        assert_eq!(read.len(), 700);
        assert_eq!(read.complete_since(0, None), Some(0));
        assert!(read.made_calls(9) && !read.made_calls(10));
        assert_eq!(
            syscall_table(&read, Some(10)),
            syscall_table(&kept, Some(10))
        );
        // A table that changed after the first read is an error, not
        // calls of another recording mixed in.
        drop(archive);
        let other: Vec<Syscall> = rows
            .iter()
            .map(|r| Syscall {
                name: if r.name == "openat" {
                    "close".into()
                } else {
                    r.name.clone()
                },
                ..r.clone()
            })
            .collect();
        let changed = tempfile::tempdir().unwrap();
        let changed_archive = archive_of(changed.path(), &other);
        let swapped = Calls {
            archive: Some(&changed_archive),
            ..Calls::read(&Archive::open(dir.path()).unwrap()).unwrap()
        };
        let err = swapped.for_each(|_| ()).unwrap_err().to_string();
        assert!(
            err.contains("changed while it was analysed") && err.contains("`close` is new"),
            "{err}"
        );
        let fewer = archive_of(changed.path(), &rows[..600]);
        let swapped = Calls {
            archive: Some(&fewer),
            ..Calls::read(&Archive::open(dir.path()).unwrap()).unwrap()
        };
        let err = swapped.for_each(|_| ()).unwrap_err().to_string();
        assert!(err.contains("600 calls read again, 700 at first"), "{err}");
        // More calls than at first: flushed since by a recording still
        // running; the first read's calls are the ones looked at.
        let before = archive_of(changed.path(), &rows[..500]);
        let first = Calls::read(&before).unwrap();
        let more = archive_of(dir.path(), &rows);
        let grown = Calls {
            archive: Some(&more),
            ..first
        };
        assert_eq!(all(&grown), all(&Calls::from_rows(&rows[..500])));
    }

    #[test]
    fn compact_calls_keep_what_the_table_needs() {
        let calls = Calls::from_rows(&[
            row(1, "read", Some(10), Some(64)),
            row(2, "futex", None, None),
            row(3, "read", Some(30), Some(-11)),
            row(4, "openat", Some(5), Some(-2)),
        ]);
        assert_eq!(calls.names.len(), 3, "names interned");
        let second = &calls.kept[1];
        assert_eq!((calls.name(second), second.duration_ns()), ("futex", None));
        assert_eq!(std::mem::size_of::<Call>(), 24);
        assert_eq!(calls.kept[2].duration_ns(), Some(30), "failed and timed");
        assert!(calls.is_io(&calls.kept[0]) && !calls.is_io(second));
        assert!(calls.kept[2].failed() && !calls.kept[0].failed());
        let table = syscall_table(&calls, Some(1000));
        let read = table.iter().find(|r| r.name == "read").unwrap();
        assert_eq!(
            (read.count, read.errors, read.total_ns, read.mean_ns),
            (2, 1, 40, 20)
        );
        assert_eq!(table[0].name, "read", "most time first");
        let futex = table.iter().find(|r| r.name == "futex").unwrap();
        assert_eq!((futex.count, futex.total_ns, futex.mean_ns), (1, 0, 0));
    }
}
