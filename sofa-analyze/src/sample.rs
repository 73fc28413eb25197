//! CPU samples as analysis reads them: again for each pass, not held.

use crate::fasthash::{FastMap, StackMap};
use sofa_trace::tables;
use sofa_trace::{Archive, Table, TraceError};

/// A CPU sample as a pass over the samples sees it: its CPU, event and
/// period, which no analysis reads, are left out, and its stack is a plain
/// `u64`, `NO_STACK` for none (24 bytes: where one is kept, in a test or
/// beside a wait, it is small).
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

/// How stacks are rewritten as samples are read: Python frames merged in
/// ([`crate::python::merge`]), then native frames of Python stacks left
/// out (`--python-only`). Sized by the distinct stacks, not the samples.
#[derive(Debug, Default)]
struct Remap {
    merge: Option<crate::python::Merged>,
    /// Stack → the stack of its Python frames only.
    reduced: Option<StackMap<Option<u64>>>,
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

/// What one pass over the samples counts, for the passes that only
/// count: samples per stack and thread, and each thread's first and last
/// sample. Sized by the distinct stacks of each thread.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    per_stack_thread: FastMap<(Option<u64>, u32, u32), u64>,
    /// Per thread (pid, tid): its first and last sample's time, and
    /// whether its samples come in strictly increasing time.
    spans: FastMap<(u32, u32), (u64, u64, bool)>,
}

impl Tally {
    pub(crate) fn add(&mut self, s: &Sample) {
        *self
            .per_stack_thread
            .entry((s.stack_id(), s.pid, s.tid))
            .or_default() += 1;
        let t = s.time_ns;
        self.spans
            .entry((s.pid, s.tid))
            .and_modify(|(first, last, in_order)| {
                *in_order &= t > *last;
                (*first, *last) = ((*first).min(t), (*last).max(t));
            })
            .or_insert((t, t, true));
    }

    /// Whether the samples of thread (pid, tid) come in strictly
    /// increasing time (true for a thread without samples).
    pub fn in_order(&self, pid: u32, tid: u32) -> bool {
        self.spans.get(&(pid, tid)).is_none_or(|s| s.2)
    }

    /// Per thread id, whether its samples come in strictly increasing time:
    /// false for a thread id seen in two processes.
    pub fn tids_in_order(&self) -> FastMap<u32, bool> {
        let mut out: FastMap<u32, bool> = FastMap::default();
        for (&(_, tid), &(_, _, in_order)) in &self.spans {
            out.entry(tid)
                .and_modify(|ok| *ok = false)
                .or_insert(in_order);
        }
        out
    }

    /// Samples per (stack, pid, tid).
    pub fn per_stack_thread(&self) -> impl Iterator<Item = ((Option<u64>, u32, u32), u64)> + '_ {
        self.per_stack_thread.iter().map(|(&k, &n)| (k, n))
    }

    /// Samples per stack.
    pub fn per_stack(&self) -> StackMap<u64> {
        let mut out = StackMap::default();
        for ((stack, _, _), n) in self.per_stack_thread() {
            *out.entry(stack).or_default() += n;
        }
        out
    }

    /// Samples per thread (pid, tid).
    pub fn per_thread(&self) -> FastMap<(u32, u32), u64> {
        let mut out = FastMap::default();
        for ((_, pid, tid), n) in self.per_stack_thread() {
            *out.entry((pid, tid)).or_default() += n;
        }
        out
    }

    /// Each thread's (pid, tid) first and last sample's time.
    pub fn spans(&self) -> impl Iterator<Item = ((u32, u32), (u64, u64))> + '_ {
        self.spans
            .iter()
            .map(|(&k, &(first, last, _))| (k, (first, last)))
    }

    /// The first and last sample's time; `None` without samples.
    pub fn span(&self) -> Option<(u64, u64)> {
        self.spans()
            .map(|(_, span)| span)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
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
    /// What the samples count, as they are read now.
    tally: Tally,
}

impl<'a> Samples<'a> {
    /// Counts the table's rows and tallies them in a first read; passes
    /// read the samples again with [`Samples::for_each`].
    pub fn read(archive: &'a Archive) -> Result<Samples<'a>, TraceError> {
        let mut tally = Tally::default();
        let rows = archive.for_each_sample(None, |row| {
            tally.add(&Sample::new(row.time_ns, row.stack_id, row.pid, row.tid));
        })?;
        Ok(Samples {
            archive: Some(archive),
            rows,
            tally,
            ..Samples::default()
        })
    }

    /// Samples kept in memory (tests, callers that have them).
    pub fn from_rows(rows: Vec<Sample>) -> Samples<'static> {
        let mut tally = Tally::default();
        rows.iter().for_each(|s| tally.add(s));
        Samples {
            rows: rows.len() as u64,
            kept: rows,
            tally,
            ..Samples::default()
        }
    }

    /// What the samples count, as they are read.
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Python frames merged into the stacks from now on; `tally` is of the
    /// samples so rewritten (taken by the pass that built the merge).
    pub(crate) fn set_merge(&mut self, merged: crate::python::Merged, tally: Tally) {
        self.remap.merge = Some(merged);
        self.tally = tally;
    }

    /// Stacks reduced (to their Python frames) from now on; `tally` as for
    /// [`Samples::set_merge`].
    pub(crate) fn set_reduced(&mut self, reduced: StackMap<Option<u64>>, tally: Tally) {
        self.remap.reduced = Some(reduced);
        self.tally = tally;
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
