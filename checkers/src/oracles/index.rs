//! Sorted views of a [`RunRecord`] the safety oracles share.
//!
//! The oracles run after every simulated seed, so they avoid per-record tree nodes: each
//! view is one vector of references, sorted once with a stable sort (record order survives
//! within equal keys, so "first" means first recorded) and searched by binary search, or
//! looked up by request identity in per-client tables ([`RequestMap`]). Slots,
//! clients and sequence numbers are small dense integers, so the sorts are counting sorts
//! (stable, linear) whenever the keys span little more than the records; [`Views`] builds
//! each view once for all the oracles.

use std::collections::BTreeMap;

use super::record::{ApplyRecord, CommitRecord, Invocation, RequestId, RunRecord};

/// Every view, built once.
pub(crate) struct Views<'a> {
    pub(crate) commits_by_slot: CommitsBySlot<'a>,
    pub(crate) commits_by_request: CommitsByRequest<'a>,
    pub(crate) applies_by_slot: AppliesBySlot<'a>,
    pub(crate) invocations: Invocations<'a>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let commits_by_slot = CommitsBySlot::new(record);
        Views {
            commits_by_request: CommitsByRequest::from_slots(&commits_by_slot),
            commits_by_slot,
            applies_by_slot: AppliesBySlot::new(record),
            invocations: Invocations::new(record),
        }
    }
}

/// Keys spanning more than this many times the items (plus a constant) are sorted by
/// comparison instead of counting.
const DENSE_SPAN_PER_ITEM: u64 = 4;
const DENSE_SPAN_MIN: u64 = 1024;

/// Sorts `items` stably by `key`: the same order as `sort_by_key`, in linear time when the
/// keys are dense.
fn sort_by_dense_key<T: Copy>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let Some((low, high)) = items.iter().map(&key).fold(None, |range, key| match range {
        None => Some((key, key)),
        Some((low, high)) => Some((key.min(low), key.max(high))),
    }) else {
        return;
    };
    let span = high - low;
    if span > DENSE_SPAN_PER_ITEM * items.len() as u64 + DENSE_SPAN_MIN {
        items.sort_by_key(key);
        return;
    }
    let mut starts = vec![0usize; span as usize + 2];
    for item in items.iter() {
        starts[(key(item) - low) as usize + 1] += 1;
    }
    for index in 1..starts.len() {
        starts[index] += starts[index - 1];
    }
    let mut sorted = items.clone();
    for item in items.iter() {
        let slot = &mut starts[(key(item) - low) as usize];
        sorted[*slot] = *item;
        *slot += 1;
    }
    *items = sorted;
}

/// Sorts `items` stably by request (client, then sequence): one counting pass over
/// `client * (largest sequence + 1) + sequence` when that is small, else two passes.
fn sort_by_request<T: Copy>(items: &mut Vec<T>, request: impl Fn(&T) -> RequestId) {
    let sequences = items
        .iter()
        .map(|item| request(item).sequence)
        .max()
        .and_then(|largest| largest.checked_add(1));
    let clients = items.iter().map(|item| request(item).client).max();
    if let (Some(sequences), Some(clients)) = (sequences, clients) {
        if u64::from(clients)
            .checked_add(1)
            .and_then(|clients| clients.checked_mul(sequences))
            .is_some()
        {
            sort_by_dense_key(items, |item| {
                let request = request(item);
                u64::from(request.client) * sequences + request.sequence
            });
            return;
        }
    }
    sort_by_dense_key(items, |item| request(item).sequence);
    sort_by_dense_key(items, |item| u64::from(request(item).client));
}

/// Commit records by slot, in record order within a slot.
pub(crate) struct CommitsBySlot<'a> {
    sorted: Vec<&'a CommitRecord>,
}

impl<'a> CommitsBySlot<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<&CommitRecord> = record.commits.iter().collect();
        sort_by_dense_key(&mut sorted, |commit| commit.slot);
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
    /// Each request's range in `sorted`.
    groups: RequestMap<(usize, usize)>,
}

impl<'a> CommitsByRequest<'a> {
    /// From the commits by slot: sorting those stably by request orders them by request,
    /// then slot, then record order.
    pub(crate) fn from_slots(by_slot: &CommitsBySlot<'a>) -> Self {
        let mut sorted: Vec<(RequestId, &CommitRecord)> = Vec::with_capacity(by_slot.sorted.len());
        sorted.extend(
            (by_slot.sorted.iter())
                .filter_map(|commit| commit.entry.request.map(|request| (request, *commit))),
        );
        sort_by_request(&mut sorted, |(request, _)| *request);
        let mut groups = RequestMap::new(sorted.len());
        let mut start = 0;
        for group in sorted.chunk_by(|left, right| left.0 == right.0) {
            groups.insert_first(group[0].0, (start, start + group.len()));
            start += group.len();
        }
        CommitsByRequest { sorted, groups }
    }

    pub(crate) fn get(&self, request: RequestId) -> Option<Committed<'_, 'a>> {
        let (start, end) = self.groups.get(request)?;
        Some(Committed {
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
    first: RequestMap<&'a Invocation>,
}

impl<'a> Invocations<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut first = RequestMap::new(record.invocations.len());
        for invocation in &record.invocations {
            first.insert_first(invocation.request, invocation);
        }
        Invocations { first }
    }

    pub(crate) fn get(&self, request: RequestId) -> Option<&'a Invocation> {
        self.first.get(request)
    }
}

/// A map from request identity, for lookups by the thousand. Sequence numbers are dense per
/// client (1, 2, ...), so most requests sit in a per-client table indexed by sequence number;
/// the others (a huge client id or sequence number) in a tree.
pub struct RequestMap<V> {
    tables: Vec<Vec<Option<V>>>,
    others: BTreeMap<RequestId, Option<V>>,
    /// Sequence numbers below this go in the tables.
    sequences_max: u64,
}

/// Client ids below this go in the tables.
const TABLE_CLIENTS_MAX: u32 = 1 << 10;

impl<V: Copy> RequestMap<V> {
    /// A map for about `requests` requests (the tables never outgrow a few times that).
    pub fn new(requests: usize) -> Self {
        RequestMap {
            tables: Vec::new(),
            others: BTreeMap::new(),
            sequences_max: DENSE_SPAN_PER_ITEM * requests as u64 + DENSE_SPAN_MIN,
        }
    }

    fn in_tables(&self, request: RequestId) -> bool {
        request.client < TABLE_CLIENTS_MAX && request.sequence < self.sequences_max
    }

    pub fn get(&self, request: RequestId) -> Option<V> {
        if !self.in_tables(request) {
            return self.others.get(&request).copied().flatten();
        }
        let table = self.tables.get(request.client as usize)?;
        table.get(request.sequence as usize).copied().flatten()
    }

    /// Maps `request` to `value` unless it is mapped already; true if it was not.
    pub fn insert_first(&mut self, request: RequestId, value: V) -> bool {
        let entry = self.entry(request);
        let new = entry.is_none();
        entry.get_or_insert(value);
        new
    }

    /// Maps `request` to `value`, replacing what it mapped to.
    pub fn insert(&mut self, request: RequestId, value: V) {
        *self.entry(request) = Some(value);
    }

    fn entry(&mut self, request: RequestId) -> &mut Option<V> {
        if !self.in_tables(request) {
            return self.others.entry(request).or_insert(None);
        }
        let (client, sequence) = (request.client as usize, request.sequence as usize);
        if self.tables.len() <= client {
            self.tables.resize_with(client + 1, Vec::new);
        }
        let table = &mut self.tables[client];
        if table.len() <= sequence {
            let len = (sequence + 1).max(table.len() * 2);
            table.resize(len.min(self.sequences_max as usize), None);
        }
        &mut table[sequence]
    }
}

/// Apply records by slot, in record order within a slot.
pub(crate) struct AppliesBySlot<'a> {
    sorted: Vec<&'a ApplyRecord>,
}

impl<'a> AppliesBySlot<'a> {
    pub(crate) fn new(record: &'a RunRecord) -> Self {
        let mut sorted: Vec<&ApplyRecord> = record.applies.iter().collect();
        sort_by_dense_key(&mut sorted, |apply| apply.slot);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The next pseudo-random word: the state, mixed again.
    fn splitmix64(state: &mut u64) -> u64 {
        *state = crate::linearizability::memo::splitmix64(*state);
        *state
    }

    #[test]
    fn counting_sorts_order_as_the_stable_sort_does() {
        let mut rng = 7;
        for case in 0..200u64 {
            let len = (splitmix64(&mut rng) % 300) as usize;
            // Dense keys, sparse keys (the comparison fallback) and huge ones.
            let span = [5, 1_000, 100_000, u64::MAX][(case % 4) as usize];
            let items: Vec<(RequestId, usize)> = (0..len)
                .map(|position| {
                    let client = (splitmix64(&mut rng) % 4) as u32;
                    let sequence = splitmix64(&mut rng) % span.max(1);
                    (RequestId::new(client, sequence), position)
                })
                .collect();
            let mut by_key = items.clone();
            by_key.sort_by_key(|(request, _)| request.sequence);
            let mut counted = items.clone();
            sort_by_dense_key(&mut counted, |(request, _)| request.sequence);
            assert_eq!(counted, by_key, "case {case}");
            let mut by_request = items.clone();
            by_request.sort_by_key(|(request, _)| *request);
            let mut counted = items;
            sort_by_request(&mut counted, |(request, _)| *request);
            assert_eq!(counted, by_request, "case {case}");
        }
    }

    #[test]
    fn request_maps_keep_the_first_value_like_a_tree() {
        let mut rng = 11;
        for case in 0..100u64 {
            let len = (splitmix64(&mut rng) % 200) as usize;
            let mut map = RequestMap::new(len / 2);
            let mut tree = BTreeMap::new();
            for value in 0..len {
                let client = [1, 7, 5_000][(splitmix64(&mut rng) % 3) as usize];
                let sequence = match splitmix64(&mut rng) % 4 {
                    0 => u64::MAX - splitmix64(&mut rng) % 3,
                    1 => 2_000 + splitmix64(&mut rng) % 3,
                    _ => splitmix64(&mut rng) % 40,
                };
                let request = RequestId::new(client, sequence);
                let new = !tree.contains_key(&request);
                tree.entry(request).or_insert(value);
                assert_eq!(map.insert_first(request, value), new, "case {case}");
            }
            for client in [0, 1, 7, 5_000] {
                for sequence in (0..50).chain(1_990..2_010).chain(u64::MAX - 4..=u64::MAX) {
                    let request = RequestId::new(client, sequence);
                    assert_eq!(map.get(request), tree.get(&request).copied(), "case {case}");
                }
            }
        }
    }
}
