//! `/tmp/perf-PID.map`: JIT code (CPython 3.12+ with perf support, JVMs, ...).
//! One `START SIZE NAME` line per code region, START and SIZE in hex.

use super::RangeTable;

pub fn parse(bytes: &[u8]) -> RangeTable {
    let text = String::from_utf8_lossy(bytes);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let entries = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let start = hex(parts.next()?)?;
            let size = hex(parts.next()?)?;
            let name = parts.next()?.trim();
            (size > 0 && !name.is_empty()).then(|| (start, start + size, name.to_owned()))
        })
        .collect();
    RangeTable::new(entries)
}

#[cfg(test)]
mod tests {
    #[test]
    fn python_trampolines() {
        let t = super::parse(
            b"7f3a10000000 b py::forward:/app/train.py\n\
              0x7f3a10000010 20 py::<module>:/app/train.py\n\
              bad line\n",
        );
        assert_eq!(t.lookup(0x7f3a10000005), Some("py::forward:/app/train.py"));
        assert_eq!(t.lookup(0x7f3a1000000c), None);
        assert_eq!(t.lookup(0x7f3a1000002f), Some("py::<module>:/app/train.py"));
    }
}
