//! `/proc/PID/maps` parser.

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub executable: bool,
    pub offset: u64,
    /// File path or pseudo name (`[vdso]`); empty for anonymous memory.
    pub path: String,
}

/// Parses the text of `/proc/PID/maps`; malformed lines are skipped.
pub fn parse(bytes: &[u8]) -> Vec<MapLine> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MapLine> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    Some(MapLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anonymous_and_pseudo_mappings() {
        let maps = b"\
55d0c8a00000-55d0c8a01000 r--p 00000000 08:01 1234                       /usr/bin/my app
55d0c8a01000-55d0c8a02000 r-xp 00001000 08:01 1234                       /usr/bin/my app
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 
7ffd4b5f3000-7ffd4b5f5000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";
        let lines = parse(maps);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            MapLine {
                start: 0x55d0c8a01000,
                end: 0x55d0c8a02000,
                executable: true,
                offset: 0x1000,
                path: "/usr/bin/my app".into(),
            }
        );
        assert!(!lines[0].executable);
        assert_eq!(lines[2].path, "");
        assert_eq!(lines[3].path, "[vdso]");
    }
}
