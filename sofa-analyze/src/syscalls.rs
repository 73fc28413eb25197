//! System call table: count, errors and time per call name.

use crate::Gaps;
use serde::Serialize;
use sofa_trace::CollectorName;
use sofa_trace::tables::{Syscall, Untraced};
use sofa_trace::{Archive, Table, TraceError};
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

/// The `syscalls` table, compact: the columns the analysis uses, names
/// interned.
#[derive(Debug, Default)]
pub struct Calls {
    pub rows: Vec<Call>,
    /// The futex waits among `rows`, with their address (what a lock
    /// convoy's threads share); few next to all calls, so the address is
    /// kept for these only.
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

impl Calls {
    /// Reads the table a slice at a time, so only the compact rows stay.
    pub fn read(archive: &Archive) -> Result<Calls, TraceError> {
        let mut calls = Calls::default();
        if let Ok(n) = archive.table_rows(Syscall::NAME) {
            calls.rows.reserve_exact(n as usize);
        }
        archive.for_each_rows(|rows: Vec<Syscall>| calls.extend(&rows))?;
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
        let end = end_ns.or_else(|| self.rows.iter().map(|c| c.time_ns).max())?;
        self.untraced.complete_since(start_ns, end)
    }

    /// The share of `duration_ns` in which calls were traced (1 when all were).
    pub fn traced_share(&self, duration_ns: u64) -> f64 {
        self.untraced.traced_share(duration_ns)
    }

    /// From full rows (tests, callers that have them).
    pub fn from_rows(rows: &[Syscall]) -> Calls {
        let mut calls = Calls::default();
        calls.extend(rows);
        calls
    }

    fn extend(&mut self, rows: &[Syscall]) {
        for row in rows {
            self.push(row);
        }
    }

    fn push(&mut self, row: &Syscall) {
        let name = row.name.as_str();
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(name.to_owned());
                self.io.push(IO_CALLS.contains(&name));
                self.ids.insert(name.to_owned(), id);
                id
            }
        };
        if name == "futex" && futex_op_waits(row.arg1) {
            self.futex_waits.push(FutexWait {
                time_ns: row.time_ns,
                end_ns: row.duration_ns.map(|d| row.time_ns + d),
                pid: row.pid,
                tid: row.tid,
                address: row.arg0,
            });
        }
        let failed = row.ret.is_some_and(|r| (-4095..0).contains(&r));
        self.rows.push(Call {
            time_ns: row.time_ns,
            duration: row.duration_ns.map_or(0, |d| d.min(DURATION) | TIMED)
                | if failed { FAILED } else { 0 },
            tid: row.tid,
            name: id,
        });
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
        self.rows.is_empty()
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
    // Per name id: (count, errors, total ns, timed calls).
    let mut per: Vec<(u64, u64, u64, u64)> = vec![(0, 0, 0, 0); calls.names.len()];
    for call in &calls.rows {
        let slot = &mut per[call.name as usize];
        slot.0 += 1;
        if call.failed() {
            slot.1 += 1;
        }
        if let Some(d) = call.duration_ns() {
            slot.2 += d;
            slot.3 += 1;
        }
    }
    let per = per
        .into_iter()
        .enumerate()
        .filter(|(_, p)| p.0 > 0)
        .map(|(id, p)| (calls.names[id].as_str(), p));
    let mut rows: Vec<SyscallRow> = per
        .into_iter()
        .map(|(name, (count, errors, total_ns, timed))| SyscallRow {
            name: name.to_owned(),
            count,
            errors,
            total_ns,
            mean_ns: total_ns.checked_div(timed).unwrap_or(0),
            wall_share: match traced_ns {
                Some(d) if d > 0 => total_ns as f64 / d as f64,
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

    #[test]
    fn compact_calls_keep_what_the_table_needs() {
        let calls = Calls::from_rows(&[
            row(1, "read", Some(10), Some(64)),
            row(2, "futex", None, None),
            row(3, "read", Some(30), Some(-11)),
            row(4, "openat", Some(5), Some(-2)),
        ]);
        assert_eq!(calls.names.len(), 3, "names interned");
        let second = &calls.rows[1];
        assert_eq!((calls.name(second), second.duration_ns()), ("futex", None));
        assert_eq!(std::mem::size_of::<Call>(), 24);
        assert_eq!(calls.rows[2].duration_ns(), Some(30), "failed and timed");
        assert!(calls.is_io(&calls.rows[0]) && !calls.is_io(second));
        assert!(calls.rows[2].failed() && !calls.rows[0].failed());
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
