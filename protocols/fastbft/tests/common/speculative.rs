//! The speculative oracle (S1-S3, `dst_checkers::oracles::speculative`) over a run's
//! observations: `Spec*` observations become the checker's events; Byzantine replicas'
//! reports are left out (they are not evidence about correct replicas).

use std::collections::BTreeSet;

use dst_checkers::oracles::speculative::{check_speculative as check, SpecEvent};
use dst_protocols::{KvCommand, KvOutput, Observation};
use dst_sim::NodeId;

type Obs = Observation<KvCommand, KvOutput>;

/// The checker's events in a run's observations (the harness's adapter, as the runner uses).
pub fn spec_events(observations: &[(u64, Obs)], byzantine: &BTreeSet<NodeId>) -> Vec<SpecEvent> {
    dst_protocols::harness::speculative_events(observations, byzantine)
}

/// Every S1-S3 violation, as "S<n>: detail".
pub fn check_speculative(observations: &[(u64, Obs)], byzantine: &BTreeSet<NodeId>) -> Vec<String> {
    check(&spec_events(observations, byzantine))
        .into_iter()
        .map(|violation| {
            let name = violation.property.to_string();
            format!(
                "{}: {}",
                name.trim_start_matches("invariant:"),
                violation.detail
            )
        })
        .collect()
}
