//! Ballots, slots, values and the messages replicas exchange.

use dst_protocols::{Checksummed, Request, Sealed};
use dst_sim::NodeId;
use serde::{Deserialize, Serialize};

/// A ballot: `(round, node)`, ordered lexicographically, so two proposers never share one.
/// `Ballot::ZERO` (round 0) is below every ballot a proposer uses.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };
}

impl std::fmt::Display for Ballot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}", self.round, self.node.0)
    }
}

/// A position in the replicated log, starting at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Slot(pub u64);

impl Slot {
    pub const FIRST: Slot = Slot(1);
    pub fn next(self) -> Slot {
        Slot(self.0 + 1)
    }
}

/// What a slot holds: a client request, or `None` for a no-op that fills a gap.
pub type Value<C> = Option<std::sync::Arc<Request<C>>>;

/// What an acceptor reports for one slot in a promise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report<C> {
    pub slot: Slot,
    /// The ballot of the latest accept (meaningless when `chosen`).
    pub ballot: Ballot,
    pub value: Value<C>,
    /// The acceptor knows this value is chosen: a proposer takes it as is.
    pub chosen: bool,
}

/// Every message kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Body<C> {
    /// Phase 1a for every slot from `from` on.
    Prepare { ballot: Ballot, from: Slot },
    /// Phase 1b: the acceptor promised `ballot` and reports its accepts at or after `from`,
    /// and the slots whose records it found damaged (it can say nothing about those).
    Promise {
        ballot: Ballot,
        from: Slot,
        accepted: Vec<Report<C>>,
        damaged: Vec<Slot>,
    },
    /// Phase 2a for one slot.
    Accept {
        ballot: Ballot,
        slot: Slot,
        value: Value<C>,
    },
    /// Phase 2b.
    Accepted { ballot: Ballot, slot: Slot },
    /// A prepare or accept below the acceptor's promise; tells the proposer what to beat.
    Nack { ballot: Ballot, promised: Ballot },
    /// The leader learned `slot` is chosen with `value`.
    Chosen { slot: Slot, value: Value<C> },
    /// Leader liveness and catch-up: `chosen_below` is the leader's first slot not known
    /// chosen; `round` numbers heartbeats (leases count acknowledged rounds).
    Heartbeat {
        ballot: Ballot,
        chosen_below: Slot,
        round: u64,
    },
    /// A follower's first slot not known chosen, so the leader can send what it misses.
    HeartbeatAck {
        ballot: Ballot,
        chosen_below: Slot,
        round: u64,
    },
}

/// A message between replicas: the body, sealed with a checksum that belongs to its
/// encoding (see [`dst_protocols::sealed`]).
pub type PaxosMsg<C> = Sealed<Body<C>>;

impl<C: Serialize> Checksummed for Body<C> {
    const CHECKSUM_SEED: u64 = 0x7061_786f_735f_6d73;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        let low = Ballot {
            round: 1,
            node: NodeId(2),
        };
        let high = Ballot {
            round: 2,
            node: NodeId(0),
        };
        assert!(low < high);
        assert!(Ballot::ZERO < low);
        assert!(
            Ballot {
                round: 2,
                node: NodeId(1)
            } > high
        );
    }

    #[test]
    fn a_corrupted_body_fails_verification() {
        let msg: PaxosMsg<u8> = PaxosMsg::seal(
            Body::Accepted {
                ballot: Ballot {
                    round: 3,
                    node: NodeId(1),
                },
                slot: Slot(4),
            },
            true,
        );
        assert!(msg.verify(true));
        // Corruption happens to bytes: the decoded message carries the sender's checksum.
        let bytes = postcard::to_allocvec(&msg).expect("encodes");
        let mut bad: PaxosMsg<u8> = postcard::from_bytes(&bytes).expect("decodes");
        assert!(bad.verify(true));
        bad.body = Body::Accepted {
            ballot: Ballot {
                round: 3,
                node: NodeId(1),
            },
            slot: Slot(5),
        };
        assert!(!bad.verify(true), "changed slot not detected");
        assert!(bad.verify(false), "checksums off accepts anything");
    }
}
