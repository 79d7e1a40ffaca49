//! Durable records: the safety record and committed blocks.
//!
//! Layout (all keys under `hotstuff/`):
//! - `hotstuff/safety/<version>-<last voted round>-<locked round>` (20 digits each): one
//!   [`SafetyRecord`] per version, never overwritten. A new version is written, read back
//!   (a misdirected write would leave its key absent) and synced before the vote it
//!   protects leaves. The rounds are also in the key name, which storage
//!   faults never touch: if the newest record is unreadable (torn by a crash before its sync,
//!   or a latent bit flip), recovery still knows lower bounds of the last voted round and of
//!   the locked round, and treats them as floors. Versions older than [`SAFETY_VERSIONS_KEPT`]
//!   behind the newest are deleted.
//! - `hotstuff/block/<height>` and `hotstuff/mirror/<height>`: two copies of the committed
//!   block at that height, each written when it commits and read back (rewritten, a bounded
//!   number of times, until the read returns what was written: an I/O error or a misdirected
//!   write is retried, not silently dropped). A read takes the first copy that decodes and
//!   rewrites a damaged one from it. Committed blocks leave memory, so these records are the
//!   only copies a lagging or restarted replica can fetch; losing one height on every
//!   up-to-date replica stalls the cluster forever (that is how single best-effort writes
//!   lost liveness under the `swarm` profile). A restarted replica re-executes the
//!   contiguous hash chain it finds from genesis and fetches the rest from peers.
//! - `hotstuff/chain/<round>-<digest>`: an uncommitted block this replica voted for, or an
//!   ancestor of one, written (read back) before the safety record whose sync the vote
//!   waits for, so a certified block survives in the disks of its voters even if all of
//!   them crash before it commits (memory alone lost such a block in `swarm` seeds 1033 and
//!   2979: every voter crashed in turn, the QC lived on, and no replica could serve its
//!   block). A restarted replica reloads them; records at or below the committed round are
//!   deleted as blocks commit.
//!
//! Every value is `postcard(record) ++ checksum(key, postcard(record))` (8 bytes;
//! `dst_protocols::digest::record_checksum`), so a torn write, a flipped bit or a misdirected
//! write (bytes under another key) all fail to decode instead of yielding a wrong record.

use dst_protocols::text::push_digits;
use dst_sim::Digest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{Qc, Round};

pub const SAFETY_PREFIX: &str = "hotstuff/safety/";
pub const BLOCK_PREFIX: &str = "hotstuff/block/";
pub const MIRROR_PREFIX: &str = "hotstuff/mirror/";
pub const CHAIN_PREFIX: &str = "hotstuff/chain/";
/// Safety record versions kept on disk; older ones are deleted as new ones are written.
pub const SAFETY_VERSIONS_KEPT: u64 = 64;

const CHECKSUM_BYTES: usize = 8;

/// What a replica promised: never vote at or below `last_voted_round`, never vote against
/// `locked_qc`. `high_qc` is kept so a restarted replica can propose and time out at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyRecord {
    pub version: u64,
    pub last_voted_round: Round,
    pub locked_qc: Qc,
    pub high_qc: Qc,
}

/// The key of a safety record.
pub fn safety_key(record: &SafetyRecord) -> String {
    let mut key = key_of(SAFETY_PREFIX, record.version);
    key.push('-');
    push_digits(&mut key, record.last_voted_round.0, 10, 20);
    key.push('-');
    push_digits(&mut key, record.locked_qc.round.0, 10, 20);
    key
}

/// `(version, last voted round, locked round)` from a safety key.
pub fn parse_safety_key(key: &str) -> Option<(u64, Round, Round)> {
    let rest = key.strip_prefix(SAFETY_PREFIX)?;
    let mut parts = rest.split('-');
    let mut number = || -> Option<u64> {
        let digits = parts.next()?;
        if digits.len() != 20 {
            return None;
        }
        digits.parse().ok()
    };
    let parsed = (number()?, Round(number()?), Round(number()?));
    parts.next().is_none().then_some(parsed)
}

/// The key of the committed block at `height` (its first copy).
pub fn block_key(height: u64) -> String {
    key_of(BLOCK_PREFIX, height)
}

/// Both keys of the committed block at `height`: the copy and its mirror. Faults hit keys
/// independently (a misdirected write overwrites one key; a latent flip damages one value),
/// so a height is lost only if both are.
pub fn block_keys(height: u64) -> [String; 2] {
    [block_key(height), key_of(MIRROR_PREFIX, height)]
}

/// The key of an uncommitted block of `round` with digest `digest`.
pub fn chain_key(round: Round, digest: &Digest) -> String {
    let mut key = key_of(CHAIN_PREFIX, round.0);
    key.push('-');
    push_digits(&mut key, digest.short(), 16, 16);
    key
}

/// `prefix` and `number` as 20 zero-padded decimal digits (`format!("{prefix}{number:020}")`,
/// which cost more than the write it names: keys are built on every vote and commit).
fn key_of(prefix: &str, number: u64) -> String {
    let mut key = String::with_capacity(prefix.len() + 64);
    key.push_str(prefix);
    push_digits(&mut key, number, 10, 20);
    key
}

/// The round in a chain key.
pub fn parse_chain_round(key: &str) -> Option<Round> {
    let rest = key.strip_prefix(CHAIN_PREFIX)?;
    let (round, digest) = rest.split_once('-')?;
    if round.len() != 20 || digest.len() != 16 {
        return None;
    }
    round.parse().ok().map(Round)
}

/// Seed of the record checksums ("hsrecord" in ASCII).
const CHECKSUM_SEED: u64 = 0x6873_7265_636f_7264;

/// The shared record checksum (key bound in). It detects accidents (torn and misdirected
/// writes, flipped bits), which is all a local disk needs; SHA-256 here cost a quarter of
/// a 1,000-operation run. Same width as before, so a record's length did not change.
fn checksum(key: &str, body: &[u8]) -> u64 {
    dst_protocols::digest::record_checksum(CHECKSUM_SEED, key, body)
}

/// Encodes a record for `key`.
pub fn encode<T: Serialize>(key: &str, record: &T) -> Vec<u8> {
    // Our own records always encode; an empty value never decodes as data.
    let mut bytes = postcard::to_allocvec(record).unwrap_or_default();
    if bytes.is_empty() {
        return bytes;
    }
    let sum = checksum(key, &bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// Decodes a record stored under `key`; None if torn, flipped, misdirected or garbage.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    let body_len = value.len().checked_sub(CHECKSUM_BYTES)?;
    let (body, tail) = value.split_at(body_len);
    let mut stored = [0u8; CHECKSUM_BYTES];
    stored.copy_from_slice(tail);
    if u64::from_le_bytes(stored) != checksum(key, body) {
        return None;
    }
    let (record, rest) = postcard::take_from_bytes(body).ok()?;
    rest.is_empty().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SafetyRecord {
        SafetyRecord {
            version: 3,
            last_voted_round: Round(9),
            locked_qc: Qc::genesis(Digest::of_bytes(b"g")),
            high_qc: Qc::genesis(Digest::of_bytes(b"h")),
        }
    }

    #[test]
    fn keys_are_formatted_as_before() {
        for number in [0u64, 7, 42, 1_000_000, u64::MAX] {
            assert_eq!(block_key(number), format!("{BLOCK_PREFIX}{number:020}"));
            let round = Round(number);
            let digest = Digest::of_bytes(&number.to_le_bytes());
            assert_eq!(
                chain_key(round, &digest),
                format!("{CHAIN_PREFIX}{number:020}-{:016x}", digest.short())
            );
        }
    }

    #[test]
    fn records_round_trip_and_keys_parse_back() {
        let record = record();
        let key = safety_key(&record);
        assert_eq!(
            decode::<SafetyRecord>(&key, &encode(&key, &record)),
            Some(record)
        );
        assert_eq!(parse_safety_key(&key), Some((3, Round(9), Round(0))));
        assert_eq!(key, format!("{SAFETY_PREFIX}{:020}-{:020}-{:020}", 3, 9, 0));
        assert_eq!(parse_safety_key("hotstuff/safety/1-2-3"), None);
        assert!(block_key(9) < block_key(10));
        let digest = Digest::of_bytes(b"c");
        assert_eq!(
            parse_chain_round(&chain_key(Round(12), &digest)),
            Some(Round(12))
        );
        assert!(chain_key(Round(9), &digest) < chain_key(Round(10), &digest));
        assert_eq!(parse_chain_round("hotstuff/chain/12-ab"), None);
        let [copy, mirror] = block_keys(9);
        assert_eq!(copy, block_key(9));
        assert_ne!(copy, mirror, "the mirror has its own key");
        let block = Qc::genesis(Digest::of_bytes(b"b"));
        assert_eq!(decode::<Qc>(&mirror, &encode(&copy, &block)), None);
    }

    #[test]
    fn torn_flipped_and_misdirected_records_do_not_decode() {
        let record = record();
        let key = safety_key(&record);
        let bytes = encode(&key, &record);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode::<SafetyRecord>(&key, &bytes[..cut]),
                None,
                "cut {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode::<SafetyRecord>(&key, &flipped), None, "bit {bit}");
        }
        assert_eq!(decode::<SafetyRecord>(&block_key(1), &bytes), None);
    }
}
