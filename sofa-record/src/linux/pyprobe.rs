//! The loop probe: the outermost Python frames of a process's main thread,
//! read `--py-loop-hz` (default 1000) times a second with one system call.
//!
//! A training loop is a `for` loop in one of the main thread's outermost
//! frames; step detection counts its iterations by its line going back to
//! the top (`sofa-analyze`, `steps/pyloop.rs`). The full snapshots (py-spy,
//! `--py-hz`) cost ~1 ms each on a PyTorch stack, so they come ~100 times a
//! second: two per 20 ms step, too few to see every iteration's top. The
//! probe reads less: on CPython 3.11 and later a running function's frame
//! (`_PyInterpreterFrame`) stays at one address in the thread's data stack
//! while it runs, so the outermost [`OUTER`] frames found by one walk of
//! the stack can be read again, all at once, with one `process_vm_readv`,
//! until they return. Each read gives each frame's code object and
//! instruction, hence its line (the code objects' names and line tables are
//! read once and kept). A frame whose code changed or that lies above the
//! data stack's top has returned: the read keeps the frames outside it, and
//! the stack is walked again at the next full snapshot. The offsets are
//! CPython's own, per minor version, from its internal headers
//! (`Include/internal/pycore_frame.h`, `pycore_code.h`, `pycore_interp.h`,
//! `cpython/pystate.h`; checked by `scripts/python-offsets.sh`); what the
//! probe reads is compared with py-spy's snapshot of the same thread, and a
//! process whose reads disagree is no longer probed.

use std::collections::HashMap;
use std::sync::Arc;

/// How many of the outermost frames are read: a training loop runs a few
/// frames below the script's module (`<module>` → `main` → `train`; `-m`
/// and launchers add three or four).
pub const OUTER: usize = 16;
/// Bytes of a frame before its local variables (`localsplus`, every
/// version): what is read of it, its owner byte included.
const FRAME_BYTES: usize = 72;
/// Local variables of a frame compared between reads (the first named
/// ones), and the highest slot read.
const LOCALS: usize = 16;
const MAX_SLOT: usize = 64;
/// Kinds of locals (`co_localspluskinds`): a named local; hidden (an
/// inlined comprehension's variable, 3.12+), a cell or a free variable.
const CO_FAST_LOCAL: u8 = 0x20;
const CO_FAST_NOT_NAMED: u8 = 0x10 | 0x40 | 0x80;
/// Longest name or file name read.
const MAX_STRING: usize = 4096;
/// Longest stack walked.
const MAX_DEPTH: usize = 4096;
/// Disagreements with py-spy's snapshots before a process is given up on,
/// when they are also at least a fifth of the comparisons (the program
/// runs between the two reads: its outermost frames rarely change in
/// between, but they do).
const MAX_DISAGREEMENTS: u32 = 20;
/// How many of the outermost frames are compared with py-spy's.
const COMPARED: usize = 4;

/// Where the current frame of a thread state is.
#[derive(Debug, Clone, Copy)]
enum CurrentFrame {
    /// 3.11, 3.12: `tstate->cframe->current_frame`.
    ViaCFrame { cframe: usize, current: usize },
    /// 3.13: `tstate->current_frame`.
    Direct(usize),
}

/// Offsets of one CPython minor version (x86-64).
#[derive(Debug)]
pub struct Layout {
    /// `PyInterpreterState.threads.head`.
    threads_head: usize,
    /// `PyThreadState.next`, `.native_thread_id`.
    ts_next: usize,
    ts_native_id: usize,
    current: CurrentFrame,
    /// `PyThreadState.datastack_chunk`, followed by `datastack_top` and
    /// `datastack_limit`.
    ts_datastack: usize,
    /// `_PyInterpreterFrame`: the code object (`f_code`, 3.13
    /// `f_executable`), the caller's frame, the instruction (`prev_instr`,
    /// 3.13 `instr_ptr`), the owner.
    fr_code: usize,
    fr_previous: usize,
    fr_instr: usize,
    fr_owner: usize,
    /// 3.11's `is_entry` flag; 3.12 and later mark entries with a frame
    /// owned by the C stack (`FRAME_OWNED_BY_CSTACK`) below them.
    fr_is_entry: Option<usize>,
    /// `PyCodeObject`: `co_qualname`, `co_filename`, `co_firstlineno`,
    /// `co_linetable`, `co_code_adaptive`.
    co_qualname: usize,
    co_filename: usize,
    co_firstlineno: usize,
    co_linetable: usize,
    co_code: usize,
    /// `co_localspluskinds` (a `bytes` of each local's kind).
    co_kinds: usize,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's characters begin.
    ascii_data: usize,
}

/// `FRAME_OWNED_BY_GENERATOR`, `FRAME_OWNED_BY_CSTACK` (3.12, 3.13).
const OWNED_BY_GENERATOR: u8 = 1;
const OWNED_BY_CSTACK: u8 = 3;
/// `PyUnicodeObject.length`, `.state` and `PyBytesObject.ob_size`,
/// `.ob_sval` (every 3.x).
const STR_LENGTH: usize = 16;
const STR_STATE: usize = 32;
const BYTES_SIZE: usize = 16;
const BYTES_DATA: usize = 32;

const V3_11: Layout = Layout {
    threads_head: 16,
    ts_next: 8,
    ts_native_id: 160,
    current: CurrentFrame::ViaCFrame {
        cframe: 56,
        current: 8,
    },
    ts_datastack: 296,
    fr_code: 32,
    fr_previous: 48,
    fr_instr: 56,
    fr_owner: 69,
    fr_is_entry: Some(68),
    co_qualname: 128,
    co_filename: 112,
    co_firstlineno: 72,
    co_linetable: 136,
    co_code: 184,
    co_kinds: 104,
    ascii_data: 48,
};

const V3_12: Layout = Layout {
    threads_head: 72,
    ts_next: 8,
    ts_native_id: 144,
    current: CurrentFrame::ViaCFrame {
        cframe: 56,
        current: 0,
    },
    ts_datastack: 232,
    fr_code: 0,
    fr_previous: 8,
    fr_instr: 56,
    fr_owner: 70,
    fr_is_entry: None,
    co_qualname: 128,
    co_filename: 112,
    co_firstlineno: 68,
    co_linetable: 136,
    co_code: 192,
    co_kinds: 104,
    ascii_data: 40,
};

/// 3.12's but where `scripts/python-offsets.sh` says otherwise.
const V3_13: Layout = Layout {
    threads_head: 7344,
    ts_native_id: 160,
    current: CurrentFrame::Direct(72),
    co_code: 200,
    ..V3_12
};

/// The layout of CPython `major.minor`, where the probe knows it.
pub fn layout(major: u64, minor: u64) -> Option<&'static Layout> {
    match (major, minor) {
        (3, 11) => Some(&V3_11),
        (3, 12) => Some(&V3_12),
        (3, 13) => Some(&V3_13),
        _ => None,
    }
}

/// A code object's name, file and line table, read once.
#[derive(Debug)]
pub struct Code {
    pub name: String,
    pub file: String,
    first_line: i32,
    table: Vec<u8>,
    /// Slots of its first [`LOCALS`] named local variables: a statement
    /// that ends rebinds one, so the same line with other values in them is
    /// that line run again.
    slots: Vec<usize>,
}

impl Code {
    /// Bytes of a frame of this code that are read.
    fn frame_bytes(&self) -> usize {
        FRAME_BYTES + 8 * self.slots.last().map_or(0, |s| s + 1)
    }

    /// A digest of the values in the frame's local variables.
    fn locals(&self, frame: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &s in &self.slots {
            let at = FRAME_BYTES + 8 * s;
            h = (h ^ word(frame, at) as u64).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// The line of the instruction at byte `offset` of the code (CPython
    /// 3.11's location table, `Objects/locations.md`: entries of a header
    /// byte — bit 7 set, a code in bits 3–6, the code units it covers − 1 in
    /// bits 0–2 — then the code's varints). The line of the entry that
    /// covers `offset`, as py-spy gives it.
    pub fn line(&self, offset: i64) -> u32 {
        let t = &self.table;
        let mut line = self.first_line as i64;
        let mut address: i64 = 0;
        let mut i = 0;
        while i < t.len() {
            let byte = t[i];
            i += 1;
            address += 2 * (i64::from(byte & 7) + 1);
            let delta = match (byte >> 3) & 15 {
                15 => 0,
                14 => {
                    let d = signed_varint(t, &mut i);
                    for _ in 0..3 {
                        varint(t, &mut i);
                    }
                    d
                }
                13 => signed_varint(t, &mut i),
                code @ 10..=12 => {
                    i += 2;
                    i64::from(code - 10)
                }
                _ => {
                    i += 1;
                    0
                }
            };
            line += delta;
            if address > offset {
                break;
            }
        }
        line.clamp(0, u32::MAX as i64) as u32
    }
}

/// 6-bit chunks, least significant first; bit 6 says another follows.
fn varint(t: &[u8], i: &mut usize) -> i64 {
    let mut value: i64 = 0;
    let mut shift = 0;
    while *i < t.len() && shift < 60 {
        let b = t[*i];
        *i += 1;
        value |= i64::from(b & 63) << shift;
        shift += 6;
        if b & 64 == 0 {
            break;
        }
    }
    value
}

/// A varint whose lowest bit is the sign.
fn signed_varint(t: &[u8], i: &mut usize) -> i64 {
    let v = varint(t, i);
    if v & 1 == 1 { -(v >> 1) } else { v >> 1 }
}

/// One frame the walk found: where it is, its code, its caller's frame,
/// whether C code entered the interpreter for it.
#[derive(Debug, Clone, Copy)]
struct Found {
    address: usize,
    code: usize,
    previous: usize,
    entry: bool,
}

/// A frame as the reads since its line last changed saw it: where, its
/// code and line, and its locals' digest at each instruction it was at.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    address: usize,
    code: usize,
    line: u32,
    at: Vec<(usize, u64)>,
}

/// Instructions remembered per frame and line.
const MAX_AT: usize = 16;
/// Lines remembered by (code, instruction) before the memory is cleared.
const MAX_LINES: usize = 100_000;

/// What a read saw: each outer frame's code and line, outermost first.
pub type Outer = Vec<(Arc<Code>, u32, bool)>;

/// The probe of one process's main thread.
pub struct LoopProbe {
    pid: u32,
    layout: &'static Layout,
    interpreter: usize,
    /// The main thread's state, once found.
    tstate: usize,
    /// The outermost frames of the last walk, outermost first.
    frames: Vec<Found>,
    codes: HashMap<usize, Arc<Code>>,
    /// What the reads since each frame's line last changed saw of it.
    last: Vec<Seen>,
    /// Lines by (code, instruction).
    lines: HashMap<(usize, usize), u32>,
    checks: u32,
    disagreements: u32,
    pub reads: u64,
    pub failed: u64,
}

impl LoopProbe {
    pub fn new(pid: u32, layout: &'static Layout, interpreter: usize) -> LoopProbe {
        LoopProbe {
            pid,
            layout,
            interpreter,
            tstate: 0,
            frames: Vec::new(),
            codes: HashMap::new(),
            last: Vec::new(),
            lines: HashMap::new(),
            checks: 0,
            disagreements: 0,
            reads: 0,
            failed: 0,
        }
    }

    /// Whether the probe gave up on this process (its reads kept
    /// disagreeing with py-spy's snapshots).
    pub fn given_up(&self) -> bool {
        self.disagreements >= MAX_DISAGREEMENTS && self.disagreements * 5 >= self.checks
    }

    fn pointer(&self, address: usize) -> Option<usize> {
        let mut b = [0u8; 8];
        read_many(self.pid, &mut [(address, &mut b[..])]).then(|| usize::from_ne_bytes(b))
    }

    /// Finds the main thread's state: the one whose OS thread id is the
    /// process id.
    fn main_thread(&self) -> Option<usize> {
        let l = self.layout;
        let mut ts = self.pointer(self.interpreter + l.threads_head)?;
        for _ in 0..MAX_DEPTH {
            if ts == 0 {
                return None;
            }
            let mut head = vec![0u8; l.ts_native_id + 8];
            if !read_many(self.pid, &mut [(ts, &mut head[..])]) {
                return None;
            }
            if word(&head, l.ts_native_id) == self.pid as usize {
                return Some(ts);
            }
            ts = word(&head, l.ts_next);
        }
        None
    }

    /// Walks the main thread's stack from its current frame out and keeps
    /// the outermost [`OUTER`] Python frames.
    pub fn walk(&mut self) -> bool {
        let l = self.layout;
        if self.tstate == 0 {
            match self.main_thread() {
                Some(ts) => self.tstate = ts,
                None => return false,
            }
        }
        let current = match l.current {
            CurrentFrame::ViaCFrame { cframe, current } => self
                .pointer(self.tstate + cframe)
                .filter(|&c| c != 0)
                .and_then(|c| self.pointer(c + current)),
            CurrentFrame::Direct(offset) => self.pointer(self.tstate + offset),
        };
        let Some(mut frame) = current else {
            self.tstate = 0;
            return false;
        };
        let mut found: Vec<Found> = Vec::new();
        let mut buf = [0u8; FRAME_BYTES];
        let mut outermost_owner = 0;
        while frame != 0 && found.len() < MAX_DEPTH {
            if !read_many(self.pid, &mut [(frame, &mut buf[..])]) {
                return false;
            }
            let code = word(&buf, l.fr_code);
            let owner = buf[l.fr_owner];
            let previous = word(&buf, l.fr_previous);
            if l.fr_is_entry.is_none() && owner == OWNED_BY_CSTACK || code == 0 {
                // A shim of C code calling into the interpreter: the frame
                // inside it was entered from C.
                if let Some(last) = found.last_mut() {
                    last.entry = true;
                }
            } else {
                outermost_owner = owner;
                found.push(Found {
                    address: frame,
                    code,
                    previous,
                    entry: l.fr_is_entry.is_some_and(|at| buf[at] != 0),
                });
            }
            frame = previous;
        }
        // A generator's frame is unlinked from its caller when it yields:
        // a walk that ends in one was torn by the running program (the
        // outermost frame of a thread is never a generator's).
        if outermost_owner == OWNED_BY_GENERATOR {
            self.frames.clear();
            return false;
        }
        if let Some(outermost) = found.last_mut().filter(|_| l.fr_is_entry.is_none()) {
            outermost.entry = true;
        }
        found.reverse();
        found.truncate(OUTER);
        for f in &found {
            if !self.codes.contains_key(&f.code) {
                match self.code(f.code) {
                    Some(code) => {
                        self.codes.insert(f.code, Arc::new(code));
                    }
                    None => return false,
                }
            }
        }
        self.frames = found;
        true
    }

    fn code(&self, address: usize) -> Option<Code> {
        let l = self.layout;
        let mut head = vec![0u8; l.co_linetable + 8];
        if !read_many(self.pid, &mut [(address, &mut head[..])]) {
            return None;
        }
        let first_line = i32::from_ne_bytes(head[l.co_firstlineno..][..4].try_into().ok()?);
        let name = self.string(word(&head, l.co_qualname))?;
        let file = self.string(word(&head, l.co_filename))?;
        let table = self.bytes(word(&head, l.co_linetable))?;
        let kinds = self.bytes(word(&head, l.co_kinds))?;
        let slots = kinds
            .iter()
            .take(MAX_SLOT)
            .enumerate()
            .filter(|&(_, &k)| k & CO_FAST_LOCAL != 0 && k & CO_FAST_NOT_NAMED == 0)
            .map(|(i, _)| i)
            .take(LOCALS)
            .collect();
        Some(Code {
            name,
            file,
            first_line,
            table,
            slots,
        })
    }

    /// A compact ASCII `str` (names and file names are).
    fn string(&self, address: usize) -> Option<String> {
        let mut head = [0u8; 40];
        if address == 0 || !read_many(self.pid, &mut [(address, &mut head[..])]) {
            return None;
        }
        let length = word(&head, STR_LENGTH);
        let state = head[STR_STATE];
        let (compact, ascii) = (state >> 5 & 1 == 1, state >> 6 & 1 == 1);
        if !compact || !ascii || length > MAX_STRING {
            return None;
        }
        let mut text = vec![0u8; length];
        read_many(
            self.pid,
            &mut [(address + self.layout.ascii_data, &mut text[..])],
        )
        .then_some(())?;
        String::from_utf8(text).ok()
    }

    fn bytes(&self, address: usize) -> Option<Vec<u8>> {
        let mut head = [0u8; BYTES_DATA];
        if address == 0 || !read_many(self.pid, &mut [(address, &mut head[..])]) {
            return None;
        }
        let size = word(&head, BYTES_SIZE);
        if size > 1 << 24 {
            return None;
        }
        let mut data = vec![0u8; size];
        read_many(self.pid, &mut [(address + BYTES_DATA, &mut data[..])]).then_some(data)
    }

    /// One read of the outer frames: those still where the last walk found
    /// them, with their lines, outermost first, and which of them ran their
    /// line again since the previous read (bit k for frame k: same frame,
    /// code and line, other values in its local variables). `None` when
    /// the read failed or no frame is known (walk first).
    pub fn read(&mut self) -> Option<(Outer, u32)> {
        if self.frames.is_empty() || self.given_up() {
            return None;
        }
        let l = self.layout;
        self.reads += 1;
        let mut stack = [0u8; 24];
        let mut bufs: Vec<Vec<u8>> = self
            .frames
            .iter()
            .map(|f| {
                let len = self
                    .codes
                    .get(&f.code)
                    .map_or(FRAME_BYTES, |c| c.frame_bytes());
                vec![0u8; len]
            })
            .collect();
        let ok = {
            let mut parts: Vec<(usize, &mut [u8])> = Vec::with_capacity(bufs.len() + 1);
            parts.push((self.tstate + l.ts_datastack, &mut stack[..]));
            for (f, b) in self.frames.iter().zip(bufs.iter_mut()) {
                parts.push((f.address, &mut b[..]));
            }
            read_many(self.pid, &mut parts)
        };
        if !ok {
            self.failed += 1;
            return None;
        }
        let (chunk, top, limit) = (word(&stack, 0), word(&stack, 8), word(&stack, 16));
        let mut out = Outer::with_capacity(self.frames.len());
        let mut seen = Vec::with_capacity(self.frames.len());
        let mut reran = 0u32;
        for (depth, (f, b)) in self.frames.iter().zip(&bufs).enumerate() {
            // Above the data stack's top (in its current chunk): returned.
            // A generator's frame lives in the generator: its caller link
            // is cleared when it yields.
            let returned = (chunk..limit).contains(&f.address) && f.address >= top;
            if returned || word(b, l.fr_code) != f.code || word(b, l.fr_previous) != f.previous {
                break;
            }
            let Some(code) = self.codes.get(&f.code) else {
                break;
            };
            let instr = word(b, l.fr_instr);
            // A line table is walked from its start: kept per instruction.
            if self.lines.len() > MAX_LINES {
                self.lines.clear();
            }
            let line = *self
                .lines
                .entry((f.code, instr))
                .or_insert_with(|| code.line(instr as i64 - (f.code + l.co_code) as i64));
            let locals = code.locals(b);
            // Ran the line again: at an instruction it was at before, on
            // the same line, with other values in its locals. (Not merely
            // other values: a statement's store frees the old value, which
            // can take long, at the store's instruction, after the line's
            // call was read with the old values.)
            let mut now = match self.last.get(depth) {
                Some(s) if s.address == f.address && s.code == f.code && s.line == line => {
                    s.clone()
                }
                _ => Seen {
                    address: f.address,
                    code: f.code,
                    line,
                    at: Vec::new(),
                },
            };
            match now.at.iter().position(|&(i, _)| i == instr) {
                Some(k) if now.at[k].1 != locals => {
                    reran |= 1 << depth;
                    now.at = vec![(instr, locals)];
                }
                Some(_) => {}
                None if now.at.len() < MAX_AT => now.at.push((instr, locals)),
                None => {}
            }
            seen.push(now);
            out.push((code.clone(), line, f.entry));
        }
        self.last = seen;
        Some((out, reran))
    }

    /// Compares the last read with a full snapshot of the same thread
    /// (names and files, outermost first, as py-spy gives them): a process
    /// whose probe keeps disagreeing is given up on. Known codes are read
    /// again after a disagreement (one may have been freed and its address
    /// reused).
    pub fn check(&mut self, outer: &Outer, snapshot: &[(&str, &str)]) {
        if outer.is_empty() || snapshot.is_empty() {
            return;
        }
        self.checks += 1;
        let agree = outer
            .iter()
            .zip(snapshot)
            .take(COMPARED)
            .all(|((code, _, _), (name, file))| code.name == *name && code.file == *file);
        if !agree {
            self.disagreements += 1;
            self.codes.clear();
            self.lines.clear();
        }
    }
}

fn word(b: &[u8], at: usize) -> usize {
    usize::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads every `(address, buffer)` of process `pid` with one
/// `process_vm_readv`; whether all of it was read.
fn read_many(pid: u32, parts: &mut [(usize, &mut [u8])]) -> bool {
    let total: usize = parts.iter().map(|(_, b)| b.len()).sum();
    let local: Vec<libc::iovec> = parts
        .iter_mut()
        .map(|(_, b)| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = parts
        .iter()
        .map(|(address, b)| libc::iovec {
            iov_base: *address as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: each local iovec points into a live buffer of its length that
    // nothing else uses during the call; the remote ones are only read.
    let n = unsafe {
        libc::process_vm_readv(
            pid as libc::pid_t,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    n >= 0 && n as usize == total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(first_line: i32, table: Vec<u8>) -> Code {
        Code {
            name: "f".into(),
            file: "f.py".into(),
            first_line,
            table,
            slots: vec![0, 2],
        }
    }

    #[test]
    fn the_locals_digest_covers_the_named_slots_only() {
        let c = code(1, Vec::new());
        assert_eq!(c.frame_bytes(), FRAME_BYTES + 24);
        let mut frame = vec![0u8; c.frame_bytes()];
        let before = c.locals(&frame);
        frame[FRAME_BYTES + 8] = 1; // slot 1: not a named local
        assert_eq!(c.locals(&frame), before);
        frame[FRAME_BYTES + 16] = 1; // slot 2
        assert_ne!(c.locals(&frame), before);
    }

    #[test]
    fn lines_of_a_hand_made_location_table() {
        // Header byte: bit 7, the code in bits 3-6, code units - 1 in bits 0-2.
        let entry = |code: u8, units: u8| 0x80 | code << 3 | (units - 1);
        let table = vec![
            entry(13, 2), // no column: line + varint 0 -> 10, bytes 0..4
            0,
            entry(11, 3), // one-line form: line + 1 -> 11, bytes 4..10
            5,
            9,
            entry(14, 1), // long form: line + (-1) -> 10, bytes 10..12
            3,            // signed varint: 1 << 1 | sign
            0,
            1,
            2,
            entry(15, 1), // no location: line unchanged, bytes 12..14
            entry(13, 1), // line + 70 (two 6-bit chunks) -> 80, bytes 14..16
            (140 & 63) | 64,
            140 >> 6,
        ];
        let c = code(10, table);
        for (offset, line) in [
            (-2, 10),
            (0, 10),
            (3, 10),
            (4, 11),
            (9, 11),
            (10, 10),
            (13, 10),
            (14, 80),
            (99, 80),
        ] {
            assert_eq!(c.line(offset), line, "offset {offset}");
        }
    }

    /// The decoder against CPython's own `co_lines()` on real code objects
    /// of the `python3` on the PATH, where it is 3.11 or later.
    #[test]
    fn lines_match_cpythons_own_on_its_code_objects() {
        let program = r#"
import sys, json, inspect, json.decoder as d
if sys.version_info < (3, 11):
    sys.exit()
for f in [json.dumps, d.JSONDecoder.raw_decode, inspect.getsource, inspect.signature]:
    c = f.__code__
    print("code", c.co_firstlineno, *c.co_linetable)
    for s, e, l in c.co_lines():
        if l is not None:
            print("range", s, e, l)
"#;
        let Ok(out) = std::process::Command::new("python3")
            .args(["-c", program])
            .output()
        else {
            eprintln!("skipped: no python3");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.trim().is_empty() {
            eprintln!("skipped: python3 before 3.11");
            return;
        }
        let mut current: Option<Code> = None;
        let mut checked = 0;
        for line in text.lines() {
            let mut words = line.split(' ');
            let kind = words.next();
            let v: Vec<i64> = words.map(|w| w.parse().unwrap()).collect();
            match kind {
                Some("code") => {
                    let table = v[1..].iter().map(|&b| b as u8).collect();
                    current = Some(code(v[0] as i32, table));
                }
                Some("range") => {
                    let c = current.as_ref().unwrap();
                    for at in (v[0]..v[1]).step_by(2) {
                        assert_eq!(i64::from(c.line(at)), v[2], "offset {at} of {line}");
                        checked += 1;
                    }
                }
                _ => {}
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
