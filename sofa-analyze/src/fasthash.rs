//! Maps for the keys analysis looks up once per sample (stack ids, thread
//! ids), hashed by rustc-hash's Fx hasher (a multiply-rotate hash, as
//! compilers use for integer keys). Not DoS-resistant, which does not matter
//! for an archive's own ids; SipHash (std's default) made up a fifth of
//! analysis time.

use std::collections::HashMap;

/// A map with integer-like keys.
pub type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

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
