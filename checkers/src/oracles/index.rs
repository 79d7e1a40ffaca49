//! Sorted views of a [`RunRecord`] the safety oracles share.
//!
//! The oracles run after every simulated seed, so they avoid per-record tree nodes: each
//! view is one vector of references, sorted once with a stable sort (record order survives
//! within equal keys, so "first" means first recorded) and searched by binary search.

use super::record::{ApplyRecord, CommitRecord, Invocation, RequestId, RunRecord};

/// Commit records by slot, in record order within a slot.
pub(crate) struct CommitsBySlot<'a> {
    sorted: Vec<&'a CommitRecord>,
}

impl<'a> CommitsBySlot<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<&CommitRecord> = record.commits.iter().collect();
        sorted.sort_by_key(|commit| commit.slot);
        CommitsBySlot { sorted }
    }

    /// The commits of one slot, in record order.
    pub(crate) fn slot(&self, slot: u64) -> &[&'a CommitRecord] {
        let start = self.sorted.partition_point(|commit| commit.slot < slot);
        let end = self.sorted.partition_point(|commit| commit.slot <= slot);
        &self.sorted[start..end]
    }

    /// Each slot's commits, slots in increasing order.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &[&'a CommitRecord]> {
        self.sorted.chunk_by(|left, right| left.slot == right.slot)
    }
}

/// One request's commit records, sorted by slot then record order.
pub(crate) struct Committed<'r, 'a> {
    group: &'r [(RequestId, &'a CommitRecord)],
}

impl<'r, 'a> Committed<'r, 'a> {
    /// When the first node committed it.
    pub(crate) fn first_time_ns(&self) -> u64 {
        self.group
            .iter()
            .map(|(_, commit)| commit.time_ns)
            .min()
            .unwrap_or(0)
    }

    /// Distinct nodes that committed it, in order.
    pub(crate) fn nodes(&self) -> Vec<u32> {
        let mut nodes: Vec<u32> = self.group.iter().map(|(_, commit)| commit.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The first commit record at each slot it was committed at, slots increasing.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &'a CommitRecord> + 'r {
        self.group
            .chunk_by(|left, right| left.1.slot == right.1.slot)
            .map(|same_slot| same_slot[0].1)
    }

    /// True when it was committed at more than one slot.
    pub(crate) fn at_several_slots(&self) -> bool {
        self.group
            .iter()
            .any(|(_, commit)| commit.slot != self.group[0].1.slot)
    }
}

/// Commit records by request identity (no-ops left out).
pub(crate) struct CommitsByRequest<'a> {
    sorted: Vec<(RequestId, &'a CommitRecord)>,
}

impl<'a> CommitsByRequest<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<(RequestId, &CommitRecord)> = record
            .commits
            .iter()
            .filter_map(|commit| commit.entry.request.map(|request| (request, commit)))
            .collect();
        sorted.sort_by_key(|(request, commit)| (*request, commit.slot));
        CommitsByRequest { sorted }
    }

    pub(crate) fn get(&self, request: RequestId) -> Option<Committed<'_, 'a>> {
        let start = self.sorted.partition_point(|(known, _)| *known < request);
        let end = self.sorted.partition_point(|(known, _)| *known <= request);
        (start < end).then(|| Committed {
            group: &self.sorted[start..end],
        })
    }

    /// Each committed request, in request order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RequestId, Committed<'_, 'a>)> {
        self.sorted
            .chunk_by(|left, right| left.0 == right.0)
            .map(|group| (group[0].0, Committed { group }))
    }
}

/// First invocation of each request identity.
pub(crate) struct Invocations<'a> {
    sorted: Vec<&'a Invocation>,
}

impl<'a> Invocations<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<&Invocation> = record.invocations.iter().collect();
        sorted.sort_by_key(|invocation| invocation.request);
        sorted.dedup_by_key(|invocation| invocation.request);
        Invocations { sorted }
    }

    pub(crate) fn get(&self, request: RequestId) -> Option<&'a Invocation> {
        self.sorted
            .binary_search_by_key(&request, |invocation| invocation.request)
            .ok()
            .map(|index| self.sorted[index])
    }
}

/// Apply records by slot, in record order within a slot.
pub(crate) struct AppliesBySlot<'a> {
    sorted: Vec<&'a ApplyRecord>,
}

impl<'a> AppliesBySlot<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<&ApplyRecord> = record.applies.iter().collect();
        sorted.sort_by_key(|apply| apply.slot);
        AppliesBySlot { sorted }
    }

    /// The applies of one slot, in record order.
    pub(crate) fn slot(&self, slot: u64) -> &[&'a ApplyRecord] {
        let start = self.sorted.partition_point(|apply| apply.slot < slot);
        let end = self.sorted.partition_point(|apply| apply.slot <= slot);
        &self.sorted[start..end]
    }

    /// Each slot's applies, slots in increasing order.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &[&'a ApplyRecord]> {
        self.sorted.chunk_by(|left, right| left.slot == right.slot)
    }
}

/// The state digest after `node`'s first apply of a slot, among that slot's applies.
pub(crate) fn digest_of(applies: &[&ApplyRecord], node: u32) -> Option<u64> {
    applies
        .iter()
        .find(|apply| apply.node == node)
        .map(|apply| apply.state_digest)
}
