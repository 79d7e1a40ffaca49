//! Per-node durable storage with crash semantics.
//!
//! A node writes and deletes keys; reads see its own latest writes (the page cache). Writes
//! become durable only when a sync issued after them completes. On a crash every unsynced
//! write is lost, or (with storage faults on) survives whole or torn (a prefix of its bytes).
//! Storage faults also inject latent corruption on read (a bit flips in the stored copy and
//! stays flipped), misdirected writes (the bytes land under another key), a full disk and
//! I/O errors. Protocols must detect and handle all of these; the simulator only models them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::decision::{Decide, DecisionKind, DecisionSource};

/// Errors a node sees from its storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageError {
    /// The disk is full; the write did not happen.
    Full,
    /// A transient I/O error; the operation did not happen.
    Io,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Full => write!(formatter, "disk full"),
            StorageError::Io => write!(formatter, "I/O error"),
        }
    }
}

/// Storage fault rates, as integer parts per million so seeds keep their meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageFaults {
    /// On crash, chance that an unsynced write survives whole or torn instead of vanishing.
    pub crash_keep_ppm: u64,
    /// Chance a read flips one bit of the stored value (persistently).
    pub read_corrupt_ppm: u64,
    /// Chance a write lands under another existing key.
    pub misdirect_ppm: u64,
    /// Chance an operation fails with [`StorageError::Io`].
    pub io_error_ppm: u64,
    /// Capacity in bytes (keys plus values); 0 means unlimited.
    pub capacity_bytes: u64,
}

const PPM: u64 = 1_000_000;

/// A key as storage keeps it. Keys and values are shared between the page cache and the
/// pending writes (a write allocates its bytes once), and key listings share them too.
pub type StorageKey = Rc<str>;
type Key = StorageKey;
type Value = Rc<[u8]>;

/// A write not yet durable, with what it replaced so that a crash can undo it. Keeping the
/// undo record instead of a second, durable map makes a sync cost nothing per key.
#[derive(Clone, Debug)]
struct PendingWrite {
    sequence: u64,
    key: Key,
    value: Option<Value>,
    previous: Option<Value>,
}

/// Counters of what storage faults did, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStats {
    pub writes: u64,
    pub syncs: u64,
    pub lost_on_crash: u64,
    pub torn_on_crash: u64,
    pub kept_on_crash: u64,
    pub corrupted_reads: u64,
    pub misdirected_writes: u64,
    pub io_errors: u64,
    pub full_errors: u64,
}

/// One node's disk.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    // invariant: `current` with `pending` undone in reverse order is exactly what a crash
    // right now could not lose (the durable state).
    current: BTreeMap<Key, Value>,
    // invariant: the sum of key and value lengths over `current` (capacity checks).
    used_bytes: u64,
    pending: Vec<PendingWrite>,
    next_sequence: u64,
    faults: StorageFaults,
    // invariant: if set, `current` maps this key to this very value. Protocols read a write
    // back at once (to catch misdirected writes): that read skips the search.
    last_put: Option<(Key, Value)>,
    /// Spared latent damage for the rest of the run (see [`Storage::spare_damage`]).
    spared: bool,
    /// What storage faults did so far.
    pub stats: StorageStats,
}

impl Storage {
    /// An empty disk with the given fault rates.
    pub fn new(faults: StorageFaults) -> Self {
        Storage {
            faults,
            ..Storage::default()
        }
    }

    /// Replaces the fault rates (fault plans change them over a run; the quiet phase clears them).
    pub fn set_faults(&mut self, faults: StorageFaults) {
        self.faults = faults;
        if self.spared {
            self.spare_damage();
        }
    }

    /// Whether this disk suffered latent damage: a bit flip found by a read, or a write
    /// that landed under another key. (A write torn by a crash is not damage: it was never
    /// synced.)
    pub fn damaged(&self) -> bool {
        self.stats.corrupted_reads + self.stats.misdirected_writes > 0
    }

    /// No more latent damage for this disk in this run; its other faults stay.
    pub fn spare_damage(&mut self) {
        self.spared = true;
        self.faults.read_corrupt_ppm = 0;
        self.faults.misdirect_ppm = 0;
    }

    /// Sequence number of the latest write; a sync issued now covers writes up to it.
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Number of writes not yet durable.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    fn footprint(key: &str, value: &[u8]) -> u64 {
        (key.len() + value.len()) as u64
    }

    fn recount_used_bytes(&mut self) {
        self.used_bytes = self
            .current
            .iter()
            .map(|(key, value)| Self::footprint(key, value))
            .sum();
    }

    fn fail_io(&mut self, decisions: &mut dyn DecisionSource) -> bool {
        if decisions.chance(DecisionKind::Storage, self.faults.io_error_ppm, PPM) {
            self.stats.io_errors += 1;
            return true;
        }
        false
    }

    /// Buffers a write. It is visible to reads at once and durable after the next sync.
    /// The bytes are copied once, so a writer may pass a buffer it reuses.
    pub fn write(
        &mut self,
        key: &str,
        value: impl AsRef<[u8]>,
        decisions: &mut dyn DecisionSource,
    ) -> Result<(), StorageError> {
        let value = value.as_ref();
        if self.fail_io(decisions) {
            return Err(StorageError::Io);
        }
        if self.faults.capacity_bytes > 0 {
            let old = self.current.get(key).map_or(0, |v| Self::footprint(key, v));
            let new = Self::footprint(key, value);
            if self.used_bytes - old + new > self.faults.capacity_bytes {
                self.stats.full_errors += 1;
                return Err(StorageError::Full);
            }
        }
        let misdirected = self.maybe_misdirect(key, decisions);
        self.stats.writes += 1;
        match misdirected {
            Some(other) => self.put(&other, value),
            None => self.put(key, value),
        }
        Ok(())
    }

    /// Buffers a delete.
    pub fn delete(
        &mut self,
        key: &str,
        decisions: &mut dyn DecisionSource,
    ) -> Result<(), StorageError> {
        if self.fail_io(decisions) {
            return Err(StorageError::Io);
        }
        self.last_put = None;
        // The undo record keeps the page cache's own key when there was one.
        match self.current.remove_entry(key) {
            Some((shared, previous)) => self.record(shared, None, Some(previous)),
            None => self.record(Rc::from(key), None, None),
        }
        Ok(())
    }

    /// The key a misdirected write lands under instead of `key`, if this one is.
    fn maybe_misdirect(&mut self, key: &str, decisions: &mut dyn DecisionSource) -> Option<Key> {
        if self.current.len() > 1
            && decisions.chance(DecisionKind::Storage, self.faults.misdirect_ppm, PPM)
        {
            let index = decisions.below(DecisionKind::Storage, self.current.len() as u64);
            if let Some(other) = self.current.keys().nth(index as usize) {
                if &**other != key {
                    self.stats.misdirected_writes += 1;
                    return Some(Rc::clone(other));
                }
            }
        }
        None
    }

    /// A write to `key` as asked.
    fn put(&mut self, key: &str, value: &[u8]) {
        let value: Value = Rc::from(value);
        // One search whether the key is new (the common case: logs append) or not; a key
        // that exists keeps the page cache's own copy.
        let key: Key = Rc::from(key);
        let (key, previous) = match self.current.entry(Rc::clone(&key)) {
            Entry::Vacant(slot) => {
                slot.insert(Rc::clone(&value));
                (key, None)
            }
            Entry::Occupied(mut slot) => {
                let previous = slot.insert(Rc::clone(&value));
                (Rc::clone(slot.key()), Some(previous))
            }
        };
        self.last_put = Some((Rc::clone(&key), Rc::clone(&value)));
        self.record(key, Some(value), previous);
    }

    /// Books a change already made to the page cache: the byte count and the undo record.
    fn record(&mut self, key: Key, value: Option<Value>, previous: Option<Value>) {
        self.next_sequence += 1;
        if let Some(bytes) = &value {
            self.used_bytes += Self::footprint(&key, bytes);
        }
        if let Some(old) = &previous {
            self.used_bytes -= Self::footprint(&key, old);
        }
        self.pending.push(PendingWrite {
            sequence: self.next_sequence,
            key,
            value,
            previous,
        });
    }

    /// Reads the current value of a key.
    pub fn read(
        &mut self,
        key: &str,
        decisions: &mut dyn DecisionSource,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_with(key, decisions, |value| value.map(<[u8]>::to_vec))
    }

    /// Reads the current value of a key and hands it to `inspect` without copying it. Faults
    /// and decisions are exactly those of [`Storage::read`].
    pub fn read_with<R>(
        &mut self,
        key: &str,
        decisions: &mut dyn DecisionSource,
        inspect: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StorageError> {
        if self.fail_io(decisions) {
            return Err(StorageError::Io);
        }
        let value = match &self.last_put {
            Some((last, value)) if **last == *key => Some(value),
            _ => self.current.get(key),
        };
        let corrupt = value.is_some_and(|v| !v.is_empty())
            && decisions.chance(DecisionKind::Storage, self.faults.read_corrupt_ppm, PPM);
        if !corrupt {
            return Ok(inspect(value.map(|value| &**value)));
        }
        self.corrupt_on_read(key, decisions);
        Ok(inspect(self.current.get(key).map(|value| &**value)))
    }

    /// A latent bit flip found by a read (the decision to corrupt is already drawn).
    fn corrupt_on_read(&mut self, key: &str, decisions: &mut dyn DecisionSource) {
        self.last_put = None;
        let length_bits = self.current[key].len() as u64 * 8;
        let bit = decisions.below(DecisionKind::Storage, length_bits);
        self.stats.corrupted_reads += 1;
        // The stored copy flips, and so does the durable one if a pending write hides
        // it. Copy on write: the pending write's own bytes stay unflipped.
        let flip = |bytes: &mut Value| {
            if (bit / 8) < bytes.len() as u64 {
                Rc::make_mut(bytes)[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        };
        if let Some(bytes) = self.current.get_mut(key) {
            flip(bytes);
        }
        let hidden = self.pending.iter_mut().find(|write| &*write.key == key);
        if let Some(bytes) = hidden.and_then(|write| write.previous.as_mut()) {
            flip(bytes);
        }
    }

    /// Keys from `first` to `last` (both included), in order.
    pub fn keys_in_range(&self, first: &str, last: &str) -> Vec<StorageKey> {
        if first > last {
            return Vec::new();
        }
        self.current
            .range::<str, _>((Bound::Included(first), Bound::Included(last)))
            .map(|(key, _)| Rc::clone(key))
            .collect()
    }

    /// Keys starting with `prefix`, in order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<StorageKey> {
        self.current
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| Rc::clone(key))
            .collect()
    }

    /// Keys starting with `prefix`, in order, but for the last `keep` of them.
    pub fn keys_with_prefix_but_last(&self, prefix: &str, keep: usize) -> Vec<StorageKey> {
        let with_prefix = || {
            self.current
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
        };
        let excess = with_prefix().count().saturating_sub(keep);
        with_prefix()
            .take(excess)
            .map(|(key, _)| Rc::clone(key))
            .collect()
    }

    /// Completes a sync: every write with sequence `<= up_to` becomes durable.
    pub fn complete_sync(&mut self, up_to: u64) {
        self.stats.syncs += 1;
        let split = self
            .pending
            .partition_point(|write| write.sequence <= up_to);
        self.pending.drain(..split);
    }

    /// Turns `current` into the durable state; returns the undone writes, oldest first.
    fn undo_pending(&mut self) -> Vec<PendingWrite> {
        self.last_put = None;
        let mut pending = std::mem::take(&mut self.pending);
        for write in pending.iter_mut().rev() {
            match write.previous.take() {
                Some(old) => self.current.insert(Rc::clone(&write.key), old),
                None => self.current.remove(&write.key),
            };
        }
        pending
    }

    /// The node crashed: unsynced writes vanish, or with storage faults survive whole or torn.
    pub fn crash(&mut self, decisions: &mut dyn DecisionSource) {
        for write in self.undo_pending() {
            if !decisions.chance(DecisionKind::Storage, self.faults.crash_keep_ppm, PPM) {
                self.stats.lost_on_crash += 1;
                continue;
            }
            match write.value {
                None => {
                    self.stats.kept_on_crash += 1;
                    self.current.remove(&write.key);
                }
                Some(mut bytes) => {
                    // 0 keeps the write whole; anything else tears it to that many bytes.
                    let cut = decisions.below(DecisionKind::Storage, bytes.len() as u64 + 1);
                    if cut == 0 {
                        self.stats.kept_on_crash += 1;
                    } else {
                        self.stats.torn_on_crash += 1;
                        bytes = Rc::from(&bytes[..cut as usize - 1]);
                    }
                    self.current.insert(write.key, bytes);
                }
            }
        }
        self.recount_used_bytes();
    }

    /// The disk is wiped (a replaced machine).
    pub fn wipe(&mut self) {
        self.last_put = None;
        self.current.clear();
        self.pending.clear();
        self.used_bytes = 0;
    }

    /// What is durable now (a crash right now would leave exactly this), for tests and
    /// oracles.
    pub fn durable(&self) -> BTreeMap<Rc<str>, Rc<[u8]>> {
        let mut copy = self.clone();
        copy.undo_pending();
        copy.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SeededSource;

    #[test]
    fn unsynced_write_is_gone_after_crash() {
        let mut decisions = SeededSource::new(1);
        let mut disk = Storage::new(StorageFaults::default());
        disk.write("vote", b"n1", &mut decisions).unwrap();
        let synced = disk.last_sequence();
        disk.complete_sync(synced);
        disk.write("vote", b"n2", &mut decisions).unwrap();
        assert_eq!(
            disk.read("vote", &mut decisions).unwrap(),
            Some(b"n2".to_vec())
        );
        disk.crash(&mut decisions);
        assert_eq!(
            disk.read("vote", &mut decisions).unwrap(),
            Some(b"n1".to_vec())
        );
        assert_eq!(disk.stats.lost_on_crash, 1);
    }

    #[test]
    fn all_but_the_last_keys_of_a_prefix_are_listed_in_order() {
        let mut decisions = SeededSource::new(3);
        let mut disk = Storage::new(StorageFaults::default());
        for key in ["v/3", "v/1", "w/0", "v/2", "u/9", "v/4"] {
            disk.write(key, vec![1], &mut decisions).unwrap();
        }
        let all = disk.keys_with_prefix("v/");
        assert_eq!(all, ["v/1", "v/2", "v/3", "v/4"].map(StorageKey::from));
        for keep in 0..6 {
            let expected = &all[..all.len().saturating_sub(keep)];
            assert_eq!(
                disk.keys_with_prefix_but_last("v/", keep),
                expected,
                "keep {keep}"
            );
        }
        assert!(disk.keys_with_prefix_but_last("x/", 0).is_empty());
    }

    #[test]
    fn sync_covers_only_earlier_writes() {
        let mut decisions = SeededSource::new(2);
        let mut disk = Storage::new(StorageFaults::default());
        disk.write("a", vec![1], &mut decisions).unwrap();
        let covered = disk.last_sequence();
        disk.write("b", vec![2], &mut decisions).unwrap();
        disk.complete_sync(covered);
        disk.crash(&mut decisions);
        assert!(disk.durable().contains_key("a"));
        assert!(
            !disk.durable().contains_key("b"),
            "b was written after the sync"
        );
    }

    #[test]
    fn torn_writes_keep_a_prefix() {
        let mut torn = 0;
        for seed in 0..200 {
            let mut decisions = SeededSource::new(seed);
            let faults = StorageFaults {
                crash_keep_ppm: PPM,
                ..StorageFaults::default()
            };
            let mut disk = Storage::new(faults);
            let value: Vec<u8> = (0..32).collect();
            disk.write("log", value.clone(), &mut decisions).unwrap();
            disk.crash(&mut decisions);
            let durable = disk.durable();
            let survived = durable
                .get("log")
                .expect("kept writes survive in some form");
            assert!(
                value.starts_with(survived),
                "survivor is not a prefix: {survived:?}"
            );
            if survived.len() < value.len() {
                torn += 1;
            }
        }
        assert!(torn > 150, "only {torn} of 200 crashes tore the write");
    }

    #[test]
    fn latent_corruption_flips_a_bit_persistently() {
        let mut decisions = SeededSource::new(3);
        let faults = StorageFaults {
            read_corrupt_ppm: PPM,
            ..StorageFaults::default()
        };
        let mut disk = Storage::new(StorageFaults::default());
        disk.write("k", vec![0u8; 8], &mut decisions).unwrap();
        disk.complete_sync(disk.last_sequence());
        disk.set_faults(faults);
        let first = disk.read("k", &mut decisions).unwrap().unwrap();
        let ones: u32 = first.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1, "exactly one bit flips per corrupted read");
        disk.set_faults(StorageFaults::default());
        assert_eq!(disk.read("k", &mut decisions).unwrap().unwrap(), first);
        assert_eq!(disk.stats.corrupted_reads, 1);
    }

    #[test]
    fn full_disk_and_io_errors_are_reported() {
        let mut decisions = SeededSource::new(4);
        let mut disk = Storage::new(StorageFaults {
            capacity_bytes: 10,
            ..StorageFaults::default()
        });
        assert_eq!(disk.write("k", vec![0; 4], &mut decisions), Ok(()));
        assert_eq!(
            disk.write("j", vec![0; 8], &mut decisions),
            Err(StorageError::Full)
        );
        disk.set_faults(StorageFaults {
            io_error_ppm: PPM,
            ..StorageFaults::default()
        });
        assert_eq!(
            disk.write("k", vec![1], &mut decisions),
            Err(StorageError::Io)
        );
        assert_eq!(disk.read("k", &mut decisions), Err(StorageError::Io));
    }

    #[test]
    fn misdirected_write_lands_elsewhere() {
        let mut decisions = SeededSource::new(5);
        let mut disk = Storage::new(StorageFaults::default());
        for key in ["a", "b", "c"] {
            disk.write(key, vec![0], &mut decisions).unwrap();
        }
        disk.set_faults(StorageFaults {
            misdirect_ppm: PPM,
            ..StorageFaults::default()
        });
        for _ in 0..20 {
            disk.write("a", vec![9], &mut decisions).unwrap();
        }
        let elsewhere = ["b", "c"].iter().any(|key| *disk.current[*key] == vec![9]);
        assert!(elsewhere, "no write to a landed under another key");
        assert!(disk.stats.misdirected_writes > 0);
        // Read back at once, a misdirected write is missing from its own key.
        for value in 10..40u8 {
            let before = disk.stats.misdirected_writes;
            disk.write("a", vec![value], &mut decisions).unwrap();
            let read = disk.read("a", &mut decisions).unwrap();
            let misdirected = disk.stats.misdirected_writes > before;
            assert_eq!(read == Some(vec![value]), !misdirected, "value {value}");
        }
    }

    /// The plain model: a durable map and a page cache, synced writes copied across. The
    /// disk keeps undo records instead; both must agree on everything, faults included.
    #[derive(Default)]
    struct Model {
        durable: BTreeMap<String, Vec<u8>>,
        current: BTreeMap<String, Vec<u8>>,
        pending: Vec<(u64, String, Option<Vec<u8>>)>,
        sequence: u64,
    }

    impl Model {
        fn write(&mut self, key: &str, value: Option<Vec<u8>>) {
            self.sequence += 1;
            match &value {
                Some(bytes) => self.current.insert(key.to_string(), bytes.clone()),
                None => self.current.remove(key),
            };
            self.pending.push((self.sequence, key.to_string(), value));
        }

        fn sync(&mut self, up_to: u64) {
            for (_, key, value) in self.pending.iter().filter(|w| w.0 <= up_to) {
                match value {
                    Some(bytes) => self.durable.insert(key.clone(), bytes.clone()),
                    None => self.durable.remove(key),
                };
            }
            self.pending.retain(|w| w.0 > up_to);
        }

        fn crash(&mut self, faults: &StorageFaults, decisions: &mut dyn DecisionSource) {
            for (_, key, value) in std::mem::take(&mut self.pending) {
                if !decisions.chance(DecisionKind::Storage, faults.crash_keep_ppm, PPM) {
                    continue;
                }
                match value {
                    None => self.durable.remove(&key),
                    Some(mut bytes) => {
                        let cut = decisions.below(DecisionKind::Storage, bytes.len() as u64 + 1);
                        if cut > 0 {
                            bytes.truncate(cut as usize - 1);
                        }
                        self.durable.insert(key, bytes)
                    }
                };
            }
            self.current = self.durable.clone();
        }
    }

    fn as_plain(map: &BTreeMap<Rc<str>, Rc<[u8]>>) -> BTreeMap<String, Vec<u8>> {
        map.iter()
            .map(|(key, value)| (key.to_string(), value.to_vec()))
            .collect()
    }

    #[test]
    fn undo_records_match_a_durable_map_under_crashes() {
        for seed in 0..300 {
            let mut ops = SeededSource::new(seed);
            let mut decisions = SeededSource::new(seed ^ 0xd15c);
            let mut model_decisions = SeededSource::new(seed ^ 0xd15c);
            let faults = StorageFaults {
                crash_keep_ppm: 500_000,
                ..StorageFaults::default()
            };
            let mut disk = Storage::new(faults);
            let mut model = Model::default();
            for _ in 0..60 {
                let key = ["a", "b", "c", "d"][ops.below(DecisionKind::Storage, 4) as usize];
                match ops.below(DecisionKind::Storage, 10) {
                    0..=4 => {
                        let value = vec![ops.below(DecisionKind::Storage, 256) as u8; 3];
                        disk.write(key, value.clone(), &mut decisions).unwrap();
                        model.write(key, Some(value));
                    }
                    5 => {
                        disk.delete(key, &mut decisions).unwrap();
                        model.write(key, None);
                    }
                    6 | 7 => {
                        let up_to = disk
                            .last_sequence()
                            .saturating_sub(ops.below(DecisionKind::Storage, 3));
                        disk.complete_sync(up_to);
                        model.sync(up_to);
                    }
                    8 => {
                        let read = disk.read(key, &mut decisions).unwrap();
                        assert_eq!(read.as_ref(), model.current.get(key), "seed {seed}");
                    }
                    _ => {
                        assert_eq!(as_plain(&disk.durable()), model.durable, "seed {seed}");
                        disk.crash(&mut decisions);
                        model.crash(&faults, &mut model_decisions);
                        assert_eq!(as_plain(&disk.current), model.current, "seed {seed}");
                    }
                }
                if let Some((key, value)) = &disk.last_put {
                    let held = disk.current.get(key);
                    assert!(
                        held.is_some_and(|held| Rc::ptr_eq(held, value)),
                        "seed {seed}"
                    );
                }
                let used = disk.used_bytes;
                disk.recount_used_bytes();
                assert_eq!(used, disk.used_bytes, "seed {seed}: used bytes drifted");
            }
        }
    }

    #[test]
    fn keys_in_range_include_both_ends() {
        let mut decisions = SeededSource::new(7);
        let mut disk = Storage::new(StorageFaults::default());
        for key in ["a/1", "a/2", "a/3", "b/1"] {
            disk.write(key, vec![1], &mut decisions).unwrap();
        }
        let keys = |keys: [&str; 2]| keys.map(StorageKey::from);
        assert_eq!(disk.keys_in_range("a/2", "a/9"), keys(["a/2", "a/3"]));
        assert_eq!(disk.keys_in_range("a/", "a/2"), keys(["a/1", "a/2"]));
        assert!(disk.keys_in_range("a/3", "a/1").is_empty());
    }

    #[test]
    fn corruption_under_a_pending_write_reaches_the_durable_copy() {
        let mut decisions = SeededSource::new(6);
        let mut disk = Storage::new(StorageFaults::default());
        disk.write("k", vec![0u8; 4], &mut decisions).unwrap();
        disk.complete_sync(disk.last_sequence());
        disk.write("k", vec![0u8; 4], &mut decisions).unwrap();
        disk.set_faults(StorageFaults {
            read_corrupt_ppm: PPM,
            ..StorageFaults::default()
        });
        let read = disk.read("k", &mut decisions).unwrap().unwrap();
        disk.set_faults(StorageFaults::default());
        disk.crash(&mut decisions);
        let durable = disk.read("k", &mut decisions).unwrap().unwrap();
        assert_eq!(read, durable, "the durable copy flips at the same bit");
        assert_ne!(durable, vec![0u8; 4], "the durable copy was not corrupted");
    }
}
