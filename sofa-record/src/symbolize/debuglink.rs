//! Detached debug files, found as gdb and perf find them: by build-id under
//! each debug directory (`DIR/.build-id/ab/cdef….debug`), then by the
//! `.gnu_debuglink` name next to the binary, in its `.debug/`, and under
//! each debug directory plus the binary's directory. A candidate is used
//! only if its build-id matches the binary's (build-id path) or its CRC-32
//! matches the one the link records (debuglink).

use goblin::elf::Elf;
use sofa_trace::SymbolSource;
use std::path::{Path, PathBuf};

/// The `.gnu_debuglink` of a parsed ELF image (`bytes`): the debug file's
/// name and the CRC-32 of its contents.
pub fn debuglink(elf: &Elf, bytes: &[u8]) -> Option<(String, u32)> {
    let sh = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".gnu_debuglink"))?;
    let start = usize::try_from(sh.sh_offset).ok()?;
    let data = bytes.get(start..start.checked_add(usize::try_from(sh.sh_size).ok()?)?)?;
    let nul = data.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&data[..nul]).ok()?.to_owned();
    // The CRC follows the name's NUL, padded to a 4-byte boundary.
    let at = (nul + 1).next_multiple_of(4);
    let crc = data.get(at..at + 4)?;
    let crc = if elf.little_endian {
        u32::from_le_bytes(crc.try_into().ok()?)
    } else {
        u32::from_be_bytes(crc.try_into().ok()?)
    };
    (!name.is_empty() && !name.contains('/')).then_some((name, crc))
}

/// Where the debug file of the binary at `path` may be, in the order
/// gdb looks: by build-id under each debug directory, then by the
/// debuglink name next to the binary, in its `.debug/`, and under each
/// debug directory plus the binary's directory. Never the binary itself.
pub fn candidates(
    path: &Path,
    build_id: Option<&str>,
    debuglink: Option<&str>,
    debug_dirs: &[PathBuf],
) -> Vec<(PathBuf, SymbolSource)> {
    let mut out = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 2) {
        for dir in debug_dirs {
            let candidate = dir
                .join(".build-id")
                .join(&id[..2])
                .join(format!("{}.debug", &id[2..]));
            out.push((candidate, SymbolSource::BuildId));
        }
    }
    if let (Some(name), Some(dir)) = (debuglink, path.parent()) {
        out.push((dir.join(name), SymbolSource::Debuglink));
        out.push((dir.join(".debug").join(name), SymbolSource::Debuglink));
        let relative = dir.strip_prefix("/").unwrap_or(dir);
        for debug in debug_dirs {
            out.push((debug.join(relative).join(name), SymbolSource::Debuglink));
        }
    }
    out.retain(|(candidate, _)| candidate != path);
    out
}

/// Finds and loads the debug file of the binary at `path` (its `build_id`
/// and `debuglink`), looking under `debug_dirs` (e.g. `/usr/lib/debug`).
/// `load` reads a candidate (the caller maps it) and `read_build_id` gives
/// a candidate's build-id; each candidate is loaded once. A build-id
/// candidate is used only if its build-id matches, a debuglink one only if
/// its CRC-32 does. Gives the file's path and contents, and how it was found.
pub fn find<M: std::ops::Deref<Target = [u8]>>(
    path: &Path,
    build_id: Option<&str>,
    debuglink: Option<&(String, u32)>,
    debug_dirs: &[PathBuf],
    load: impl Fn(&Path) -> Option<M>,
    read_build_id: impl Fn(&[u8]) -> Option<String>,
) -> Option<(PathBuf, M, SymbolSource)> {
    let name = debuglink.map(|(name, _)| name.as_str());
    candidates(path, build_id, name, debug_dirs)
        .into_iter()
        .find_map(|(candidate, how)| {
            let data = load(&candidate)?;
            let matches = match (how, debuglink) {
                (SymbolSource::BuildId, _) => read_build_id(&data).as_deref() == build_id,
                (_, Some((_, crc))) => crc32fast::hash(&data) == *crc,
                _ => false,
            };
            matches.then_some((candidate, data, how))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_has_no_debuglink() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf::parse(&exe).unwrap();
        assert_eq!(debuglink(&elf, &exe), None);
    }

    #[test]
    fn nothing_found_without_a_build_id_or_link() {
        let load = |p: &Path| std::fs::read(p).ok();
        let found = find(Path::new("/bin/true"), None, None, &[], load, |_| None);
        assert!(found.is_none());
    }
}
