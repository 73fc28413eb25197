//! End-of-recording symbolization: frames get their mapping and file offset,
//! and every address that can be named gets a row in `symbols`, while the
//! binaries, /proc/kallsyms and JIT maps are still on this machine.

use super::collect::{Finished, FrameKey, VDSO};
use crate::symbolize::{
    RangeTable, debuglink, dwarf::Dwarf, elf, elf::ElfSymbols, kallsyms, perfmap,
};
use sofa_trace::JIT_MAPS_DIR;
use sofa_trace::tables::{Binary, Symbol};
use sofa_trace::{ArchiveWriter, SymbolSource, TableWriter, TraceError};
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
/// file has it, the ELF symbol tables otherwise. The file is mapped once and
/// released before the next binary, so memory stays at one binary's worth.
/// Gives its `binaries` row.
fn resolve_binary(
    path: &str,
    frames: &[(u64, u64)],
    debug_dirs: &[PathBuf],
    out: &mut TableWriter<Symbol>,
    stats: &mut SymbolStats,
) -> Result<Binary, TraceError> {
    let mut row = Binary {
        path: path.to_owned(),
        build_id: None,
        symbols: SymbolSource::Unreadable.as_str().to_owned(),
        debug_file: None,
        dwarf: false,
        frames: frames.len() as u64,
        named: 0,
    };
    let image = if path == VDSO {
        vdso_image().map(Image::Owned)
    } else {
        std::fs::File::open(path)
            .and_then(|file| super::sys::map_readonly(&file))
            .map(Image::Mapped)
    };
    match image {
        Ok(image) => {
            let dirs = if path == VDSO { &[][..] } else { debug_dirs };
            resolve_image(path, &image, frames, dirs, out, stats, &mut row)?;
        }
        Err(e) => stats.unreadable.push(format!("{path}: {e}")),
    }
    Ok(row)
}

/// A binary's bytes: mapped from its file, or copied (the vDSO).
enum Image {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Image {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Image::Mapped(m) => m,
            Image::Owned(v) => v,
        }
    }
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

/// Resolves `frames` (frame id, file offset) in the ELF image `map` of
/// `path`, filling in its `binaries` row.
fn resolve_image(
    path: &str,
    map: &[u8],
    frames: &[(u64, u64)],
    debug_dirs: &[PathBuf],
    out: &mut TableWriter<Symbol>,
    stats: &mut SymbolStats,
    row: &mut Binary,
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
    row.build_id = syms.build_id.clone();
    // A detached debug file has the full symbol table and the DWARF the
    // shipped binary lacks (Debian's -dbg packages, objcopy --only-keep-debug).
    let load = |p: &Path| {
        let file = std::fs::File::open(p).ok()?;
        super::sys::map_readonly(&file).ok()
    };
    let found = debuglink::find(
        Path::new(path),
        syms.build_id.as_deref(),
        syms.debuglink.as_ref(),
        debug_dirs,
        load,
        elf::build_id,
    );
    let vaddrs: Vec<u64> = offsets.iter().filter_map(|&o| syms.vaddr_of(o)).collect();
    let debug_syms = found
        .as_ref()
        .and_then(|(_, m, _)| ElfSymbols::parse_for_vaddrs(m, &vaddrs).ok());
    // Without a debug file, the MiniDebugInfo some distributions embed:
    // the local function symbols that stripping removed (names only).
    let mini = match (&debug_syms, syms.minidebuginfo(map)) {
        (None, Some(Ok(bytes))) => Some(bytes),
        (None, Some(Err(e))) => {
            stats.unreadable.push(format!("{path}: {e}"));
            None
        }
        _ => None,
    };
    let mini_syms = mini
        .as_deref()
        .and_then(|m| ElfSymbols::parse_for_vaddrs(m, &vaddrs).ok());
    let extra = debug_syms.as_ref().or(mini_syms.as_ref());
    row.symbols = match (&found, &debug_syms, &mini_syms) {
        (Some((_, _, by)), Some(_), _) => *by,
        (_, _, Some(_)) => SymbolSource::MiniDebugInfo,
        _ if syms.has_symtab => SymbolSource::Symtab,
        _ if syms.functions_seen > 0 => SymbolSource::Dynsym,
        _ => SymbolSource::None,
    }
    .as_str()
    .to_owned();
    if debug_syms.is_some() {
        row.debug_file = found.as_ref().map(|(p, _, _)| p.display().to_string());
    }
    // DWARF only where the section is there: parsing a stripped 450 MB
    // library again just to find it absent took ~35 ms per 60 MB.
    let dwarf = match (&found, &debug_syms) {
        (Some((_, m, _)), Some(d)) => Dwarf::parse(m, d),
        _ => None,
    }
    .or_else(|| Dwarf::parse(map, &syms));
    row.dwarf = dwarf.is_some();
    let module = module_of(path);
    for &(frame_id, offset) in frames {
        let Some(vaddr) = syms.vaddr_of(offset) else {
            continue;
        };
        // The binary's own name first (its exported name: `read`, not the
        // debug file's `__libc_read`), the debug file's where it has none.
        let elf_name = syms
            .function_at_offset(offset)
            .or_else(|| extra.and_then(|d| d.function_at_vaddr(vaddr)));
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
            row.named += 1;
        } else if let Some(name) = elf_name {
            out.push(Symbol {
                frame_id,
                inline_depth: 0,
                function: name.to_owned(),
                module: module.clone(),
                file: None,
                line: None,
            })?;
            row.named += 1;
        }
    }
    stats.resolved += row.named;
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

/// Removes the `/tmp/perf-PID.map` files of `pids` written since `since`
/// (JIT runtimes wrote them because sofa asked), each once a copy is in
/// the archive's `jitmaps/` (made now if symbolization did not need it).
pub fn remove_own_perf_maps(
    archive_dir: &Path,
    pids: impl IntoIterator<Item = u32>,
    since: std::time::SystemTime,
) -> std::io::Result<()> {
    let dir = archive_dir.join(JIT_MAPS_DIR);
    for pid in pids {
        let map = PathBuf::from(format!("/tmp/perf-{pid}.map"));
        let Ok(modified) = std::fs::metadata(&map).and_then(|m| m.modified()) else {
            continue;
        };
        if modified < since {
            // An older process's map under a reused pid: not ours.
            continue;
        }
        let copy = dir.join(format!("perf-{pid}.map"));
        if !copy.exists() {
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(&map, &copy)?;
        }
        std::fs::remove_file(&map)?;
    }
    Ok(())
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
    let mut binaries_out = archive.table::<Binary>()?;
    for (path, frames) in &by_binary {
        let row = resolve_binary(path, frames, debug_dirs, &mut symbols_out, &mut stats)?;
        binaries_out.push(row)?;
    }
    symbols_out.finish()?;
    binaries_out.finish()?;
    stats.unreadable.sort();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_perf_maps_are_moved_into_the_archive_older_ones_stay() {
        // Pids above the kernel's pid_max limit (2^22): no process has them.
        let (new, old) = (4_194_401u32, 4_194_402u32);
        let map = |pid: u32| PathBuf::from(format!("/tmp/perf-{pid}.map"));
        std::fs::write(map(old), "1000 10 older\n").unwrap();
        let since = std::time::SystemTime::now() + std::time::Duration::from_millis(1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(map(new), "2000 10 jit_kernel\n").unwrap();
        let archive = tempfile::tempdir().unwrap();
        remove_own_perf_maps(archive.path(), [new, old, 4_194_403], since).unwrap();
        assert!(!map(new).exists());
        let copy = archive
            .path()
            .join(JIT_MAPS_DIR)
            .join(format!("perf-{new}.map"));
        assert_eq!(
            std::fs::read_to_string(copy).unwrap(),
            "2000 10 jit_kernel\n"
        );
        assert!(map(old).exists());
        std::fs::remove_file(map(old)).unwrap();
    }
}
