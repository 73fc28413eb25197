//! End-of-recording symbolization: frames get their mapping and file offset,
//! and every address that can be named gets a row in `symbols`, while the
//! binaries, /proc/kallsyms and JIT maps are still on this machine.

use super::collect::{Finished, FrameKey, VDSO};
use crate::symbolize::{
    RangeTable, debuglink, dwarf::Dwarf, elf, elf::ElfSymbols, kallsyms, perfmap,
};
use sofa_trace::JIT_MAPS_DIR;
use sofa_trace::tables::Symbol;
use sofa_trace::{ArchiveWriter, TableWriter, TraceError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How much of the profile could be named.
#[derive(Debug, Default)]
pub struct SymbolStats {
    pub frames: u64,
    pub resolved: u64,
    /// Binaries that could not be read or parsed, with why.
    pub unreadable: Vec<String>,
    pub kernel_hidden: bool,
}

fn module_of(path: &str) -> String {
    if path.starts_with('[') {
        return path.to_owned();
    }
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// Resolves the frames of one binary: DWARF (inlines, file:line) where the
/// file has it, the ELF symbol table otherwise. The file is mapped once and
/// released before the next binary, so memory stays at one binary's worth.
fn resolve_binary(
    path: &str,
    frames: &[(u64, u64)],
    debug_dirs: &[PathBuf],
    out: &mut TableWriter<Symbol>,
    stats: &mut SymbolStats,
) -> Result<(), TraceError> {
    if path == VDSO {
        return match vdso_image() {
            Ok(image) => resolve_image(path, &image, frames, &[], out, stats),
            Err(e) => {
                stats.unreadable.push(format!("{path}: {e}"));
                Ok(())
            }
        };
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            stats.unreadable.push(format!("{path}: {e}"));
            return Ok(());
        }
    };
    let map = match super::sys::map_readonly(&file) {
        Ok(m) => m,
        Err(e) => {
            stats.unreadable.push(format!("{path}: {e}"));
            return Ok(());
        }
    };
    resolve_image(path, &map, frames, debug_dirs, out, stats)
}

/// The vDSO image as this process has it mapped: the kernel gives every
/// 64-bit process the same one.
fn vdso_image() -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read("/proc/self/maps")?;
    let range = super::procmaps::parse(&maps)
        .into_iter()
        .find(|m| m.path == VDSO)
        .ok_or_else(|| std::io::Error::other("no [vdso] mapping in this process"))?;
    let mut mem = std::fs::File::open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(range.start))?;
    let mut image = vec![0; (range.end - range.start) as usize];
    mem.read_exact(&mut image)?;
    Ok(image)
}

/// Resolves `frames` (frame id, file offset) in the ELF image `bytes` of `path`.
fn resolve_image(
    path: &str,
    map: &[u8],
    frames: &[(u64, u64)],
    debug_dirs: &[PathBuf],
    out: &mut TableWriter<Symbol>,
    stats: &mut SymbolStats,
) -> Result<(), TraceError> {
    let offsets: Vec<u64> = frames.iter().map(|f| f.1).collect();
    let syms = match ElfSymbols::parse_for_offsets(map, &offsets) {
        Ok(syms) => syms,
        Err(e) => {
            stats
                .unreadable
                .push(format!("{path}: not a readable ELF file ({e})"));
            return Ok(());
        }
    };
    // A detached debug file has the full symbol table and the DWARF the
    // shipped binary lacks (Debian's -dbg packages, objcopy --only-keep-debug).
    let load = |p: &Path| {
        let file = std::fs::File::open(p).ok()?;
        super::sys::map_readonly(&file).ok()
    };
    let debug_map = debuglink::find(
        Path::new(path),
        syms.build_id.as_deref(),
        syms.debuglink.as_ref(),
        debug_dirs,
        load,
        elf::build_id,
    );
    let vaddrs: Vec<u64> = offsets.iter().filter_map(|&o| syms.vaddr_of(o)).collect();
    let debug_syms = debug_map
        .as_deref()
        .and_then(|m| ElfSymbols::parse_for_vaddrs(m, &vaddrs).ok());
    // DWARF only where the section is there: parsing a stripped 450 MB
    // library again just to find it absent took ~35 ms per 60 MB.
    let dwarf = match (&debug_map, &debug_syms) {
        (Some(m), Some(d)) if d.has_dwarf => Dwarf::parse(m),
        _ => None,
    }
    .or_else(|| syms.has_dwarf.then(|| Dwarf::parse(map)).flatten());
    let module = module_of(path);
    for &(frame_id, offset) in frames {
        let Some(vaddr) = syms.vaddr_of(offset) else {
            continue;
        };
        // The binary's own name first (its exported name: `read`, not the
        // debug file's `__libc_read`), the debug file's where it has none.
        let elf_name = syms
            .function_at_offset(offset)
            .or_else(|| debug_syms.as_ref().and_then(|d| d.function_at_vaddr(vaddr)));
        let elf_name = elf_name.as_deref();
        let levels = dwarf.as_ref().map(|d| d.frames(vaddr)).unwrap_or_default();
        let outer_known = levels.first().is_some_and(|l| l.function.is_some());
        if outer_known || (!levels.is_empty() && elf_name.is_some()) {
            for level in levels {
                let function = match (level.function, level.depth, elf_name) {
                    (Some(f), _, _) => f,
                    (None, 0, Some(name)) => name.to_owned(),
                    (None, _, _) => "[unknown inline]".to_owned(),
                };
                out.push(Symbol {
                    frame_id,
                    inline_depth: level.depth,
                    function,
                    module: module.clone(),
                    file: level.file,
                    line: level.line,
                })?;
            }
            stats.resolved += 1;
        } else if let Some(name) = elf_name {
            out.push(Symbol {
                frame_id,
                inline_depth: 0,
                function: name.to_owned(),
                module: module.clone(),
                file: None,
                line: None,
            })?;
            stats.resolved += 1;
        }
    }
    Ok(())
}

/// Reads `/tmp/perf-PID.map` and keeps a copy in the archive's `jitmaps/`,
/// since the original is usually cleaned up with the machine.
fn load_perf_map(archive_dir: &Path, pid: u32, stats: &mut SymbolStats) -> RangeTable {
    let Ok(bytes) = std::fs::read(format!("/tmp/perf-{pid}.map")) else {
        return RangeTable::default();
    };
    let dir = archive_dir.join(JIT_MAPS_DIR);
    let copied = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("perf-{pid}.map")), &bytes));
    if let Err(e) = copied {
        stats
            .unreadable
            .push(format!("copying /tmp/perf-{pid}.map into the archive: {e}"));
    }
    perfmap::parse(&bytes)
}

/// Writes `symbols` for the frames the recording streamed.
pub fn write(
    archive: &ArchiveWriter,
    finished: &Finished,
    debug_dirs: &[PathBuf],
) -> Result<SymbolStats, TraceError> {
    let mut stats = SymbolStats::default();
    let kernel = if finished.frames.iter().any(|f| f.key.kernel) {
        let table = kallsyms::parse(&std::fs::read("/proc/kallsyms").unwrap_or_default());
        stats.kernel_hidden = table.is_empty();
        table
    } else {
        RangeTable::default()
    };
    let mut jit_maps: HashMap<u32, RangeTable> = HashMap::new();
    let mut by_binary: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    let mut symbols_out = archive.table::<Symbol>()?;
    let symbol = |frame_id, function: &str, module: &str| Symbol {
        frame_id,
        inline_depth: 0,
        function: function.to_owned(),
        module: module.to_owned(),
        file: None,
        line: None,
    };
    for (frame_id, frame) in finished.frames.iter().enumerate() {
        let frame_id = frame_id as u64;
        let FrameKey {
            pid,
            address,
            kernel: is_kernel,
        } = frame.key;
        stats.frames += 1;
        if is_kernel {
            if let Some(name) = kernel.lookup(address) {
                let (function, module) = name.split_once(' ').unwrap_or((name, "[kernel]"));
                symbols_out.push(symbol(frame_id, function, module))?;
                stats.resolved += 1;
            }
        } else if let Some((path, offset)) = &frame.file {
            by_binary.entry(path).or_default().push((frame_id, *offset));
        } else {
            // No file behind it: JIT output, named by the process's perf map.
            let jit = jit_maps
                .entry(pid)
                .or_insert_with(|| load_perf_map(archive.dir(), pid, &mut stats));
            if let Some(name) = jit.lookup(address) {
                symbols_out.push(symbol(frame_id, name, "[jit]"))?;
                stats.resolved += 1;
            }
        }
    }
    for (path, frames) in &by_binary {
        resolve_binary(path, frames, debug_dirs, &mut symbols_out, &mut stats)?;
    }
    symbols_out.finish()?;
    stats.unreadable.sort();
    Ok(stats)
}
