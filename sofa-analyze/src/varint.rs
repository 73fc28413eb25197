//! Unsigned LEB128: 7 bits a byte, the high bit set on all but the last.
//! What the packed lists of analysis (waits, swarm runs) are made of.

/// Appends `v`.
pub(crate) fn put(bytes: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        bytes.push(v as u8 | 0x80);
        v >>= 7;
    }
    bytes.push(v as u8);
}

/// The value at `*at`, which moves past it.
pub(crate) fn get(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Appends a signed `v` (zigzag: small magnitudes of either sign are
/// small), as the difference of two `u64`s taken with wrapping.
pub(crate) fn put_signed(bytes: &mut Vec<u8>, v: i64) {
    put(bytes, ((v << 1) ^ (v >> 63)) as u64);
}

/// The signed value at `*at` ([`put_signed`]'s).
pub(crate) fn get_signed(bytes: &[u8], at: &mut usize) -> i64 {
    let z = get(bytes, at);
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_in_as_few_bytes_as_their_bits_need() {
        let values = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 35,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut bytes = Vec::new();
        for v in values {
            put(&mut bytes, v);
        }
        assert_eq!(bytes.len(), 1 + 1 + 1 + 2 + 2 + 3 + 6 + 10 + 10);
        let mut at = 0;
        let back: Vec<u64> = values.iter().map(|_| get(&bytes, &mut at)).collect();
        assert_eq!(back, values);
        assert_eq!(at, bytes.len());

        let signed = [0, -1, 1, -64, 63, -65, i64::MIN, i64::MAX];
        let mut bytes = Vec::new();
        for v in signed {
            put_signed(&mut bytes, v);
        }
        assert_eq!(bytes.len(), 1 + 1 + 1 + 1 + 1 + 2 + 10 + 10);
        let mut at = 0;
        let back: Vec<i64> = signed.iter().map(|_| get_signed(&bytes, &mut at)).collect();
        assert_eq!(back, signed);
    }
}
