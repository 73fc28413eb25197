//! `/proc/kallsyms` snapshot.

use super::RangeTable;

/// Kernel text symbols. Empty when the kernel hides addresses (kptr_restrict).
pub fn parse(bytes: &[u8]) -> RangeTable {
    let text = String::from_utf8_lossy(bytes);
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if addr == 0 {
            continue;
        }
        let name = match parts.next() {
            Some(module) => format!("{name} {module}"),
            None => name.to_owned(),
        };
        entries.push((addr, 0, name));
    }
    RangeTable::new(entries)
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_symbols_only_and_hidden_addresses_skipped() {
        let t = super::parse(
            b"ffffffff81000000 T _stext\n\
              ffffffff81000100 t read_zero\n\
              ffffffff81000200 D some_data\n\
              ffffffff81000300 T vfs_read\n\
              ffffffffc0000000 t nvidia_open\t[nvidia]\n\
              0000000000000000 T hidden\n",
        );
        assert_eq!(t.lookup(0xffffffff81000150), Some("read_zero"));
        // Data symbols do not end a function: read_zero runs to vfs_read.
        assert_eq!(t.lookup(0xffffffff81000250), Some("read_zero"));
        assert_eq!(t.lookup(0xffffffffc0000010), Some("nvidia_open [nvidia]"));
        assert_eq!(t.len(), 4);
        assert!(super::parse(b"0000000000000000 T _stext\n").is_empty());
    }
}
