//! System call names, and pairing of enter and exit events into one row.

use sofa_trace::tables::Syscall;
use std::collections::{HashMap, HashSet};

#[path = "syscall_names.rs"]
mod names;

/// Name of system call `nr` on `arch` (`std::env::consts::ARCH` naming).
pub fn name(arch: &str, nr: u32) -> Option<&'static str> {
    let table = match arch {
        "x86_64" => names::X86_64,
        "aarch64" => names::AARCH64,
        _ => return None,
    };
    table
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .map(|i| table[i].1)
}

/// Number of system call `name` on `arch`.
pub fn number(arch: &str, name: &str) -> Option<u32> {
    let table = match arch {
        "x86_64" => names::X86_64,
        "aarch64" => names::AARCH64,
        _ => return None,
    };
    table.iter().find(|&&(_, n)| n == name).map(|&(nr, _)| nr)
}

/// A `sys_enter` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enter {
    pub time_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub nr: u32,
    pub args: [u64; 3],
}

/// A `sys_exit` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub time_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub nr: u32,
    pub ret: i64,
}

/// The number a system call's exit reports when the registers no longer
/// name a call (-1 as u32).
const NO_SYSCALL: u32 = u32::MAX;

/// Pairs enter and exit per thread. Events arrive from per-CPU buffers, so
/// a thread's exit (on the CPU it woke up on) can be read before its enter;
/// either side waits for the other.
#[derive(Default)]
pub struct Pairer {
    arch: &'static str,
    enters: HashMap<u32, Enter>,
    exits: HashMap<u32, Exit>,
    /// Exits never matched by an enter (e.g. the `execve` that started the
    /// command, whose enter preceded the counters).
    pub orphan_exits: u64,
    /// After tracing was off for a while: the threads seen since. A
    /// thread's first exit without an enter then ends a call it entered
    /// while nothing was traced.
    since_gap: Option<HashSet<u32>>,
    /// Exits of calls entered while tracing was off.
    pub gap_exits: u64,
}

impl Pairer {
    pub fn new(arch: &'static str) -> Pairer {
        Pairer {
            arch,
            ..Pairer::default()
        }
    }

    fn row(&self, e: &Enter, exit: Option<&Exit>) -> Syscall {
        Syscall {
            time_ns: e.time_ns,
            duration_ns: exit.map(|x| x.time_ns.saturating_sub(e.time_ns)),
            pid: e.pid,
            tid: e.tid,
            nr: e.nr,
            name: name(self.arch, e.nr)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("syscall_{}", e.nr)),
            ret: exit.map(|x| x.ret),
            arg0: e.args[0],
            arg1: e.args[1],
            arg2: e.args[2],
        }
    }

    /// Tracing goes off: calls open now become rows without an exit (their
    /// exit may come after the gap, but so may another call's of the same
    /// number), and exits still waiting for their enter are orphans.
    pub fn gap(&mut self, out: &mut Vec<Syscall>) {
        self.close_open(out);
        self.orphan_exits += self.exits.len() as u64;
        self.exits.clear();
        self.since_gap = Some(HashSet::new());
    }

    fn close_open(&mut self, out: &mut Vec<Syscall>) {
        let mut open: Vec<Enter> = self.enters.drain().map(|(_, e)| e).collect();
        open.sort_by_key(|e| (e.time_ns, e.tid));
        for e in &open {
            out.push(self.row(e, None));
        }
    }

    /// Feeds an enter; returns rows completed by it.
    pub fn enter(&mut self, e: Enter, out: &mut Vec<Syscall>) {
        if let Some(seen) = &mut self.since_gap {
            seen.insert(e.tid);
        }
        if let Some(x) = self.exits.get(&e.tid)
            && x.nr == e.nr
            && x.time_ns >= e.time_ns
        {
            let x = self.exits.remove(&e.tid).expect("just seen");
            out.push(self.row(&e, Some(&x)));
            return;
        }
        if let Some(previous) = self.enters.insert(e.tid, e) {
            // Its exit never came (lost, or a call that does not return).
            out.push(self.row(&previous, None));
        }
    }

    /// Feeds an exit; returns rows completed by it.
    pub fn exit(&mut self, x: Exit, out: &mut Vec<Syscall>) {
        // `rt_sigreturn` restores the registers of the interrupted code, the
        // system call number included, which it sets to -1 so nothing is
        // restarted: the kernel reports its return as call -1. It ends the
        // call its thread entered last, whatever its number.
        if x.nr == NO_SYSCALL {
            if let Some(e) = self.enters.get(&x.tid)
                && e.time_ns <= x.time_ns
            {
                let e = self.enters.remove(&x.tid).expect("just seen");
                out.push(self.row(&e, Some(&x)));
            }
            return;
        }
        if let Some(e) = self.enters.get(&x.tid)
            && e.nr == x.nr
            && e.time_ns <= x.time_ns
        {
            let e = self.enters.remove(&x.tid).expect("just seen");
            out.push(self.row(&e, Some(&x)));
            return;
        }
        // A new thread or process starts life returning from clone/fork, and
        // a new program from execve: exits without an enter are expected there.
        if matches!(
            name(self.arch, x.nr),
            Some("clone" | "clone3" | "fork" | "vfork" | "execve" | "execveat")
        ) {
            return;
        }
        if let Some(seen) = &mut self.since_gap
            && seen.insert(x.tid)
        {
            self.gap_exits += 1;
            return;
        }
        if self.exits.insert(x.tid, x).is_some() {
            self.orphan_exits += 1;
        }
    }

    /// Calls still open at the end (exit_group, a killed thread) become rows
    /// without duration; exits that never met their enter are counted.
    pub fn finish(mut self, out: &mut Vec<Syscall>) -> u64 {
        self.close_open(out);
        self.orphan_exits + self.exits.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enter(t: u64, tid: u32, nr: u32) -> Enter {
        Enter {
            time_ns: t,
            pid: 1,
            tid,
            nr,
            args: [3, 0, 64],
        }
    }
    fn exit(t: u64, tid: u32, nr: u32, ret: i64) -> Exit {
        Exit {
            time_ns: t,
            pid: 1,
            tid,
            nr,
            ret,
        }
    }

    #[test]
    fn numbers_by_arch() {
        assert_eq!(number("x86_64", "sched_yield"), Some(24));
        assert_eq!(number("aarch64", "sched_yield"), Some(124));
        assert_eq!(number("x86_64", "no_such_call"), None);
    }

    #[test]
    fn names_by_arch() {
        assert_eq!(name("x86_64", 0), Some("read"));
        assert_eq!(name("x86_64", 202), Some("futex"));
        assert_eq!(name("aarch64", 63), Some("read"));
        assert_eq!(name("aarch64", 98), Some("futex"));
        assert_eq!(name("x86_64", 100_000), None);
        assert_eq!(name("riscv64", 0), None);
    }

    #[test]
    fn pairs_in_order_and_out_of_order() {
        let mut p = Pairer::new("x86_64");
        let mut rows = Vec::new();
        p.enter(enter(10, 7, 0), &mut rows);
        p.exit(exit(15, 7, 0, 64), &mut rows);
        // Thread 8's exit is read before its enter (another CPU's buffer).
        p.exit(exit(40, 8, 1, -9), &mut rows);
        p.enter(enter(30, 8, 1), &mut rows);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].duration_ns, rows[0].ret, rows[0].name.as_str()),
            (Some(5), Some(64), "read")
        );
        assert_eq!(
            (rows[1].duration_ns, rows[1].ret, rows[1].name.as_str()),
            (Some(10), Some(-9), "write")
        );
        assert_eq!(rows[1].arg2, 64);
    }

    #[test]
    fn unmatched_events_are_kept_or_counted() {
        let mut p = Pairer::new("x86_64");
        let mut rows = Vec::new();
        p.exit(exit(5, 7, 59, 0), &mut rows); // execve's exit: enter never seen, expected
        p.exit(exit(6, 9, 56, 0), &mut rows); // a new thread returning from clone, expected
        p.exit(exit(7, 11, 0, 0), &mut rows); // a read whose enter was lost
        p.enter(enter(10, 7, 0), &mut rows);
        p.enter(enter(20, 7, 0), &mut rows); // first exit lost
        p.exit(exit(25, 7, 0, 1), &mut rows);
        p.enter(enter(30, 7, 231), &mut rows); // exit_group never returns
        let orphans = p.finish(&mut rows);
        assert_eq!(orphans, 1);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].time_ns, rows[0].duration_ns), (10, None));
        assert_eq!((rows[1].time_ns, rows[1].duration_ns), (20, Some(5)));
        assert_eq!((rows[2].name.as_str(), rows[2].ret), ("exit_group", None));
    }

    #[test]
    fn a_gap_in_tracing_closes_open_calls_and_expects_their_exits() {
        let mut p = Pairer::new("x86_64");
        let mut rows = Vec::new();
        p.enter(enter(10, 7, 0), &mut rows); // a read in progress when tracing stops
        p.enter(enter(11, 8, 202), &mut rows); // a futex wait too
        p.gap(&mut rows);
        assert_eq!(rows.len(), 2, "open calls are rows without an exit");
        assert!(rows.iter().all(|r| r.duration_ns.is_none()));
        // After the gap: thread 7's read (or another call of the same
        // number) returns. Pairing it with the enter at 10 could give a
        // call that never was; it is an exit of a call begun in the gap.
        p.exit(exit(50, 7, 0, 64), &mut rows);
        p.enter(enter(60, 7, 0), &mut rows);
        p.exit(exit(61, 7, 0, 64), &mut rows);
        // A second exit without enter of the same thread is an orphan.
        p.exit(exit(70, 7, 1, 0), &mut rows);
        p.exit(exit(80, 8, 202, 0), &mut rows);
        assert_eq!(p.gap_exits, 2, "thread 7's first exit and thread 8's");
        let orphans = p.finish(&mut rows);
        assert_eq!(orphans, 1);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[2].time_ns, rows[2].duration_ns), (60, Some(1)));
    }

    #[test]
    fn rt_sigreturn_returns_as_call_minus_one() {
        let mut p = Pairer::new("x86_64");
        let mut rows = Vec::new();
        p.enter(enter(10, 7, 15), &mut rows);
        p.exit(exit(12, 7, u32::MAX, 4), &mut rows);
        // Another one whose exit is read first waits for nothing: ignored.
        p.exit(exit(20, 8, u32::MAX, 0), &mut rows);
        p.enter(enter(19, 8, 15), &mut rows);
        let orphans = p.finish(&mut rows);
        assert_eq!(orphans, 0, "no exit is an orphan");
        assert_eq!(
            (rows[0].name.as_str(), rows[0].duration_ns),
            ("rt_sigreturn", Some(2))
        );
        assert_eq!(
            (rows[1].name.as_str(), rows[1].duration_ns),
            ("rt_sigreturn", None)
        );
    }
}
