//! Symbol resolution from bytes: ELF symbol tables, `/proc/kallsyms`, perf
//! JIT maps. Parsers take bytes, not paths, so they are tested on inline data.

pub mod debuglink;
pub mod dwarf;
pub mod elf;
pub mod kallsyms;
pub mod perfmap;

/// A sorted table of address ranges with names, searched by binary search.
/// Names are owned (`String`) or borrowed from the file's bytes (`&str`:
/// an ELF string table, kept raw so only the names looked up are demangled).
#[derive(Debug, Clone)]
pub struct RangeTable<N = String> {
    /// (start, end, name) sorted by start; `end` of an unsized entry is the next start.
    entries: Vec<(u64, u64, N)>,
}

impl<N> Default for RangeTable<N> {
    fn default() -> Self {
        RangeTable {
            entries: Vec::new(),
        }
    }
}

impl<N: AsRef<str>> RangeTable<N> {
    /// Builds the table; entries with size 0 extend to the next entry.
    pub fn new(mut entries: Vec<(u64, u64, N)>) -> RangeTable<N> {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|b, a| a.0 == b.0);
        let n = entries.len();
        for i in 0..n {
            if entries[i].1 <= entries[i].0 {
                entries[i].1 = if i + 1 < n {
                    entries[i + 1].0
                } else {
                    u64::MAX
                };
            }
        }
        RangeTable { entries }
    }

    pub fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.0 <= address);
        let (start, end, name) = self.entries.get(i.checked_sub(1)?)?;
        (*start <= address && address < *end).then_some(name.as_ref())
    }

    /// Start of the first entry whose name is `name` once `map` is applied.
    pub fn find_by(&self, name: &str, map: impl Fn(&str) -> String) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| map(e.2.as_ref()) == name)
            .map(|e| e.0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Demangles Rust (legacy and v0) and C++ (Itanium) names; others pass through.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(name)
        && let Ok(d) = sym.demangle()
    {
        return d;
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table_sized_and_unsized() {
        let t: RangeTable = RangeTable::new(vec![
            (0x100, 0x110, "a".into()),
            (0x200, 0, "b".into()),
            (0x300, 0x310, "c".into()),
        ]);
        assert_eq!(t.lookup(0x100), Some("a"));
        assert_eq!(t.lookup(0x10f), Some("a"));
        assert_eq!(t.lookup(0x110), None, "gap after a sized symbol");
        assert_eq!(t.lookup(0x2ff), Some("b"), "unsized runs to the next");
        assert_eq!(t.lookup(0x50), None);
        assert_eq!(t.lookup(0x310), None);
    }

    #[test]
    fn demangles_rust_and_cpp() {
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(
            demangle("_ZN5torch8autograd4gradEv"),
            "torch::autograd::grad()"
        );
        assert_eq!(demangle("compute_heavy"), "compute_heavy");
    }
}
