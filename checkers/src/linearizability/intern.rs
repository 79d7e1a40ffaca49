//! Interning of model states and memoised transitions.
//!
//! The search never handles a model state directly: every state gets a dense `u32` id the first
//! time it is seen, and the successors of (operation, state) are computed once and then read
//! from a table. Registers have a handful of states, so their steps become array look-ups; models
//! with large state spaces (a whole key-value store) fall back to a hash table of transitions.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::model::Model;

/// A small, fast, deterministic hasher (multiply-rotate, in the style of rustc's FxHasher).
/// Hash-flooding is not a concern: the inputs are the checker's own states.
#[derive(Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = (self.hash.rotate_left(5) ^ value).wrapping_mul(SEED);
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Hash maps here are look-up tables only: nothing iterates them, so their order cannot leak
/// into a verdict or a witness.
#[allow(clippy::disallowed_types)]
pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// States with an id below this get a dense per-operation transition row.
const DENSE_STATES_MAX: usize = 64;
const NOT_COMPUTED: u64 = u64::MAX;
const NO_STATE: u32 = u32::MAX;
const LEN_BITS: u32 = 24;

/// Interned states and memoised transitions for the operations of one partition.
pub struct Interner<'m, M: Model> {
    model: &'m M,
    states: Vec<M::State>,
    /// State hash -> the latest state id with that hash; `same_hash` chains the others.
    ids: FastMap<u64, u32>,
    same_hash: Vec<u32>,
    /// Per operation, per dense state id: packed (start, len) into `successors`.
    dense: Vec<Vec<u64>>,
    sparse: FastMap<(u32, u32), u64>,
    successors: Vec<u32>,
    scratch: Vec<M::State>,
    /// Approximate bytes held, for the memory budget.
    pub bytes: usize,
}

impl<'m, M: Model> Interner<'m, M> {
    pub fn new(model: &'m M, operation_count: usize) -> Self {
        let mut interner = Interner {
            model,
            states: Vec::new(),
            ids: FastMap::default(),
            same_hash: Vec::new(),
            dense: vec![Vec::new(); operation_count],
            sparse: FastMap::default(),
            successors: Vec::new(),
            scratch: Vec::new(),
            bytes: 0,
        };
        interner.intern(model.init());
        interner
    }

    /// The id of the initial state.
    pub const INIT: u32 = 0;

    pub fn state_count(&self) -> usize {
        self.states.len()
    }

    fn intern(&mut self, state: M::State) -> u32 {
        let hash = BuildHasherDefault::<FastHasher>::default().hash_one(&state);
        let mut id = self.ids.get(&hash).copied().unwrap_or(NO_STATE);
        while id != NO_STATE {
            if self.states[id as usize] == state {
                return id;
            }
            id = self.same_hash[id as usize];
        }
        let id = u32::try_from(self.states.len()).expect("more than 2^32 model states");
        assert!(id != NO_STATE, "more than 2^32 - 1 model states");
        self.bytes += self.model.state_bytes(&state) + 24;
        self.same_hash
            .push(self.ids.insert(hash, id).unwrap_or(NO_STATE));
        self.states.push(state);
        id
    }

    /// The successor ids of `state` under operation `op` (index into the partition's
    /// operations), as a slice.
    pub fn step(
        &mut self,
        op: u32,
        state: u32,
        input: &M::Input,
        output: Option<&M::Output>,
    ) -> &[u32] {
        let packed = self.lookup(op, state);
        let packed = if packed == NOT_COMPUTED {
            let packed = self.compute(state, input, output);
            self.store(op, state, packed);
            packed
        } else {
            packed
        };
        let start = (packed >> LEN_BITS) as usize;
        let len = (packed & ((1 << LEN_BITS) - 1)) as usize;
        &self.successors[start..start + len]
    }

    fn lookup(&self, op: u32, state: u32) -> u64 {
        match self.dense[op as usize].get(state as usize) {
            Some(&packed) => packed,
            None if (state as usize) < DENSE_STATES_MAX => NOT_COMPUTED,
            None => *self.sparse.get(&(op, state)).unwrap_or(&NOT_COMPUTED),
        }
    }

    fn store(&mut self, op: u32, state: u32, packed: u64) {
        if (state as usize) < DENSE_STATES_MAX {
            let row = &mut self.dense[op as usize];
            if row.len() <= state as usize {
                self.bytes += (state as usize + 1 - row.len()) * 8;
                row.resize(state as usize + 1, NOT_COMPUTED);
            }
            row[state as usize] = packed;
        } else {
            if self.sparse.is_empty() {
                // Once states outgrow the dense rows most steps land here: room for one per
                // operation instead of rehashing step by step.
                self.sparse.reserve(self.dense.len());
            }
            self.bytes += 32;
            self.sparse.insert((op, state), packed);
        }
    }

    fn compute(&mut self, state: u32, input: &M::Input, output: Option<&M::Output>) -> u64 {
        let start = self.successors.len();
        let current = &self.states[state as usize];
        match self.model.keeps_state(current, input, output) {
            // `step` would give the state itself (which interns to its own id), or nothing.
            Some(true) => self.successors.push(state),
            Some(false) => {}
            None => {
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                self.model.step(current, input, output, &mut scratch);
                for next in scratch.drain(..) {
                    let id = self.intern(next);
                    // A nondeterministic model may name one successor twice; exploring it once
                    // is enough.
                    if !self.successors[start..].contains(&id) {
                        self.successors.push(id);
                    }
                }
                self.scratch = scratch;
            }
        }
        let len = self.successors.len() - start;
        self.bytes += len * 4;
        assert!(
            len < (1 << LEN_BITS),
            "a step with more than 2^24 successor states"
        );
        ((start as u64) << LEN_BITS) | len as u64
    }
}
