//! Per-node durable storage with crash semantics.
//!
//! A node writes and deletes keys; reads see its own latest writes (the page cache). Writes
//! become durable only when a sync issued after them completes. On a crash every unsynced
//! write is lost, or (with storage faults on) survives whole or torn (a prefix of its bytes).
//! Storage faults also inject latent corruption on read (a bit flips in the stored copy and
//! stays flipped), misdirected writes (the bytes land under another key), a full disk and
//! I/O errors. Protocols must detect and handle all of these; the simulator only models them.

use std::collections::BTreeMap;

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

#[derive(Clone, Debug)]
struct PendingWrite {
    sequence: u64,
    key: String,
    value: Option<Vec<u8>>,
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
    // invariant: `durable` is exactly what a crash right now could not lose.
    durable: BTreeMap<String, Vec<u8>>,
    // invariant: `current` is `durable` with `pending` applied in order.
    current: BTreeMap<String, Vec<u8>>,
    pending: Vec<PendingWrite>,
    next_sequence: u64,
    faults: StorageFaults,
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
    }

    /// Sequence number of the latest write; a sync issued now covers writes up to it.
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Number of writes not yet durable.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    fn used_bytes(&self) -> u64 {
        self.current
            .iter()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum()
    }

    fn fail_io(&mut self, decisions: &mut dyn DecisionSource) -> bool {
        if decisions.chance(DecisionKind::Storage, self.faults.io_error_ppm, PPM) {
            self.stats.io_errors += 1;
            return true;
        }
        false
    }

    /// Buffers a write. It is visible to reads at once and durable after the next sync.
    pub fn write(
        &mut self,
        key: &str,
        value: Vec<u8>,
        decisions: &mut dyn DecisionSource,
    ) -> Result<(), StorageError> {
        if self.fail_io(decisions) {
            return Err(StorageError::Io);
        }
        if self.faults.capacity_bytes > 0 {
            let old = self
                .current
                .get(key)
                .map_or(0, |v| (key.len() + v.len()) as u64);
            let new = (key.len() + value.len()) as u64;
            if self.used_bytes() - old + new > self.faults.capacity_bytes {
                self.stats.full_errors += 1;
                return Err(StorageError::Full);
            }
        }
        let key = self.maybe_misdirect(key, decisions);
        self.stats.writes += 1;
        self.apply_pending(key, Some(value));
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
        self.apply_pending(key.to_string(), None);
        Ok(())
    }

    fn maybe_misdirect(&mut self, key: &str, decisions: &mut dyn DecisionSource) -> String {
        if self.current.len() > 1
            && decisions.chance(DecisionKind::Storage, self.faults.misdirect_ppm, PPM)
        {
            let index = decisions.below(DecisionKind::Storage, self.current.len() as u64);
            if let Some(other) = self.current.keys().nth(index as usize) {
                if other != key {
                    self.stats.misdirected_writes += 1;
                    return other.clone();
                }
            }
        }
        key.to_string()
    }

    fn apply_pending(&mut self, key: String, value: Option<Vec<u8>>) {
        self.next_sequence += 1;
        match &value {
            Some(bytes) => {
                self.current.insert(key.clone(), bytes.clone());
            }
            None => {
                self.current.remove(&key);
            }
        }
        self.pending.push(PendingWrite {
            sequence: self.next_sequence,
            key,
            value,
        });
    }

    /// Reads the current value of a key.
    pub fn read(
        &mut self,
        key: &str,
        decisions: &mut dyn DecisionSource,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if self.fail_io(decisions) {
            return Err(StorageError::Io);
        }
        let corrupt = self.current.get(key).is_some_and(|v| !v.is_empty())
            && decisions.chance(DecisionKind::Storage, self.faults.read_corrupt_ppm, PPM);
        if corrupt {
            let length_bits = self.current[key].len() as u64 * 8;
            let bit = decisions.below(DecisionKind::Storage, length_bits);
            self.stats.corrupted_reads += 1;
            for map in [&mut self.current, &mut self.durable] {
                if let Some(bytes) = map.get_mut(key) {
                    if (bit / 8) < bytes.len() as u64 {
                        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
                    }
                }
            }
        }
        Ok(self.current.get(key).cloned())
    }

    /// Keys starting with `prefix`, in order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.current
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Completes a sync: every write with sequence `<= up_to` becomes durable.
    pub fn complete_sync(&mut self, up_to: u64) {
        self.stats.syncs += 1;
        let split = self
            .pending
            .partition_point(|write| write.sequence <= up_to);
        for write in self.pending.drain(..split) {
            match write.value {
                Some(bytes) => {
                    self.durable.insert(write.key, bytes);
                }
                None => {
                    self.durable.remove(&write.key);
                }
            }
        }
    }

    /// The node crashed: unsynced writes vanish, or with storage faults survive whole or torn.
    pub fn crash(&mut self, decisions: &mut dyn DecisionSource) {
        for write in std::mem::take(&mut self.pending) {
            if !decisions.chance(DecisionKind::Storage, self.faults.crash_keep_ppm, PPM) {
                self.stats.lost_on_crash += 1;
                continue;
            }
            match write.value {
                None => {
                    self.stats.kept_on_crash += 1;
                    self.durable.remove(&write.key);
                }
                Some(mut bytes) => {
                    // 0 keeps the write whole; anything else tears it to that many bytes.
                    let cut = decisions.below(DecisionKind::Storage, bytes.len() as u64 + 1);
                    if cut == 0 {
                        self.stats.kept_on_crash += 1;
                    } else {
                        self.stats.torn_on_crash += 1;
                        bytes.truncate(cut as usize - 1);
                    }
                    self.durable.insert(write.key, bytes);
                }
            }
        }
        self.current = self.durable.clone();
    }

    /// The disk is wiped (a replaced machine).
    pub fn wipe(&mut self) {
        self.durable.clear();
        self.current.clear();
        self.pending.clear();
    }

    /// What is durable now, for tests and oracles.
    pub fn durable(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.durable
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
        disk.write("vote", b"n1".to_vec(), &mut decisions).unwrap();
        let synced = disk.last_sequence();
        disk.complete_sync(synced);
        disk.write("vote", b"n2".to_vec(), &mut decisions).unwrap();
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
            let survived = disk
                .durable()
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
        let elsewhere = ["b", "c"].iter().any(|key| disk.current[*key] == vec![9]);
        assert!(elsewhere, "no write to a landed under another key");
        assert!(disk.stats.misdirected_writes > 0);
    }
}
