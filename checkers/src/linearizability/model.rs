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

    /// A shortcut for [`Model::step`] that builds no state: `Some(true)` if `step` would push
    /// exactly `state` itself (possibly several times), `Some(false)` if it would push
    /// nothing, `None` to ask `step` (the default).
    fn keeps_state(
        &self,
        _state: &Self::State,
        _input: &Self::Input,
        _output: Option<&Self::Output>,
    ) -> Option<bool> {
        None
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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precedence {
    /// The first takes effect before the second.
    Before(usize, usize),
    /// `op` does not take effect after `after` and before `before`.
    NotBetween {
        op: usize,
        after: usize,
        before: usize,
    },
    /// `op` is a member of `group` (for [`Precedence::NoneBetween`]; an operation belongs to
    /// at most one group).
    Member { op: usize, group: usize },
    /// No member of `group` other than `after`, `before` and those in `except` takes effect
    /// after `after` and before `before`; with `after == None`, none takes effect before
    /// `before`. The same facts as one [`Precedence::NotBetween`] (or
    /// [`Precedence::Before`]`(before, op)`) per such member, in a word count that does not
    /// grow with the group.
    NoneBetween {
        group: usize,
        after: Option<usize>,
        before: usize,
        except: Vec<usize>,
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

fn register_keeps_state(
    state: &Option<i64>,
    input: &RegisterInput,
    output: Option<&RegisterOutput>,
) -> Option<bool> {
    (*input == RegisterInput::Read).then_some(!matches!(output, Some(seen) if seen != state))
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

    fn keeps_state(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<bool> {
        register_keeps_state(state, input, output)
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

    fn keeps_state(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<bool> {
        register_keeps_state(state, input, output)
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
        // Built entry by entry: cloning the whole state would copy the value being replaced.
        let with = |value: String| {
            let mut changed = BTreeMap::new();
            for (key, held) in state.iter().filter(|(key, _)| **key != input.key) {
                changed.insert(key.clone(), held.clone());
            }
            if !value.is_empty() {
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
            KvOp::Append(suffix) => {
                // Not `format!`: its machinery costs more than the copy (same capacity).
                let mut appended = String::new();
                appended.push_str(current);
                appended.push_str(suffix);
                next.push(with(appended));
            }
            KvOp::Cas { from, to } => {
                if current == from {
                    next.push(with(to.clone()));
                } else if output.is_none() {
                    next.push(state.clone());
                }
            }
        }
    }

    fn keeps_state(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<bool> {
        if input.op != KvOp::Get {
            return None;
        }
        let current = state.get(&input.key).map_or("", String::as_str);
        Some(!matches!(output, Some(Some(seen)) if seen != current))
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
        super::kv_order::kv_precedences(operations)
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
