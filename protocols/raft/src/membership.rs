//! Cluster membership: who votes, and the single-server changes between configurations.
//!
//! A [`Member`] is a machine ([`NodeId`]) in one *incarnation*. A machine whose disk was
//! wiped forgot its votes and acknowledgements; it comes back under a fresh incarnation, a
//! different member, and the old member is removed before the new one is added. Every
//! configuration after the initial one differs from its predecessor by exactly one member
//! (thesis 4.1), so any majority of the old and any majority of the new overlap.

use dst_sim::NodeId;
use serde::{Deserialize, Serialize};

/// One voting member: a machine in one incarnation (0 for the original disk, a random
/// non-zero draw after a wipe).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Member {
    pub node: NodeId,
    pub incarnation: u64,
}

impl Member {
    pub fn new(node: NodeId, incarnation: u64) -> Self {
        Member { node, incarnation }
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}@{}", self.node, self.incarnation)
    }
}

/// The voting members. Invariant: sorted, at most one incarnation per machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    voters: Vec<Member>,
}

impl Configuration {
    /// The initial configuration: machines `0..cluster_size`, incarnation 0.
    pub fn initial(cluster_size: u32) -> Self {
        let voters = (0..cluster_size).map(|node| Member::new(NodeId(node), 0));
        Configuration {
            voters: voters.collect(),
        }
    }

    /// A configuration of these members; `None` if two share a machine.
    pub fn of(mut voters: Vec<Member>) -> Option<Self> {
        voters.sort();
        let distinct = voters.windows(2).all(|pair| pair[0].node != pair[1].node);
        distinct.then_some(Configuration { voters })
    }

    pub fn voters(&self) -> &[Member] {
        &self.voters
    }
    pub fn len(&self) -> usize {
        self.voters.len()
    }
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }
    pub fn contains(&self, member: Member) -> bool {
        self.voters.binary_search(&member).is_ok()
    }
    /// The member on machine `node`, if that machine votes (in any incarnation).
    pub fn member_on(&self, node: NodeId) -> Option<Member> {
        self.voters
            .iter()
            .copied()
            .find(|member| member.node == node)
    }
    /// Votes (or acknowledgements) needed: a majority of the voters.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration after `change`, if it is a valid single-server change: adding a
    /// machine not voting yet, or removing a voter other than the last one.
    pub fn apply(&self, change: MembershipChange) -> Option<Configuration> {
        let mut voters = self.voters.clone();
        match change {
            MembershipChange::Add(member) | MembershipChange::Rejoin(member) => {
                if self.member_on(member.node).is_some() {
                    return None;
                }
                voters.push(member);
            }
            MembershipChange::Remove(member) => {
                if !self.contains(member) || self.voters.len() <= 1 {
                    return None;
                }
                voters.retain(|voter| *voter != member);
            }
        }
        Configuration::of(voters)
    }

    /// How many members one configuration has that the other lacks, both ways.
    pub fn distance(&self, other: &Configuration) -> usize {
        let missing = |a: &Configuration, b: &Configuration| {
            a.voters
                .iter()
                .filter(|member| !b.contains(**member))
                .count()
        };
        missing(self, other) + missing(other, self)
    }
}

/// A request to change the membership, one server at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// AddServer (thesis 4.2.1): catch the member up as a learner, then add it.
    Add(Member),
    /// RemoveServer.
    Remove(Member),
    /// Sent by a machine that came back with a wiped disk under a new incarnation: the
    /// leader removes the machine's old member if it still votes, else adds this one.
    Rejoin(Member),
}

/// Why the leader refused a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeRefused {
    NotLeader,
    /// A configuration entry is not committed yet: one change at a time.
    ChangeInProgress,
    /// This leader has not committed an entry of its term yet (the 2015 raft-dev fix:
    /// otherwise a change could be lost to a competing change of an earlier term).
    TermNotCommitted,
    /// A learner is catching up for an earlier AddServer.
    CatchUpInProgress,
    /// Not a single-server change of the current configuration (already a member, not a
    /// member, or the last voter).
    Invalid,
    /// The node is not running (loading or halted).
    NotRunning,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_changes_only() {
        let initial = Configuration::initial(3);
        let new = Member::new(NodeId(1), 7);
        assert_eq!(initial.apply(MembershipChange::Add(new)), None);
        let removed = initial
            .apply(MembershipChange::Remove(Member::new(NodeId(1), 0)))
            .expect("remove a voter");
        assert_eq!(removed.len(), 2);
        assert_eq!(removed.distance(&initial), 1);
        let added = removed.apply(MembershipChange::Add(new)).expect("add");
        assert_eq!(added.member_on(NodeId(1)), Some(new));
        assert_eq!(added.distance(&initial), 2);
        let single = Configuration::initial(1);
        assert_eq!(
            single.apply(MembershipChange::Remove(Member::new(NodeId(0), 0))),
            None,
            "the last voter stays"
        );
        assert_eq!(Configuration::initial(5).majority(), 3);
        assert_eq!(removed.majority(), 2);
    }
}
