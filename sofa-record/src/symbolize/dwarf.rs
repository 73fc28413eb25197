//! DWARF: function names with inlining and file:line, through `addr2line`
//! over the section bytes goblin finds, so one ELF parser serves both.

use super::elf::ElfSymbols;
use addr2line::gimli::{self, EndianSlice, RunTimeEndian};

/// One resolved level at an address; `depth` 0 is the real function,
/// 1.. the functions inlined into it, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    pub depth: u32,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

pub struct Dwarf<'a> {
    ctx: addr2line::Context<EndianSlice<'a, RunTimeEndian>>,
}

impl<'a> Dwarf<'a> {
    /// `None` when the file has no DWARF (stripped): symbols then come from
    /// the ELF symbol table alone. `syms` is the parse of `bytes`, whose
    /// section table is reused.
    pub fn parse(bytes: &'a [u8], syms: &ElfSymbols) -> Option<Dwarf<'a>> {
        if !syms.has_dwarf {
            return None;
        }
        let endian = if syms.little_endian {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let section =
            |id: gimli::SectionId| -> Result<EndianSlice<'a, RunTimeEndian>, gimli::Error> {
                let data = syms.section(bytes, id.name()).unwrap_or(&[]);
                Ok(EndianSlice::new(data, endian))
            };
        let dwarf = gimli::Dwarf::load(section).ok()?;
        let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
        Some(Dwarf { ctx })
    }

    /// Frames at a virtual address (as in the symbol table), real function first.
    pub fn frames(&self, vaddr: u64) -> Vec<SourceFrame> {
        let Ok(mut iter) = self.ctx.find_frames(vaddr).skip_all_loads() else {
            return Vec::new();
        };
        let mut innermost_first = Vec::new();
        while let Ok(Some(frame)) = iter.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(|name| name.into_owned());
            let (file, line) = match &frame.location {
                Some(loc) => (loc.file.map(str::to_owned), loc.line),
                None => (None, None),
            };
            innermost_first.push((function, file, line));
        }
        innermost_first
            .into_iter()
            .rev()
            .enumerate()
            .map(|(depth, (function, file, line))| SourceFrame {
                depth: depth as u32,
                function,
                file,
                line,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_test_binary_has_lines_for_a_known_function() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let syms = ElfSymbols::parse(&bytes).unwrap();
        let Some(dwarf) = Dwarf::parse(&bytes, &syms) else {
            // Test binaries are built with line tables (profile.dev debug = "line-tables-only").
            panic!("no DWARF in the test binary");
        };
        let vaddr = syms
            .function_vaddr("sofa_record::symbolize::demangle")
            .expect("demangle in the symbol table");
        let frames = dwarf.frames(vaddr);
        assert!(!frames.is_empty());
        let outer = &frames[0];
        assert_eq!(outer.depth, 0);
        assert!(
            outer
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("symbolize/mod.rs")),
            "{outer:?}"
        );
        assert!(outer.line.is_some());
    }

    #[test]
    fn no_dwarf_is_none() {
        let true_bin = std::fs::read("/bin/true").unwrap();
        let syms = ElfSymbols::parse(&true_bin).unwrap();
        assert!(!syms.has_dwarf, "Debian's /bin/true is stripped");
        assert!(Dwarf::parse(&true_bin, &syms).is_none());
    }
}
