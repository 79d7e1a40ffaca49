//! Client histories: one [`Operation`] per client request, with its invocation and
//! completion positions in one total order of events.

use serde::{Deserialize, Serialize};

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome<O> {
    /// Completed with this output: it took effect exactly once between invoke and complete.
    Ok(O),
    /// Definitely did not take effect (for example a failed compare-and-set).
    Fail,
    /// May or may not have taken effect, at any point after its invocation.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// The client (process) that issued it. A client has at most one operation open at a time.
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// How it ended.
    pub outcome: Outcome<O>,
    /// Position of the invocation in the history's total order of events.
    pub call: u64,
    /// Position of the completion; `u64::MAX` for operations that never completed.
    // invariant: call < ret, and no two events of one history share a position.
    pub ret: u64,
    /// Optional ordering hint (for example the log index the protocol assigned); a checker may
    /// try hinted orders first but must stay complete.
    pub hint: Option<u64>,
}

/// A client history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History<I, O> {
    pub operations: Vec<Operation<I, O>>,
}

impl<I, O> History<I, O> {
    /// An empty history (trivially linearizable).
    pub fn new() -> Self {
        History {
            operations: Vec::new(),
        }
    }
}
