//! A replicated key-value store: get, put, append and compare-and-set over string keys.
//!
//! Semantics (the linearizability model in the checkers states the same rules on its own):
//! - `Get { key }` returns the current value, `None` when the key is absent.
//! - `Put { key, value }` sets the value; returns `Written`.
//! - `Append { key, value }` concatenates `value` to the current value (an absent key counts
//!   as the empty string); returns `Written`.
//! - `Cas { key, expected, new }` sets `new` only if the current value equals `expected`
//!   (`None`: the key is absent); returns `Swapped(true)` when it did, else `Swapped(false)`.
//!
//! The state is a `BTreeMap`, so its snapshot (postcard) is canonical. The digest is
//! maintained incrementally: the wrapping sum of one stable hash per entry, so it does not
//! depend on the order of operations that led to a state, only on the state.
//!
//! Bounds: the store holds what the workload wrote; workloads are finite, so keys and values
//! are bounded by the workload's request count (see `workload.rs`).

use std::collections::BTreeMap;

use dst_sim::StateMachine;
use serde::{Deserialize, Serialize};

use crate::digest::{hash_bytes, hash_value};
use crate::service::Service;

/// Seed of the per-entry hash ("kv-entry").
const ENTRY_SEED: u64 = 0x6b76_2d65_6e74_7279;

/// A key-value command.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KvCommand {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Append {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl KvCommand {
    /// The key the command touches.
    pub fn key(&self) -> &str {
        match self {
            KvCommand::Get { key }
            | KvCommand::Put { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::Cas { key, .. } => key,
        }
    }

    /// True for commands that never change the state.
    pub fn is_read_only(&self) -> bool {
        matches!(self, KvCommand::Get { .. })
    }
}

/// The result of a key-value command.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// Result of `Get`: the value, or `None` for an absent key.
    Value(Option<String>),
    /// Result of `Put` and `Append`.
    Written,
    /// Result of `Cas`: whether the value was replaced.
    Swapped(bool),
}

/// The key-value state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    entries: BTreeMap<String, String>,
    // invariant: entries_hash == wrapping sum of entry_hash(key, value) over entries.
    entries_hash: u64,
}

fn entry_hash(key: &str, value: &str) -> u64 {
    hash_value(ENTRY_SEED, &(key, value))
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Number of keys present.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn set(&mut self, key: &str, value: String) {
        self.update(key, |slot| *slot = value);
    }

    /// Changes the value at `key` (an absent key starts empty) in place, keeping
    /// `entries_hash` up to date.
    fn update(&mut self, key: &str, change: impl FnOnce(&mut String)) {
        match self.entries.get_mut(key) {
            Some(slot) => {
                let old_hash = entry_hash(key, slot);
                change(slot);
                let new_hash = entry_hash(key, slot);
                self.entries_hash = self
                    .entries_hash
                    .wrapping_sub(old_hash)
                    .wrapping_add(new_hash);
            }
            None => {
                let mut value = String::new();
                change(&mut value);
                self.entries_hash = self.entries_hash.wrapping_add(entry_hash(key, &value));
                self.entries.insert(key.to_string(), value);
            }
        }
    }

    /// Answers a read-only command without changing the state; `None` for writes.
    pub fn query(&self, command: &KvCommand) -> Option<KvOutput> {
        match command {
            KvCommand::Get { key } => Some(KvOutput::Value(self.entries.get(key).cloned())),
            _ => None,
        }
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Output = KvOutput;

    fn apply(&mut self, command: &KvCommand) -> KvOutput {
        match command {
            KvCommand::Get { key } => KvOutput::Value(self.entries.get(key).cloned()),
            KvCommand::Put { key, value } => {
                self.set(key, value.clone());
                KvOutput::Written
            }
            KvCommand::Append { key, value } => {
                self.update(key, |joined| joined.push_str(value));
                KvOutput::Written
            }
            KvCommand::Cas { key, expected, new } => {
                let swapped = self.entries.get(key) == expected.as_ref();
                if swapped {
                    self.set(key, new.clone());
                }
                KvOutput::Swapped(swapped)
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        // Serialising a map of strings into a Vec cannot fail.
        postcard::to_allocvec(&self.entries).unwrap_or_default()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let (entries, rest): (BTreeMap<String, String>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|error| format!("kv snapshot: {error}"))?;
        if !rest.is_empty() {
            return Err(format!("kv snapshot: {} trailing bytes", rest.len()));
        }
        let mut store = KvStore::new();
        for (key, value) in entries {
            store.set(&key, value);
        }
        // Keys out of order or repeated decode to a map whose snapshot differs: refuse them,
        // so that one state has exactly one snapshot.
        if store.snapshot() != bytes {
            return Err("kv snapshot: not canonical (keys out of order or repeated)".to_string());
        }
        Ok(store)
    }

    fn digest(&self) -> u64 {
        let count = self.entries.len() as u64;
        hash_bytes(self.entries_hash, &count.to_le_bytes())
    }
}

impl Service for KvStore {
    fn is_read_only(command: &KvCommand) -> bool {
        command.is_read_only()
    }

    fn query(&self, command: &KvCommand) -> Option<KvOutput> {
        KvStore::query(self, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &str) -> KvCommand {
        KvCommand::Get {
            key: key.to_string(),
        }
    }
    fn put(key: &str, value: &str) -> KvCommand {
        KvCommand::Put {
            key: key.to_string(),
            value: value.to_string(),
        }
    }
    fn append(key: &str, value: &str) -> KvCommand {
        KvCommand::Append {
            key: key.to_string(),
            value: value.to_string(),
        }
    }
    fn cas(key: &str, expected: Option<&str>, new: &str) -> KvCommand {
        KvCommand::Cas {
            key: key.to_string(),
            expected: expected.map(str::to_string),
            new: new.to_string(),
        }
    }
    fn value(text: Option<&str>) -> KvOutput {
        KvOutput::Value(text.map(str::to_string))
    }

    #[test]
    fn get_of_an_absent_key_is_none() {
        let mut store = KvStore::new();
        assert_eq!(store.apply(&get("x")), value(None));
    }

    #[test]
    fn put_then_get_returns_the_value_and_put_overwrites() {
        let mut store = KvStore::new();
        assert_eq!(store.apply(&put("x", "1")), KvOutput::Written);
        assert_eq!(store.apply(&get("x")), value(Some("1")));
        store.apply(&put("x", "2"));
        assert_eq!(store.apply(&get("x")), value(Some("2")));
        assert_eq!(store.apply(&get("y")), value(None));
    }

    #[test]
    fn append_concatenates_and_treats_absent_as_empty() {
        let mut store = KvStore::new();
        store.apply(&append("x", "a"));
        store.apply(&append("x", "b"));
        assert_eq!(store.apply(&get("x")), value(Some("ab")));
    }

    #[test]
    fn cas_swaps_only_on_a_match() {
        let mut store = KvStore::new();
        assert_eq!(
            store.apply(&cas("x", Some("0"), "1")),
            KvOutput::Swapped(false)
        );
        assert_eq!(store.apply(&get("x")), value(None));
        assert_eq!(store.apply(&cas("x", None, "1")), KvOutput::Swapped(true));
        assert_eq!(store.apply(&cas("x", None, "2")), KvOutput::Swapped(false));
        assert_eq!(
            store.apply(&cas("x", Some("1"), "2")),
            KvOutput::Swapped(true)
        );
        assert_eq!(store.apply(&get("x")), value(Some("2")));
    }

    #[test]
    fn query_answers_reads_without_changing_state() {
        let mut store = KvStore::new();
        store.apply(&put("x", "1"));
        let before = store.digest();
        assert_eq!(store.query(&get("x")), Some(value(Some("1"))));
        assert_eq!(store.query(&put("x", "2")), None);
        assert_eq!(store.digest(), before);
    }

    #[test]
    fn digest_depends_on_the_state_not_the_path() {
        let mut one = KvStore::new();
        one.apply(&put("a", "1"));
        one.apply(&put("b", "2"));
        let mut two = KvStore::new();
        two.apply(&put("b", ""));
        two.apply(&append("b", "2"));
        two.apply(&cas("a", None, "1"));
        assert_eq!(one, two);
        assert_eq!(one.digest(), two.digest());
        two.apply(&put("a", "3"));
        assert_ne!(one.digest(), two.digest());
        assert_ne!(KvStore::new().digest(), one.digest());
    }

    #[test]
    fn snapshot_round_trips() {
        let mut store = KvStore::new();
        store.apply(&put("k1", "v1"));
        store.apply(&append("k0", "é ü"));
        store.apply(&put("", ""));
        let restored = KvStore::restore(&store.snapshot()).expect("own snapshot restores");
        assert_eq!(restored, store);
        assert_eq!(restored.digest(), store.digest());
        let empty = KvStore::restore(&KvStore::new().snapshot()).expect("empty restores");
        assert!(empty.is_empty());
    }

    #[test]
    fn restore_rejects_malformed_bytes() {
        let mut store = KvStore::new();
        store.apply(&put("a", "1"));
        store.apply(&put("b", "2"));
        let bytes = store.snapshot();
        assert!(
            KvStore::restore(&bytes[..bytes.len() - 1]).is_err(),
            "truncated"
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(KvStore::restore(&trailing).is_err(), "trailing");
        // Swap the two entries: same content, not canonical.
        let swapped = postcard::to_allocvec(&vec![("b", "2"), ("a", "1")]).expect("encode");
        assert!(KvStore::restore(&swapped).is_err(), "out of order");
        assert!(
            KvStore::restore(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
            "huge length"
        );
        assert!(KvStore::restore(&[1, 1, 0xc3]).is_err(), "invalid utf-8");
    }

    #[test]
    fn restore_never_panics_on_noise() {
        let mut source = dst_sim::SeededSource::new(11);
        for length in 0..2_000usize {
            let bytes: Vec<u8> = (0..length % 40).map(|_| source.next_u64() as u8).collect();
            if let Ok(store) = KvStore::restore(&bytes) {
                assert_eq!(
                    store.snapshot(),
                    bytes,
                    "a restored state re-encodes as its input"
                );
            }
        }
    }
}
