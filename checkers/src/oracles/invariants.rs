//! Protocol-specific invariants: named checks a protocol registers (for example Raft's
//! election safety or Paxos's "a chosen value never changes"), and invariant breaks that
//! nodes report about themselves.
//!
//! A registry is generic over what its checks read: a protocol can register checks over the
//! [`RunRecord`], or over its own view of the whole cluster (the checkers never see the
//! protocol's types, the protocol passes them in). Each failing check becomes a violation of
//! the property `invariant:<name>`.

use super::record::RunRecord;
use super::safety::at;
use super::{Collector, Property, Violation};

/// A named check; `Err(detail)` means the invariant broke.
type Check<T> = Box<dyn Fn(&T) -> Result<(), String>>;

/// Named invariants over a `T`, checked in registration order.
pub struct InvariantRegistry<T> {
    checks: Vec<(String, Check<T>)>,
}

impl<T> Default for InvariantRegistry<T> {
    fn default() -> Self {
        InvariantRegistry { checks: Vec::new() }
    }
}

impl<T> std::fmt::Debug for InvariantRegistry<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InvariantRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl<T> InvariantRegistry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a check under `name`; names must be unique and non-empty.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        check: impl Fn(&T) -> Result<(), String> + 'static,
    ) -> &mut Self {
        let name = name.into();
        assert!(!name.is_empty(), "invariant names must be non-empty");
        assert!(
            self.checks.iter().all(|(known, _)| *known != name),
            "invariant {name:?} registered twice"
        );
        self.checks.push((name, Box::new(check)));
        self
    }

    /// The registered names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Runs every check; one violation per failing check.
    pub fn check(&self, subject: &T) -> Vec<Violation> {
        self.checks
            .iter()
            .filter_map(|(name, check)| {
                check(subject)
                    .err()
                    .map(|detail| Violation::new(Property::Invariant(name.clone()), detail))
            })
            .collect()
    }
}

/// Invariant breaks the nodes reported themselves. `what` reads `"name: detail"`; without a
/// name the property is `invariant:protocol`.
pub fn reported_violations(record: &RunRecord) -> Vec<Violation> {
    let mut by_name: Vec<Collector> = Vec::new();
    for reported in &record.reported {
        let (name, detail) = match reported.what.split_once(':') {
            Some((name, detail)) if is_name(name) => (name.to_string(), detail.trim()),
            _ => ("protocol".to_string(), reported.what.as_str()),
        };
        let property = Property::Invariant(name);
        let position = match by_name
            .iter()
            .position(|collector| collector.property() == &property)
        {
            Some(position) => position,
            None => {
                by_name.push(Collector::new(property));
                by_name.len() - 1
            }
        };
        by_name[position].report(format!(
            "n{} at {}: {detail}",
            reported.node,
            at(reported.time_ns)
        ));
    }
    by_name.into_iter().flat_map(Collector::finish).collect()
}

/// A property name: a short identifier (letters, digits, `_`, `-`, `.`), not a sentence.
fn is_name(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
