//! End-of-recording symbolization: frames get their mapping and file offset,
//! and every address that can be named gets a row in `symbols`, while the
//! binaries, /proc/kallsyms and JIT maps are still on this machine.

use super::collect::{Finished, FrameKey};
use crate::symbolize::{RangeTable, elf::ElfSymbols, kallsyms, perfmap};
use sofa_trace::tables::{Frame, Symbol};
use sofa_trace::{ArchiveWriter, TraceError};
use std::collections::HashMap;

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

/// Paths that name no file we could open for symbols.
fn is_pseudo(path: &str) -> bool {
    path.is_empty()
        || path.starts_with('[')
        || path.starts_with("//anon")
        || path.starts_with("/memfd:")
}

enum Binary {
    Elf(Box<ElfSymbols>),
    Unreadable,
}

fn load_binary(path: &str, stats: &mut SymbolStats) -> Binary {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            stats.unreadable.push(format!("{path}: {e}"));
            return Binary::Unreadable;
        }
    };
    // SAFETY: read-only map of a file we only parse; a concurrent truncation
    // could fault, which is why the binaries are read once, after the run.
    let map = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(m) => m,
        Err(e) => {
            stats.unreadable.push(format!("{path}: {e}"));
            return Binary::Unreadable;
        }
    };
    match ElfSymbols::parse(&map) {
        Ok(syms) => Binary::Elf(Box::new(syms)),
        Err(e) => {
            stats
                .unreadable
                .push(format!("{path}: not a readable ELF file ({e})"));
            Binary::Unreadable
        }
    }
}

pub fn write(archive: &ArchiveWriter, finished: &Finished) -> Result<SymbolStats, TraceError> {
    let mut stats = SymbolStats::default();
    let kernel = if finished.frames.iter().any(|f| f.kernel) {
        let table = kallsyms::parse(&std::fs::read("/proc/kallsyms").unwrap_or_default());
        stats.kernel_hidden = table.is_empty();
        table
    } else {
        RangeTable::default()
    };
    let mut binaries: HashMap<String, Binary> = HashMap::new();
    let mut jit_maps: HashMap<u32, RangeTable> = HashMap::new();
    let mut frames_out = archive.table::<Frame>()?;
    let mut symbols_out = archive.table::<Symbol>()?;

    for (frame_id, key) in finished.frames.iter().enumerate() {
        let frame_id = frame_id as u64;
        let FrameKey {
            pid,
            address,
            kernel: is_kernel,
        } = *key;
        stats.frames += 1;
        if is_kernel {
            frames_out.push(Frame {
                frame_id,
                pid: 0,
                address,
                kind: "kernel".into(),
                mapping_id: None,
                file_offset: None,
            })?;
            if let Some(name) = kernel.lookup(address) {
                let (function, module) = match name.split_once(' ') {
                    Some((f, m)) => (f.to_owned(), m.to_owned()),
                    None => (name.to_owned(), "[kernel]".to_owned()),
                };
                symbols_out.push(Symbol {
                    frame_id,
                    inline_depth: 0,
                    function,
                    module,
                    file: None,
                    line: None,
                })?;
                stats.resolved += 1;
            }
            continue;
        }
        let mapping = finished.spaces.lookup(pid, address);
        let file_offset = mapping.map(|m| address - m.start + m.pgoff);
        let anonymous = mapping.is_none_or(|m| is_pseudo(&m.path));
        let mut resolved: Option<(String, String)> = None;
        if let (Some(m), Some(offset)) = (mapping, file_offset)
            && !is_pseudo(&m.path)
        {
            let binary = binaries
                .entry(m.path.clone())
                .or_insert_with(|| load_binary(&m.path, &mut stats));
            if let Binary::Elf(syms) = binary
                && let Some(name) = syms.function_at_offset(offset)
            {
                resolved = Some((name.to_owned(), module_of(&m.path)));
            }
        }
        if resolved.is_none() && anonymous {
            let jit = jit_maps.entry(pid).or_insert_with(|| {
                perfmap::parse(&std::fs::read(format!("/tmp/perf-{pid}.map")).unwrap_or_default())
            });
            if let Some(name) = jit.lookup(address) {
                resolved = Some((name.to_owned(), "[jit]".to_owned()));
            }
        }
        let kind = if anonymous && resolved.is_some() {
            "jit"
        } else {
            "user"
        };
        frames_out.push(Frame {
            frame_id,
            pid,
            address,
            kind: kind.into(),
            mapping_id: mapping.map(|m| m.mapping_id),
            file_offset,
        })?;
        if let Some((function, module)) = resolved {
            symbols_out.push(Symbol {
                frame_id,
                inline_depth: 0,
                function,
                module,
                file: None,
                line: None,
            })?;
            stats.resolved += 1;
        }
    }
    frames_out.finish()?;
    symbols_out.finish()?;
    stats.unreadable.sort();
    Ok(stats)
}
