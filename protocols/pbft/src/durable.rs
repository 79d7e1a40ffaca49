//! Durable safety data: record layout and a key-bound checksummed encoding.
//!
//! Keys (all under `pbft/`):
//! - `pbft/meta/0`, `pbft/meta/1`: [`Meta`] (view, view-change flag); both copies written in
//!   turn, the valid copy with the higher version wins: a bit flip in one copy leaves the
//!   other, and a crash tears at most the copy being written.
//! - `pbft/stable/0`, `pbft/stable/1`: [`StableRecord`] (the stable checkpoint and its proof),
//!   like meta.
//! - `pbft/ckpt/<seq>`: [`CheckpointRecord`], this replica's own service snapshot at a
//!   checkpoint, written (and synced) before its CHECKPOINT message leaves.
//! - `pbft/pp/<seq>/<0|1>`: [`PrePrepareRecord`] (two copies, like meta), the pre-prepare accepted (or, at the primary,
//!   issued) for the slot in the current view, synced before the PREPARE (or PRE-PREPARE)
//!   leaves: a replica never prepares two requests for one slot and view, even across a crash.
//! - `pbft/pc/<seq>/<0|1>`: [`PreparedCert`], the slot's latest prepared certificate, synced
//!   before the COMMIT leaves; a new certificate goes to the copy not holding the current
//!   one, so a torn write never destroys the certificate a view change must carry.
//!
//! Every value is `len, len, postcard(record), sha256(key ++ len ++ len ++ body)`. A crash that
//! tears a write leaves a prefix (both lengths agree and exceed what is there): torn, never
//! acknowledged. Anything else that fails the checksum is corrupt (a flipped bit or a
//! misdirected write): it may have been acknowledged.

use dst_sim::Digest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::message::{ClientRequest, Seq, Statement, View};
use dst_sim::Signed;

pub const META_KEYS: [&str; 2] = ["pbft/meta/0", "pbft/meta/1"];
pub const STABLE_KEYS: [&str; 2] = ["pbft/stable/0", "pbft/stable/1"];
pub const CHECKPOINT_PREFIX: &str = "pbft/ckpt/";
pub const PRE_PREPARE_PREFIX: &str = "pbft/pp/";
pub const PREPARED_PREFIX: &str = "pbft/pc/";

const HEADER_BYTES: usize = 8;
const CHECKSUM_BYTES: usize = 32;

/// The view this replica is in, and whether it is changing views.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub view: View,
    pub view_changing: bool,
}

/// The stable checkpoint: `2f + 1` signed CHECKPOINT statements for `(seq, digest)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableRecord {
    pub version: u64,
    pub seq: Seq,
    pub digest: Digest,
    pub proof: Vec<Signed<Statement>>,
}

/// This replica's service snapshot after executing `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub seq: Seq,
    pub snapshot: Vec<u8>,
}

/// The pre-prepare a slot holds in `statement.view`, with its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepareRecord<C> {
    pub statement: Signed<Statement>,
    pub request: Option<ClientRequest<C>>,
}

/// Why a stored value could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A prefix of an unsynced write: never acted upon.
    Torn,
    /// Full length but wrong: may have been acted upon.
    Corrupt,
}

pub fn checkpoint_key(seq: Seq) -> String {
    format!("{CHECKPOINT_PREFIX}{:020}", seq.0)
}

pub fn pre_prepare_keys(seq: Seq) -> [String; 2] {
    [0, 1].map(|copy| format!("{PRE_PREPARE_PREFIX}{:020}/{copy}", seq.0))
}

pub fn prepared_key(seq: Seq, copy: u8) -> String {
    format!("{PREPARED_PREFIX}{:020}/{copy}", seq.0)
}

/// The sequence number in a key under `prefix` (`<prefix><20 digits>[/...]`).
pub fn parse_seq(prefix: &str, key: &str) -> Option<Seq> {
    let rest = key.strip_prefix(prefix)?;
    let digits = rest.get(..20)?;
    digits.parse().ok().map(Seq)
}

fn checksum(key: &str, bytes: &[u8]) -> Digest {
    Digest::of_bytes(key.as_bytes()).chain(&Digest::of_bytes(bytes))
}

/// Encodes `record` for `key`.
pub fn encode<T: Serialize>(key: &str, record: &T) -> Vec<u8> {
    let Ok(body) = postcard::to_allocvec(record) else {
        // Our own records always encode; an empty value decodes as torn, never as data.
        return Vec::new();
    };
    let total = (HEADER_BYTES + body.len() + CHECKSUM_BYTES) as u32;
    let mut bytes = Vec::with_capacity(total as usize);
    bytes.extend_from_slice(&total.to_le_bytes());
    bytes.extend_from_slice(&total.to_le_bytes());
    bytes.extend_from_slice(&body);
    let sum = checksum(key, &bytes);
    bytes.extend_from_slice(&sum.0);
    bytes
}

/// Decodes a value stored under `key`.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, RecordError> {
    if value.len() < HEADER_BYTES {
        return Err(RecordError::Torn);
    }
    let length = |at: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&value[at..at + 4]);
        u32::from_le_bytes(word) as usize
    };
    let (first, second) = (length(0), length(4));
    if first == second && value.len() < first {
        return Err(RecordError::Torn);
    }
    if first != second || value.len() != first || first < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(RecordError::Corrupt);
    }
    let (data, sum) = value.split_at(first - CHECKSUM_BYTES);
    if checksum(key, data).0[..] != *sum {
        return Err(RecordError::Corrupt);
    }
    postcard::from_bytes(&data[HEADER_BYTES..]).map_err(|_| RecordError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_detect_tears_corruption_and_misdirection() {
        let meta = Meta {
            version: 3,
            view: View(7),
            view_changing: true,
        };
        let bytes = encode(META_KEYS[0], &meta);
        assert_eq!(decode::<Meta>(META_KEYS[0], &bytes), Ok(meta));
        for cut in 0..bytes.len() {
            assert_eq!(
                decode::<Meta>(META_KEYS[0], &bytes[..cut]),
                Err(RecordError::Torn),
                "cut at {cut}"
            );
        }
        for index in 8..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0x10;
            assert_eq!(
                decode::<Meta>(META_KEYS[0], &flipped),
                Err(RecordError::Corrupt),
                "flip at {index}"
            );
        }
        assert_eq!(
            decode::<Meta>(META_KEYS[1], &bytes),
            Err(RecordError::Corrupt),
            "a misdirected write must not decode under another key"
        );
    }

    #[test]
    fn keys_parse_back() {
        assert_eq!(
            parse_seq(PREPARED_PREFIX, &prepared_key(Seq(42), 1)),
            Some(Seq(42))
        );
        assert_eq!(
            parse_seq(PRE_PREPARE_PREFIX, &pre_prepare_keys(Seq(9))[1]),
            Some(Seq(9))
        );
        assert_eq!(parse_seq(PRE_PREPARE_PREFIX, "pbft/pp/12"), None);
    }
}
