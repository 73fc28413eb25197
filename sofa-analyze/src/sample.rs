//! CPU samples as the analysis keeps them.

use sofa_trace::tables;
use sofa_trace::{Archive, Table, TraceError};

/// A CPU sample as the analysis keeps it: 32 bytes against the archive
/// row's 48 (its CPU, event and period, which no analysis reads, are left
/// out; 10^7 samples: 305 MiB instead of 458).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// CLOCK_MONOTONIC time of the sample, ns.
    pub time_ns: u64,
    /// Innermost node of the call stack; `None` without a call chain.
    pub stack_id: Option<u64>,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
}

impl From<&tables::Sample> for Sample {
    fn from(row: &tables::Sample) -> Sample {
        Sample {
            time_ns: row.time_ns,
            stack_id: row.stack_id,
            pid: row.pid,
            tid: row.tid,
        }
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
    fn a_sample_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Sample>(), 32);
    }
}
