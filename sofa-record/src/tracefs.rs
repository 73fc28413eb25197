//! Tracepoint formats (`events/GROUP/NAME/format` in tracefs) and reading
//! fields out of a tracepoint's raw sample bytes. Parsers take bytes.

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

/// A tracepoint's id and record layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    pub id: u64,
    pub fields: Vec<Field>,
}

impl EventFormat {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Parses the text of a tracepoint `format` file.
pub fn parse_format(bytes: &[u8]) -> Result<EventFormat, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut id = None;
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ID:") {
            id = rest.trim().parse::<u64>().ok();
            continue;
        }
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        let mut signed = false;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("signed:") {
                signed = v == "1";
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            return Err(format!("malformed field line: {line}"));
        };
        let name = decl
            .rsplit(' ')
            .next()
            .unwrap_or(decl)
            .split('[')
            .next()
            .unwrap_or_default()
            .to_owned();
        fields.push(Field {
            name,
            offset,
            size,
            signed,
        });
    }
    Ok(EventFormat {
        id: id.ok_or("no ID line")?,
        fields,
    })
}

/// Reads an integer field (sign-extended when the field is signed).
pub fn read_int(raw: &[u8], field: &Field) -> Option<i64> {
    read_int_at(raw, field.offset, field.size, field.signed)
}

/// Reads element `index` of an array field of 8-byte elements (e.g. `args[6]`).
pub fn read_u64_elem(raw: &[u8], field: &Field, index: usize) -> Option<u64> {
    let offset = field.offset + 8 * index;
    (offset + 8 <= field.offset + field.size)
        .then(|| read_int_at(raw, offset, 8, false))
        .flatten()
        .map(|v| v as u64)
}

fn read_int_at(raw: &[u8], offset: usize, size: usize, signed: bool) -> Option<i64> {
    let bytes = raw.get(offset..offset.checked_add(size)?)?;
    Some(match (size, signed) {
        (1, false) => bytes[0] as i64,
        (1, true) => bytes[0] as i8 as i64,
        (2, false) => u16::from_ne_bytes(bytes.try_into().ok()?) as i64,
        (2, true) => i16::from_ne_bytes(bytes.try_into().ok()?) as i64,
        (4, false) => u32::from_ne_bytes(bytes.try_into().ok()?) as i64,
        (4, true) => i32::from_ne_bytes(bytes.try_into().ok()?) as i64,
        (8, _) => i64::from_ne_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

/// Reads a `__data_loc char[]` field: a u32 holding offset (low 16 bits)
/// and length (high 16 bits) of a NUL-terminated string in the record.
pub fn read_data_loc_str(raw: &[u8], field: &Field) -> Option<String> {
    let loc = read_int_at(raw, field.offset, 4, false)? as u32;
    let (offset, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    let bytes = raw.get(offset..offset + len)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_ENTER: &[u8] = b"name: sys_enter
ID: 443
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: \"NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)\", REC->id, REC->args[0]
";

    #[test]
    fn parses_sys_enter_and_reads_fields() {
        let f = parse_format(SYS_ENTER).unwrap();
        assert_eq!(f.id, 443);
        assert_eq!(f.fields.len(), 6);
        let args = f.field("args").unwrap();
        assert_eq!((args.offset, args.size, args.signed), (16, 48, false));
        let mut raw = vec![0u8; 64];
        raw[8..16].copy_from_slice(&0i64.to_ne_bytes());
        raw[16..24].copy_from_slice(&3u64.to_ne_bytes());
        raw[32..40].copy_from_slice(&4096u64.to_ne_bytes());
        assert_eq!(read_int(&raw, f.field("id").unwrap()), Some(0));
        assert_eq!(read_u64_elem(&raw, args, 0), Some(3));
        assert_eq!(read_u64_elem(&raw, args, 2), Some(4096));
        assert_eq!(read_u64_elem(&raw, args, 6), None, "past the array");
        assert_eq!(
            read_int(&raw[..10], f.field("id").unwrap()),
            None,
            "short record"
        );
    }

    #[test]
    fn negative_return_and_data_loc_string() {
        let f = parse_format(
            b"ID: 7\n\tfield:long ret;\toffset:8;\tsize:8;\tsigned:1;\n\
              \tfield:__data_loc char[] name;\toffset:16;\tsize:4;\tsigned:0;\n",
        )
        .unwrap();
        let mut raw = vec![0u8; 32];
        raw[8..16].copy_from_slice(&(-11i64).to_ne_bytes());
        let loc: u32 = (5 << 16) | 20;
        raw[16..20].copy_from_slice(&loc.to_ne_bytes());
        raw[20..25].copy_from_slice(b"eth0\0");
        assert_eq!(read_int(&raw, f.field("ret").unwrap()), Some(-11));
        assert_eq!(
            read_data_loc_str(&raw, f.field("name").unwrap()).as_deref(),
            Some("eth0")
        );
    }

    #[test]
    fn malformed_formats_are_errors() {
        assert!(parse_format(b"name: x\n").is_err());
        assert!(parse_format(b"ID: 1\n\tfield:int x;\toffset:zz;\tsize:4;\n").is_err());
    }
}
