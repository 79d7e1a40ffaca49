//! Lowe's memo: the set of (linearized operations, model state) configurations already
//! explored, with a bounded memory.
//!
//! The linearized set is hashed incrementally (Zobrist): each operation owns two random 64-bit
//! words, and lifting or unlifting it XORs them into the running hash, so a configuration's key
//! costs O(1) instead of a pass over the bitset. The state id is mixed into the key. The key is
//! 128 bits wide; two distinct configurations share one with probability about 2^-128 per pair,
//! which is the (documented) price of not storing whole bitsets.
//!
//! The table grows up to its byte budget, then becomes lossy: a new key overwrites an old one.
//! Forgetting a configuration only means it may be explored again, never a wrong verdict.

/// Deterministic 64-bit mixer (splitmix64 finaliser).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The Zobrist words of operation `index` (the same for every run: witnesses stay deterministic).
pub fn zobrist(index: usize) -> (u64, u64) {
    let base = (index as u64).wrapping_mul(2);
    (splitmix64(base), splitmix64(base + 1))
}

/// A configuration key: the linearized set's hash combined with the state id.
pub fn key(hash: (u64, u64), state: u32) -> [u64; 2] {
    let mixed = splitmix64(u64::from(state) ^ 0x5eed);
    let key = [hash.0 ^ mixed, hash.1.wrapping_add(u64::from(state))];
    if key == EMPTY {
        [0, 1]
    } else {
        key
    }
}

const EMPTY: [u64; 2] = [0, 0];
const PROBES: usize = 8;
const SLOT_BYTES: usize = 16;
const INITIAL_SLOTS: usize = 1 << 10;

/// An open-addressing set of configuration keys with a byte budget.
pub struct Memo {
    slots: Vec<[u64; 2]>,
    len: usize,
    slots_max: usize,
    /// Keys overwritten since the table reached its budget.
    pub evictions: u64,
}

impl Memo {
    pub fn new(bytes_max: usize) -> Self {
        let slots_max = (bytes_max / SLOT_BYTES)
            .next_power_of_two()
            .max(INITIAL_SLOTS);
        let slots_max = if slots_max * SLOT_BYTES > bytes_max.max(INITIAL_SLOTS * SLOT_BYTES) {
            slots_max / 2
        } else {
            slots_max
        };
        Memo {
            slots: vec![EMPTY; INITIAL_SLOTS.min(slots_max)],
            len: 0,
            slots_max,
            evictions: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    /// Inserts `key`; returns true if it was not there (the configuration is new).
    pub fn insert(&mut self, key: [u64; 2]) -> bool {
        if self.len * 2 >= self.slots.len() && self.slots.len() < self.slots_max {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let home = (key[0] as usize) & mask;
        for probe in 0..PROBES {
            let slot = &mut self.slots[(home + probe) & mask];
            if *slot == key {
                return false;
            }
            if *slot == EMPTY {
                *slot = key;
                self.len += 1;
                return true;
            }
        }
        // Full neighbourhood: forget one old configuration (only pruning is lost).
        let victim = (home + (key[1] as usize % PROBES)) & mask;
        self.slots[victim] = key;
        self.evictions += 1;
        true
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.len = 0;
        for key in old.into_iter().filter(|key| *key != EMPTY) {
            self.insert(key);
        }
    }
}
