//! CPU samples as the analysis keeps them.

use crate::fasthash::StackMap;
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

/// How stacks are rewritten as samples are read: Python frames merged in
/// ([`crate::python::merge`]), then native frames of Python stacks left
/// out (`--python-only`). Sized by the distinct stacks, not the samples.
#[derive(Debug, Default)]
pub(crate) struct Remap {
    pub merge: Option<crate::python::Merged>,
    /// Stack → the stack of its Python frames only.
    pub reduced: Option<StackMap<Option<u64>>>,
}

impl Remap {
    fn apply(&self, s: &mut Sample) {
        if let Some(m) = &self.merge {
            m.apply(s);
        }
        if let Some(reduced) = &self.reduced {
            let stack = s.stack_id();
            s.set_stack_id(reduced.get(&stack).copied().unwrap_or(stack));
        }
    }
}

/// The `samples` table as analysis sees it: read again, compact and one at
/// a time, by each pass over the samples ([`Samples::for_each`]), its
/// stacks rewritten on the way (Python frames merged in). Memory does not
/// grow with the samples: 10^7 of them held as 24-byte rows took 229 MiB.
#[derive(Debug, Default)]
pub struct Samples<'a> {
    /// Where the samples are read again from; `None` for samples given in
    /// memory ([`Samples::from_rows`]), which are then kept in `kept`.
    archive: Option<&'a Archive>,
    kept: Vec<Sample>,
    /// Rows of the first read.
    rows: u64,
    remap: Remap,
}

impl<'a> Samples<'a> {
    /// Counts the table's rows in a first read; passes read the samples
    /// again with [`Samples::for_each`].
    pub fn read(archive: &'a Archive) -> Result<Samples<'a>, TraceError> {
        let rows = archive.for_each_sample(None, |_| {})?;
        Ok(Samples {
            archive: Some(archive),
            rows,
            ..Samples::default()
        })
    }

    /// Samples kept in memory (tests, callers that have them).
    pub fn from_rows(rows: Vec<Sample>) -> Samples<'static> {
        Samples {
            rows: rows.len() as u64,
            kept: rows,
            ..Samples::default()
        }
    }

    pub fn len(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Calls `f` with every sample, in the table's order, its stack
    /// rewritten: read again from the archive (a pass over 10^7 samples
    /// takes ~0.3 s), or from memory. Of an archive still being recorded,
    /// the samples of the first read.
    pub fn for_each(&self, mut f: impl FnMut(&Sample)) -> Result<(), TraceError> {
        let Some(archive) = self.archive else {
            for s in &self.kept {
                let mut s = *s;
                self.remap.apply(&mut s);
                f(&s);
            }
            return Ok(());
        };
        let read = archive.for_each_sample(Some(self.rows), |row| {
            let mut s = Sample::new(row.time_ns, row.stack_id, row.pid, row.tid);
            self.remap.apply(&mut s);
            f(&s);
        })?;
        if read < self.rows {
            return Err(crate::changed_while_analysed(
                archive.dir().join(tables::Sample::NAME),
                (read, self.rows),
                "samples",
                None,
            ));
        }
        Ok(())
    }

    /// How stacks are rewritten from now on.
    pub(crate) fn remap_mut(&mut self) -> &mut Remap {
        &mut self.remap
    }
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
