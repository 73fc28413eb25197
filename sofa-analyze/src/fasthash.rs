//! A fast hasher for the maps analysis looks up once per sample (stack ids,
//! thread ids): multiply-rotate over the key's words, as compilers use for
//! integer keys. Not DoS-resistant, which does not matter for an archive's
//! own ids; SipHash (std's default) made up a fifth of analysis time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct WordHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map with integer-like keys, hashed by `WordHasher`.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// A map keyed by stack id (`None`: a sample without a stack).
pub type StackMap<V> = FastMap<Option<u64>, V>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_map_works_like_a_map() {
        let mut map: StackMap<usize> = StackMap::default();
        for i in 0..10_000u64 {
            map.insert(Some(i), i as usize * 2);
        }
        map.insert(None, 7);
        assert_eq!(map.len(), 10_001);
        assert_eq!(map[&Some(1234)], 2468);
        assert_eq!(map[&None], 7);
    }
}
