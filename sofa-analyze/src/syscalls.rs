//! System call table: count, errors and time per call name.

use serde::Serialize;
use sofa_trace::tables::Syscall;
use std::collections::HashMap;

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
pub fn syscall_table(calls: &[Syscall], duration_ns: Option<u64>) -> Vec<SyscallRow> {
    let mut per: HashMap<&str, (u64, u64, u64, u64)> = HashMap::new();
    for call in calls {
        let slot = per.entry(call.name.as_str()).or_default();
        slot.0 += 1;
        if call.ret.is_some_and(|r| (-4095..0).contains(&r)) {
            slot.1 += 1;
        }
        if let Some(d) = call.duration_ns {
            slot.2 += d;
            slot.3 += 1;
        }
    }
    let mut rows: Vec<SyscallRow> = per
        .into_iter()
        .map(|(name, (count, errors, total_ns, timed))| SyscallRow {
            name: name.to_owned(),
            count,
            errors,
            total_ns,
            mean_ns: total_ns.checked_div(timed).unwrap_or(0),
            wall_share: match duration_ns {
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
