//! Agreement, durability, validity and exactly-once over a [`RunRecord`].
//!
//! Each check indexes the record its own way (BTreeMaps, so reports come out in a stable
//! order) and compares; none trusts what a protocol believes about itself.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};

use super::record::{ApplyRecord, CommitRecord, Invocation, RequestId, RunRecord};
use super::{Collector, Property, SafetyOptions, Violation};

/// A virtual time for reports: milliseconds with microsecond precision.
pub(crate) fn at(time_ns: u64) -> String {
    format!(
        "t={}.{:03}ms",
        time_ns / 1_000_000,
        (time_ns / 1_000) % 1_000
    )
}

fn request_name(request: Option<RequestId>) -> String {
    match request {
        Some(request) => request.to_string(),
        None => "no-op".to_string(),
    }
}

/// Agreement: one entry per slot, across nodes and across one node's restarts; applies
/// name the committed request.
pub fn check_agreement(record: &RunRecord) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Agreement);
    let mut first_by_slot: BTreeMap<u64, &CommitRecord> = BTreeMap::new();
    let mut first_by_node_slot: BTreeMap<(u32, u64), &CommitRecord> = BTreeMap::new();
    let mut reported: BTreeSet<(u32, u64)> = BTreeSet::new();
    for commit in &record.commits {
        let own = *first_by_node_slot
            .entry((commit.node, commit.slot))
            .or_insert(commit);
        let first = *first_by_slot.entry(commit.slot).or_insert(commit);
        if own.entry != commit.entry && reported.insert((commit.node, commit.slot)) {
            collector.report(format!(
                "slot {}: n{} re-committed {} at {} after committing {} at {}",
                commit.slot,
                commit.node,
                commit.entry,
                at(commit.time_ns),
                own.entry,
                at(own.time_ns)
            ));
        } else if first.entry != commit.entry && reported.insert((commit.node, commit.slot)) {
            collector.report(format!(
                "slot {}: n{} committed {} at {} but n{} committed {} at {}",
                commit.slot,
                commit.node,
                commit.entry,
                at(commit.time_ns),
                first.node,
                first.entry,
                at(first.time_ns)
            ));
        }
    }
    check_applies_agree(record, &first_by_slot, &mut collector);
    collector.finish()
}

/// An apply must name the request committed at its slot, and all applies of a slot agree.
fn check_applies_agree(
    record: &RunRecord,
    committed: &BTreeMap<u64, &CommitRecord>,
    collector: &mut Collector,
) {
    let mut first_apply: BTreeMap<u64, &ApplyRecord> = BTreeMap::new();
    let mut reported: BTreeSet<(u32, u64)> = BTreeSet::new();
    for apply in &record.applies {
        let first = *first_apply.entry(apply.slot).or_insert(apply);
        if let Some(commit) = committed.get(&apply.slot) {
            if commit.entry.request != apply.request && reported.insert((apply.node, apply.slot)) {
                collector.report(format!(
                    "slot {}: n{} applied {} at {} but n{} committed {} there",
                    apply.slot,
                    apply.node,
                    request_name(apply.request),
                    at(apply.time_ns),
                    commit.node,
                    request_name(commit.entry.request)
                ));
            }
        } else if first.request != apply.request && reported.insert((apply.node, apply.slot)) {
            collector.report(format!(
                "slot {}: n{} applied {} but n{} applied {}",
                apply.slot,
                apply.node,
                request_name(apply.request),
                first.node,
                request_name(first.request)
            ));
        }
    }
}

/// What the commit records say about one request.
struct Committed<'a> {
    first_time_ns: u64,
    nodes: BTreeSet<u32>,
    /// Each slot it was committed at, with the first commit record there.
    slots: BTreeMap<u64, &'a CommitRecord>,
}

fn index_commits_by_request(record: &RunRecord) -> BTreeMap<RequestId, Committed<'_>> {
    let mut index: BTreeMap<RequestId, Committed<'_>> = BTreeMap::new();
    for commit in &record.commits {
        let Some(request) = commit.entry.request else {
            continue;
        };
        let committed = index.entry(request).or_insert_with(|| Committed {
            first_time_ns: commit.time_ns,
            nodes: BTreeSet::new(),
            slots: BTreeMap::new(),
        });
        committed.first_time_ns = committed.first_time_ns.min(commit.time_ns);
        committed.nodes.insert(commit.node);
        committed.slots.entry(commit.slot).or_insert(commit);
    }
    index
}

fn index_invocations(record: &RunRecord) -> BTreeMap<RequestId, &Invocation> {
    let mut index = BTreeMap::new();
    for invocation in &record.invocations {
        index.entry(invocation.request).or_insert(invocation);
    }
    index
}

/// Durability: every acknowledged write is committed, not after its acknowledgement, by
/// enough nodes, and its slot never later holds another entry.
pub fn check_durability(record: &RunRecord, options: &SafetyOptions) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Durability);
    let invocations = index_invocations(record);
    let committed = index_commits_by_request(record);
    let mut by_slot: BTreeMap<u64, Vec<&CommitRecord>> = BTreeMap::new();
    for commit in &record.commits {
        by_slot.entry(commit.slot).or_default().push(commit);
    }
    for completion in &record.completions {
        let request = completion.request;
        // A completion without an invocation is the validity oracle's to report.
        let Some(invocation) = invocations.get(&request) else {
            continue;
        };
        if invocation.read_only {
            continue;
        }
        let Some(info) = committed.get(&request) else {
            collector.report(format!(
                "{request} acknowledged at {} but never committed by any node",
                at(completion.time_ns)
            ));
            continue;
        };
        if info.first_time_ns > completion.time_ns {
            collector.report(format!(
                "{request} acknowledged at {} before its first commit at {}",
                at(completion.time_ns),
                at(info.first_time_ns)
            ));
        }
        if (info.nodes.len() as u64) < u64::from(options.committers_required) {
            collector.report(format!(
                "{request} acknowledged but committed by {} node(s) {:?}, {} required",
                info.nodes.len(),
                info.nodes,
                options.committers_required
            ));
        }
        check_not_lost(&by_slot, request, info, &mut collector);
    }
    collector.finish()
}

/// A slot that held an acknowledged request must not hold another entry later.
fn check_not_lost(
    by_slot: &BTreeMap<u64, Vec<&CommitRecord>>,
    request: RequestId,
    info: &Committed<'_>,
    collector: &mut Collector,
) {
    for (&slot, first) in &info.slots {
        let commits = by_slot.get(&slot).map(Vec::as_slice).unwrap_or_default();
        let replacement = commits.iter().find(|commit| {
            commit.slot == slot
                && commit.time_ns >= first.time_ns
                && commit.entry.request != Some(request)
        });
        if let Some(replacement) = replacement {
            collector.report(format!(
                "{request} committed at slot {slot} by n{} at {} was lost: n{} committed {} there at {}",
                first.node,
                at(first.time_ns),
                replacement.node,
                replacement.entry,
                at(replacement.time_ns)
            ));
        }
    }
}

/// Validity: a committed or applied request was invoked, with the same command, before.
pub fn check_validity(record: &RunRecord) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Validity);
    let invocations = index_invocations(record);
    let mut reported: BTreeSet<(RequestId, u64)> = BTreeSet::new();
    for commit in &record.commits {
        let Some(request) = commit.entry.request else {
            continue;
        };
        let problem = match invocations.get(&request) {
            None => Some("which no client invoked".to_string()),
            Some(invocation) if invocation.command_digest != commit.entry.command_digest => {
                Some(format!(
                    "but its client invoked command digest {:#x}",
                    invocation.command_digest
                ))
            }
            Some(invocation) if invocation.time_ns > commit.time_ns => Some(format!(
                "before its invocation at {}",
                at(invocation.time_ns)
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            if reported.insert((request, commit.slot)) {
                collector.report(format!(
                    "slot {}: n{} committed {} at {} {problem}",
                    commit.slot,
                    commit.node,
                    commit.entry,
                    at(commit.time_ns)
                ));
            }
        }
    }
    for apply in &record.applies {
        if let Some(request) = apply.request {
            if !invocations.contains_key(&request) && reported.insert((request, apply.slot)) {
                collector.report(format!(
                    "slot {}: n{} applied {request}, which no client invoked",
                    apply.slot, apply.node
                ));
            }
        }
    }
    for completion in &record.completions {
        if !invocations.contains_key(&completion.request) {
            collector.report(format!(
                "{} completed at {} but was never invoked",
                completion.request,
                at(completion.time_ns)
            ));
        }
    }
    collector.finish()
}

/// Exactly-once: one completion per request, equal state digests after each slot on every
/// node, and a request identity at one slot only, or, when duplicate log entries are
/// allowed, no change of state where it is committed again.
pub fn check_exactly_once(record: &RunRecord, options: &SafetyOptions) -> Vec<Violation> {
    let mut collector = Collector::new(Property::ExactlyOnce);
    let digests = index_state_digests(record);
    for (request, info) in index_commits_by_request(record) {
        if info.slots.len() < 2 {
            continue;
        }
        let slots: Vec<u64> = info.slots.keys().copied().collect();
        if !options.duplicate_log_entries_allowed {
            collector.report(format!("{request} committed at slots {slots:?}"));
            continue;
        }
        for &slot in &slots[1..] {
            if let Some(node) = changed_state_at(&digests, slot) {
                collector.report(format!(
                    "{request} committed at slots {slots:?}: applying it again at slot {slot} \
                     changed n{node}'s state (applied twice)"
                ));
            }
        }
    }
    let mut completed: BTreeSet<RequestId> = BTreeSet::new();
    for completion in &record.completions {
        if !completed.insert(completion.request) {
            collector.report(format!(
                "{} completed twice (again at {})",
                completion.request,
                at(completion.time_ns)
            ));
        }
    }
    check_state_digests(record, &mut collector);
    collector.finish()
}

/// Per (slot, node): the state digest after the node's first apply of the slot.
fn index_state_digests(record: &RunRecord) -> BTreeMap<(u64, u32), u64> {
    let mut digests = BTreeMap::new();
    for apply in &record.applies {
        digests
            .entry((apply.slot, apply.node))
            .or_insert(apply.state_digest);
    }
    digests
}

/// A node whose state digest differs between `slot - 1` and `slot`, among nodes that
/// reported both (a deduplicated retry leaves the state as it was).
fn changed_state_at(digests: &BTreeMap<(u64, u32), u64>, slot: u64) -> Option<u32> {
    let previous = slot.checked_sub(1)?;
    digests
        .range((slot, 0)..=(slot, u32::MAX))
        .find_map(
            |(&(_, node), &after)| match digests.get(&(previous, node)) {
                Some(&before) if before != after => Some(node),
                _ => None,
            },
        )
}

fn check_state_digests(record: &RunRecord, collector: &mut Collector) {
    let mut first_by_slot: BTreeMap<u64, &ApplyRecord> = BTreeMap::new();
    let mut reported: BTreeSet<(u32, u64)> = BTreeSet::new();
    for apply in &record.applies {
        match first_by_slot.entry(apply.slot) {
            MapEntry::Vacant(vacant) => {
                vacant.insert(apply);
            }
            MapEntry::Occupied(occupied) => {
                let first = *occupied.get();
                if first.state_digest != apply.state_digest
                    && reported.insert((apply.node, apply.slot))
                {
                    collector.report(format!(
                        "slot {}: state digest after apply differs: n{} {:#x} at {}, n{} {:#x} at {}",
                        apply.slot,
                        first.node,
                        first.state_digest,
                        at(first.time_ns),
                        apply.node,
                        apply.state_digest,
                        at(apply.time_ns)
                    ));
                }
            }
        }
    }
}
