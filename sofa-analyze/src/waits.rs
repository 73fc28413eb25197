//! Where threads wait: off-CPU intervals from the `switches` table (a
//! thread's switch-out to its next switch-in), each with a reason read
//! from its stack when it left (kernel frames first say what it waits
//! for; `take_gil` above a futex wait says the GIL), summed per thread,
//! per reason and per stack.

use crate::WaitList;
use crate::fasthash::FastMap;
use crate::functions::CallStacks;
use crate::{AnalyzeError, Gaps};
use crate::{Sample, Samples};
use serde::Serialize;
use sofa_trace::tables::Switch;
use sofa_trace::{Archive, CollectorName, CollectorState, Table, TraceError, WaitReason};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// One off-CPU interval of one thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    pub pid: u32,
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub reason: WaitReason,
    /// Its stack when it left (Python frames merged in).
    pub stack_id: Option<u64>,
    /// Whether the stack is its own (else its thread's nearest one: the
    /// recorder took stacks at only some switch-outs).
    pub own_stack: bool,
}

impl Wait {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// The context switches of a recording, and its waits before their
/// reasons are known: each with its stack as a sample, so that Python
/// frames merge into it like into the CPU samples', and the end of the wait.
pub(crate) struct Switches {
    /// Each thread's (pid, tid) first and last switch.
    spans: FastMap<(u32, u32), (u64, u64)>,
    /// When switches were not recorded (faster than `--switch-rate`): a
    /// wait is its parts outside them, a thread's time too.
    pub gaps: Gaps,
    /// One per wait: the switch-out as a sample, and the switch-in time.
    pub outs: Vec<(Sample, u64)>,
    /// Whether each wait left its CPU still runnable.
    preempted: Vec<bool>,
    /// Whether each wait's stack is its own (else borrowed).
    own: Vec<bool>,
}

impl Switches {
    /// `None` when the archive has none (`--no-off-cpu`, not permitted,
    /// archives before 1.5).
    pub(crate) fn read(archive: &Archive) -> Result<Option<Switches>, AnalyzeError> {
        let recorded = archive
            .meta()
            .collectors
            .get(CollectorName::OffCpu.as_str())
            .is_some_and(|c| c.status == CollectorState::Ok);
        if !recorded || archive.table_rows(Switch::NAME).is_err() {
            return Ok(None);
        }
        let gaps = Gaps::read(archive, CollectorName::OffCpu)?;
        if let Some(switches) = Switches::pair_as_read(archive, &gaps)? {
            return Ok(Some(switches));
        }
        // Compact rows, a slice at a time (the archive's rows take 40 bytes).
        let mut rows: Vec<SwitchRow> = Vec::new();
        if let Ok(n) = archive.table_rows(Switch::NAME) {
            rows.reserve_exact(n as usize);
        }
        archive.for_each_rows(|slice: Vec<Switch>| {
            rows.extend(slice.iter().map(SwitchRow::from));
        })?;
        Ok(Some(Switches::pair_rows(rows, gaps)))
    }

    /// Each thread's waits: an `out` row and the thread's next `in` row.
    /// A last `out` with no `in` after it (the thread exited, or the
    /// recording ended) is no wait. Around a gap, what the rows prove: an
    /// `out` before it and another `out` after it waited until the gap
    /// began; an `in` before it and another `in` after it waited from
    /// the gap's end (that wait has no switch-out, so no stack of its own).
    #[cfg(test)]
    pub(crate) fn pair(rows: Vec<Switch>, gaps: Gaps) -> Switches {
        Switches::pair_rows(rows.iter().map(SwitchRow::from).collect(), gaps)
    }

    /// [`Switches::pair`] as the rows are read, put back in time order
    /// within [`REORDER_NS`] (the recorder writes each CPU's switches as
    /// it drains them: in the step corpus a thread's came up to 15 ms and
    /// 131 rows late). `None` where a thread's rows still come out of
    /// strictly increasing time (then the rows are kept and sorted).
    fn pair_as_read(archive: &Archive, gaps: &Gaps) -> Result<Option<Switches>, AnalyzeError> {
        let mut pairing = InOrder::new(gaps);
        let mut in_order = true;
        let mut reorder = Reorder::default();
        archive.for_each_rows(|slice: Vec<Switch>| {
            for r in &slice {
                reorder.push(SwitchRow::from(r), |h| {
                    in_order = in_order && pairing.add(h);
                });
            }
        })?;
        reorder.finish(|h| in_order = in_order && pairing.add(h));
        Ok(in_order.then(|| pairing.finish()))
    }

    /// The rows kept and sorted by thread, then time (an `out` before an
    /// `in` at the same time; rows of one key in the table's order), then
    /// paired as [`InOrder`] pairs them as read.
    fn pair_rows(mut rows: Vec<SwitchRow>, gaps: Gaps) -> Switches {
        rows.sort_by_key(|r| (r.tid, r.time_ns, !r.out));
        let mut pairing = InOrder::new(&gaps);
        pairing.ties = true;
        for r in rows {
            pairing.add(r);
        }
        pairing.finish()
    }

    /// The waits with their reasons, from their (merged) stacks: a wait
    /// across gaps is one per part outside them. The switch-outs become
    /// the waits, packed as they come (10 bytes a wait beside the
    /// switch-out's 32, not a `Wait`'s 48).
    pub(crate) fn waits(&mut self, stacks: &CallStacks) -> WaitList {
        let mut reasons: FastMap<(Option<u64>, bool), WaitReason> = FastMap::default();
        let outs = std::mem::take(&mut self.outs);
        let (preempted, own) = (
            std::mem::take(&mut self.preempted),
            std::mem::take(&mut self.own),
        );
        let mut waits = crate::waitlist::Builder::default();
        for (((out, end_ns), &preempted), &own_stack) in outs.iter().zip(&preempted).zip(&own) {
            let wait = Wait {
                pid: out.pid,
                tid: out.tid,
                start_ns: out.time_ns,
                end_ns: *end_ns,
                reason: *reasons
                    .entry((out.stack_id(), preempted))
                    .or_insert_with(|| reason_of(stacks, out.stack_id(), preempted)),
                stack_id: out.stack_id(),
                own_stack,
            };
            if self.gaps.is_empty() {
                waits.push(&wait);
            } else {
                for (a, b) in self.gaps.pieces(wait.start_ns, wait.end_ns) {
                    waits.push(&Wait {
                        start_ns: a,
                        end_ns: b,
                        ..wait
                    });
                }
            }
        }
        waits.finish()
    }
}

/// The waits paired so far, as [`Switches`] keeps them.
#[derive(Default)]
struct Pairing {
    outs: Vec<(Sample, u64)>,
    preempted: Vec<bool>,
    own: Vec<bool>,
}

impl Pairing {
    /// The wait between a thread's consecutive rows `a` and `b`, if they
    /// make one; a wait without a stack of its own, short enough to borrow
    /// one, takes `borrow(tid, preempted, start)`'s. Whether it was such.
    fn push(
        &mut self,
        a: &SwitchRow,
        b: &SwitchRow,
        gaps: &Gaps,
        borrow: impl Fn(u32, bool, u64) -> Option<u64>,
    ) -> bool {
        // (start, end, the switch-out that began it)
        let (start, end, out) = match (a.out, b.out) {
            (true, false) => (a.time_ns, b.time_ns, Some(a)),
            (true, true) => match gaps.first_start_in(a.time_ns, b.time_ns) {
                Some(gap) => (a.time_ns, gap, Some(a)),
                None => return false,
            },
            (false, false) => match gaps.last_end_in(a.time_ns, b.time_ns) {
                Some(gap) => (gap, b.time_ns, None),
                None => return false,
            },
            (false, true) => return false,
        };
        let was_preempted = out.is_some_and(|o| o.preempted);
        let stack = out.and_then(|o| o.stack_id());
        let borrows = stack.is_none() && end - start <= BORROW_MAX_NS;
        let stack = stack.or_else(|| {
            borrows
                .then(|| borrow(b.tid, was_preempted, start))
                .flatten()
        });
        self.outs
            .push((Sample::new(start, stack, b.pid, b.tid), end));
        self.preempted.push(was_preempted);
        self.own.push(out.and_then(|o| o.stack_id()).is_some());
        borrows
    }
}

/// How late a switch may come in the table after later ones and still be
/// paired as read: the rows held back are the switches of a second
/// (bounded by `--switch-rate`).
const REORDER_NS: u64 = 1_000_000_000;

/// A row held back to be put in time order: (arrival, row), ordered by
/// the row's time, then arrival.
struct Held(u64, SwitchRow);

impl Held {
    fn key(&self) -> (u64, u64) {
        (self.1.time_ns, self.0)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Rows put back in time order as they come, each held until a row
/// [`REORDER_NS`] later has come.
#[derive(Default)]
struct Reorder {
    held: BinaryHeap<Reverse<Held>>,
    newest: u64,
    seq: u64,
}

impl Reorder {
    /// Takes `r`; gives `out` the rows no longer held, oldest first.
    fn push(&mut self, r: SwitchRow, mut out: impl FnMut(SwitchRow)) {
        self.newest = self.newest.max(r.time_ns);
        self.held.push(Reverse(Held(self.seq, r)));
        self.seq += 1;
        while let Some(Reverse(Held(_, h))) = self.held.peek()
            && h.time_ns.saturating_add(REORDER_NS) < self.newest
        {
            out(*h);
            self.held.pop();
        }
    }

    /// Gives `out` the rows still held, oldest first.
    fn finish(mut self, mut out: impl FnMut(SwitchRow)) {
        while let Some(Reverse(Held(_, h))) = self.held.pop() {
            out(h);
        }
    }
}

/// Switches paired as they come, each thread's in strictly increasing
/// time: a thread's last row is all it keeps of its rows, besides the
/// switch-outs with a stack (to lend them).
struct InOrder<'g> {
    gaps: &'g Gaps,
    /// Whether a thread's row may come at the same time as its last (rows
    /// sorted with an `out` first); else that is out of order.
    ties: bool,
    last: FastMap<u32, SwitchRow>,
    spans: FastMap<(u32, u32), (u64, u64)>,
    stacked: FastMap<(u32, bool), Vec<(u64, u64)>>,
    pairing: Pairing,
    /// Waits whose stack is borrowed once every switch-out is known.
    borrowing: Vec<usize>,
}

impl<'g> InOrder<'g> {
    fn new(gaps: &'g Gaps) -> InOrder<'g> {
        InOrder {
            gaps,
            ties: false,
            last: FastMap::default(),
            spans: FastMap::default(),
            stacked: FastMap::default(),
            pairing: Pairing::default(),
            borrowing: Vec::new(),
        }
    }

    /// Pairs `r` with its thread's row before; false where it is not later.
    fn add(&mut self, r: SwitchRow) -> bool {
        let s = self
            .spans
            .entry((r.pid, r.tid))
            .or_insert((r.time_ns, r.time_ns));
        s.0 = s.0.min(r.time_ns);
        s.1 = s.1.max(r.time_ns);
        if r.out
            && let Some(stack) = r.stack_id()
        {
            self.stacked
                .entry((r.tid, r.preempted))
                .or_default()
                .push((r.time_ns, stack));
        }
        let Some(a) = self.last.insert(r.tid, r) else {
            return true;
        };
        if a.time_ns > r.time_ns || (a.time_ns == r.time_ns && !self.ties) {
            return false;
        }
        if self.pairing.push(&a, &r, self.gaps, |_, _, _| None) {
            self.borrowing.push(self.pairing.outs.len() - 1);
        }
        true
    }

    /// The waits with their borrowed stacks, in the order of the sorted
    /// rows (by thread, then start; as paired where starts are equal), so
    /// that the Python merge meets their stacks as it did.
    fn finish(mut self) -> Switches {
        for list in self.stacked.values_mut() {
            list.sort_unstable();
        }
        let borrow = Borrow {
            stacked: self.stacked,
        };
        let Pairing {
            mut outs,
            mut preempted,
            mut own,
        } = self.pairing;
        for i in self.borrowing {
            let (out, _) = &mut outs[i];
            out.set_stack_id(borrow.nearest(out.tid, preempted[i], out.time_ns));
        }
        drop(borrow);
        let mut order: Vec<u32> = (0..outs.len() as u32).collect();
        order.sort_by_key(|&i| (outs[i as usize].0.tid, outs[i as usize].0.time_ns));
        permute(&mut order, |a, b| {
            outs.swap(a, b);
            preempted.swap(a, b);
            own.swap(a, b);
        });
        Switches {
            spans: self.spans,
            gaps: self.gaps.clone(),
            outs,
            preempted,
            own,
        }
    }
}

/// Puts the items of a list at `order`'s places (item `order[i]` at `i`),
/// by the swaps `swap` makes, in place; `order` ends up as `0..n`.
fn permute(order: &mut [u32], mut swap: impl FnMut(usize, usize)) {
    for i in 0..order.len() {
        let mut at = i;
        loop {
            let next = order[at] as usize;
            order[at] = at as u32;
            if next == i {
                break;
            }
            swap(at, next);
            at = next;
        }
    }
}

/// Above the recorder's stack rate only some switch-outs have a stack: a
/// wait without one, up to [`BORROW_MAX_NS`] long, takes the native stack
/// of its thread's nearest switch-out that has one and left the CPU the
/// same way (blocked or preempted), the one before it where both are as
/// near; its Python frames still come from its own snapshot
/// ([`Wait::own_stack`] says which).
/// The longest wait that borrows a stack. Borrowing is right for a thread
/// that waits the same way many times a second (a ping-pong, GIL
/// handoffs); a long wait is rare and its own: a `join` of 1.5 s that
/// borrowed the GIL wait of the thread start just before it made the main
/// thread "wait for the GIL" 93 % of its life. Longer waits without their
/// own stack keep none (reason `other`).
const BORROW_MAX_NS: u64 = 10_000_000;

struct Borrow {
    stacked: FastMap<(u32, bool), Vec<(u64, u64)>>,
}

/// A `switches` row as pairing reads it: 32 bytes (its CPU left out, the
/// stack a plain `u64`).
#[derive(Debug, Clone, Copy)]
struct SwitchRow {
    time_ns: u64,
    /// Innermost node of its stack, `u64::MAX` for none.
    stack: u64,
    pid: u32,
    tid: u32,
    out: bool,
    preempted: bool,
}

impl SwitchRow {
    fn stack_id(&self) -> Option<u64> {
        (self.stack != u64::MAX).then_some(self.stack)
    }
}

impl From<&Switch> for SwitchRow {
    fn from(r: &Switch) -> SwitchRow {
        SwitchRow {
            time_ns: r.time_ns,
            stack: r.stack_id.unwrap_or(u64::MAX),
            pid: r.pid,
            tid: r.tid,
            out: r.out,
            preempted: r.preempted,
        }
    }
}

impl Borrow {
    fn nearest(&self, tid: u32, preempted: bool, t: u64) -> Option<u64> {
        let list = self.stacked.get(&(tid, preempted))?;
        let i = list.partition_point(|s| s.0 < t);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| list.get(j))
            .min_by_key(|s| s.0.abs_diff(t))
            .map(|s| s.1)
    }
}

/// The reason a blocking system call gives a wait, for waits whose stack
/// says nothing (no stack of their own, too long to borrow one): the call
/// their thread was in when it left. `read` is left out: a pipe and a disk
/// read are the same call.
fn call_reason(name: &str) -> Option<WaitReason> {
    Some(match name {
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait"
        | "epoll_pwait2" => WaitReason::Poll,
        "futex" => WaitReason::Lock,
        "nanosleep" | "clock_nanosleep" => WaitReason::Sleep,
        "wait4" | "waitid" => WaitReason::Child,
        "recvfrom" | "recvmsg" | "recvmmsg" => WaitReason::Pipe,
        _ => return None,
    })
}

/// A system call as a span of its thread's time.
trait CallSpan {
    fn tid(&self) -> u32;
    fn start_ns(&self) -> u64;
    /// `None` when its exit was not seen.
    fn end_ns(&self) -> Option<u64>;
}

impl CallSpan for crate::Call {
    fn tid(&self) -> u32 {
        self.tid
    }
    fn start_ns(&self) -> u64 {
        self.time_ns
    }
    fn end_ns(&self) -> Option<u64> {
        self.duration_ns().map(|d| self.time_ns + d)
    }
}

impl CallSpan for crate::syscalls::FutexWait {
    fn tid(&self) -> u32 {
        self.tid
    }
    fn start_ns(&self) -> u64 {
        self.time_ns
    }
    fn end_ns(&self) -> Option<u64> {
        self.end_ns
    }
}

/// Calls per thread in start order: which one a thread was in when it
/// left the CPU.
struct InFlight<'a, T> {
    by_tid: FastMap<u32, Vec<&'a T>>,
}

impl<'a, T: CallSpan> InFlight<'a, T> {
    fn new(calls: impl Iterator<Item = &'a T>) -> Self {
        let mut by_tid: FastMap<u32, Vec<&'a T>> = FastMap::default();
        for c in calls {
            by_tid.entry(c.tid()).or_default().push(c);
        }
        for list in by_tid.values_mut() {
            list.sort_by_key(|c| c.start_ns());
        }
        InFlight { by_tid }
    }

    /// Thread `tid`'s call that began at or before `t` and had not ended.
    fn at(&self, tid: u32, t: u64) -> Option<&'a T> {
        let list = self.by_tid.get(&tid)?;
        let i = list.partition_point(|c| c.start_ns() <= t).checked_sub(1)?;
        let call = list[i];
        call.end_ns().is_none_or(|end| end >= t).then_some(call)
    }
}

/// Gives waits of reason `other` without a stack of their own the reason
/// of the system call their thread was in when it left the CPU (a call
/// that began before the wait and had not ended); returns how many.
///
/// One pass over the calls, keeping none: a call is the candidate of the
/// first of its thread's waits that starts at or after it, and each
/// wait's call is the latest candidate of it and the waits before it.
pub(crate) fn reasons_from_calls(
    waits: &mut WaitList,
    calls: &crate::Calls,
) -> Result<u64, sofa_trace::TraceError> {
    let unknown = |w: &Wait| !w.own_stack && w.reason == WaitReason::Other;
    // Per thread: its unknown waits' (start, index), in start order.
    let mut by_tid: FastMap<u32, Vec<(u64, usize)>> = FastMap::default();
    for (i, w) in waits.iter().enumerate().filter(|(_, w)| unknown(w)) {
        by_tid.entry(w.tid).or_default().push((w.start_ns, i));
    }
    if by_tid.is_empty() {
        return Ok(0);
    }
    for list in by_tid.values_mut() {
        list.sort_unstable();
    }
    // Per thread and wait: its latest candidate, as (start, row, call):
    // of calls that start together the later row, as a stable sort by
    // start would order them.
    type Candidate = Option<(u64, u64, crate::Call)>;
    let mut candidates: FastMap<u32, Vec<Candidate>> = by_tid
        .iter()
        .map(|(&tid, list)| (tid, vec![None; list.len()]))
        .collect();
    let mut row = 0u64;
    calls.for_each(|c| {
        row += 1;
        let Some(list) = by_tid.get(&c.tid) else {
            return;
        };
        let k = list.partition_point(|&(t, _)| t < c.time_ns);
        if let Some(slot) = candidates.get_mut(&c.tid).and_then(|v| v.get_mut(k))
            && slot.is_none_or(|(t, r, _)| (c.time_ns, row) > (t, r))
        {
            *slot = Some((c.time_ns, row, *c));
        }
    })?;
    let mut given = Vec::new();
    for (tid, list) in &by_tid {
        let mut latest: Candidate = None;
        for (&(t, i), candidate) in list.iter().zip(&candidates[tid]) {
            if candidate.is_some_and(|c| latest.is_none_or(|l| (c.0, c.1) > (l.0, l.1))) {
                latest = *candidate;
            }
            let Some((_, _, call)) = latest else {
                continue;
            };
            if call.end_ns().is_some_and(|end| end < t) {
                continue;
            }
            if let Some(reason) = call_reason(calls.name(&call)) {
                given.push((i, reason));
            }
        }
    }
    given.sort_unstable_by_key(|&(i, _)| i);
    waits.set_reasons(&given);
    Ok(given.len() as u64)
}

/// How far inside a wait a CPU sample of its thread must be to prove the
/// wait wrong (timestamps of one clock, but taken at different points of
/// the switch path).
const SAMPLE_MARGIN_NS: u64 = 20_000;

/// Drops the waits during which their thread was sampled running: a lost
/// switch-in record paired a switch-out with a later switch-in. Returns
/// how many. What a wait needs is its thread's first sample after its
/// start (and the margin): per thread, the waits' starts in order, and
/// for each gap between two of them the earliest sample in it; the
/// earliest after a start is the least of the gaps' after it. Memory
/// grows with the waits, not the samples.
pub(crate) fn drop_impossible(waits: &mut WaitList, samples: &Samples) -> Result<u64, TraceError> {
    // Per thread: its waits' starts (plus the margin), in order, and the
    // earliest sample after `from[i - 1]` and up to `from[i]` (`earliest[i]`).
    let mut per_thread: FastMap<u32, (Vec<u64>, Vec<u64>)> = FastMap::default();
    for w in waits.iter() {
        per_thread
            .entry(w.tid)
            .or_default()
            .0
            .push(w.start_ns + SAMPLE_MARGIN_NS);
    }
    for (from, earliest) in per_thread.values_mut() {
        from.sort_unstable();
        *earliest = vec![u64::MAX; from.len() + 1];
    }
    samples.for_each(|s| {
        if let Some((from, earliest)) = per_thread.get_mut(&s.tid) {
            let i = from.partition_point(|&f| f < s.time_ns);
            earliest[i] = earliest[i].min(s.time_ns);
        }
    })?;
    // The earliest sample after each start: the least of the gaps after it.
    for (_, earliest) in per_thread.values_mut() {
        for i in (0..earliest.len() - 1).rev() {
            earliest[i] = earliest[i].min(earliest[i + 1]);
        }
    }
    let before = waits.len();
    waits.retain(|w| {
        let Some((from, earliest)) = per_thread.get(&w.tid) else {
            return true;
        };
        let i = from.partition_point(|&f| f < w.start_ns + SAMPLE_MARGIN_NS);
        // Samples after this start: those of the gaps after it.
        let next = earliest[i + 1];
        next == u64::MAX || next.saturating_add(SAMPLE_MARGIN_NS) >= w.end_ns
    });
    Ok((before - waits.len()) as u64)
}

/// Functions whose presence on a stack says why it waits, checked in this
/// order over the whole stack (the first rule any frame matches wins): a
/// futex wait under `take_gil` is the GIL, a page fault that waited in
/// `io_schedule` is disk I/O.
const RULES: &[(WaitReason, &[&str])] = &[
    (WaitReason::Gil, &["take_gil", "drop_gil"]),
    (
        WaitReason::GpuDriver,
        &[
            "nvidia_ioctl",
            "nvidia_unlocked_ioctl",
            "nvidia_frontend_unlocked_ioctl",
        ],
    ),
    (
        WaitReason::Disk,
        &[
            "io_schedule",
            "io_schedule_timeout",
            "blkdev_issue_flush",
            "jbd2_log_wait_commit",
        ],
    ),
    (
        WaitReason::PageFault,
        &["exc_page_fault", "asm_exc_page_fault", "handle_mm_fault"],
    ),
    (
        WaitReason::Sleep,
        &[
            "do_nanosleep",
            "hrtimer_nanosleep",
            "__x64_sys_nanosleep",
            "__x64_sys_clock_nanosleep",
        ],
    ),
    (
        WaitReason::Child,
        &["do_wait", "kernel_wait4", "kernel_waitid", "__do_sys_wait4"],
    ),
    (
        WaitReason::Poll,
        &[
            "do_sys_poll",
            "do_poll",
            "do_select",
            "core_sys_select",
            "ep_poll",
            "do_epoll_wait",
        ],
    ),
    (
        WaitReason::Pipe,
        &[
            "pipe_read",
            "anon_pipe_read",
            "pipe_write",
            "anon_pipe_write",
            "unix_stream_read_generic",
            "unix_stream_sendmsg",
            "unix_dgram_recvmsg",
            "sock_recvmsg",
            "tcp_recvmsg",
            "sk_wait_data",
            "__skb_wait_for_more_packets",
            "wait_for_completion_interruptible",
        ],
    ),
    (
        WaitReason::Lock,
        &[
            "futex_wait",
            "futex_wait_queue",
            "futex_do_wait",
            "__futex_wait",
            "do_futex",
        ],
    ),
];

/// Where the kernel hides its frames (kernel.kptr_restrict) or a stack
/// has none: the C library's wrapper of the call it waits in.
const USER_LEAVES: &[(WaitReason, &[&str])] = &[
    (
        WaitReason::Sleep,
        &[
            "clock_nanosleep",
            "nanosleep",
            "__clock_nanosleep",
            "usleep",
            "sleep",
        ],
    ),
    (
        WaitReason::Child,
        &["wait4", "waitpid", "waitid", "__wait4"],
    ),
    (
        WaitReason::Poll,
        &[
            "poll",
            "__poll",
            "ppoll",
            "select",
            "__select",
            "pselect",
            "epoll_wait",
            "epoll_pwait",
        ],
    ),
    (
        WaitReason::Lock,
        &[
            "__futex_abstimed_wait_common",
            "__lll_lock_wait",
            "futex_wait",
            "pthread_cond_wait",
            "pthread_mutex_lock",
            "sem_wait",
        ],
    ),
];

/// Why a thread that left its CPU with `stack` waited.
pub(crate) fn reason_of(stacks: &CallStacks, stack: Option<u64>, preempted: bool) -> WaitReason {
    if preempted {
        return WaitReason::Preempted;
    }
    let names: Vec<&str> = stacks.names(stack).map(|(f, _)| f.as_str()).collect();
    for (reason, functions) in RULES {
        if names.iter().any(|n| functions.contains(n)) {
            return *reason;
        }
    }
    // The innermost user frames: the wrapper, maybe called through another.
    let user: Vec<&str> = stacks
        .names(stack)
        .filter(|(_, module)| module != "[kernel]")
        .take(3)
        .map(|(f, _)| f.as_str())
        .collect();
    for (reason, functions) in USER_LEAVES {
        if user.iter().any(|n| functions.contains(n)) {
            return *reason;
        }
    }
    if user
        .iter()
        .any(|n| ["read", "__libc_read", "recv", "recvmsg", "recvfrom"].contains(n))
    {
        return WaitReason::Pipe;
    }
    WaitReason::Other
}

/// Wait time of one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonRow {
    pub reason: String,
    pub waits: u64,
    pub wait_ns: u64,
}

/// One thread's time: observed span, off-CPU time by reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadWaits {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// From its first to its last context switch, ns (less the time
    /// switches were not recorded, see [`WaitSummary::traced_share`]).
    pub span_ns: u64,
    /// Off-CPU time in that span, ns.
    pub wait_ns: u64,
    /// `wait_ns / span_ns`.
    pub wait_share: f64,
    /// Off-CPU time per reason, ns (reasons with none left out).
    pub by_reason: BTreeMap<String, u64>,
}

/// Wait time of one stack, named by its innermost function that is not
/// the kernel's or the C library's wait wrapper.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitStackRow {
    pub reason: String,
    /// The function it waited in (its innermost Python or user function).
    pub function: String,
    pub module: String,
    pub waits: u64,
    pub wait_ns: u64,
}

/// `sofa analyze`'s waits section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WaitSummary {
    pub waits: u64,
    pub wait_ns: u64,
    /// Share of `wait_ns` in waits with a stack of their own; the others
    /// took their thread's nearest one (switches faster than the recorder
    /// took stacks, `sofa record` says how many).
    pub own_stack_share: f64,
    /// Waits left out because their thread was sampled running during
    /// them (a switch record was lost).
    pub impossible: u64,
    /// Where switches came faster than `--switch-rate`, the share of the
    /// time they were recorded: waits, spans and shares are of that time
    /// (absent when every switch was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traced_share: Option<f64>,
    /// Per reason, most time first.
    pub by_reason: Vec<ReasonRow>,
    /// Per thread, most wait time first.
    pub threads: Vec<ThreadWaits>,
    /// Stacks that waited longest (at most [`TOP_STACKS`]).
    pub stacks: Vec<WaitStackRow>,
    /// The main thread of the main process in the training loop (or in
    /// its whole life when no steps were found).
    pub main: Option<LoopWaits>,
    /// Locks that two or more threads waited on, most wait time first (at
    /// most [`TOP_LOCKS`]); empty without system calls (the lock's address
    /// is the futex call's).
    pub locks: Vec<LockRow>,
}

/// One lock (a futex word) and the threads that slept on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockRow {
    pub pid: u32,
    /// The futex word's address in the process, `0x…`.
    pub address: String,
    /// Threads that waited on it, most wait first.
    pub tids: Vec<u32>,
    pub waits: u64,
    pub wait_ns: u64,
    /// `wait_ns` over those threads' spans together: the share of their
    /// time they queued on this lock.
    pub share: f64,
    /// Where most of the waiting was (innermost Python or user function).
    pub function: String,
    pub module: String,
}

/// Locks listed in [`WaitSummary::locks`].
pub const TOP_LOCKS: usize = 5;

/// Locks the lock waits (reason `lock`) slept on: each wait is matched to
/// the futex wait call its thread was in when it left the CPU.
pub(crate) fn lock_rows(
    waits: &WaitList,
    futex: &[crate::syscalls::FutexWait],
    threads: &[ThreadWaits],
    stacks: &CallStacks,
) -> Vec<LockRow> {
    let in_flight = InFlight::new(futex.iter());
    // Per (pid, address): per thread wait time, waits, per stack time.
    type Lock = (FastMap<u32, u64>, u64, FastMap<Option<u64>, u64>);
    let mut locks: FastMap<(u32, u64), Lock> = FastMap::default();
    for w in waits.iter().filter(|w| w.reason == WaitReason::Lock) {
        let Some(call) = in_flight
            .at(w.tid, w.start_ns)
            .filter(|call| call.pid == w.pid)
        else {
            continue;
        };
        let lock = locks.entry((w.pid, call.address)).or_default();
        *lock.0.entry(w.tid).or_default() += w.duration_ns();
        lock.1 += 1;
        *lock.2.entry(w.stack_id).or_default() += w.duration_ns();
    }
    let span: FastMap<(u32, u32), u64> = threads
        .iter()
        .map(|t| ((t.pid, t.tid), t.span_ns))
        .collect();
    let mut rows: Vec<LockRow> = locks
        .into_iter()
        .filter(|(_, (tids, _, _))| tids.len() >= 2)
        .map(|((pid, address), (tids, waits, by_stack))| {
            let wait_ns: u64 = tids.values().sum();
            let spans: u64 = tids
                .keys()
                .map(|&tid| span.get(&(pid, tid)).copied().unwrap_or(0))
                .sum();
            let mut tids: Vec<(u32, u64)> = tids.into_iter().collect();
            tids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let top = by_stack
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .and_then(|(stack, _)| stack);
            let (function, module) = waited_in(stacks, top);
            LockRow {
                pid,
                address: format!("{address:#x}"),
                tids: tids.into_iter().map(|(tid, _)| tid).collect(),
                waits,
                wait_ns,
                share: if spans > 0 {
                    (wait_ns as f64 / spans as f64).min(1.0)
                } else {
                    0.0
                },
                function,
                module,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.wait_ns
            .cmp(&a.wait_ns)
            .then(a.pid.cmp(&b.pid))
            .then(a.address.cmp(&b.address))
    });
    rows.truncate(TOP_LOCKS);
    rows
}

/// The main thread's waits in the loop: what the input-bound hint reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoopWaits {
    pub pid: u32,
    pub tid: u32,
    pub from_ns: u64,
    pub to_ns: u64,
    /// Whether `from_ns..to_ns` is the steps' loop (else the thread's span).
    pub in_steps: bool,
    /// The time of the span in which switches were recorded (all of it
    /// unless they came faster than `--switch-rate`), ns: what `wait_ns`
    /// and `input_ns` are shares of.
    pub traced_ns: u64,
    /// Off-CPU time in the span, ns.
    pub wait_ns: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Waits for input: pipe, queue and socket reads, poll, and lock
    /// waits in data-loading code (a queue filled by another thread), ns.
    pub input_ns: u64,
    /// The function it waited for input in longest.
    pub input_in: Option<String>,
}

/// Python modules and native functions of data loading: a lock wait under
/// them waits for a batch.
const INPUT_CODE: &[&str] = &[
    "torch/utils/data/",
    "multiprocessing/",
    "queue.py",
    "tensorflow/python/data/",
    "concurrent/futures/",
];

/// Whether a wait for `reason` with `stack` waits for input.
pub(crate) fn is_input(stacks: &CallStacks, stack: Option<u64>, reason: WaitReason) -> bool {
    match reason {
        WaitReason::Pipe | WaitReason::Poll => true,
        WaitReason::Lock => stacks
            .names(stack)
            .any(|(_, module)| INPUT_CODE.iter().any(|c| module.contains(c))),
        _ => false,
    }
}

/// The part of `w` inside `from..to`, ns.
pub(crate) fn overlap(w: &Wait, from: u64, to: u64) -> u64 {
    w.end_ns.min(to).saturating_sub(w.start_ns.max(from))
}

/// The waits of thread `tid` of `pid` inside `span` (the loop), or when
/// `span` is `None` in its whole life after `exec_ns` (its process's last
/// exec: before it, another program ran, e.g. a `pyenv` shim).
pub(crate) fn loop_waits(
    waits: &WaitList,
    gaps: &Gaps,
    stacks: &CallStacks,
    (pid, tid): (u32, u32),
    span: Option<(u64, u64)>,
    exec_ns: u64,
) -> Option<LoopWaits> {
    let mine = || {
        waits
            .iter()
            .filter(move |w| w.tid == tid && w.pid == pid && w.end_ns > exec_ns)
    };
    let (from_ns, to_ns) = match span {
        Some(span) => span,
        None => (
            mine().map(|w| w.start_ns).min()?.max(exec_ns),
            mine().map(|w| w.end_ns).max()?,
        ),
    };
    let mut out = LoopWaits {
        pid,
        tid,
        from_ns,
        to_ns,
        in_steps: span.is_some(),
        traced_ns: gaps.covered(from_ns, to_ns),
        ..LoopWaits::default()
    };
    // Per function: time, and whether it is Python code.
    let mut input_in: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    for w in mine() {
        let d = overlap(&w, from_ns, to_ns);
        if d == 0 {
            continue;
        }
        out.wait_ns += d;
        *out.by_reason
            .entry(w.reason.as_str().to_owned())
            .or_default() += d;
        if is_input(stacks, w.stack_id, w.reason) {
            out.input_ns += d;
            let (function, module) = waited_in(stacks, w.stack_id);
            let slot = input_in.entry(function).or_default();
            slot.0 += d;
            slot.1 = module.starts_with(crate::PY_MODULE_PREFIX);
        }
    }
    out.input_in = input_function(input_in, out.input_ns);
    Some(out)
}

/// The function the loop waited for input in longest: a Python one where
/// Python functions hold a quarter of the input time or more (short waits
/// without a snapshot of their own name only the interpreter's read,
/// `_Py_read`, and would outweigh the loader's code that the others name).
fn input_function(per: BTreeMap<String, (u64, bool)>, input_ns: u64) -> Option<String> {
    let python: u64 = per.values().filter(|v| v.1).map(|v| v.0).sum();
    let prefer_python = 4 * python >= input_ns && python > 0;
    per.into_iter()
        .filter(|(_, (_, is_python))| !prefer_python || *is_python)
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(&a.0)))
        .map(|(f, _)| f)
}

/// Rows of `WaitSummary::stacks`.
pub const TOP_STACKS: usize = 20;

/// The waits summed per reason, thread and stack. `comm` names threads.
pub(crate) fn summarize(
    waits: &WaitList,
    switches: &Switches,
    stacks: &CallStacks,
    comm: impl Fn(u32) -> Option<String>,
) -> WaitSummary {
    let mut by_reason: BTreeMap<WaitReason, (u64, u64)> = BTreeMap::new();
    let mut per_thread: FastMap<(u32, u32), (u64, BTreeMap<WaitReason, u64>)> = FastMap::default();
    let mut per_stack: FastMap<(Option<u64>, WaitReason), (u64, u64)> = FastMap::default();
    let (mut wait_ns, mut own) = (0, 0);
    for w in waits.iter() {
        let d = w.duration_ns();
        wait_ns += d;
        if w.own_stack {
            own += d;
        }
        let r = by_reason.entry(w.reason).or_default();
        r.0 += 1;
        r.1 += d;
        let t = per_thread.entry((w.pid, w.tid)).or_default();
        t.0 += d;
        *t.1.entry(w.reason).or_default() += d;
        let s = per_stack.entry((w.stack_id, w.reason)).or_default();
        s.0 += 1;
        s.1 += d;
    }
    // Each thread's span: its first to its last switch.
    let spans = &switches.spans;
    let mut threads: Vec<ThreadWaits> = per_thread
        .into_iter()
        .map(|((pid, tid), (wait_ns, reasons))| {
            let span_ns = spans
                .get(&(pid, tid))
                .map_or(0, |s| switches.gaps.covered(s.0, s.1));
            ThreadWaits {
                pid,
                tid,
                comm: comm(tid).unwrap_or_else(|| format!("[{tid}]")),
                span_ns,
                wait_ns,
                wait_share: if span_ns == 0 {
                    0.0
                } else {
                    wait_ns as f64 / span_ns as f64
                },
                by_reason: reasons
                    .into_iter()
                    .map(|(r, ns)| (r.as_str().to_owned(), ns))
                    .collect(),
            }
        })
        .collect();
    threads.sort_by(|a, b| b.wait_ns.cmp(&a.wait_ns).then(a.tid.cmp(&b.tid)));
    // Stacks that share their named function and reason are one row.
    let mut named: BTreeMap<(String, String, WaitReason), (u64, u64)> = BTreeMap::new();
    for ((stack, reason), (n, ns)) in per_stack {
        let (function, module) = waited_in(stacks, stack);
        let row = named.entry((function, module, reason)).or_default();
        row.0 += n;
        row.1 += ns;
    }
    let mut top: Vec<WaitStackRow> = named
        .into_iter()
        .map(
            |((function, module, reason), (waits, wait_ns))| WaitStackRow {
                reason: reason.as_str().to_owned(),
                function,
                module,
                waits,
                wait_ns,
            },
        )
        .collect();
    top.sort_by(|a, b| {
        b.wait_ns
            .cmp(&a.wait_ns)
            .then_with(|| a.function.cmp(&b.function))
    });
    top.truncate(TOP_STACKS);
    let mut reasons: Vec<ReasonRow> = by_reason
        .into_iter()
        .map(|(r, (waits, wait_ns))| ReasonRow {
            reason: r.as_str().to_owned(),
            waits,
            wait_ns,
        })
        .collect();
    reasons.sort_by(|a, b| b.wait_ns.cmp(&a.wait_ns).then(a.reason.cmp(&b.reason)));
    WaitSummary {
        waits: waits.len() as u64,
        wait_ns,
        traced_share: None,
        own_stack_share: if wait_ns == 0 {
            1.0
        } else {
            own as f64 / wait_ns as f64
        },
        by_reason: reasons,
        threads,
        stacks: top,
        main: None,
        locks: Vec::new(),
        impossible: 0,
    }
}

/// Modules of the C library and the kernel: where every wait ends, so
/// they name none.
fn is_wait_plumbing(module: &str) -> bool {
    module == "[kernel]"
        || module.starts_with("libc.so")
        || module.starts_with("libc-")
        || module.starts_with("libpthread")
        || module.starts_with("ld-linux")
}

/// The innermost Python function of a stack, else its innermost function
/// outside the kernel and the C library.
fn waited_in(stacks: &CallStacks, stack: Option<u64>) -> (String, String) {
    let names: Vec<&(String, String)> = stacks.names(stack).collect();
    names
        .iter()
        .find(|(_, m)| m.starts_with(crate::PY_MODULE_PREFIX))
        .or_else(|| names.iter().find(|(_, m)| !is_wait_plumbing(m)))
        .or_else(|| names.last())
        .map_or_else(
            || ("[no stack]".to_owned(), String::new()),
            |(f, m)| (f.clone(), m.clone()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::Resolved;
    use sofa_trace::tables::StackNode;
    use std::collections::HashMap;

    /// Stacks from chains of `function@module`, leaf first; chain `i` has
    /// its leaf at stack id `100 * (i + 1)`.
    fn stacks(chains: &[&[&str]]) -> CallStacks {
        let mut stacks = CallStacks {
            nodes: HashMap::new(),
            frames: HashMap::new(),
        };
        let mut frame_ids: HashMap<&str, u64> = HashMap::new();
        for (i, chain) in chains.iter().enumerate() {
            let base = 100 * (i as u64 + 1);
            for (depth, name) in chain.iter().enumerate() {
                let next = frame_ids.len() as u64;
                let frame = *frame_ids.entry(name).or_insert(next);
                let (function, module) = name.split_once('@').unwrap();
                stacks.frames.insert(
                    frame,
                    Resolved {
                        names: vec![(function.to_owned(), module.to_owned())],
                        address: 0,
                    },
                );
                let id = base + depth as u64;
                stacks.nodes.insert(
                    id,
                    StackNode {
                        stack_id: id,
                        parent_id: (depth + 1 < chain.len()).then_some(id + 1),
                        frame_id: frame,
                    },
                );
            }
        }
        stacks
    }

    #[test]
    fn switches_paired_as_read_are_those_paired_sorted() {
        let mut next = crate::steps::tests::xorshift(11);
        for round in 0..20 {
            // Three threads (one in two processes), switching at distinct
            // times 1-15 ms apart, out or in at random (doubled rows make the
            // waits around gaps), half the switch-outs with a stack; switches
            // not recorded in two spans.
            let mut rows = Vec::new();
            let mut t = [1_000_000u64; 3];
            for i in 0..600 {
                let k = (next() % 3) as usize;
                t[k] += 1_000_000 * (1 + next() % 15) + k as u64;
                let out = !next().is_multiple_of(3);
                let stack = (out && next().is_multiple_of(2)).then(|| next() % 5);
                let mut r = row(t[k], 10 + k as u32, out, next().is_multiple_of(4), stack);
                if k == 2 && i % 2 == 0 {
                    r.pid = 2;
                }
                rows.push(r);
            }
            // The table's order: by time.
            rows.sort_by_key(|r| r.time_ns);
            let gaps = Gaps::from(vec![(200_000_000, 260_000_000), (900_000_000, 990_000_000)]);
            let sorted = Switches::pair(rows.clone(), gaps.clone());
            // Then as the recorder writes them: each CPU's drained late.
            for chunk in rows.chunks_mut(1 + (next() % 40) as usize) {
                chunk.reverse();
            }
            let mut as_read = InOrder::new(&gaps);
            let mut reorder = Reorder::default();
            let mut in_order = true;
            for r in &rows {
                reorder.push(SwitchRow::from(r), |h| in_order &= as_read.add(h));
            }
            reorder.finish(|h| in_order &= as_read.add(h));
            assert!(in_order);
            let as_read = as_read.finish();
            assert!(
                sorted.outs.len() > 100,
                "round {round}: {}",
                sorted.outs.len()
            );
            assert!(sorted.own.iter().any(|o| !o) && sorted.own.iter().any(|o| *o));
            assert_eq!(as_read.outs, sorted.outs, "round {round}");
            assert_eq!(as_read.preempted, sorted.preempted);
            assert_eq!(as_read.own, sorted.own);
            assert_eq!(as_read.spans, sorted.spans);
        }
        // A row more than a second late is not put back in order.
        let gaps = Gaps::default();
        let mut as_read = InOrder::new(&gaps);
        let mut reorder = Reorder::default();
        let mut in_order = true;
        for r in [
            row(2_000_000_000, 1, true, false, None),
            row(3_100_000_000, 2, true, false, None),
            row(2_050_000_000, 1, false, false, None),
            row(3_200_000_000, 2, false, false, None),
            row(2_100_000_000, 1, true, false, None),
        ] {
            reorder.push(SwitchRow::from(&r), |h| in_order &= as_read.add(h));
        }
        assert!(in_order, "within a second");
        reorder.push(
            SwitchRow::from(&row(2_070_000_000, 1, false, false, None)),
            |h| in_order &= as_read.add(h),
        );
        reorder.finish(|h| in_order &= as_read.add(h));
        assert!(!in_order, "over a second late");
        // A thread's row no later than its last is refused.
        let mut as_read = InOrder::new(&gaps);
        assert!(as_read.add(SwitchRow::from(&row(10, 1, true, false, None))));
        assert!(as_read.add(SwitchRow::from(&row(5, 2, true, false, None))));
        assert!(!as_read.add(SwitchRow::from(&row(10, 1, false, false, None))));
    }

    fn row(time_ns: u64, tid: u32, out: bool, preempted: bool, stack: Option<u64>) -> Switch {
        Switch {
            time_ns,
            pid: 1,
            tid,
            cpu: 0,
            out,
            preempted,
            stack_id: stack,
        }
    }

    const FUTEX: &[&str] = &[
        "schedule@[kernel]",
        "futex_wait@[kernel]",
        "do_syscall_64@[kernel]",
        "__futex_abstimed_wait_common@libc.so.6",
    ];

    fn with(prefix: &[&'static str], rest: &[&'static str]) -> Vec<&'static str> {
        prefix.iter().chain(rest).copied().collect()
    }

    #[test]
    fn reasons_come_from_the_first_rule_any_frame_matches() {
        let gil = with(
            FUTEX,
            &[
                "pthread_cond_timedwait@libc.so.6",
                "take_gil@libpython3.12.so",
            ],
        );
        let queue = with(
            FUTEX,
            &["Condition.wait@py:threading.py", "Queue.get@py:queue.py"],
        );
        let s = stacks(&[
            &gil,
            FUTEX,
            &[
                "schedule@[kernel]",
                "io_schedule@[kernel]",
                "filemap_fault@[kernel]",
                "exc_page_fault@[kernel]",
            ],
            &["schedule@[kernel]", "exc_page_fault@[kernel]"],
            &[
                "schedule@[kernel]",
                "do_nanosleep@[kernel]",
                "clock_nanosleep@libc.so.6",
            ],
            &[
                "schedule@[kernel]",
                "anon_pipe_read@[kernel]",
                "read@libc.so.6",
            ],
            &["schedule@[kernel]", "do_sys_poll@[kernel]"],
            &["schedule@[kernel]", "do_wait@[kernel]"],
            &["schedule@[kernel]", "nvidia_unlocked_ioctl@[kernel]"],
            // Kernel frames hidden: the C library's wrapper says it.
            &[
                "__lll_lock_wait@libc.so.6",
                "pthread_mutex_lock@libc.so.6",
                "work@app",
            ],
            &["read@libc.so.6", "main@app"],
            &["schedule@[kernel]", "worker_thread@[kernel]"],
            &queue,
        ]);
        let reason = |chain: u64| reason_of(&s, Some(100 * chain), false);
        assert_eq!(reason(1), WaitReason::Gil);
        assert_eq!(reason(2), WaitReason::Lock);
        assert_eq!(
            reason(3),
            WaitReason::Disk,
            "a fault that waited for the device"
        );
        assert_eq!(reason(4), WaitReason::PageFault);
        assert_eq!(reason(5), WaitReason::Sleep);
        assert_eq!(reason(6), WaitReason::Pipe);
        assert_eq!(reason(7), WaitReason::Poll);
        assert_eq!(reason(8), WaitReason::Child);
        assert_eq!(reason(9), WaitReason::GpuDriver);
        assert_eq!(reason(10), WaitReason::Lock);
        assert_eq!(reason(11), WaitReason::Pipe);
        assert_eq!(reason(12), WaitReason::Other);
        assert_eq!(reason_of(&s, None, false), WaitReason::Other);
        // Preempted wins over any stack.
        assert_eq!(reason_of(&s, Some(100), true), WaitReason::Preempted);
        // A lock wait under a queue waits for input; one elsewhere does not.
        assert!(is_input(&s, Some(1300), WaitReason::Lock));
        assert!(!is_input(&s, Some(200), WaitReason::Lock));
        assert!(is_input(&s, Some(600), WaitReason::Pipe));
        assert_eq!(waited_in(&s, Some(1300)).0, "Condition.wait");
        assert_eq!(waited_in(&s, Some(1000)).0, "work", "past libc");
    }

    #[test]
    fn waits_without_a_stack_take_the_reason_of_the_call_they_were_in() {
        let call = |t_ms: u64, tid: u32, name: &str, d_ms: Option<u64>| {
            crate::test_syscall(t_ms * 1_000_000, tid, name, d_ms.map(|d| d * 1_000_000))
        };
        let calls = crate::Calls::from_rows(&[
            call(10, 2, "poll", Some(30)),
            call(50, 2, "read", Some(20)),
            call(80, 2, "futex", None),
            call(100, 3, "clock_nanosleep", Some(5)),
        ]);
        let wait = |tid: u32, start_ms: u64, own_stack: bool, reason: WaitReason| Wait {
            pid: 1,
            tid,
            start_ns: start_ms * 1_000_000,
            end_ns: (start_ms + 15) * 1_000_000,
            reason,
            stack_id: None,
            own_stack,
        };
        let waits = [
            wait(2, 11, false, WaitReason::Other),  // in the poll
            wait(2, 51, false, WaitReason::Other),  // in a read: pipe or disk
            wait(2, 81, false, WaitReason::Other),  // in a futex, exit unseen
            wait(3, 110, false, WaitReason::Other), // after its sleep ended
            wait(2, 12, true, WaitReason::Other),   // its own stack said other
            wait(2, 13, false, WaitReason::Sleep),  // its borrowed stack said
        ];
        let mut waits = WaitList::from(&waits[..]);
        assert_eq!(reasons_from_calls(&mut waits, &calls).unwrap(), 2);
        let got: Vec<WaitReason> = waits.iter().map(|w| w.reason).collect();
        use WaitReason::*;
        assert_eq!(got, [Poll, Other, Lock, Other, Other, Sleep]);
    }

    #[test]
    fn reasons_in_one_pass_are_those_of_the_call_in_flight() {
        // Calls out of time order, several at one time, waits before any
        // call, between calls, in one and at a call's start; checked
        // against a lookup in each thread's calls sorted by start.
        let names = [
            "poll",
            "read",
            "futex",
            "clock_nanosleep",
            "wait4",
            "recvmsg",
        ];
        let mut x = 12345u64;
        let mut next = move |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let rows: Vec<sofa_trace::tables::Syscall> = (0..400)
            .map(|_| {
                let t = next(2000) * 10;
                let tid = 1 + next(3) as u32;
                let name = names[next(names.len() as u64) as usize];
                crate::test_syscall(t, tid, name, (next(4) != 0).then(|| next(300)))
            })
            .collect();
        let calls = crate::Calls::from_rows(&rows);
        let mut kept = Vec::new();
        calls.for_each(|c| kept.push(*c)).unwrap();
        let mut waits: Vec<Wait> = (0..300)
            .map(|i| Wait {
                pid: 1,
                tid: 1 + next(4) as u32,
                start_ns: if i % 7 == 0 {
                    rows[i].time_ns
                } else {
                    next(2100) * 10 + 5
                },
                end_ns: 0,
                reason: if i % 11 == 0 {
                    WaitReason::Sleep
                } else {
                    WaitReason::Other
                },
                stack_id: None,
                own_stack: i % 13 == 0,
            })
            .collect();
        for w in &mut waits {
            w.end_ns = w.start_ns + 50;
        }
        let in_flight = InFlight::new(kept.iter());
        let want: Vec<WaitReason> = waits
            .iter()
            .map(|w| {
                if w.own_stack || w.reason != WaitReason::Other {
                    return w.reason;
                }
                in_flight
                    .at(w.tid, w.start_ns)
                    .and_then(|c| call_reason(calls.name(c)))
                    .unwrap_or(w.reason)
            })
            .collect();
        let mut waits = WaitList::from(&waits[..]);
        let given = reasons_from_calls(&mut waits, &calls).unwrap();
        let got: Vec<WaitReason> = waits.iter().map(|w| w.reason).collect();
        assert_eq!(got, want);
        assert!(given > 50, "{given}");
        assert!(got.iter().filter(|r| **r == WaitReason::Other).count() > 20);
    }

    #[test]
    fn lock_waits_group_by_the_futex_word_their_thread_slept_on() {
        let s = stacks(&[&["futex_wait@[kernel]", "worker@convoy"]]);
        let wait = |tid: u32, start_ms: u64, end_ms: u64, reason: WaitReason| Wait {
            pid: 1,
            tid,
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            reason,
            stack_id: Some(100),
            own_stack: true,
        };
        let futex =
            |tid: u32, from_ms: u64, to_ms: Option<u64>, address: u64| crate::syscalls::FutexWait {
                time_ns: from_ms * 1_000_000,
                end_ns: to_ms.map(|t| t * 1_000_000),
                pid: 1,
                tid,
                address,
            };
        let waits = [
            wait(2, 10, 20, WaitReason::Lock),  // in call 0xa
            wait(3, 12, 30, WaitReason::Lock),  // in call 0xa
            wait(4, 40, 50, WaitReason::Lock),  // in 0xa, its exit not seen
            wait(2, 60, 70, WaitReason::Lock),  // in 0xb: one thread only
            wait(3, 80, 90, WaitReason::Lock),  // after its call ended
            wait(4, 41, 45, WaitReason::Sleep), // not a lock wait
        ];
        let calls = [
            futex(2, 9, Some(21), 0xa),
            futex(3, 11, Some(31), 0xa),
            futex(4, 39, None, 0xa),
            futex(2, 59, Some(71), 0xb),
            futex(3, 75, Some(79), 0xa),
        ];
        let thread = |tid: u32| ThreadWaits {
            pid: 1,
            tid,
            comm: String::new(),
            span_ns: 100_000_000,
            wait_ns: 0,
            wait_share: 0.0,
            by_reason: BTreeMap::new(),
        };
        let rows = lock_rows(
            &WaitList::from(&waits[..]),
            &calls,
            &[thread(2), thread(3), thread(4)],
            &s,
        );
        assert_eq!(rows.len(), 1, "{rows:?}");
        let l = &rows[0];
        assert_eq!(l.address, "0xa");
        assert_eq!(l.tids, [3, 2, 4]);
        assert_eq!((l.waits, l.wait_ns), (3, 38_000_000));
        assert!((l.share - 38.0 / 300.0).abs() < 1e-9, "{}", l.share);
        assert_eq!(l.function, "worker");
    }

    #[test]
    fn an_out_and_the_threads_next_in_make_a_wait() {
        let s = stacks(&[FUTEX]);
        let mut switches = Switches::pair(
            vec![
                row(10, 7, true, false, Some(100)),
                row(12, 8, true, true, None),
                row(15, 8, false, false, None),
                row(30, 7, false, false, None),
                row(40, 7, true, false, Some(100)),
                // Thread 7's last switch-out has no switch-in: no wait. An in
                // with no out before it neither.
                row(5, 9, false, false, None),
            ],
            Gaps::default(),
        );
        let waits: Vec<Wait> = switches.waits(&s).iter().collect();
        let got: Vec<(u32, u64, u64, WaitReason)> = waits
            .iter()
            .map(|w| (w.tid, w.start_ns, w.end_ns, w.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 10, 30, WaitReason::Lock),
                (8, 12, 15, WaitReason::Preempted)
            ]
        );
        assert!(waits[0].own_stack);
        let summary = summarize(&WaitList::from(&waits[..]), &switches, &s, |_| {
            Some("t".into())
        });
        assert_eq!(summary.wait_ns, 23);
        assert_eq!(summary.by_reason[0].reason, "lock");
        let t7 = summary.threads.iter().find(|t| t.tid == 7).unwrap();
        assert_eq!(t7.span_ns, 30, "first to last switch");
        assert!((t7.wait_share - 20.0 / 30.0).abs() < 1e-9);
        assert_eq!(summary.stacks[0].function, "__futex_abstimed_wait_common");
    }

    #[test]
    fn around_gaps_waits_are_what_the_records_prove_and_shares_of_the_traced_time() {
        let s = stacks(&[FUTEX]);
        // Not recorded: 100..200 and 300..400.
        let gaps = Gaps::from(vec![(100, 200), (300, 400)]);
        let mut switches = Switches::pair(
            vec![
                // Thread 7: out at 50, in at 450: off-CPU throughout, but
                // only 50..100, 200..300 and 400..450 were seen.
                row(10, 7, false, false, None),
                row(50, 7, true, false, Some(100)),
                row(450, 7, false, false, None),
                row(500, 7, true, false, Some(100)),
                // Thread 8: out at 60, then out again at 250: it came
                // back in the gap, so only 60..100 is proven.
                row(20, 8, false, false, None),
                row(60, 8, true, false, Some(100)),
                row(250, 8, true, false, Some(100)),
                row(260, 8, false, false, None),
                // Thread 9: in at 30, in again at 230: it left in the
                // gap and waited at least from its end, 200..230.
                row(30, 9, false, false, None),
                row(230, 9, false, false, None),
                row(240, 9, true, false, Some(100)),
            ],
            gaps,
        );
        let waits: Vec<Wait> = switches.waits(&s).iter().collect();
        let got: Vec<(u32, u64, u64, bool)> = waits
            .iter()
            .map(|w| (w.tid, w.start_ns, w.end_ns, w.own_stack))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 50, 100, true),
                (7, 200, 300, true),
                (7, 400, 450, true),
                (8, 60, 100, true),
                (8, 250, 260, true),
                (9, 200, 230, false),
            ]
        );
        let summary = summarize(&WaitList::from(&waits[..]), &switches, &s, |_| None);
        let t7 = summary.threads.iter().find(|t| t.tid == 7).unwrap();
        // 10..500 less the 200 ns not recorded; 200 ns waited.
        assert_eq!((t7.span_ns, t7.wait_ns), (290, 200));
        // Thread 7 as a loop's: 200 ns of the 300 recorded.
        let m = loop_waits(
            &WaitList::from(&waits[..]),
            &switches.gaps,
            &s,
            (1, 7),
            Some((0, 500)),
            0,
        )
        .unwrap();
        assert_eq!((m.traced_ns, m.wait_ns), (300, 200));
    }

    #[test]
    fn a_wait_without_a_stack_takes_its_threads_nearest_of_the_same_kind() {
        let s = stacks(&[FUTEX, &["schedule@[kernel]", "do_nanosleep@[kernel]"]]);
        let mut switches = Switches::pair(
            vec![
                row(0, 7, true, false, Some(100)),
                row(1, 7, false, false, None),
                row(100, 7, true, false, Some(200)),
                row(101, 7, false, false, None),
                // Unsampled: nearer the sleep than the futex wait.
                row(90, 7, true, false, None),
                row(91, 7, false, false, None),
                // Preempted: only a preempted stack may lend (none here).
                row(95, 7, true, true, None),
                row(96, 7, false, false, None),
                // A long wait keeps no stack rather than a neighbour's.
                row(200, 7, true, false, None),
                row(200 + BORROW_MAX_NS + 1, 7, false, false, None),
            ],
            Gaps::default(),
        );
        let waits: Vec<Wait> = switches.waits(&s).iter().collect();
        let by_start: HashMap<u64, &Wait> = waits.iter().map(|w| (w.start_ns, w)).collect();
        assert_eq!(by_start[&90].reason, WaitReason::Sleep);
        assert!(!by_start[&90].own_stack);
        assert_eq!(by_start[&95].stack_id, None);
        assert_eq!(by_start[&95].reason, WaitReason::Preempted);
        assert_eq!(by_start[&200].stack_id, None);
        assert_eq!(by_start[&200].reason, WaitReason::Other);
        let summary = summarize(&WaitList::from(&waits[..]), &switches, &s, |_| None);
        let all = 4.0 + (BORROW_MAX_NS + 1) as f64;
        assert!((summary.own_stack_share - 2.0 / all).abs() < 1e-9);
    }

    #[test]
    fn a_switch_row_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<SwitchRow>(), 32);
        let mut row = Switch {
            time_ns: 1,
            pid: 2,
            tid: 3,
            cpu: 0,
            out: true,
            preempted: false,
            stack_id: None,
        };
        assert_eq!(SwitchRow::from(&row).stack_id(), None);
        row.stack_id = Some(0);
        assert_eq!(SwitchRow::from(&row).stack_id(), Some(0));
    }

    #[test]
    fn a_wait_in_which_its_thread_was_sampled_running_is_dropped() {
        let w = |tid, start_ns, end_ns| Wait {
            pid: 1,
            tid,
            start_ns,
            end_ns,
            reason: WaitReason::Lock,
            stack_id: None,
            own_stack: false,
        };
        let sample = |tid, time_ns| Sample::new(time_ns, None, 1, tid);
        let waits = [
            w(1, 0, 1_000_000),
            w(1, 2_000_000, 9_000_000),
            w(2, 0, 9_000_000),
        ];
        let samples = Samples::from_rows(vec![
            // At the edges of thread 1's first wait: not inside it.
            sample(1, 5_000),
            sample(1, 990_000),
            // Inside its second: an `in` record was lost.
            sample(1, 5_000_000),
            sample(3, 5_000_000),
        ]);
        let mut waits = WaitList::from(&waits[..]);
        assert_eq!(drop_impossible(&mut waits, &samples).unwrap(), 1);
        let waits: Vec<Wait> = waits.iter().collect();
        assert_eq!(waits.len(), 2);
        assert_eq!((waits[0].start_ns, waits[1].tid), (0, 2));
    }

    #[test]
    fn impossible_waits_are_those_a_lookup_in_every_sample_time_finds() {
        // Waits that overlap, share starts or lie inside one another, and
        // samples out of order, on a coarse grid so that they meet the
        // margins exactly.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let grid = SAMPLE_MARGIN_NS / 2;
        for _ in 0..20 {
            let waits: Vec<Wait> = (0..300)
                .map(|_| {
                    let start_ns = next(400) * grid;
                    Wait {
                        pid: 1,
                        tid: 1 + next(4) as u32,
                        start_ns,
                        end_ns: start_ns + next(12) * grid,
                        reason: WaitReason::Lock,
                        stack_id: None,
                        own_stack: false,
                    }
                })
                .collect();
            let samples: Vec<Sample> = (0..200)
                .map(|_| Sample::new(next(420) * grid, None, 1, 1 + next(5) as u32))
                .collect();
            // Each wait against its thread's first sample after its start.
            let kept: Vec<bool> = waits
                .iter()
                .map(|w| {
                    let from = w.start_ns + SAMPLE_MARGIN_NS;
                    samples
                        .iter()
                        .filter(|s| s.tid == w.tid && s.time_ns > from)
                        .map(|s| s.time_ns)
                        .min()
                        .is_none_or(|t| t + SAMPLE_MARGIN_NS >= w.end_ns)
                })
                .collect();
            let want: Vec<Wait> = waits
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(w, _)| *w)
                .collect();
            let mut list = WaitList::from(&waits[..]);
            let dropped = drop_impossible(&mut list, &Samples::from_rows(samples)).unwrap();
            assert_eq!(list.iter().collect::<Vec<_>>(), want);
            assert_eq!(dropped as usize, kept.iter().filter(|k| !**k).count());
            assert!(dropped > 0 && !waits.is_empty());
        }
    }

    #[test]
    fn the_input_function_is_python_code_where_it_holds_a_quarter() {
        let per = |entries: &[(&str, u64, bool)]| -> BTreeMap<String, (u64, bool)> {
            entries
                .iter()
                .map(|(f, ns, py)| (f.to_string(), (*ns, *py)))
                .collect()
        };
        let native_most = per(&[("_Py_read", 60, false), ("Connection._recv", 30, true)]);
        assert_eq!(
            input_function(native_most, 90).as_deref(),
            Some("Connection._recv")
        );
        let little_python = per(&[("_Py_read", 80, false), ("Connection._recv", 10, true)]);
        assert_eq!(
            input_function(little_python, 90).as_deref(),
            Some("_Py_read")
        );
        assert_eq!(input_function(BTreeMap::new(), 0), None);
    }

    #[test]
    fn the_loop_clips_waits_and_starts_after_the_last_exec() {
        let queue = with(FUTEX, &["Queue.get@py:queue.py"]);
        let s = stacks(&[&queue, FUTEX]);
        let w = |start_ns, end_ns, stack, reason| Wait {
            pid: 1,
            tid: 1,
            start_ns,
            end_ns,
            reason,
            stack_id: Some(stack),
            own_stack: true,
        };
        let waits = [
            w(0, 50, 200, WaitReason::Pipe), // before the exec
            w(90, 110, 100, WaitReason::Lock),
            w(150, 160, 200, WaitReason::Lock),
            w(190, 230, 100, WaitReason::Lock),
        ];
        let m = loop_waits(
            &WaitList::from(&waits[..]),
            &Gaps::default(),
            &s,
            (1, 1),
            Some((100, 200)),
            60,
        )
        .unwrap();
        assert_eq!((m.from_ns, m.to_ns, m.in_steps), (100, 200, true));
        assert_eq!(m.wait_ns, 10 + 10 + 10);
        assert_eq!(m.input_ns, 20, "the queue's lock waits, clipped");
        assert_eq!(m.input_in.as_deref(), Some("Queue.get"));
        let whole = loop_waits(
            &WaitList::from(&waits[..]),
            &Gaps::default(),
            &s,
            (1, 1),
            None,
            60,
        )
        .unwrap();
        assert_eq!((whole.from_ns, whole.to_ns), (90, 230));
        assert_eq!(whole.by_reason.get("pipe"), None, "another program's wait");
        assert!(
            loop_waits(
                &WaitList::from(&waits[..]),
                &Gaps::default(),
                &s,
                (2, 2),
                None,
                0
            )
            .is_none()
        );
    }
}
