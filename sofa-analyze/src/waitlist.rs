//! The off-CPU waits as the passes after their pairing read them: packed,
//! ~10 bytes a wait where a [`Wait`] takes 48, and read back exactly, in
//! the order they were given.
//!
//! A recording with context switches has a wait for every other switch
//! (2 M waits for 4 M switches): held as `Wait`s they were half of what
//! analysis memory grew by per sample and call.

use crate::fasthash::FastMap;
use crate::varint::{get, get_signed, put, put_signed};
use crate::waits::Wait;
use sofa_trace::WaitReason;

/// Waits in runs of one thread's: each wait is its start (the difference
/// from the wait before it in the run, zigzag), its length and its stack
/// (an index into the distinct stacks) as LEB128 bytes, then one byte of
/// reason and own-stack flag.
#[derive(Debug, Default, Clone)]
pub struct WaitList {
    bytes: Vec<u8>,
    runs: Vec<Run>,
    stacks: Vec<Option<u64>>,
    len: usize,
}

/// Consecutive waits of one thread.
#[derive(Debug, Clone, Copy)]
struct Run {
    pid: u32,
    tid: u32,
    waits: u32,
}

/// The flag byte's own-stack bit; the reason is the rest.
const OWN: u8 = 0x80;

fn reason_byte(reason: WaitReason) -> u8 {
    reason as u8
}

fn reason_of(byte: u8) -> WaitReason {
    WaitReason::ALL[usize::from(byte & !OWN)]
}

impl WaitList {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The distinct stacks of the waits, each once.
    pub fn stack_ids(&self) -> &[Option<u64>] {
        &self.stacks
    }

    /// The waits, in the order they were pushed.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            run: 0,
            left: self.runs.first().map_or(0, |r| r.waits),
            at: 0,
            start: 0,
        }
    }

    /// Keeps the waits `keep` says to, in order (their stacks too).
    pub fn retain(&mut self, mut keep: impl FnMut(&Wait) -> bool) {
        let mut kept = Builder::default();
        for w in self.iter().filter(|w| keep(w)) {
            kept.push(&w);
        }
        *self = kept.finish();
    }

    /// Gives the waits at some positions (in increasing order) new reasons.
    pub fn set_reasons(&mut self, changes: &[(usize, WaitReason)]) {
        let mut flags = Vec::with_capacity(changes.len());
        let mut waits = self.iter();
        let mut i = 0;
        for &(at, _) in changes {
            while i <= at {
                waits.next().expect("a position among the waits");
                i += 1;
            }
            flags.push(waits.at - 1);
        }
        for (&at, &(_, reason)) in flags.iter().zip(changes) {
            let own = self.bytes[at] & OWN;
            self.bytes[at] = reason_byte(reason) | own;
        }
    }
}

/// Builds a [`WaitList`] a wait at a time.
#[derive(Default)]
pub struct Builder {
    list: WaitList,
    stack_index: FastMap<Option<u64>, u64>,
    last_start: u64,
}

impl Builder {
    pub fn push(&mut self, w: &Wait) {
        let list = &mut self.list;
        let same_run = list
            .runs
            .last()
            .is_some_and(|r| (r.pid, r.tid) == (w.pid, w.tid) && r.waits < u32::MAX);
        if same_run {
            list.runs.last_mut().expect("checked").waits += 1;
        } else {
            list.runs.push(Run {
                pid: w.pid,
                tid: w.tid,
                waits: 1,
            });
            self.last_start = 0;
        }
        put_signed(
            &mut list.bytes,
            w.start_ns.wrapping_sub(self.last_start) as i64,
        );
        put(&mut list.bytes, w.end_ns.wrapping_sub(w.start_ns));
        let next = list.stacks.len() as u64;
        let stack = *self.stack_index.entry(w.stack_id).or_insert_with(|| {
            list.stacks.push(w.stack_id);
            next
        });
        put(&mut list.bytes, stack);
        list.bytes
            .push(reason_byte(w.reason) | if w.own_stack { OWN } else { 0 });
        self.last_start = w.start_ns;
        list.len += 1;
    }

    pub fn finish(mut self) -> WaitList {
        self.list.bytes.shrink_to_fit();
        self.list.runs.shrink_to_fit();
        self.list
    }
}

impl<'w> FromIterator<&'w Wait> for WaitList {
    fn from_iter<I: IntoIterator<Item = &'w Wait>>(waits: I) -> WaitList {
        let mut b = Builder::default();
        for w in waits {
            b.push(w);
        }
        b.finish()
    }
}

impl From<&[Wait]> for WaitList {
    fn from(waits: &[Wait]) -> WaitList {
        waits.iter().collect()
    }
}

/// The waits of a [`WaitList`], decoded as read.
pub struct Iter<'l> {
    list: &'l WaitList,
    run: usize,
    left: u32,
    at: usize,
    start: u64,
}

impl Iterator for Iter<'_> {
    type Item = Wait;

    fn next(&mut self) -> Option<Wait> {
        while self.left == 0 {
            self.run += 1;
            self.left = self.list.runs.get(self.run)?.waits;
            self.start = 0;
        }
        self.left -= 1;
        let run = self.list.runs[self.run];
        let bytes = &self.list.bytes;
        let start_ns = self
            .start
            .wrapping_add(get_signed(bytes, &mut self.at) as u64);
        let end_ns = start_ns.wrapping_add(get(bytes, &mut self.at));
        let stack_id = self.list.stacks[get(bytes, &mut self.at) as usize];
        let flags = bytes[self.at];
        self.at += 1;
        self.start = start_ns;
        Some(Wait {
            pid: run.pid,
            tid: run.tid,
            start_ns,
            end_ns,
            reason: reason_of(flags),
            stack_id,
            own_stack: flags & OWN != 0,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.list.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_back_as_given_in_about_ten_bytes() {
        // Threads interleaved, times out of order, extreme values, and
        // every reason: read back wait for wait.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut waits = Vec::new();
        let mut t = 1_000_000_000u64;
        for i in 0..20_000u64 {
            let tid = [7, 7, 7, 9, 11][(next() % 5) as usize];
            t = if next() % 50 == 0 {
                t - next() % 1_000_000
            } else {
                t + next() % 3_000_000
            };
            let len = match next() % 100 {
                0 => u64::MAX - t,
                1 => 0,
                _ => next() % 5_000_000,
            };
            waits.push(Wait {
                pid: if tid == 11 && i % 2 == 0 { 3 } else { 1 },
                tid,
                start_ns: if i == 5 { u64::MAX } else { t },
                end_ns: if i == 5 { u64::MAX } else { t + len },
                reason: WaitReason::ALL[(next() % WaitReason::ALL.len() as u64) as usize],
                stack_id: match next() % 40 {
                    0 => None,
                    1 => Some(u64::MAX - 1),
                    k => Some(k * 1_000),
                },
                own_stack: next() % 2 == 0,
            });
        }
        let list = WaitList::from(&waits[..]);
        assert_eq!(list.len(), waits.len());
        assert_eq!(list.iter().collect::<Vec<_>>(), waits);
        // As analysis gives them, a thread's waits in order: lengths and
        // gaps of milliseconds take 3 to 4 bytes each.
        waits.sort_by_key(|w| (w.tid, w.start_ns));
        let list = WaitList::from(&waits[..]);
        assert_eq!(list.iter().collect::<Vec<_>>(), waits);
        let per_wait = list.bytes.len() as f64 / waits.len() as f64;
        assert!(per_wait < 10.0, "{per_wait} bytes a wait");
        assert!(WaitList::default().iter().next().is_none());

        // Reasons set in place, waits kept or left out in order.
        let changes: Vec<(usize, WaitReason)> = (0..waits.len())
            .filter(|i| i % 3 == 0)
            .map(|i| (i, WaitReason::ALL[i % WaitReason::ALL.len()]))
            .collect();
        let mut list = WaitList::from(&waits[..]);
        list.set_reasons(&changes);
        for &(i, reason) in &changes {
            waits[i].reason = reason;
        }
        assert_eq!(list.iter().collect::<Vec<_>>(), waits);
        let keep = |w: &Wait| !w.start_ns.is_multiple_of(5) && w.stack_id != Some(3_000);
        list.retain(keep);
        waits.retain(keep);
        assert_eq!(list.iter().collect::<Vec<_>>(), waits);
        let mut stacks: Vec<Option<u64>> = waits.iter().map(|w| w.stack_id).collect();
        stacks.sort();
        stacks.dedup();
        let mut kept = list.stack_ids().to_vec();
        kept.sort();
        assert_eq!(kept, stacks);
    }
}
