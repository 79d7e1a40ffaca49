//! Safety and liveness oracles over what a simulation recorded.
//!
//! The oracles read a [`RunRecord`] (client invocations and completions, node commits and
//! applies, in run order) and return typed [`Violation`]s, each naming the [`Property`] that
//! broke and a short detail (slot, nodes, requests). They re-derive everything from the
//! record; none of them calls protocol code.
//!
//! Properties, stated over the record:
//! - **agreement**: all commits of one slot carry the same entry (request identity and
//!   command digest), across nodes and across one node's incarnations; an apply of a slot
//!   names the request committed there.
//! - **durability**: every acknowledged write was committed (by at least
//!   [`SafetyOptions::committers_required`] nodes), no later than its acknowledgement, and the
//!   slot it was committed at never later holds another entry.
//! - **validity**: a committed request was invoked by its client before the commit, with the
//!   same command digest.
//! - **exactly_once**: every node's state digest after applying a slot is the same; a request
//!   identity is committed at one slot only or, where sessions deduplicate at apply time
//!   ([`SafetyOptions::duplicate_log_entries_allowed`]), its repeats change no state; a
//!   request completes once.
//! - **liveness** (see [`liveness`]): after the quiet phase every pending request of a correct
//!   client completes within a bound, judged only when recovery was possible.
//! - **invariant:NAME**: protocol-specific checks registered in an [`InvariantRegistry`], or
//!   reported by nodes themselves.

mod index;
pub mod invariants;
pub mod liveness;
pub mod record;
pub mod safety;
pub mod speculative;
#[cfg(test)]
mod tests;

pub use index::RequestMap;
pub use invariants::{reported_violations, InvariantRegistry};
pub use liveness::{check_liveness, LivenessInput, LivenessReport};
pub use record::{
    Abandonment, ApplyRecord, CommitRecord, Completion, Entry, Invocation, ReportedViolation,
    RequestId, RunRecord,
};
pub use safety::{check_agreement, check_durability, check_exactly_once, check_validity};

use serde::{Deserialize, Serialize};

/// The property a violation breaks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Property {
    Agreement,
    Durability,
    Validity,
    ExactlyOnce,
    Liveness,
    /// The client history is not linearizable (reported by harnesses that run the
    /// linearizability checker next to these oracles).
    Linearizability,
    /// A protocol-specific invariant, by its registered name.
    Invariant(String),
    /// A replica's or client's handler panicked: an assertion in the code under test fired
    /// (reported by harnesses from the simulator's summary).
    Panic,
}

impl std::fmt::Display for Property {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Property::Agreement => formatter.write_str("agreement"),
            Property::Durability => formatter.write_str("durability"),
            Property::Validity => formatter.write_str("validity"),
            Property::ExactlyOnce => formatter.write_str("exactly_once"),
            Property::Liveness => formatter.write_str("liveness"),
            Property::Linearizability => formatter.write_str("linearizability"),
            Property::Invariant(name) => write!(formatter, "invariant:{name}"),
            Property::Panic => formatter.write_str("panic"),
        }
    }
}

/// One broken property, with a short human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    pub property: Property,
    pub detail: String,
}

impl Violation {
    /// A violation of `property`.
    pub fn new(property: Property, detail: impl Into<String>) -> Self {
        Violation {
            property,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.property, self.detail)
    }
}

/// At most this many violations are listed per property and check; the rest are counted in
/// one summary line, so that one broken slot early in a run does not bury the report.
pub const VIOLATIONS_PER_PROPERTY_MAX: usize = 16;

/// Collects violations of one property, keeping the first [`VIOLATIONS_PER_PROPERTY_MAX`].
pub(crate) struct Collector {
    property: Property,
    listed: Vec<Violation>,
    suppressed: usize,
}

impl Collector {
    pub(crate) fn new(property: Property) -> Self {
        Collector {
            property,
            listed: Vec::new(),
            suppressed: 0,
        }
    }

    pub(crate) fn property(&self) -> &Property {
        &self.property
    }

    pub(crate) fn report(&mut self, detail: String) {
        if self.listed.len() < VIOLATIONS_PER_PROPERTY_MAX {
            self.listed
                .push(Violation::new(self.property.clone(), detail));
        } else {
            self.suppressed += 1;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Violation> {
        if self.suppressed > 0 {
            let detail = format!("... and {} more", self.suppressed);
            self.listed.push(Violation::new(self.property, detail));
        }
        self.listed
    }
}

/// Options of the safety oracles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyOptions {
    /// How many distinct nodes must have reported committing an acknowledged write. 1 is
    /// always sound; a majority is sound only when every node of it reports every slot it
    /// learns (no slots skipped by snapshot installation) and the run healed long enough.
    pub committers_required: u32,
    /// Allow one request identity in several log slots, for protocols that deduplicate
    /// retries when applying (client sessions, as in Raft's thesis) rather than when
    /// appending. Allowed (the default), a repeated entry must then leave the state digest
    /// unchanged on every node that applied both it and the slot before. Not allowed, the log
    /// itself must hold each request once.
    pub duplicate_log_entries_allowed: bool,
    /// Speculative protocols (Zyzzyva, FastBFT) answer clients before any replica knows the
    /// entry is final: a completion may precede the first commit, which must still come.
    pub speculative_acknowledgements: bool,
}

impl Default for SafetyOptions {
    fn default() -> Self {
        SafetyOptions {
            committers_required: 1,
            duplicate_log_entries_allowed: true,
            speculative_acknowledgements: false,
        }
    }
}

/// Runs agreement, durability, validity and exactly-once, and turns node-reported invariant
/// breaks into violations. Liveness needs more input: see [`check_liveness`].
pub fn check_safety(record: &RunRecord, options: &SafetyOptions) -> Vec<Violation> {
    let views = index::Views::new(record);
    let mut violations = safety::agreement(&views);
    violations.extend(safety::durability(record, &views, options));
    violations.extend(safety::validity(record, &views));
    violations.extend(safety::exactly_once(record, &views, options));
    violations.extend(reported_violations(record));
    violations
}
