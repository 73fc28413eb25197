//! CPU samples as the analysis keeps them.

use sofa_trace::tables;
use sofa_trace::{Archive, Table, TraceError};

/// A CPU sample as the analysis keeps it: 24 bytes against the archive
/// row's 48 (its CPU, event and period, which no analysis reads, are left
/// out, and its stack is a plain `u64`, `NO_STACK` for none; 10^7
/// samples: 229 MiB instead of 458).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// CLOCK_MONOTONIC time of the sample, ns.
    pub time_ns: u64,
    /// Innermost node of the call stack, or [`NO_STACK`].
    stack: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
}

/// A sample without a call chain. (Stack ids count nodes from 0: this one
/// is never reached.)
const NO_STACK: u64 = u64::MAX;

impl Sample {
    pub fn new(time_ns: u64, stack_id: Option<u64>, pid: u32, tid: u32) -> Sample {
        Sample {
            time_ns,
            stack: stack_id.unwrap_or(NO_STACK),
            pid,
            tid,
        }
    }

    /// Innermost node of the call stack; `None` without a call chain.
    pub fn stack_id(&self) -> Option<u64> {
        (self.stack != NO_STACK).then_some(self.stack)
    }

    pub fn set_stack_id(&mut self, stack_id: Option<u64>) {
        self.stack = stack_id.unwrap_or(NO_STACK);
    }
}

impl From<&tables::Sample> for Sample {
    fn from(row: &tables::Sample) -> Sample {
        Sample::new(row.time_ns, row.stack_id, row.pid, row.tid)
    }
}

/// The `samples` table, a slice at a time, so only the compact rows stay.
pub(crate) fn read(archive: &Archive) -> Result<Vec<Sample>, TraceError> {
    let mut samples = Vec::new();
    if let Ok(n) = archive.table_rows(tables::Sample::NAME) {
        samples.reserve_exact(n as usize);
    }
    archive.for_each_rows(|rows: Vec<tables::Sample>| {
        samples.extend(rows.iter().map(Sample::from));
    })?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Sample>(), 24);
        let mut s = Sample::new(1, None, 2, 3);
        assert_eq!(s.stack_id(), None);
        s.set_stack_id(Some(0));
        assert_eq!(s.stack_id(), Some(0));
        assert_eq!(Sample::new(1, Some(7), 2, 3).stack_id(), Some(7));
    }
}
