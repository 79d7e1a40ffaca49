//! Durable records: encoding with a key-bound checksum, and the key layout.
//!
//! Layout (all keys under `paxos/`):
//! - `paxos/meta/0`, `paxos/meta/1`: two copies of [`Meta`] (the promised ballot), written
//!   together; the valid copy with the higher `version` wins.
//! - `paxos/accept/<slot, 20 digits>`: one [`AcceptRecord`] per slot this acceptor accepted
//!   a value in.
//!
//! Every value is `postcard(record) ++ checksum(key, postcard(record))` (8 bytes, little
//! endian; `dst_protocols::digest::record_checksum`). Binding the key into the checksum
//! makes a misdirected write look corrupt.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::message::{Ballot, Slot, Value};

pub const META_KEYS: [&str; 2] = ["paxos/meta/0", "paxos/meta/1"];
pub const ACCEPT_PREFIX: &str = "paxos/accept/";
pub const ALL_PREFIX: &str = "paxos/";

const CHECKSUM_SEED: u64 = 0x7061_786f_735f_6469;
const CHECKSUM_BYTES: usize = 8;

/// The acceptor's promise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Grows with every write, so the newer of two copies is known.
    pub version: u64,
    pub promised: Ballot,
}

/// One accepted (or known chosen) value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptRecord<C> {
    pub slot: Slot,
    pub ballot: Ballot,
    pub value: Value<C>,
    pub chosen: bool,
}

/// A stored value failed its checksum or did not decode (torn, flipped or misdirected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// The key of slot `slot`'s accept record: the prefix and the slot in 20 zero-padded digits
/// (built without `format!`, which was 6% of a heavy run's instructions).
pub fn accept_key(slot: Slot) -> String {
    let mut key = String::with_capacity(ACCEPT_PREFIX.len() + 20);
    key.push_str(ACCEPT_PREFIX);
    dst_protocols::text::push_digits(&mut key, slot.0, 10, 20);
    key
}

/// The slot in an accept key, if it is one.
pub fn parse_accept_key(key: &str) -> Option<Slot> {
    let digits = key.strip_prefix(ACCEPT_PREFIX)?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok().map(Slot)
}

/// Encodes a record for `key`.
pub fn encode<T: Serialize>(key: &str, record: &T) -> Vec<u8> {
    // Sized for a typical accept record and its checksum, so encoding rarely regrows.
    let mut bytes = match dst_sim::encode::append(record, Vec::with_capacity(128)) {
        Ok(bytes) => bytes,
        // Our own records always encode; an empty value decodes as corrupt, never as data.
        Err(_) => return Vec::new(),
    };
    let checksum = record_checksum(key, &bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Decodes a record stored under `key`, checking the checksum.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, Corrupt> {
    if value.len() < CHECKSUM_BYTES {
        return Err(Corrupt);
    }
    let (body, tail) = value.split_at(value.len() - CHECKSUM_BYTES);
    let mut stored = [0u8; CHECKSUM_BYTES];
    stored.copy_from_slice(tail);
    if u64::from_le_bytes(stored) != record_checksum(key, body) {
        return Err(Corrupt);
    }
    postcard::from_bytes(body).map_err(|_| Corrupt)
}

fn record_checksum(key: &str, body: &[u8]) -> u64 {
    dst_protocols::digest::record_checksum(CHECKSUM_SEED, key, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dst_sim::NodeId;

    #[test]
    fn torn_flipped_and_misdirected_records_are_detected() {
        let meta = Meta {
            version: 1,
            promised: Ballot {
                round: 4,
                node: NodeId(1),
            },
        };
        let bytes = encode(META_KEYS[0], &meta);
        assert_eq!(decode::<Meta>(META_KEYS[0], &bytes), Ok(meta));
        for cut in 0..bytes.len() {
            assert!(
                decode::<Meta>(META_KEYS[0], &bytes[..cut]).is_err(),
                "torn at {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode::<Meta>(META_KEYS[0], &flipped).is_err(),
                "bit {bit} flip"
            );
        }
        assert!(
            decode::<Meta>(META_KEYS[1], &bytes).is_err(),
            "wrong key decoded"
        );
    }

    #[test]
    fn accept_keys_sort_by_slot_and_parse_back() {
        assert!(accept_key(Slot(9)) < accept_key(Slot(10)));
        for slot in [0, 7, 12_345, u64::MAX] {
            assert_eq!(accept_key(Slot(slot)), format!("{ACCEPT_PREFIX}{slot:020}"));
        }
        assert_eq!(parse_accept_key(&accept_key(Slot(42))), Some(Slot(42)));
        assert_eq!(parse_accept_key("paxos/accept/12"), None);
    }
}
