//! Function symbols of an ELF file, looked up by file offset (what a sampled
//! address minus its mapping start plus the mapping's page offset gives).

use super::{RangeTable, demangle};
use goblin::elf::section_header::{SHT_DYNSYM, SHT_RELA, SHT_SYMTAB};
use goblin::elf::{Elf, header::EM_X86_64, program_header::PT_LOAD, sym::STT_FUNC};
use std::borrow::Cow;

/// Function symbols borrow their names from the file's string tables and
/// are demangled only when looked up: libtorch has ~10^6 C++ symbols, of
/// which a recording hits a few thousand (demangling them all took most
/// of a 7 s finalize).
pub struct ElfSymbols<'a> {
    functions: RangeTable<Cow<'a, str>>,
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: Vec<(u64, u64, u64)>,
    pub build_id: Option<String>,
    /// Its `.gnu_debuglink` (debug file name, CRC-32), if any.
    pub debuglink: Option<(String, u32)>,
    /// Whether it has DWARF (`.debug_info`).
    pub has_dwarf: bool,
    /// Whether it has a full symbol table (`.symtab`), not only `.dynsym`.
    pub has_symtab: bool,
    /// Function symbols in its tables, kept or not.
    pub functions_seen: usize,
    pub little_endian: bool,
    /// File ranges of the sections read after parsing (DWARF's `.debug_*`,
    /// `.gnu_debugdata`), so that nothing parses the file a second time.
    sections: Vec<(&'a str, std::ops::Range<usize>)>,
}

impl<'a> ElfSymbols<'a> {
    /// Every function symbol of the image.
    pub fn parse(bytes: &'a [u8]) -> Result<ElfSymbols<'a>, String> {
        Self::parse_with(bytes, |_| None)
    }

    /// Only the functions holding one of the file offsets (and unsized
    /// ones, whose extent is known only in the sorted table): one pass over
    /// the symbol tables, without a table of all of them (libtorch has
    /// ~10^6).
    pub fn parse_for_offsets(bytes: &'a [u8], offsets: &[u64]) -> Result<ElfSymbols<'a>, String> {
        Self::parse_with(bytes, |loads| {
            let mut vaddrs: Vec<u64> = offsets.iter().filter_map(|&o| vaddr_in(loads, o)).collect();
            vaddrs.sort_unstable();
            vaddrs.dedup();
            Some(vaddrs)
        })
    }

    /// As [`ElfSymbols::parse_for_offsets`], by virtual address (a detached
    /// debug file, whose addresses are the binary's).
    pub fn parse_for_vaddrs(bytes: &'a [u8], vaddrs: &[u64]) -> Result<ElfSymbols<'a>, String> {
        let mut vaddrs = vaddrs.to_vec();
        vaddrs.sort_unstable();
        vaddrs.dedup();
        Self::parse_with(bytes, move |_| Some(vaddrs))
    }

    /// `wanted` gives, from the loadable segments, the sorted addresses
    /// whose functions to keep (`None`: all).
    fn parse_with(
        bytes: &'a [u8],
        wanted: impl FnOnce(&[(u64, u64, u64)]) -> Option<Vec<u64>>,
    ) -> Result<ElfSymbols<'a>, String> {
        let Light {
            elf,
            strtab,
            dynstrtab,
        } = light_parse(bytes)?;
        let loads: Vec<(u64, u64, u64)> = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| (ph.p_offset, ph.p_vaddr, ph.p_filesz))
            .collect();
        let wanted = wanted(&loads);
        let keep = |start: u64, end: u64| match &wanted {
            None => true,
            Some(v) if end <= start => !v.is_empty(),
            Some(v) => v
                .get(v.partition_point(|&a| a < start))
                .is_some_and(|&a| a < end),
        };
        let mut entries = Vec::new();
        let mut functions_seen = 0;
        // An unsized function ends where the next function of the file
        // starts, kept or not, or where the PLT stubs or its segment do.
        let mut starts: Vec<u64> = plt_start(&elf).into_iter().collect();
        starts.extend(loads.iter().map(|(_, vaddr, size)| vaddr + size));
        let symtabs = [(&elf.syms, strtab), (&elf.dynsyms, dynstrtab)];
        for (syms, strtab) in symtabs {
            for sym in syms.iter() {
                if sym.st_type() != STT_FUNC || sym.st_value == 0 {
                    continue;
                }
                functions_seen += 1;
                starts.push(sym.st_value);
                if !keep(sym.st_value, sym.st_value + sym.st_size) {
                    continue;
                }
                let Some(name) = name_at(strtab, sym.st_name) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                entries.push((
                    sym.st_value,
                    sym.st_value + sym.st_size,
                    Cow::Borrowed(name),
                ));
            }
        }
        starts.sort_unstable();
        for entry in entries.iter_mut().filter(|e| e.1 <= e.0) {
            if let Some(&next) = starts.get(starts.partition_point(|&a| a <= entry.0)) {
                entry.1 = next;
            }
        }
        entries.extend(plt_entries(&elf, bytes, dynstrtab, wanted.as_deref()));
        // Aliases at one address (glibc: `read`, `__read`, `__libc_read`):
        // the public name, as perf shows it — fewest leading underscores,
        // then the shortest. The table's sort keeps this order among equals.
        entries.sort_by_key(|e| {
            let name: &str = &e.2;
            (name.len() - name.trim_start_matches('_').len(), name.len())
        });
        let build_id = build_id_of(&elf, bytes);
        let debuglink = super::debuglink::debuglink(&elf, bytes);
        let sections: Vec<(&'a str, std::ops::Range<usize>)> = elf
            .section_headers
            .iter()
            .filter(|sh| sh.sh_type != goblin::elf::section_header::SHT_NOBITS)
            .filter_map(|sh| {
                let name = elf.shdr_strtab.get_at(sh.sh_name)?;
                if !(name.starts_with(".debug_") || name == ".gnu_debugdata") {
                    return None;
                }
                let start = usize::try_from(sh.sh_offset).ok()?;
                let end = start.checked_add(usize::try_from(sh.sh_size).ok()?)?;
                (end <= bytes.len()).then_some((name, start..end))
            })
            .collect();
        let has_dwarf = sections.iter().any(|(name, _)| *name == ".debug_info");
        Ok(ElfSymbols {
            functions: RangeTable::new(entries),
            loads,
            build_id,
            debuglink,
            has_dwarf,
            has_symtab: !elf.syms.is_empty(),
            functions_seen,
            little_endian: elf.little_endian,
            sections,
        })
    }

    /// The bytes of a section the parse kept (`.debug_*`, `.gnu_debugdata`)
    /// out of `bytes`, the image it parsed.
    pub fn section<'b>(&self, bytes: &'b [u8], name: &str) -> Option<&'b [u8]> {
        let (_, range) = self.sections.iter().find(|(n, _)| *n == name)?;
        bytes.get(range.clone())
    }

    /// MiniDebugInfo: the xz-compressed ELF in `.gnu_debugdata` holding the
    /// symbols `strip` removed (Fedora, RHEL, CentOS ship binaries so).
    pub fn minidebuginfo(&self, bytes: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let data = self.section(bytes, ".gnu_debugdata")?;
        let mut out = Vec::new();
        Some(
            lzma_rs::xz_decompress(&mut std::io::Cursor::new(data), &mut out)
                .map(|()| out)
                .map_err(|e| format!(".gnu_debugdata is not valid xz ({e})")),
        )
    }

    /// Virtual address (as in the symbol table) of a file offset.
    pub fn vaddr_of(&self, file_offset: u64) -> Option<u64> {
        vaddr_in(&self.loads, file_offset)
    }

    /// The demangled name of the function holding a virtual address.
    pub fn function_at_vaddr(&self, vaddr: u64) -> Option<String> {
        self.functions.lookup(vaddr).map(demangle_symbol)
    }

    /// The demangled name of the function holding a file offset.
    pub fn function_at_offset(&self, file_offset: u64) -> Option<String> {
        self.functions
            .lookup(self.vaddr_of(file_offset)?)
            .map(demangle_symbol)
    }

    /// Virtual address of the first function named `name`, demangled
    /// (tests, diagnostics).
    pub fn function_vaddr(&self, name: &str) -> Option<u64> {
        self.functions.find_by(name, demangle_symbol)
    }

    pub fn function_count(&self) -> usize {
        self.functions.len()
    }
}

/// The virtual address of a file offset, given the loadable segments
/// ((file offset, virtual address, file size) each).
pub fn vaddr_of(loads: &[(u64, u64, u64)], file_offset: u64) -> Option<u64> {
    vaddr_in(loads, file_offset)
}

fn vaddr_in(loads: &[(u64, u64, u64)], file_offset: u64) -> Option<u64> {
    loads
        .iter()
        .find(|(off, _, size)| *off <= file_offset && file_offset < off + size)
        .map(|(off, vaddr, _)| file_offset - off + vaddr)
}

/// Demangles a symbol name, keeping a `@plt` suffix.
fn demangle_symbol(name: &str) -> String {
    match name.strip_suffix("@plt") {
        Some(target) => format!("{}@plt", demangle(target)),
        None => demangle(name),
    }
}

/// PLT stubs named `target@plt`, as perf and objdump name them (the
/// symbol table has none: samples there were named after whatever
/// preceded, usually `_init`). x86-64 only: 16-byte stubs in `.plt.sec`
/// (IBT builds), else in `.plt` after its 16-byte header, in the order of
/// the `.rela.plt` relocations.
/// Where the PLT stubs start (x86-64).
fn plt_start(elf: &Elf) -> Option<u64> {
    (elf.header.e_machine == EM_X86_64).then_some(())?;
    let section = |name: &str| {
        elf.section_headers
            .iter()
            .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
    };
    section(".plt")
        .or_else(|| section(".plt.sec"))
        .map(|sh| sh.sh_addr)
}

/// Only built when a wanted address (sorted; `None`: all) is in the stubs'
/// section: libtorch has tens of thousands of them.
fn plt_entries<'a>(
    elf: &Elf<'a>,
    bytes: &'a [u8],
    dynstrtab: &'a [u8],
    wanted: Option<&[u64]>,
) -> Vec<(u64, u64, Cow<'a, str>)> {
    if elf.header.e_machine != EM_X86_64 {
        return Vec::new();
    }
    let section = |name: &str| {
        elf.section_headers
            .iter()
            .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
    };
    let (stubs, first) = match (section(".plt.sec"), section(".plt")) {
        (Some(sec), _) => (sec, 0),
        (None, Some(plt)) => (plt, 1),
        (None, None) => return Vec::new(),
    };
    let (base, end) = (stubs.sh_addr, stubs.sh_addr + stubs.sh_size);
    if let Some(v) = wanted
        && v.get(v.partition_point(|&a| a < base))
            .is_none_or(|&a| a >= end)
    {
        return Vec::new();
    }
    let Some(rela) = section(".rela.plt").filter(|sh| sh.sh_type == SHT_RELA) else {
        return Vec::new();
    };
    let Ok(relocs) = goblin::elf::RelocSection::parse(
        bytes,
        rela.sh_offset as usize,
        rela.sh_size as usize,
        true,
        elf_ctx(&elf.header).unwrap_or_default(),
    ) else {
        return Vec::new();
    };
    relocs
        .iter()
        .enumerate()
        .filter_map(|(i, rel)| {
            let sym = elf.dynsyms.get(rel.r_sym)?;
            let name = name_at(dynstrtab, sym.st_name).filter(|n| !n.is_empty())?;
            let start = base + 16 * (i + first) as u64;
            Some((start, start + 16, Cow::Owned(format!("{name}@plt"))))
        })
        .collect()
}

/// What unwinding needs of an ELF image: stated addresses (SVMAs) and file
/// ranges of the code and its unwind tables, and the loadable segments.
#[derive(Debug, Clone, Default)]
pub struct UnwindSections {
    /// (file offset, virtual address, file size) of each loadable segment.
    pub loads: Vec<(u64, u64, u64)>,
    /// The same of the executable ones.
    pub exec_loads: Vec<(u64, u64, u64)>,
    pub text: Option<(std::ops::Range<u64>, std::ops::Range<usize>)>,
    pub eh_frame: Option<(std::ops::Range<u64>, std::ops::Range<usize>)>,
    pub eh_frame_hdr: Option<(std::ops::Range<u64>, std::ops::Range<usize>)>,
    pub got: Option<std::ops::Range<u64>>,
    pub debug_frame: Option<std::ops::Range<usize>>,
}

impl UnwindSections {
    /// Whether it has call-frame information at all.
    pub fn has_cfi(&self) -> bool {
        self.eh_frame.is_some() || self.debug_frame.is_some()
    }
}

/// The sections [`UnwindSections`] lists, from the light parse.
pub fn unwind_sections(bytes: &[u8]) -> Option<UnwindSections> {
    let Light { elf, .. } = light_parse(bytes).ok()?;
    let section = |name: &str| {
        let sh = elf
            .section_headers
            .iter()
            .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))?;
        let svma = sh.sh_addr..sh.sh_addr + sh.sh_size;
        let start = usize::try_from(sh.sh_offset).ok()?;
        let end = start.checked_add(usize::try_from(sh.sh_size).ok()?)?;
        let in_file = sh.sh_type != goblin::elf::section_header::SHT_NOBITS && end <= bytes.len();
        Some((svma, in_file.then_some(start..end)))
    };
    let with_data = |name: &str| {
        let (svma, data) = section(name)?;
        Some((svma, data?))
    };
    Some(UnwindSections {
        loads: elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| (ph.p_offset, ph.p_vaddr, ph.p_filesz))
            .collect(),
        exec_loads: elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD && ph.is_executable())
            .map(|ph| (ph.p_offset, ph.p_vaddr, ph.p_filesz))
            .collect(),
        text: with_data(".text"),
        eh_frame: with_data(".eh_frame"),
        eh_frame_hdr: with_data(".eh_frame_hdr"),
        got: section(".got").map(|(svma, _)| svma),
        debug_frame: with_data(".debug_frame").map(|(_, data)| data),
    })
}

/// An ELF image parsed only as far as symbolization needs: headers,
/// section table and the two symbol tables, with their string tables left
/// raw. goblin's full parse also validates every string of every string
/// table and reads the relocations: 45 of the 90 ms libtorch_cpu.so's
/// symbols took.
struct Light<'a> {
    elf: Elf<'a>,
    strtab: &'a [u8],
    dynstrtab: &'a [u8],
}

fn elf_ctx(header: &goblin::elf::Header) -> Option<goblin::container::Ctx> {
    Some(goblin::container::Ctx::new(
        header.container().ok()?,
        header.endianness().ok()?,
    ))
}

fn light_parse(bytes: &[u8]) -> Result<Light<'_>, String> {
    use goblin::elf::{ProgramHeader, SectionHeader, Symtab};
    let header = Elf::parse_header(bytes).map_err(|e| e.to_string())?;
    let ctx = elf_ctx(&header).ok_or("unknown ELF class or byte order")?;
    let mut elf = Elf::lazy_parse(header).map_err(|e| e.to_string())?;
    let count = |n| usize::from(n);
    elf.program_headers =
        ProgramHeader::parse(bytes, header.e_phoff as usize, count(header.e_phnum), ctx)
            .map_err(|e| e.to_string())?;
    elf.section_headers =
        SectionHeader::parse(bytes, header.e_shoff as usize, count(header.e_shnum), ctx)
            .map_err(|e| e.to_string())?;
    let section_bytes = |sh: &SectionHeader| -> &[u8] {
        let start = usize::try_from(sh.sh_offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(sh.sh_size).unwrap_or(0));
        bytes.get(start..end).unwrap_or(&[])
    };
    if let Some(sh) = elf.section_headers.get(usize::from(header.e_shstrndx)) {
        elf.shdr_strtab =
            goblin::strtab::Strtab::parse(bytes, sh.sh_offset as usize, sh.sh_size as usize, 0)
                .map_err(|e| e.to_string())?;
    }
    let (mut strtab, mut dynstrtab): (&[u8], &[u8]) = (&[], &[]);
    for sh in &elf.section_headers {
        if sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM {
            continue;
        }
        let entsize = if sh.sh_entsize > 0 {
            sh.sh_entsize
        } else {
            goblin::elf::sym::Sym::size(ctx.container) as u64
        };
        let table = Symtab::parse(
            bytes,
            sh.sh_offset as usize,
            (sh.sh_size / entsize) as usize,
            ctx,
        )
        .map_err(|e| e.to_string())?;
        let names = elf
            .section_headers
            .get(sh.sh_link as usize)
            .map(section_bytes)
            .unwrap_or(&[]);
        if sh.sh_type == SHT_SYMTAB {
            (elf.syms, strtab) = (table, names);
        } else {
            (elf.dynsyms, dynstrtab) = (table, names);
        }
    }
    Ok(Light {
        elf,
        strtab,
        dynstrtab,
    })
}

/// The NUL-terminated UTF-8 string at `offset` of a raw string table.
fn name_at(table: &[u8], offset: usize) -> Option<&str> {
    let rest = table.get(offset..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..len]).ok()
}

/// The GNU build-id of an ELF image, in lowercase hex, from its headers
/// alone (a debug-file candidate is checked without parsing its tables).
pub fn build_id(bytes: &[u8]) -> Option<String> {
    let header = Elf::parse_header(bytes).ok()?;
    let ctx = elf_ctx(&header)?;
    let mut elf = Elf::lazy_parse(header).ok()?;
    elf.program_headers = goblin::elf::ProgramHeader::parse(
        bytes,
        usize::try_from(header.e_phoff).ok()?,
        usize::from(header.e_phnum),
        ctx,
    )
    .ok()?;
    build_id_of(&elf, bytes)
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
    fn plt_stubs_are_named_as_objdump_names_them() {
        // objdump labels each stub `<name@plt>`; every one it names, sofa
        // names the same (both from the running test binary).
        let exe = std::env::current_exe().unwrap();
        let Ok(out) = std::process::Command::new("objdump")
            .args(["-d", "-j", ".plt"])
            .arg(&exe)
            .output()
        else {
            panic!("objdump (binutils) is needed for this test");
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let labels: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let (addr, rest) = l.split_once(" <")?;
                let name = rest.strip_suffix(">:")?;
                name.ends_with("@plt")
                    .then(|| Some((u64::from_str_radix(addr.trim(), 16).ok()?, name.to_owned())))?
            })
            .collect();
        assert!(
            !labels.is_empty(),
            "no PLT stubs in the test binary:\n{text}"
        );
        let bytes = std::fs::read(&exe).unwrap();
        let syms = ElfSymbols::parse(&bytes).unwrap();
        for (addr, name) in &labels {
            // objdump keeps symbol versions out of PLT labels, as sofa does.
            assert_eq!(
                syms.function_at_vaddr(*addr).as_deref(),
                Some(name.as_str())
            );
            assert_eq!(
                syms.function_at_vaddr(addr + 6).as_deref(),
                Some(name.as_str())
            );
        }
    }

    #[test]
    fn only_the_wanted_functions_name_the_same_as_all_of_them() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let all = ElfSymbols::parse(&bytes).unwrap();
        // Every 997th byte of every loadable segment's file range.
        let offsets: Vec<u64> = all
            .loads
            .iter()
            .flat_map(|&(off, _, size)| (off..off + size).step_by(997))
            .collect();
        let some = ElfSymbols::parse_for_offsets(&bytes, &offsets).unwrap();
        assert!(some.function_count() < all.function_count());
        let mut named = 0;
        for &o in &offsets {
            let name = all.function_at_offset(o);
            named += usize::from(name.is_some());
            assert_eq!(some.function_at_offset(o), name, "offset {o:#x}");
        }
        assert!(named > 100, "{named} offsets in functions");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(ElfSymbols::parse(b"\x7fELF not really").is_err());
        assert!(ElfSymbols::parse(b"").is_err());
    }
}
