//! Sequential specifications the checker linearizes against.
//!
//! A [`Model`] is a pure step function over a cloneable, hashable state, in the style of
//! Porcupine: given a state, an input and the observed output, it says which states the
//! operation may lead to. Pushing no state means "illegal here"; pushing several makes the
//! model nondeterministic (the checker explores every choice). An optional partition function
//! splits a history into independent sub-histories (Horn & Kroening's P-compositionality): the
//! history is linearizable iff every partition is.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// A sequential specification.
pub trait Model: Sync {
    /// What a client asks.
    type Input: Clone + Debug + Eq + Hash + Send + Sync;
    /// What a client observed.
    type Output: Clone + Debug + PartialEq + Send + Sync;
    /// The object's state.
    type State: Clone + Debug + Eq + Hash + Send + Sync;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Pushes onto `next` every state `input` may lead to from `state` when it returned
    /// `output`; `output` is `None` when the operation's result was not observed (it may have
    /// taken effect with any output). Pushing nothing means the operation cannot happen here.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
        next: &mut Vec<Self::State>,
    );

    /// The partition an operation belongs to, if the model is P-compositional (for example the
    /// key of a key-value operation). `None` puts every operation in one partition.
    fn partition(&self, _input: &Self::Input) -> Option<String> {
        None
    }

    /// True if the operation never changes the state, whatever the state and output (a read).
    /// The search linearizes such operations eagerly; saying false is always safe.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Ordering facts every linearization has, as far as the model can prove them from the
    /// operations alone (indices into `operations`: one partition's operations that may have
    /// happened, with their output, `None` = unknown). The search prunes with them, so they
    /// must follow from the model's semantics: a wrong one makes a linearizable history look
    /// illegal. Saying nothing is always safe.
    fn precedences(
        &self,
        _operations: &[(&Self::Input, Option<&Self::Output>)],
    ) -> Vec<Precedence> {
        Vec::new()
    }

    /// Approximate bytes a state holds (for the memory budget), heap included.
    fn state_bytes(&self, _state: &Self::State) -> usize {
        std::mem::size_of::<Self::State>()
    }

    /// A short human-readable rendering of an operation, for witnesses and explanations.
    fn describe(&self, input: &Self::Input, output: Option<&Self::Output>) -> String {
        match output {
            Some(output) => format!("{input:?} -> {output:?}"),
            None => format!("{input:?} -> ?"),
        }
    }
}

/// An ordering fact about operations (indices into the slice given to
/// [`Model::precedences`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precedence {
    /// The first takes effect before the second.
    Before(usize, usize),
    /// `op` does not take effect after `after` and before `before`.
    NotBetween {
        op: usize,
        after: usize,
        before: usize,
    },
}

/// A register or CAS-register operation. Values are integers; the register starts at nil.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterInput {
    Read,
    Write(i64),
    /// Compare-and-set: succeeds (an `Ok` outcome) iff the register holds `from`.
    Cas {
        from: i64,
        to: i64,
    },
}

/// A register operation's output: the value a read returned (`None` = nil); writes and
/// compare-and-sets carry `None` (their success is the `Ok` outcome itself).
pub type RegisterOutput = Option<i64>;

/// A read/write register (Jepsen's `register`), initially nil. Compare-and-set is illegal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

/// A read/write/compare-and-set register (Jepsen's `cas-register`, the etcd model), initially
/// nil. A read of nil is legal only while the register is nil.
#[derive(Clone, Copy, Debug, Default)]
pub struct CasRegister;

fn register_step(
    state: &Option<i64>,
    input: &RegisterInput,
    output: Option<&RegisterOutput>,
    next: &mut Vec<Option<i64>>,
) {
    match input {
        RegisterInput::Read => match output {
            Some(seen) if seen != state => {}
            _ => next.push(*state),
        },
        RegisterInput::Write(value) => next.push(Some(*value)),
        RegisterInput::Cas { from, to } => {
            if *state == Some(*from) {
                next.push(Some(*to));
            } else if output.is_none() {
                // An unobserved compare-and-set whose compare fails leaves the state alone.
                next.push(*state);
            }
        }
    }
}

fn register_describe(input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
    let shown = |value: &Option<i64>| value.map_or("nil".to_string(), |v| v.to_string());
    match (input, output) {
        (RegisterInput::Read, Some(value)) => format!("read() -> {}", shown(value)),
        (RegisterInput::Read, None) => "read() -> ?".to_string(),
        (RegisterInput::Write(value), Some(_)) => format!("write({value})"),
        (RegisterInput::Write(value), None) => format!("write({value}) ?"),
        (RegisterInput::Cas { from, to }, Some(_)) => format!("cas({from}, {to})"),
        (RegisterInput::Cas { from, to }, None) => format!("cas({from}, {to}) ?"),
    }
}

impl Model for Register {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<i64>;

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        *input == RegisterInput::Read
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
        next: &mut Vec<Option<i64>>,
    ) {
        if !matches!(input, RegisterInput::Cas { .. }) {
            register_step(state, input, output, next);
        }
    }

    fn describe(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        register_describe(input, output)
    }
}

impl Model for CasRegister {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<i64>;

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        *input == RegisterInput::Read
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
        next: &mut Vec<Option<i64>>,
    ) {
        register_step(state, input, output, next);
    }

    fn describe(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        register_describe(input, output)
    }
}

/// A key-value operation. Every key starts as the empty string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvInput {
    pub key: String,
    pub op: KvOp,
}

/// What a key-value operation does to its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Get,
    Put(String),
    Append(String),
    /// Compare-and-set: succeeds (an `Ok` outcome) iff the key holds `from`.
    Cas {
        from: String,
        to: String,
    },
}

/// A key-value operation's output: the value a get returned; `None` for the others.
pub type KvOutput = Option<String>;

/// A key-value store with get/put/append/cas, partitioned by key. Its state maps keys to
/// non-empty values (an absent key holds the empty string), so one model serves both a single
/// key's partition and the whole store (`--no-partition`).
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyValue;

impl Model for KeyValue {
    type Input = KvInput;
    type Output = KvOutput;
    type State = BTreeMap<String, String>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
        next: &mut Vec<Self::State>,
    ) {
        let current = state.get(&input.key).map_or("", String::as_str);
        let with = |value: String| {
            let mut changed = state.clone();
            if value.is_empty() {
                changed.remove(&input.key);
            } else {
                changed.insert(input.key.clone(), value);
            }
            changed
        };
        match &input.op {
            KvOp::Get => match output {
                Some(Some(seen)) if seen != current => {}
                _ => next.push(state.clone()),
            },
            KvOp::Put(value) => next.push(with(value.clone())),
            KvOp::Append(suffix) => next.push(with(format!("{current}{suffix}"))),
            KvOp::Cas { from, to } => {
                if current == from {
                    next.push(with(to.clone()));
                } else if output.is_none() {
                    next.push(state.clone());
                }
            }
        }
    }

    fn state_bytes(&self, state: &Self::State) -> usize {
        // BTreeMap nodes hold up to 11 entries; count an entry's share plus its strings.
        let entry = std::mem::size_of::<(String, String)>() * 2;
        std::mem::size_of::<Self::State>()
            + state
                .iter()
                .map(|(k, v)| entry + k.capacity() + v.capacity())
                .sum::<usize>()
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        input.op == KvOp::Get
    }

    fn partition(&self, input: &KvInput) -> Option<String> {
        Some(input.key.clone())
    }

    fn precedences(&self, operations: &[(&KvInput, Option<&KvOutput>)]) -> Vec<Precedence> {
        kv_precedences(operations)
    }

    fn describe(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let key = &input.key;
        match (&input.op, output) {
            (KvOp::Get, Some(Some(value))) => format!("get({key}) -> {value:?}"),
            (KvOp::Get, _) => format!("get({key}) -> ?"),
            (KvOp::Put(value), _) => format!("put({key}, {value:?})"),
            (KvOp::Append(value), _) => format!("append({key}, {value:?})"),
            (KvOp::Cas { from, to }, _) => format!("cas({key}, {from:?}, {to:?})"),
        }
    }
}

/// Orderings a get's value proves. A key's value is the value of the last put (or successful
/// compare-and-set) followed by the appends after it, in order. If a get's value splits into
/// "optional reset value, then append values" in exactly one way (as strings), every
/// linearization has writes of exactly those values, in that order, before the get. A piece
/// written by exactly one operation names that operation, so the uniquely named pieces are
/// ordered among themselves and the last of them precedes the get. A write of a value that is
/// not a piece did not happen between the reset and the get: it comes before the reset or
/// after the get (after the get if there is no reset piece, as no write is empty). A get whose
/// value cannot be split is left to the search, which will find it illegal.
fn kv_precedences(operations: &[(&KvInput, Option<&KvOutput>)]) -> Vec<Precedence> {
    let mut keys: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, (input, _)) in operations.iter().enumerate() {
        keys.entry(input.key.as_str()).or_default().push(index);
    }
    let mut edges = Vec::new();
    for members in keys.values() {
        key_precedences(operations, members, &mut edges);
    }
    // Duplicates are harmless (the search counts them in and out alike).
    edges
}

/// The writers of each value written to one key: (operation, resets the key?).
struct Writes<'v> {
    by_value: BTreeMap<&'v str, Vec<(usize, bool)>>,
    lengths: Vec<usize>,
}

impl Writes<'_> {
    /// The one operation that can have written `piece` at a start (`first`) or after it.
    fn only_writer(&self, piece: &str, first: bool) -> Option<usize> {
        let mut writers = self
            .by_value
            .get(piece)?
            .iter()
            .filter(|(_, resets)| first || !resets);
        let (writer, _) = writers.next()?;
        writers.next().is_none().then_some(*writer)
    }

    /// Like `only_writer`, with whether that writer resets the key.
    fn only_writer_flagged(&self, piece: &str, first: bool) -> Option<(usize, bool)> {
        let mut writers = self
            .by_value
            .get(piece)?
            .iter()
            .filter(|(_, resets)| first || !resets);
        let writer = *writers.next()?;
        writers.next().is_none().then_some(writer)
    }

    fn can_write(&self, piece: &str, first: bool) -> bool {
        self.by_value
            .get(piece)
            .is_some_and(|writers| writers.iter().any(|(_, resets)| first || !resets))
    }
}

fn writes<'v>(operations: &[(&'v KvInput, Option<&KvOutput>)], members: &[usize]) -> Writes<'v> {
    let mut by_value: BTreeMap<&str, Vec<(usize, bool)>> = BTreeMap::new();
    for &index in members {
        let (value, resets) = match &operations[index].0.op {
            KvOp::Get => continue,
            KvOp::Put(value) => (value.as_str(), true),
            KvOp::Cas { to, .. } => (to.as_str(), true),
            KvOp::Append(value) => (value.as_str(), false),
        };
        by_value.entry(value).or_default().push((index, resets));
    }
    let mut lengths: Vec<usize> = by_value.keys().map(|value| value.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    Writes { by_value, lengths }
}

fn key_precedences(
    operations: &[(&KvInput, Option<&KvOutput>)],
    members: &[usize],
    edges: &mut Vec<Precedence>,
) {
    let writes = writes(operations, members);
    // An empty write splits nothing and could hide anywhere: no claims.
    if writes.lengths.first().is_none_or(|&length| length == 0) {
        return;
    }
    for &get in members {
        let (input, Some(Some(value))) = operations[get] else {
            continue;
        };
        if input.op != KvOp::Get || value.is_empty() {
            continue;
        }
        let Some(pieces) = unique_split(value, &writes) else {
            continue;
        };
        let named: Vec<usize> = pieces
            .iter()
            .enumerate()
            .filter_map(|(i, piece)| writes.only_writer(piece, i == 0))
            .collect();
        let mut distinct = named.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != named.len() {
            continue; // one write used twice: the get is impossible, the search will say so
        }
        for pair in named.windows(2) {
            edges.push(Precedence::Before(pair[0], pair[1]));
        }
        if let Some(&last) = named.last() {
            edges.push(Precedence::Before(last, get));
        }
        // Who reset the key last before the get: nobody, or the one writer of the first piece.
        let reset = match writes.only_writer_flagged(pieces[0], true) {
            Some((first, true)) => Some(first),
            Some((_, false)) => None,
            None => continue, // several candidates: no claims about the others
        };
        let mut piece_values = pieces.clone();
        piece_values.sort_unstable();
        for (value, writers) in &writes.by_value {
            if piece_values.binary_search(value).is_ok() {
                continue;
            }
            for &(write, _) in writers {
                edges.push(match reset {
                    None => Precedence::Before(get, write),
                    Some(reset) => Precedence::NotBetween {
                        op: write,
                        after: reset,
                        before: get,
                    },
                });
            }
        }
    }
}

/// The pieces `value` is made of, if it splits into written values in exactly one way.
fn unique_split<'a>(value: &'a str, writes: &Writes<'_>) -> Option<Vec<&'a str>> {
    let bytes = value.len();
    // ways[i]: number of splits of value[..i] (capped at 2); from[i]: where the last piece starts.
    let mut ways = vec![0u8; bytes + 1];
    let mut from = vec![0usize; bytes + 1];
    ways[0] = 1;
    // Forward, from reachable positions only (a handful of piece lengths, so this is cheap).
    for start in 0..bytes {
        if ways[start] == 0 {
            continue;
        }
        for &length in &writes.lengths {
            let end = start + length;
            if end > bytes {
                break;
            }
            let Some(piece) = value.get(start..end) else {
                continue;
            };
            if writes.can_write(piece, start == 0) {
                ways[end] = (ways[end] + ways[start]).min(2);
                from[end] = start;
            }
        }
    }
    if ways[bytes] != 1 {
        return None;
    }
    let mut pieces = Vec::new();
    let mut end = bytes;
    while end > 0 {
        let start = from[end];
        pieces.push(&value[start..end]);
        end = start;
    }
    pieces.reverse();
    Some(pieces)
}
