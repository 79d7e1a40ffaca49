//! Durable records: encoding with a key-bound checksum, and what a restarting node finds.
//!
//! Layout (all keys under `raft/`):
//! - `raft/meta/0`, `raft/meta/1`: two copies of [`Meta`] (term, vote, recovery), written
//!   together; the valid copy with the higher `version` wins. Two copies let a node survive a
//!   latent bit flip in one of them.
//! - `raft/snap/0`, `raft/snap/1`: snapshot slots. A new snapshot goes into the slot not
//!   holding the latest durable one, so a torn snapshot write never destroys the only copy.
//! - `raft/log/<index, 20 digits>`: one [`LogRecord`] per entry, carrying the previous entry's
//!   term so that a log stitched together from writes of different times is detected.
//!
//! Every value is `postcard(record) ++ checksum(key, postcard(record))` (8 bytes, little
//! endian; `dst_protocols::digest::record_checksum`). Binding the key into the checksum makes
//! a misdirected write (bytes landing under another key) look corrupt instead of valid.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::message::{Entry, LogIndex, Term};
use dst_sim::NodeId;

pub const META_KEYS: [&str; 2] = ["raft/meta/0", "raft/meta/1"];
pub const SNAPSHOT_KEYS: [&str; 2] = ["raft/snap/0", "raft/snap/1"];
pub const LOG_PREFIX: &str = "raft/log/";
pub const ALL_PREFIX: &str = "raft/";

const CHECKSUM_SEED: u64 = 0x7261_6674_5f64_6973;
const CHECKSUM_BYTES: usize = 8;
const HEADER_BYTES: usize = 8;

/// Term, vote and recovery state (Figure 2's persistent state, minus the log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Grows with every write, so the newer of two copies is known.
    pub version: u64,
    pub current_term: Term,
    pub voted_for: Option<NodeId>,
    /// Set while the node rebuilds a log it found damaged: it may not vote until its log
    /// matches a leader's up to `last_index` (or the leader's whole log).
    pub recovery: Option<Recovery>,
    /// This machine's incarnation: 0 on its first disk, a fresh non-zero draw after the
    /// disk was found wiped (a new member; see the crate docs).
    pub incarnation: u64,
    /// Set after a wipe until the node finds its incarnation among the voters of its
    /// latest configuration: it neither votes nor stands, and asks the leader to rejoin.
    pub rejoining: bool,
    /// The highest term of any entry (or snapshot) this node stored, raised in the same
    /// write-and-sync step as the entries, so before any of them is acknowledged. A node
    /// that finds its log damaged bounds the terms it may have acknowledged by this, not by
    /// its current term (elections that appended nothing would inflate that bound, and a
    /// majority of recovering nodes could then refuse every candidate for good).
    pub entry_term_max: Term,
}

/// A node that found part of its log damaged must not vote until it holds every entry it
/// may have acknowledged. `last_index` bounds those: the highest log key it found on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub term: Term,
    pub last_index: LogIndex,
}

/// One persisted log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord<C> {
    pub entry: Entry<C>,
    /// Term of the entry before this one (the snapshot's term for the first entry after it).
    pub prev_term: Term,
}

/// A [`LogRecord`] that borrows its entry: it encodes to the same bytes (postcard writes
/// a reference as its target), so persisting an entry needs no copy of it.
#[derive(Serialize)]
pub struct LogRecordRef<'a, C> {
    pub entry: &'a Entry<C>,
    pub prev_term: Term,
}

/// A snapshot of the applied state up to and including `last_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The latest configuration at or before `last_index` (configurations are carried in
    /// snapshots so compaction never forgets who votes).
    pub config: crate::membership::Configuration,
    /// The service state with its session table (`Sessions::snapshot`).
    pub data: Vec<u8>,
}

/// Why a stored value could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its header says (or than a header): an unsynced write cut short by a
    /// crash. Never acknowledged, unless it overwrote an entry a newer leader superseded.
    Torn,
    /// Full length but wrong: a flipped bit, a misdirected write, or garbage. May have been
    /// acknowledged.
    Corrupt,
}

/// Digits of a log key's index: `u64::MAX` has 20, so every index fits zero-padded.
const LOG_KEY_DIGITS: usize = 20;
const LOG_KEY_BYTES: usize = LOG_PREFIX.len() + LOG_KEY_DIGITS;

/// A log key built on the stack: one is made for every entry written, and `format!` plus
/// a heap string cost several times as much.
pub struct LogKey([u8; LOG_KEY_BYTES]);

impl LogKey {
    /// The key of log entry `index`: the prefix and the index in 20 zero-padded digits.
    pub fn new(index: LogIndex) -> Self {
        let mut bytes = [b'0'; LOG_KEY_BYTES];
        bytes[..LOG_PREFIX.len()].copy_from_slice(LOG_PREFIX.as_bytes());
        let mut rest = index.0;
        // Digits from the right until the index is used up; the rest stay zero padding.
        for digit in bytes[LOG_PREFIX.len()..].iter_mut().rev() {
            if rest == 0 {
                break;
            }
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        LogKey(bytes)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or(LOG_PREFIX)
    }
}

/// The key of log entry `index`.
pub fn log_key(index: LogIndex) -> String {
    LogKey::new(index).as_str().to_owned()
}

/// The index in a log key, if it is one.
pub fn parse_log_key(key: &str) -> Option<LogIndex> {
    let digits = key.strip_prefix(LOG_PREFIX)?;
    if digits.len() != LOG_KEY_DIGITS {
        return None;
    }
    digits.parse().ok().map(LogIndex)
}

/// Encodes a record for `key`: `len, len, postcard(record), checksum`, where `len` (u32,
/// little endian, twice) is the whole value's length. A crash that tears the write leaves a
/// prefix: both copies of `len` agree and exceed what is there. A flipped bit never
/// shortens a value and breaks either a `len` copy or the checksum: corrupt.
pub fn encode<T: Serialize>(key: &str, record: &T) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(64);
    encode_into(key, record, &mut buffer);
    buffer
}

/// [`encode`] into `buffer` (cleared first), so that a writer can reuse one allocation.
pub fn encode_into<T: Serialize>(key: &str, record: &T, buffer: &mut Vec<u8>) {
    // The record is serialised in place after a header filled in once its length is known.
    let mut bytes = std::mem::take(buffer);
    bytes.clear();
    bytes.extend_from_slice(&[0; HEADER_BYTES]);
    let mut bytes = match dst_sim::encode::append(record, bytes) {
        Ok(bytes) => bytes,
        // Our own records always encode; an empty value decodes as torn, never as data.
        Err(_) => return,
    };
    let total = ((bytes.len() + CHECKSUM_BYTES) as u32).to_le_bytes();
    bytes[..4].copy_from_slice(&total);
    bytes[4..HEADER_BYTES].copy_from_slice(&total);
    let checksum = record_checksum(key, &bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    *buffer = bytes;
}

/// Decodes a record stored under `key`, telling torn writes from corruption.
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
    if first == second && first > value.len() {
        return Err(RecordError::Torn);
    }
    if first != second || first != value.len() || value.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(RecordError::Corrupt);
    }
    let (covered, tail) = value.split_at(value.len() - CHECKSUM_BYTES);
    let mut stored = [0u8; CHECKSUM_BYTES];
    stored.copy_from_slice(tail);
    if u64::from_le_bytes(stored) != record_checksum(key, covered) {
        return Err(RecordError::Corrupt);
    }
    postcard::from_bytes(&covered[HEADER_BYTES..]).map_err(|_| RecordError::Corrupt)
}

fn record_checksum(key: &str, body: &[u8]) -> u64 {
    dst_protocols::digest::record_checksum(CHECKSUM_SEED, key, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let meta = Meta {
            version: 3,
            current_term: Term(7),
            voted_for: Some(NodeId(2)),
            recovery: None,
            incarnation: 0,
            rejoining: false,
            entry_term_max: Term(5),
        };
        let bytes = encode(META_KEYS[0], &meta);
        assert_eq!(decode::<Meta>(META_KEYS[0], &bytes), Ok(meta));
    }

    #[test]
    fn torn_flipped_and_misdirected_records_are_detected() {
        let meta = Meta {
            version: 1,
            current_term: Term(4),
            voted_for: Some(NodeId(1)),
            recovery: None,
            incarnation: 0,
            rejoining: false,
            entry_term_max: Term(5),
        };
        let bytes = encode(META_KEYS[0], &meta);
        for cut in 0..bytes.len() {
            let torn = decode::<Meta>(META_KEYS[0], &bytes[..cut]);
            assert_eq!(torn, Err(RecordError::Torn), "torn at {cut}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let decoded = decode::<Meta>(META_KEYS[0], &flipped);
            assert_eq!(decoded, Err(RecordError::Corrupt), "bit {bit} flip");
        }
        assert_eq!(
            decode::<Meta>(META_KEYS[1], &bytes),
            Err(RecordError::Corrupt),
            "a record under the wrong key must not decode"
        );
    }

    #[test]
    fn borrowed_log_record_encodes_like_the_owned_one() {
        let request = dst_protocols::Request {
            client: dst_sim::ClientId(2),
            sequence: 5,
            command: "put x 1".to_string(),
        };
        let entry = Entry::new(Term(3), LogIndex(9), Some(request), None);
        let key = log_key(entry.index);
        let owned = LogRecord {
            entry: entry.clone(),
            prev_term: Term(2),
        };
        let borrowed = LogRecordRef {
            entry: &entry,
            prev_term: Term(2),
        };
        let mut reused = vec![1, 2, 3];
        encode_into(&key, &borrowed, &mut reused);
        assert_eq!(
            encode(&key, &owned),
            reused,
            "same bytes from a reused buffer"
        );
        let decoded = decode::<LogRecord<String>>(&key, &reused);
        assert_eq!(decoded, Ok(owned));
    }

    #[test]
    fn log_keys_sort_by_index_and_parse_back() {
        assert!(log_key(LogIndex(9)) < log_key(LogIndex(10)));
        assert_eq!(parse_log_key(&log_key(LogIndex(42))), Some(LogIndex(42)));
        assert_eq!(parse_log_key("raft/log/12"), None);
        for index in [0, 7, 10, 99_999, u64::MAX / 3, u64::MAX] {
            let expected = format!("{LOG_PREFIX}{index:020}");
            assert_eq!(log_key(LogIndex(index)), expected, "key of index {index}");
        }
    }
}
