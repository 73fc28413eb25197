//! User stacks unwound from the copies samples carry (`--call-graph
//! dwarf|auto`): the registers and the top of the user stack at the sample,
//! unwound in sofa's own thread with the `.eh_frame` (or `.debug_frame`)
//! tables of the binaries mapped in the process, by framehop. Code without
//! unwind tables (JIT output) is crossed with its frame pointer, as
//! framehop falls back to it.
//!
//! Each file's tables are located once (its section headers) and read in
//! place from a shared read-only mapping; each process gets the modules of
//! the mappings it (or the process it was forked from) reported.

use super::collect::{AddressSpaces, MapRange};
use super::events::UserStack;
use crate::symbolize::elf::{self, UnwindSections};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Error, ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use sofa_trace::StackEnd;
use std::collections::{HashMap, HashSet};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Frames followed at most: four times what the kernel's frame-pointer
/// chains hold by default (kernel.perf_event_max_stack); PyTorch's deepest
/// stacks passed 256.
pub const MAX_FRAMES: usize = 512;

/// Bytes read from the live process past a stack copy, at most.
const LATE_BYTES: usize = 64 << 10;

/// Up to `len` bytes of `pid`'s memory from `address` (fewer where its
/// mapping ends; none if the process is gone or may not be read).
fn read_live(pid: u32, address: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` is `buf`, `len` bytes, alive for the call; the
    // remote range is only read, by the kernel, with the caller's rights.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    buf.truncate(usize::try_from(n).unwrap_or(0));
    buf
}

/// A section's bytes inside a shared read-only mapping of its file.
#[derive(Clone)]
pub struct SectionData {
    map: Arc<memmap2::Mmap>,
    range: Range<usize>,
}

impl Deref for SectionData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// One file's mapping and where its unwind tables are.
struct UnwindFile {
    map: Arc<memmap2::Mmap>,
    sections: UnwindSections,
}

impl UnwindFile {
    fn open(path: &str) -> Option<UnwindFile> {
        let file = std::fs::File::open(path).ok()?;
        let map = Arc::new(super::sys::map_readonly(&file).ok()?);
        let sections = elf::unwind_sections(&map)?;
        Some(UnwindFile { map, sections })
    }

    fn data(&self, range: &Range<usize>) -> SectionData {
        SectionData {
            map: Arc::clone(&self.map),
            range: range.clone(),
        }
    }

    /// Where the file's address 0 is in a process that mapped it at `m`:
    /// from the executable segment the mapping starts in. The mapping's
    /// page offset is rounded down, so it may lie in the segment before
    /// (whose addresses are offset differently) and is not looked up alone.
    fn base_avma(&self, m: &MapRange) -> Option<u64> {
        let page = |offset: u64| offset & !0xfff;
        let (offset, vaddr) = match self
            .sections
            .exec_loads
            .iter()
            .find(|(off, _, size)| page(*off) <= m.pgoff && m.pgoff < off + size)
        {
            Some(&(off, vaddr, _)) => (off, vaddr),
            None => (m.pgoff, elf::vaddr_of(&self.sections.loads, m.pgoff)?),
        };
        // The segment's first byte is at start + (offset - pgoff).
        (m.start + offset).checked_sub(m.pgoff)?.checked_sub(vaddr)
    }

    /// Whether `.eh_frame` has an entry for the stated address `svma`
    /// (through `.eh_frame_hdr`'s table); `true` when it cannot tell.
    fn has_fde(&self, svma: u64) -> bool {
        let s = &self.sections;
        let (Some((hdr_svma, hdr)), Some((eh_svma, eh))) = (&s.eh_frame_hdr, &s.eh_frame) else {
            return true;
        };
        let mut bases = gimli::BaseAddresses::default()
            .set_eh_frame_hdr(hdr_svma.start)
            .set_eh_frame(eh_svma.start);
        if let Some((text, _)) = &s.text {
            bases = bases.set_text(text.start);
        }
        if let Some(got) = &s.got {
            bases = bases.set_got(got.start);
        }
        let endian = gimli::LittleEndian;
        let Ok(parsed) = gimli::EhFrameHdr::new(&self.map[hdr.clone()], endian).parse(&bases, 8)
        else {
            return true;
        };
        let Some(table) = parsed.table() else {
            return true;
        };
        let eh_frame = gimli::EhFrame::new(&self.map[eh.clone()], endian);
        table
            .fde_for_address(&eh_frame, &bases, svma, |section, bases, offset| {
                gimli::UnwindSection::cie_from_offset(section, bases, offset)
            })
            .is_ok()
    }

    /// framehop's module for this file mapped at `m`.
    fn module(&self, m: &MapRange) -> Option<Module<SectionData>> {
        let base_avma = self.base_avma(m)?;
        let s = &self.sections;
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: s.text.as_ref().map(|t| t.0.clone()),
            text: s.text.as_ref().map(|t| self.data(&t.1)),
            got_svma: s.got.clone(),
            eh_frame_svma: s.eh_frame.as_ref().map(|t| t.0.clone()),
            eh_frame: s.eh_frame.as_ref().map(|t| self.data(&t.1)),
            eh_frame_hdr_svma: s.eh_frame_hdr.as_ref().map(|t| t.0.clone()),
            eh_frame_hdr: s.eh_frame_hdr.as_ref().map(|t| self.data(&t.1)),
            debug_frame: s.debug_frame.as_ref().map(|r| self.data(r)),
            stubs_svma: None,
            stub_helper_svma: None,
            unwind_info: None,
            text_segment_svma: None,
            text_segment: None,
        };
        Some(Module::new(
            m.path.to_string(),
            m.start..m.end,
            base_avma,
            info,
        ))
    }
}

/// One process's unwinder and the mappings it was given.
#[derive(Default)]
struct Process {
    unwinder: UnwinderX86_64<SectionData>,
    /// Mapping ids added (or found unusable).
    seen: HashSet<u64>,
    /// The modules added: address range, where the file's 0 is, the file.
    modules: Vec<(Range<u64>, u64, Arc<UnwindFile>)>,
    /// `AddressSpaces::generation` when the modules were last brought up
    /// to date (0: never).
    synced: u64,
}

impl Process {
    /// Why an unwind that failed after `ips` stopped: a frame in code
    /// without unwind tables (no FDE in its module, or no module: JIT),
    /// else a rule that led to an impossible frame.
    fn why_stopped(&self, ips: &[u64]) -> StackEnd {
        for (i, &ip) in ips.iter().enumerate() {
            // Return addresses are looked up in their call instruction.
            let address = if i == 0 { ip } else { ip.saturating_sub(1) };
            match self.modules.iter().find(|(r, _, _)| r.contains(&address)) {
                Some((_, base, file)) if !file.has_fde(address - base) => {
                    return StackEnd::NoUnwindInfo;
                }
                Some(_) => {}
                None if i + 1 < ips.len() => return StackEnd::NoUnwindInfo,
                None => {}
            }
        }
        StackEnd::BadFrame
    }
}

/// An unwound user stack: the sampled address, then return addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    pub ips: Vec<u64>,
    pub end: StackEnd,
}

/// Unwinders for every process of the recording.
pub struct Unwinders {
    files: HashMap<Arc<str>, Option<Arc<UnwindFile>>>,
    processes: HashMap<u32, Process>,
    cache: CacheX86_64,
    /// The size of the stack copies asked for (rounded down to 8 bytes).
    stack_bytes: u32,
    /// Whether what a copy lacks may be read from the live process.
    live_reads: bool,
}

impl Unwinders {
    pub fn new(stack_bytes: u32) -> Unwinders {
        Unwinders {
            files: HashMap::new(),
            processes: HashMap::new(),
            cache: CacheX86_64::new(),
            stack_bytes: stack_bytes & !7,
            live_reads: true,
        }
    }

    /// Gives `pid`'s unwinder the mappings reported since the last sample.
    fn sync(&mut self, pid: u32, spaces: &AddressSpaces) {
        let process = self.processes.entry(pid).or_default();
        if process.synced == spaces.generation + 1 {
            return;
        }
        process.synced = spaces.generation + 1;
        // Newest first, the process's own before its parent's: a mapping
        // overlapping one added in this pass is older (or inherited and
        // shadowed); one overlapping a module of an earlier pass replaces it.
        let mut added_now: Vec<Range<u64>> = Vec::new();
        for m in spaces.ranges(pid) {
            if !process.seen.insert(m.mapping_id) || super::collect::is_pseudo(&m.path) {
                continue;
            }
            let file = self
                .files
                .entry(Arc::clone(&m.path))
                .or_insert_with(|| UnwindFile::open(&m.path).map(Arc::new));
            let Some(file) = file.clone() else {
                continue;
            };
            let (Some(module), Some(base)) = (file.module(m), file.base_avma(m)) else {
                continue;
            };
            let overlaps = |r: &Range<u64>| r.start < m.end && m.start < r.end;
            if added_now.iter().any(overlaps) {
                continue;
            }
            process.modules.retain(|(r, _, _)| {
                let keep = !overlaps(r);
                if !keep {
                    process.unwinder.remove_module(r.start);
                }
                keep
            });
            process.unwinder.add_module(module);
            process.modules.push((m.start..m.end, base, file));
            added_now.push(m.start..m.end);
        }
    }

    /// Unwinds the user stack of a sample of `pid`.
    pub fn unwind(&mut self, pid: u32, spaces: &AddressSpaces, user: &UserStack) -> Unwound {
        self.sync(pid, spaces);
        let process = &self.processes[&pid];
        let (sp, stack) = (user.sp, &user.stack);
        let copied_end = sp.saturating_add(stack.len() as u64);
        // What lies past the copy, read from the live process on the first
        // need: ~10 ms after the sample, the frames further out (callers
        // still running) are most likely unchanged.
        let mut late: Option<Vec<u8>> = None;
        let used_late = std::cell::Cell::new(false);
        let mut read_stack = |address: u64| -> Result<u64, ()> {
            let offset = address.checked_sub(sp).ok_or(())? as usize;
            let end = offset.checked_add(8).ok_or(())?;
            let bytes = match stack.get(offset..end) {
                Some(bytes) => bytes,
                None if self.live_reads => {
                    used_late.set(true);
                    let late = late.get_or_insert_with(|| read_live(pid, copied_end, LATE_BYTES));
                    let past = offset.checked_sub(stack.len()).ok_or(())?;
                    late.get(past..past + 8).ok_or(())?
                }
                None => return Err(()),
            };
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let regs = UnwindRegsX86_64::new(user.ip, user.sp, user.bp);
        let mut frames =
            process
                .unwinder
                .iter_frames(user.ip, regs, &mut self.cache, &mut read_stack);
        // Past a full copy: the copy was too small. Past a shorter one, the
        // kernel stopped copying at a page never touched (a function that
        // reserved a large frame, as OpenBLAS's 12 KiB ones) or at the
        // stack's end.
        let past_copy = if stack.len() >= self.stack_bytes as usize {
            StackEnd::StackCopy
        } else {
            StackEnd::ShortCopy
        };
        let mut ips = Vec::new();
        // Frames found before the first byte read late: all from the copy.
        let mut from_copy = None;
        let end = loop {
            if ips.len() >= MAX_FRAMES {
                break StackEnd::TooDeep;
            }
            let next = frames.next();
            if used_late.get() && from_copy.is_none() {
                from_copy = Some(ips.len());
            }
            match next {
                Ok(Some(FrameAddress::InstructionPointer(ip))) => ips.push(ip),
                Ok(Some(FrameAddress::ReturnAddress(ra))) => ips.push(ra.get()),
                Ok(None) => break StackEnd::Root,
                Err(Error::CouldNotReadStack(address)) if address >= copied_end => {
                    break past_copy;
                }
                Err(_) => break process.why_stopped(&ips),
            }
        };
        // Reaching the root through bytes read late is the check that they
        // still held these frames' callers (it is said apart all the same);
        // failing, the frames they gave may be another moment's, and the
        // copy's size is what stopped the unwind.
        let end = match (end, from_copy) {
            (StackEnd::Root, Some(_)) => StackEnd::RootLate,
            (end, None) => end,
            (_, Some(n)) => {
                ips.truncate(n.max(1));
                past_copy
            }
        };
        Unwound { ips, end }
    }

    /// Drops what a process that exited held (its files stay mapped for
    /// the others).
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Unwinds this test's own stack from a copy of it, as a sample would
    /// carry it, through the modules of this process's /proc/self/maps.
    #[inline(never)]
    fn unwind_here(depth: u32) -> Unwound {
        unwind_here_with(depth, 64 << 10, true)
    }

    /// The same with a copy of at most `copy` bytes, reading what it lacks
    /// from this (live) process or not.
    #[inline(never)]
    fn unwind_here_with(depth: u32, copy: usize, live_reads: bool) -> Unwound {
        if depth > 0 {
            return std::hint::black_box(unwind_here_with(depth - 1, copy, live_reads));
        }
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, touches no memory.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
            );
        }
        let maps = std::fs::read("/proc/self/maps").unwrap();
        // What the kernel would copy: up to 64 KiB, within the stack's mapping.
        let top = String::from_utf8_lossy(&maps)
            .lines()
            .filter_map(|l| {
                let (start, end) = l.split_whitespace().next()?.split_once('-')?;
                let (start, end) = (
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                );
                (start <= sp && sp < end).then_some(end)
            })
            .next()
            .unwrap();
        let len = ((top - sp) as usize).min(copy);
        // SAFETY: [sp, sp + len) lies in this thread's stack mapping.
        let stack = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        let mut spaces = AddressSpaces::default();
        let pid = std::process::id();
        for (id, m) in super::super::procmaps::parse(&maps).into_iter().enumerate() {
            if m.executable {
                spaces.maps.entry(pid).or_default().push(MapRange {
                    mapping_id: id as u64,
                    start: m.start,
                    end: m.end,
                    pgoff: m.offset,
                    path: Arc::from(m.path.as_str()),
                });
            }
        }
        let user = UserStack { ip, sp, bp, stack };
        let mut unwinders = Unwinders::new(64 << 10);
        unwinders.live_reads = live_reads;
        unwinders.unwind(pid, &spaces, &user)
    }

    #[test]
    fn own_stack_unwinds_through_every_caller() {
        let unwound = unwind_here(5);
        // This function, five recursive calls (one call site), the test,
        // the harness' frames, the thread's start: its root.
        let own = unwind_here_with as *const () as u64;
        let inside = |a: u64| a > own && a < own + 4096;
        let ips = &unwound.ips;
        assert!(ips.len() > 8, "{unwound:x?}");
        assert!(inside(ips[0]), "{unwound:x?}");
        assert!(
            ips[1..6].iter().all(|&a| a == ips[1] && inside(a)),
            "{unwound:x?}"
        );
        assert_eq!(unwound.end, StackEnd::Root, "{unwound:x?}");
    }

    #[test]
    fn what_a_short_copy_lacks_is_read_from_the_live_process() {
        let whole = unwind_here(5);
        // 256 bytes hold this frame at most: the callers' come late.
        let late = unwind_here_with(5, 256, true);
        assert_eq!(late.end, StackEnd::RootLate, "{late:x?}");
        assert_eq!(late.ips.len(), whole.ips.len(), "{late:x?} {whole:x?}");
        let short = unwind_here_with(5, 256, false);
        assert_eq!(short.end, StackEnd::ShortCopy, "{short:x?}");
        assert!(short.ips.len() < whole.ips.len(), "{short:x?}");
    }
}
