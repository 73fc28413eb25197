//! Function symbols of an ELF file, looked up by file offset (what a sampled
//! address minus its mapping start plus the mapping's page offset gives).

use super::{RangeTable, demangle};
use goblin::elf::{Elf, program_header::PT_LOAD, sym::STT_FUNC};

/// Function symbols borrow their names from the file's string tables and
/// are demangled only when looked up: libtorch has ~10^6 C++ symbols, of
/// which a recording hits a few thousand (demangling them all took most
/// of a 7 s finalize).
pub struct ElfSymbols<'a> {
    functions: RangeTable<&'a str>,
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: Vec<(u64, u64, u64)>,
    pub build_id: Option<String>,
}

impl<'a> ElfSymbols<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<ElfSymbols<'a>, String> {
        let elf = Elf::parse(bytes).map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        let symtabs = [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)];
        for (syms, strtab) in symtabs {
            for sym in syms.iter() {
                if sym.st_type() != STT_FUNC || sym.st_value == 0 {
                    continue;
                }
                let Some(name) = strtab.get_at(sym.st_name) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                entries.push((sym.st_value, sym.st_value + sym.st_size, name));
            }
        }
        let loads = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| (ph.p_offset, ph.p_vaddr, ph.p_filesz))
            .collect();
        let build_id = build_id_of(&elf, bytes);
        Ok(ElfSymbols {
            functions: RangeTable::new(entries),
            loads,
            build_id,
        })
    }

    /// Virtual address (as in the symbol table) of a file offset.
    pub fn vaddr_of(&self, file_offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|(off, _, size)| *off <= file_offset && file_offset < off + size)
            .map(|(off, vaddr, _)| file_offset - off + vaddr)
    }

    /// The demangled name of the function holding a virtual address.
    pub fn function_at_vaddr(&self, vaddr: u64) -> Option<String> {
        self.functions.lookup(vaddr).map(demangle)
    }

    /// The demangled name of the function holding a file offset.
    pub fn function_at_offset(&self, file_offset: u64) -> Option<String> {
        self.functions
            .lookup(self.vaddr_of(file_offset)?)
            .map(demangle)
    }

    /// Virtual address of the first function named `name`, demangled
    /// (tests, diagnostics).
    pub fn function_vaddr(&self, name: &str) -> Option<u64> {
        self.functions.find_by(name, demangle)
    }

    pub fn function_count(&self) -> usize {
        self.functions.len()
    }
}

/// The GNU build-id of an ELF image, in lowercase hex.
pub fn build_id(bytes: &[u8]) -> Option<String> {
    build_id_of(&Elf::parse(bytes).ok()?, bytes)
}

fn build_id_of(elf: &Elf, bytes: &[u8]) -> Option<String> {
    elf.iter_note_headers(bytes).and_then(|notes| {
        notes
            .flatten()
            .find(|n| n.n_type == goblin::elf::note::NT_GNU_BUILD_ID)
            .map(|n| {
                n.desc
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, pgoff) of the executable mapping of `path` holding `address`, from /proc/self/maps.
    fn self_mapping(path: &str, address: u64) -> (u64, u64) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter(|l| l.ends_with(path))
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let (s, e) = f.next()?.split_once('-')?;
                let (s, e) = (
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                );
                let _perms = f.next()?;
                let pgoff = u64::from_str_radix(f.next()?, 16).ok()?;
                (s <= address && address < e).then_some((s, pgoff))
            })
            .expect("mapping holding the address")
    }

    #[test]
    fn own_test_binary_resolves_a_known_function() {
        // The running test executable is an ELF file with a symbol table;
        // find `demangle` in it the way the recorder does: by file offset.
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let syms = ElfSymbols::parse(&bytes).unwrap();
        assert!(syms.function_count() > 100);
        assert!(syms.build_id.as_ref().is_none_or(|b| b.len() >= 16));
        let address = super::super::demangle as fn(&str) -> String as usize as u64;
        let (start, pgoff) = self_mapping(&exe.to_string_lossy(), address);
        let name = syms.function_at_offset(address - start + pgoff).unwrap();
        assert!(name.ends_with("symbolize::demangle"), "{name}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(ElfSymbols::parse(b"\x7fELF not really").is_err());
        assert!(ElfSymbols::parse(b"").is_err());
    }
}
