//! Invariants: local ones checked after every step, and the cross-node "a chosen value never
//! changes" check over a cluster's nodes through time.

use std::collections::BTreeMap;

use dst_sim::{NodeId, StateMachine};

use crate::message::{Slot, Value};
use crate::paxos::{MultiPaxos, Role};

/// Local invariants of one replica.
pub fn check_local<S: StateMachine>(node: &MultiPaxos<S>) -> Result<(), String> {
    let id = node.id();
    if node.applied_below() > node.chosen_below() {
        return Err(format!(
            "{id}: applied up to {:?} beyond chosen prefix {:?}",
            node.applied_below(),
            node.chosen_below()
        ));
    }
    // The full scans below are O(log) and run after every step, which made a 1,000-operation
    // run spend most of its time here. Release builds (campaigns) check where mistakes show
    // first: the top of the chosen prefix, and the open slots above it, where accepts land.
    let full = cfg!(debug_assertions);
    if let Some((slot, _)) = node.chosen().iter().next_back() {
        if *slot >= node.chosen_below() {
            // Gaps are allowed above the prefix; below it every slot must be known.
            let below = node.chosen_below().0 - 1;
            let whole = if full {
                node.chosen().range(..node.chosen_below()).count() as u64 == below
            } else {
                below == 0 || node.chosen().contains_key(&Slot(below))
            };
            if !whole {
                return Err(format!("{id}: hole in the chosen prefix"));
            }
        }
    }
    let checked = if full { Slot(0) } else { node.chosen_below() };
    // From the top down rather than `range(checked..)`: the open slots are the highest, and
    // walking back to them skips the two key searches a range costs on every step. `last`
    // keeps the report on the lowest such slot, as a forward search would.
    if let Some((slot, record)) = node
        .accepted()
        .iter()
        .rev()
        .take_while(|(slot, _)| **slot >= checked)
        .filter(|(_, record)| !record.chosen && record.ballot > node.promised())
        .last()
    {
        return Err(format!(
            "{id}: slot {} accepted at {} above the promise {}",
            slot.0,
            record.ballot,
            node.promised()
        ));
    }
    if node.role() != Role::Follower && node.ballot().node != id {
        return Err(format!(
            "{id}: proposes with {}'s ballot",
            node.ballot().node
        ));
    }
    if node.role() == Role::Leader && node.ballot() < node.promised() {
        return Err(format!(
            "{id}: leads with {} below its promise {}",
            node.ballot(),
            node.promised()
        ));
    }
    Ok(())
}

/// "A chosen value never changes": remembers the first value any node reported chosen in
/// each slot and fails if any node, now or later, knows a different one.
pub struct ChosenMonitor<C> {
    first: BTreeMap<Slot, (Value<C>, NodeId)>,
}

impl<C: PartialEq + Clone + std::fmt::Debug> Default for ChosenMonitor<C> {
    fn default() -> Self {
        ChosenMonitor {
            first: BTreeMap::new(),
        }
    }
}

impl<C: PartialEq + Clone + std::fmt::Debug> ChosenMonitor<C> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the nodes' current knowledge against everything seen so far.
    pub fn observe<S: StateMachine<Command = C>>(
        &mut self,
        nodes: &[&MultiPaxos<S>],
    ) -> Result<(), String> {
        for node in nodes {
            for (slot, value) in node.chosen() {
                let (first, by) = self
                    .first
                    .entry(*slot)
                    .or_insert_with(|| (value.clone(), node.id()));
                if first != value {
                    return Err(format!(
                        "slot {} chosen as {first:?} (seen at {by}) and {value:?} at {}",
                        slot.0,
                        node.id()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::AcceptRecord;
    use crate::message::Ballot;
    use crate::paxos::PaxosConfig;
    use dst_protocols::KvStore;

    fn record(
        slot: u64,
        round: u64,
        chosen: bool,
    ) -> (Slot, AcceptRecord<dst_protocols::KvCommand>) {
        let ballot = Ballot {
            round,
            node: NodeId(1),
        };
        let value = None;
        (
            Slot(slot),
            AcceptRecord {
                slot: Slot(slot),
                ballot,
                value,
                chosen,
            },
        )
    }

    #[test]
    fn an_unchosen_accept_above_the_promise_is_caught_at_its_lowest_slot() {
        let mut node = MultiPaxos::new(PaxosConfig::default(), KvStore::new());
        node.meta.promised = Ballot {
            round: 2,
            node: NodeId(1),
        };
        node.accepted
            .extend([record(3, 2, false), record(4, 7, true)]);
        assert_eq!(
            check_local(&node),
            Ok(()),
            "a chosen record may carry any ballot"
        );
        node.accepted
            .extend([record(5, 3, false), record(9, 3, false)]);
        let failure = check_local(&node).unwrap_err();
        assert!(failure.contains("slot 5 accepted at"), "{failure}");
    }
}
