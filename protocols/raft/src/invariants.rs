//! Raft's invariants: local ones checked after every step, and cross-node ones over a
//! snapshot of the cluster (tests and the harness call these with the live nodes).
//!
//! Cross-node invariants (Raft paper, Figure 3):
//! - Election safety: at most one leader per term ([`ClusterMonitor`] remembers leaders
//!   across steps, so two leaders of one term at different times are caught too).
//! - Log matching: if two logs hold an entry with the same index and term, the logs are
//!   identical up to that index.
//! - Leader completeness: an entry a node knows committed while in term `t` is in the log of
//!   every leader of a term above `t`.
//! - State machine safety: no two nodes commit different entries at one index (over time,
//!   via [`ClusterMonitor`]).
//!
//! Membership (thesis chapter 4):
//! - Single-server changes: in every log, each configuration differs from the one before it
//!   (the snapshot's, or the previous configuration entry) by exactly one member
//!   ([`check_single_server_changes`]).
//! - One change at a time: a leader's log holds no configuration entry of its term above
//!   its commit index beside another uncommitted one (local); across nodes, no log holds
//!   two configuration entries above the highest index known committed
//!   ([`ClusterMonitor`], which remembers commits across steps).
//! - A leader is a voter of its latest configuration, or that configuration (which removed
//!   it) is not committed yet and it is stepping down (local).

use std::collections::BTreeMap;

use dst_sim::{NodeId, StateMachine};

use crate::message::{Entry, LogIndex, Term};
use crate::raft::{Raft, Role};

/// Local invariants of one node.
pub fn check_local<S: StateMachine>(node: &Raft<S>) -> Result<(), String> {
    let id = node.id();
    let last = node.last_index();
    if node.commit_index() > last {
        return Err(format!(
            "{id}: commit index {} beyond last index {}",
            node.commit_index().0,
            last.0
        ));
    }
    if node.last_applied() > node.commit_index() {
        return Err(format!(
            "{id}: applied {} beyond commit {}",
            node.last_applied().0,
            node.commit_index().0
        ));
    }
    if node.snapshot_index() > node.last_applied() {
        return Err(format!(
            "{id}: snapshot {} beyond applied",
            node.snapshot_index().0
        ));
    }
    // The full scan is O(log); release builds (which check after every step) look at the
    // two ends only, where mistakes show first.
    let entries = node.entries();
    let mut previous = node.snapshot_term();
    if cfg!(debug_assertions) {
        for (offset, entry) in entries.iter().enumerate() {
            previous = check_entry(node, offset, entry, previous)?;
        }
    } else {
        if let Some(first) = entries.first() {
            previous = check_entry(node, 0, first, previous)?;
        }
        if let (true, Some(last)) = (entries.len() > 1, entries.last()) {
            check_entry(node, entries.len() - 1, last, previous)?;
        }
    }
    if node.last_term() > node.current_term() {
        return Err(format!(
            "{id}: log term {} above current term",
            node.last_term().0
        ));
    }
    if node.role() == Role::Leader && node.voted_for() != Some(id) {
        return Err(format!(
            "{id}: leader of term {} did not vote for itself",
            node.current_term().0
        ));
    }
    if node.role() == Role::Leader {
        check_leader_membership(node)?;
    }
    Ok(())
}

/// The entry at `offset` in the log sits at its index and does not lower the term of the
/// entry checked before it (`previous`). Returns its term.
fn check_entry<S: StateMachine>(
    node: &Raft<S>,
    offset: usize,
    entry: &Entry<S::Command>,
    previous: Term,
) -> Result<Term, String> {
    let id = node.id();
    let expected = LogIndex(node.snapshot_index().0 + 1 + offset as u64);
    if entry.index != expected {
        return Err(format!(
            "{id}: entry {} stored at {}",
            entry.index.0, expected.0
        ));
    }
    if entry.term < previous {
        return Err(format!("{id}: term decreases at index {}", entry.index.0));
    }
    Ok(entry.term)
}

/// A leader appends a configuration only when none is uncommitted, and leads as a
/// non-voter only until the configuration that removed it commits.
fn check_leader_membership<S: StateMachine>(node: &Raft<S>) -> Result<(), String> {
    let id = node.id();
    // Release builds check after every step, and a leader cut off from a majority keeps
    // appending: they scan the entries above the commit index only while the latest
    // configuration entry is among them (debug builds scan always, and check below that
    // `members_index` is the latest configuration entry).
    let scan = cfg!(debug_assertions) || node.members_index() > node.commit_index();
    // Configuration entries above the commit index, and whether one is of this term.
    let (uncommitted, own_term) = node
        .entries()
        .iter()
        .rev()
        .take_while(|entry| scan && entry.index > node.commit_index())
        .filter(|entry| entry.config.is_some())
        .fold((0, false), |(count, own_term), entry| {
            (count + 1, own_term || entry.term == node.current_term())
        });
    if own_term && uncommitted > 1 {
        return Err(format!(
            "{id}: leader of term {} holds {} uncommitted configuration entries",
            node.current_term().0,
            uncommitted
        ));
    }
    if !node.is_voter() && node.members_index() <= node.commit_index() {
        return Err(format!(
            "{id}: leads term {} though the committed configuration at {} removed {}",
            node.current_term().0,
            node.members_index().0,
            node.member()
        ));
    }
    // A scan of the log: debug builds only (release checks run after every step).
    if cfg!(debug_assertions) && node.members() != node.config_at(node.last_index()) {
        return Err(format!(
            "{id}: configuration in force is not the log's latest"
        ));
    }
    Ok(())
}

/// Every configuration in every log is a single-server change of the one before it.
pub fn check_single_server_changes<S: StateMachine>(nodes: &[&Raft<S>]) -> Result<(), String> {
    for node in nodes {
        let mut previous = node.config_at(node.snapshot_index());
        for entry in node.entries() {
            let Some(config) = entry.config.as_ref() else {
                continue;
            };
            if config.distance(previous) != 1 {
                return Err(format!(
                    "single-server changes: {} holds at index {} a configuration {} members away from the previous one",
                    node.id(),
                    entry.index.0,
                    config.distance(previous)
                ));
            }
            previous = config;
        }
    }
    Ok(())
}

/// At most one leader per term among these nodes.
pub fn check_election_safety<S: StateMachine>(nodes: &[&Raft<S>]) -> Result<(), String> {
    let mut leaders: BTreeMap<Term, NodeId> = BTreeMap::new();
    for node in nodes.iter().filter(|node| node.role() == Role::Leader) {
        if let Some(other) = leaders.insert(node.current_term(), node.id()) {
            return Err(format!(
                "election safety: {other} and {} both lead term {}",
                node.id(),
                node.current_term().0
            ));
        }
    }
    Ok(())
}

/// Same index and term implies the same entry and the same entries before it.
pub fn check_log_matching<S: StateMachine>(nodes: &[&Raft<S>]) -> Result<(), String> {
    for (position, a) in nodes.iter().enumerate() {
        for b in &nodes[position + 1..] {
            check_pair_matching(a, b)?;
        }
    }
    Ok(())
}

fn check_pair_matching<S: StateMachine>(a: &Raft<S>, b: &Raft<S>) -> Result<(), String> {
    let low = a.snapshot_index().max(b.snapshot_index()).next();
    let high = a.last_index().min(b.last_index());
    // The highest index where both hold the same term: everything up to it must be equal.
    let mut agreed = None;
    let mut index = high;
    while index >= low && index.0 > 0 {
        if a.term_at(index) == b.term_at(index) {
            agreed = Some(index);
            break;
        }
        index = index.prev();
    }
    let Some(agreed) = agreed else { return Ok(()) };
    let mut index = low;
    while index <= agreed {
        if a.entry(index) != b.entry(index) {
            return Err(format!(
                "log matching: {} and {} agree on (index {}, term {:?}) but differ at index {}",
                a.id(),
                b.id(),
                agreed.0,
                a.term_at(agreed),
                index.0
            ));
        }
        index = index.next();
    }
    Ok(())
}

/// Every entry a node knows committed is in the log of every leader of a later term.
pub fn check_leader_completeness<S: StateMachine>(nodes: &[&Raft<S>]) -> Result<(), String> {
    for leader in nodes.iter().filter(|node| node.role() == Role::Leader) {
        for node in nodes
            .iter()
            .filter(|node| node.current_term() < leader.current_term())
        {
            let from = node.snapshot_index().max(leader.snapshot_index()).next();
            let mut index = from;
            while index <= node.commit_index() {
                let committed = node.entry(index);
                if committed.is_some() && leader.entry(index) != committed {
                    return Err(format!(
                        "leader completeness: {} (term {}) lacks index {} committed at {}",
                        leader.id(),
                        leader.current_term().0,
                        index.0,
                        node.id()
                    ));
                }
                index = index.next();
            }
        }
    }
    Ok(())
}

/// All cross-node checks over one snapshot of the cluster.
pub fn check_cluster<S: StateMachine>(nodes: &[&Raft<S>]) -> Result<(), String> {
    check_election_safety(nodes)?;
    check_log_matching(nodes)?;
    check_leader_completeness(nodes)?;
    check_single_server_changes(nodes)
}

/// The live nodes of a cluster at one instant, as the invariant registry sees them.
pub struct ClusterView<'a, S: StateMachine> {
    pub nodes: Vec<&'a Raft<S>>,
}

/// Registers Raft's invariants with the checkers' registry, each under its own name
/// (violations read `invariant:raft-<name>`).
pub fn register_invariants<S: StateMachine>(
    registry: &mut dst_checkers::oracles::InvariantRegistry<ClusterView<'_, S>>,
) {
    registry
        .register("raft-local", |view: &ClusterView<'_, S>| {
            view.nodes.iter().try_for_each(|node| check_local(node))
        })
        .register("raft-election-safety", |view: &ClusterView<'_, S>| {
            check_election_safety(&view.nodes)
        })
        .register("raft-log-matching", |view: &ClusterView<'_, S>| {
            check_log_matching(&view.nodes)
        })
        .register("raft-leader-completeness", |view: &ClusterView<'_, S>| {
            check_leader_completeness(&view.nodes)
        })
        .register("raft-single-server-changes", |view: &ClusterView<'_, S>| {
            check_single_server_changes(&view.nodes)
        });
}

/// Remembers leaders per term and committed entries per index across steps, so violations
/// spread over time (a leader that crashed before the second one rose) are caught.
#[derive(Clone, Debug, Default)]
pub struct ClusterMonitor {
    leaders: BTreeMap<Term, NodeId>,
    /// Committed (term, entry digest) per index.
    committed: BTreeMap<LogIndex, (Term, u64)>,
}

impl ClusterMonitor {
    pub fn new() -> Self {
        ClusterMonitor::default()
    }

    /// Checks the cluster now and against everything seen before.
    pub fn observe<S: StateMachine>(&mut self, nodes: &[&Raft<S>]) -> Result<(), String> {
        for node in nodes {
            check_local(node)?;
        }
        check_cluster(nodes)?;
        for node in nodes {
            if node.role() == Role::Leader {
                let previous = self.leaders.entry(node.current_term()).or_insert(node.id());
                if *previous != node.id() {
                    return Err(format!(
                        "election safety: {previous} and {} both led term {}",
                        node.id(),
                        node.current_term().0
                    ));
                }
            }
            self.record_commits(node)?;
        }
        self.check_one_change_at_a_time(nodes)
    }

    /// A leader appends a configuration only once the previous one is committed: no log
    /// holds two configuration entries above the highest index ever seen committed.
    fn check_one_change_at_a_time<S: StateMachine>(
        &self,
        nodes: &[&Raft<S>],
    ) -> Result<(), String> {
        let committed = self
            .committed
            .last_key_value()
            .map_or(LogIndex(0), |(index, _)| *index);
        for node in nodes {
            let uncommitted = node
                .entries()
                .iter()
                .filter(|entry| entry.index > committed && entry.config.is_some())
                .count();
            if uncommitted > 1 {
                return Err(format!(
                    "one change at a time: {} holds {uncommitted} configuration entries above committed index {}",
                    node.id(),
                    committed.0
                ));
            }
        }
        Ok(())
    }

    fn record_commits<S: StateMachine>(&mut self, node: &Raft<S>) -> Result<(), String> {
        let mut index = node.snapshot_index().next();
        while index <= node.commit_index() {
            let Some(entry) = node.entry(index) else {
                break;
            };
            let digest = match postcard::to_allocvec(entry) {
                Ok(bytes) => crate::message::hash_bytes(0, &bytes),
                Err(_) => 0,
            };
            let seen = *self.committed.entry(index).or_insert((entry.term, digest));
            if seen != (entry.term, digest) {
                return Err(format!(
                    "state machine safety: {} committed a different entry at index {}",
                    node.id(),
                    index.0
                ));
            }
            index = index.next();
        }
        Ok(())
    }
}
