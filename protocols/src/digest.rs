//! Stable digests: the same bytes give the same value in every run, process and build (no
//! `RandomState`, no `Hash` impls whose byte layout is not promised).
//!
//! Commands and states are digested over their canonical postcard encoding with FNV-1a,
//! seeded and finished by SplitMix64. Not cryptographic: digests detect divergence and
//! accidents, not adversaries.

use std::hash::Hasher;

use serde::Serialize;

/// Seed of [`command_digest`] ("command" in ASCII).
const COMMAND_SEED: u64 = 0x0063_6f6d_6d61_6e64;

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn fnv_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
}

/// FNV-1a over `bytes`, started from a seed-dependent basis and finished by SplitMix64 so
/// that every input bit affects every output bit.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let basis = FNV_BASIS ^ dst_sim::decision::splitmix64(seed);
    dst_sim::decision::splitmix64(bytes.iter().fold(basis, |hash, &byte| fnv_step(hash, byte)))
}

/// The checksum of a durable record stored under `key`: binds the key in, so that a write
/// that lands under another key (a misdirected write) reads back as corrupt there. Eight
/// bytes a step (records are written, and read back, on every change of a replica's state):
/// each step is a bijection of the running state for a fixed word, so a change confined to
/// one 8-byte word, such as any bit flip, always changes the checksum. Not cryptographic.
pub fn record_checksum(seed: u64, key: &str, body: &[u8]) -> u64 {
    let mut hasher = dst_sim::hash::StableHasher::with_seed(dst_sim::decision::splitmix64(seed));
    for part in [key.as_bytes(), body] {
        hasher.write(part);
        // The lengths keep the boundary: ("ab", "c") and ("a", "bc") differ.
        hasher.write_usize(part.len());
    }
    hasher.finish()
}

/// A postcard output that hashes the bytes as they are produced instead of storing them:
/// digests and checksums of messages cost no allocation.
struct FnvFlavor(u64);

impl postcard::ser_flavors::Flavor for FnvFlavor {
    type Output = u64;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0 = fnv_step(self.0, byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0 = bytes
            .iter()
            .fold(self.0, |hash, &byte| fnv_step(hash, byte));
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.0)
    }
}

/// `hash_bytes(seed, postcard(value))`, computed while serialising; `None` if the value
/// does not serialise.
pub fn try_hash_value<T: Serialize + ?Sized>(seed: u64, value: &T) -> Option<u64> {
    let flavor = FnvFlavor(FNV_BASIS ^ dst_sim::decision::splitmix64(seed));
    postcard::serialize_with_flavor(value, flavor)
        .ok()
        .map(dst_sim::decision::splitmix64)
}

/// Digest of a value's canonical (postcard) encoding, with a caller-chosen seed.
pub fn hash_value<T: Serialize + ?Sized>(seed: u64, value: &T) -> u64 {
    // Plain data always serialises; a constant keeps this total.
    try_hash_value(seed, value).unwrap_or_else(|| dst_sim::decision::splitmix64(seed))
}

/// The digest of a command reported in `Observation::Commit` and computed again by the
/// harness for each invocation, so the validity oracle can compare them. Never 0: 0 is
/// reserved for no-ops. Every protocol must use this function.
pub fn command_digest<C: Serialize + ?Sized>(command: &C) -> u64 {
    hash_value(COMMAND_SEED, command) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_while_serialising_equals_hashing_the_encoding() {
        let values: Vec<(u64, String, Vec<u8>)> = vec![
            (0, String::new(), vec![]),
            (300, "key".into(), vec![1, 2, 3]),
            (u64::MAX, "x".repeat(1000), vec![0xff; 77]),
        ];
        for (seed, value) in values.iter().enumerate() {
            let encoded = postcard::to_allocvec(value).expect("encodes");
            assert_eq!(
                try_hash_value(seed as u64, value),
                Some(hash_bytes(seed as u64, &encoded))
            );
        }
    }

    #[test]
    fn a_record_checksum_catches_every_bit_flip_and_a_wrong_key() {
        let body: Vec<u8> = (0..37u8).map(|byte| byte.wrapping_mul(29)).collect();
        let checksum = record_checksum(5, "log/7", &body);
        for bit in 0..body.len() * 8 {
            let mut flipped = body.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(record_checksum(5, "log/7", &flipped), checksum, "bit {bit}");
        }
        assert_ne!(record_checksum(5, "log/8", &body), checksum);
        assert_ne!(record_checksum(6, "log/7", &body), checksum);
        assert_ne!(
            record_checksum(5, "log/", &[b"7", &body[..]].concat()),
            checksum
        );
        assert_ne!(record_checksum(5, "log/7", &body[..36]), checksum);
        assert_eq!(record_checksum(5, "log/7", &body), checksum);
    }

    #[test]
    fn digests_are_pinned_across_builds() {
        // If this changes, recorded seeds and traces change meaning: change it deliberately.
        assert_eq!(hash_bytes(0, b""), hash_bytes(0, b""));
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(1, b"a"));
        assert_ne!(hash_bytes(0, b"ab"), hash_bytes(0, b"ba"));
        assert_eq!(command_digest(&("put", 1u32)) & 1, 1);
        assert_eq!(hash_bytes(7, b"dst"), 14339130012774488446);
    }
}
