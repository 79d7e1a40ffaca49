//! Agreement, durability, validity and exactly-once over a [`RunRecord`].
//!
//! Each check builds the sorted views it needs (see `index.rs`; reports come out in slot or
//! request order, the same on every run) and compares; none trusts what a protocol believes
//! about itself.

use std::collections::BTreeSet;

use super::index::{
    digest_of, AppliesBySlot, CommitsBySlot, Committed, Invocations, RequestMap, Views,
};
use super::record::{ApplyRecord, CommitRecord, RequestId, RunRecord};
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
    agreement(&Views::new(record))
}

pub(crate) fn agreement(views: &Views<'_>) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Agreement);
    let commits = &views.commits_by_slot;
    for group in commits.groups() {
        check_slot_agrees(group, &mut collector);
    }
    check_applies_agree(&views.applies_by_slot, commits, &mut collector);
    collector.finish()
}

/// The commits of one slot carry one entry; each node is reported once per slot.
fn check_slot_agrees(group: &[&CommitRecord], collector: &mut Collector) {
    let first = group[0];
    let mut reported: Vec<u32> = Vec::new();
    for (position, commit) in group.iter().enumerate() {
        if commit.entry == first.entry || reported.contains(&commit.node) {
            continue;
        }
        reported.push(commit.node);
        let own = group[..position]
            .iter()
            .find(|earlier| earlier.node == commit.node);
        match own {
            Some(own) if own.entry != commit.entry => collector.report(format!(
                "slot {}: n{} re-committed {} at {} after committing {} at {}",
                commit.slot,
                commit.node,
                commit.entry,
                at(commit.time_ns),
                own.entry,
                at(own.time_ns)
            )),
            _ => collector.report(format!(
                "slot {}: n{} committed {} at {} but n{} committed {} at {}",
                commit.slot,
                commit.node,
                commit.entry,
                at(commit.time_ns),
                first.node,
                first.entry,
                at(first.time_ns)
            )),
        }
    }
}

/// An apply must name the request committed at its slot, and all applies of a slot agree.
fn check_applies_agree(
    applies: &AppliesBySlot<'_>,
    commits: &CommitsBySlot<'_>,
    collector: &mut Collector,
) {
    // Both views are in slot order: walk them together instead of searching per slot.
    let mut commit_groups = commits.groups().peekable();
    for group in applies.groups() {
        let slot = group[0].slot;
        while commit_groups
            .next_if(|commits| commits[0].slot < slot)
            .is_some()
        {}
        let committed = commit_groups
            .peek()
            .filter(|commits| commits[0].slot == slot)
            .and_then(|commits| commits.first());
        let mut reported: Vec<u32> = Vec::new();
        for apply in group {
            if reported.contains(&apply.node) {
                continue;
            }
            let detail = match committed {
                Some(commit) if commit.entry.request != apply.request => format!(
                    "slot {}: n{} applied {} at {} but n{} committed {} there",
                    apply.slot,
                    apply.node,
                    request_name(apply.request),
                    at(apply.time_ns),
                    commit.node,
                    request_name(commit.entry.request)
                ),
                None if group[0].request != apply.request => format!(
                    "slot {}: n{} applied {} but n{} applied {}",
                    apply.slot,
                    apply.node,
                    request_name(apply.request),
                    group[0].node,
                    request_name(group[0].request)
                ),
                _ => continue,
            };
            reported.push(apply.node);
            collector.report(detail);
        }
    }
}

/// Durability: every acknowledged write is committed, not after its acknowledgement, by
/// enough nodes, and its slot never later holds another entry.
pub fn check_durability(record: &RunRecord, options: &SafetyOptions) -> Vec<Violation> {
    durability(record, &Views::new(record), options)
}

pub(crate) fn durability(
    record: &RunRecord,
    views: &Views<'_>,
    options: &SafetyOptions,
) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Durability);
    let invocations = &views.invocations;
    let committed = &views.commits_by_request;
    let by_slot = &views.commits_by_slot;
    for completion in &record.completions {
        let request = completion.request;
        // A completion without an invocation is the validity oracle's to report.
        let Some(invocation) = invocations.get(request) else {
            continue;
        };
        if invocation.read_only {
            continue;
        }
        let Some(info) = committed.get(request) else {
            collector.report(format!(
                "{request} acknowledged at {} but never committed by any node",
                at(completion.time_ns)
            ));
            continue;
        };
        let first_time_ns = info.first_time_ns();
        if first_time_ns > completion.time_ns && !options.speculative_acknowledgements {
            collector.report(format!(
                "{request} acknowledged at {} before its first commit at {}",
                at(completion.time_ns),
                at(first_time_ns)
            ));
        }
        if options.committers_required > 1 {
            let nodes = info.nodes();
            if (nodes.len() as u64) < u64::from(options.committers_required) {
                collector.report(format!(
                    "{request} acknowledged but committed by {} node(s) {nodes:?}, {} required",
                    nodes.len(),
                    options.committers_required
                ));
            }
        }
        check_not_lost(by_slot, request, &info, &mut collector);
    }
    collector.finish()
}

/// A slot that held an acknowledged request must not hold another entry later.
fn check_not_lost(
    by_slot: &CommitsBySlot<'_>,
    request: RequestId,
    info: &Committed<'_, '_>,
    collector: &mut Collector,
) {
    for first in info.slots() {
        let replacement = by_slot.slot(first.slot).iter().find(|commit| {
            commit.time_ns >= first.time_ns && commit.entry.request != Some(request)
        });
        if let Some(replacement) = replacement {
            collector.report(format!(
                "{request} committed at slot {} by n{} at {} was lost: n{} committed {} there at {}",
                first.slot,
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
    validity(record, &Views::new(record))
}

pub(crate) fn validity(record: &RunRecord, views: &Views<'_>) -> Vec<Violation> {
    let mut collector = Collector::new(Property::Validity);
    let invocations = &views.invocations;
    let mut reported: BTreeSet<(RequestId, u64)> = BTreeSet::new();
    for commit in &record.commits {
        let Some(request) = commit.entry.request else {
            continue;
        };
        let problem = match invocations.get(request) {
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
    check_applies_and_completions_invoked(record, invocations, &mut reported, &mut collector);
    collector.finish()
}

fn check_applies_and_completions_invoked(
    record: &RunRecord,
    invocations: &Invocations<'_>,
    reported: &mut BTreeSet<(RequestId, u64)>,
    collector: &mut Collector,
) {
    for apply in &record.applies {
        if let Some(request) = apply.request {
            if invocations.get(request).is_none() && reported.insert((request, apply.slot)) {
                collector.report(format!(
                    "slot {}: n{} applied {request}, which no client invoked",
                    apply.slot, apply.node
                ));
            }
        }
    }
    for completion in &record.completions {
        if invocations.get(completion.request).is_none() {
            collector.report(format!(
                "{} completed at {} but was never invoked",
                completion.request,
                at(completion.time_ns)
            ));
        }
    }
}

/// Exactly-once: one completion per request, equal state digests after each slot on every
/// node, and a request identity at one slot only, or, when duplicate log entries are
/// allowed, no change of state where it is committed again.
pub fn check_exactly_once(record: &RunRecord, options: &SafetyOptions) -> Vec<Violation> {
    exactly_once(record, &Views::new(record), options)
}

pub(crate) fn exactly_once(
    record: &RunRecord,
    views: &Views<'_>,
    options: &SafetyOptions,
) -> Vec<Violation> {
    let mut collector = Collector::new(Property::ExactlyOnce);
    let applies = &views.applies_by_slot;
    let committed = &views.commits_by_request;
    for (request, info) in committed.iter() {
        if !info.at_several_slots() {
            continue;
        }
        let slots: Vec<u64> = info.slots().map(|commit| commit.slot).collect();
        if !options.duplicate_log_entries_allowed {
            collector.report(format!("{request} committed at slots {slots:?}"));
            continue;
        }
        for &slot in &slots[1..] {
            if let Some(node) = changed_state_at(applies, slot) {
                collector.report(format!(
                    "{request} committed at slots {slots:?}: applying it again at slot {slot} \
                     changed n{node}'s state (applied twice)"
                ));
            }
        }
    }
    let mut completed = RequestMap::new(record.completions.len());
    for completion in &record.completions {
        if !completed.insert_first(completion.request, ()) {
            collector.report(format!(
                "{} completed twice (again at {})",
                completion.request,
                at(completion.time_ns)
            ));
        }
    }
    for group in applies.groups() {
        check_state_digests(group, &mut collector);
    }
    collector.finish()
}

/// A node whose state digest differs between `slot - 1` and `slot`, among nodes that
/// reported both (a deduplicated retry leaves the state as it was).
fn changed_state_at(applies: &AppliesBySlot<'_>, slot: u64) -> Option<u32> {
    let before = applies.slot(slot.checked_sub(1)?);
    let after = applies.slot(slot);
    after.iter().find_map(|apply| {
        let first_after = digest_of(after, apply.node)?;
        match digest_of(before, apply.node) {
            Some(first_before) if first_before != first_after => Some(apply.node),
            _ => None,
        }
    })
}

/// All applies of one slot leave the same state digest.
fn check_state_digests(group: &[&ApplyRecord], collector: &mut Collector) {
    let first = group[0];
    let mut reported: Vec<u32> = Vec::new();
    for apply in group {
        if apply.state_digest != first.state_digest && !reported.contains(&apply.node) {
            reported.push(apply.node);
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
