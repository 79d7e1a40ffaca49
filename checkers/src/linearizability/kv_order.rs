//! Orderings a key-value get's value proves ([`KeyValue`](super::KeyValue)'s
//! [`Model::precedences`](super::Model::precedences)).
//!
//! A key's value is the value of the last put (or successful compare-and-set) followed by the
//! appends after it, in order. If a get's value splits into "optional reset value, then append
//! values" in exactly one way (as strings), every linearization has writes of exactly those
//! values, in that order, before the get. A piece written by exactly one operation names that
//! operation, so the uniquely named pieces are ordered among themselves and the last of them
//! precedes the get. A write of a value that is not a piece did not happen between the reset
//! and the get: it comes before the reset or after the get (after the get if there is no reset
//! piece, as no write is empty). A get whose value cannot be split is left to the search, which
//! will find it illegal.
//!
//! The last fact names every other write of the key, so it is stated once per get as a
//! [`Precedence::NoneBetween`] over the key's writes (a group) with the piece writers as
//! exceptions, not once per (get, write) pair. Written values are interned once per key, so a
//! split costs hash look-ups of slices of the get's value and no string comparisons in trees.

use std::collections::BTreeMap;

use super::intern::FastMap;
use super::model::{KvInput, KvOp, KvOutput, Precedence};

/// See the module doc.
pub fn kv_precedences(operations: &[(&KvInput, Option<&KvOutput>)]) -> Vec<Precedence> {
    // Typically one `Before` and one window per get and a `Member` per write: room for two
    // per operation, so the (large) elements are not copied again and again as it grows.
    let mut edges = Vec::with_capacity(2 * operations.len());
    let mut scratch = Scratch::default();
    let first_key = operations.first().map(|(input, _)| input.key.as_str());
    if operations
        .iter()
        .all(|(input, _)| Some(input.key.as_str()) == first_key)
    {
        // One key (a partition, as the checker usually asks): no grouping needed.
        let members: Vec<usize> = (0..operations.len()).collect();
        key_precedences(operations, &members, 0, &mut edges, &mut scratch);
        return edges;
    }
    let mut keys: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, (input, _)) in operations.iter().enumerate() {
        keys.entry(input.key.as_str()).or_default().push(index);
    }
    for (group, members) in keys.values().enumerate() {
        key_precedences(operations, members, group, &mut edges, &mut scratch);
    }
    // Duplicates are harmless (the search counts them in and out alike).
    edges
}

/// Per distinct written value of one key: who wrote it.
#[derive(Clone, Copy)]
struct Writers {
    /// Writers of the value, and how many of them append (the others reset the key).
    count: u32,
    appends: u32,
    /// Some writer, and some appending writer.
    any: usize,
    any_append: usize,
    any_resets: bool,
}

/// The writes of one key, by value.
struct Writes<'v> {
    ids: FastMap<&'v str, u32>,
    values: Vec<Writers>,
    /// Writers of value `id` are `writers[starts[id]..starts[id + 1]]`.
    starts: Vec<usize>,
    writers: Vec<usize>,
    /// Distinct lengths of written values, ascending.
    lengths: Vec<usize>,
}

impl Writes<'_> {
    /// The one operation that can have written value `id` at a start (`first`) or after it,
    /// with whether it resets the key.
    fn only_writer(&self, id: u32, first: bool) -> Option<(usize, bool)> {
        let value = &self.values[id as usize];
        if first {
            (value.count == 1).then_some((value.any, value.any_resets))
        } else {
            (value.appends == 1).then_some((value.any_append, false))
        }
    }

    fn can_write(&self, id: u32, first: bool) -> bool {
        let value = &self.values[id as usize];
        if first {
            value.count > 0
        } else {
            value.appends > 0
        }
    }

    fn writers_of(&self, id: u32) -> &[usize] {
        &self.writers[self.starts[id as usize]..self.starts[id as usize + 1]]
    }
}

fn written_value(input: &KvInput) -> Option<(&str, bool)> {
    match &input.op {
        KvOp::Get => None,
        KvOp::Put(value) => Some((value.as_str(), true)),
        KvOp::Cas { to, .. } => Some((to.as_str(), true)),
        KvOp::Append(value) => Some((value.as_str(), false)),
    }
}

fn writes<'v>(operations: &[(&'v KvInput, Option<&KvOutput>)], members: &[usize]) -> Writes<'v> {
    // Room for every member to write its own value: no rehashing as values come in.
    let mut ids: FastMap<&str, u32> =
        FastMap::with_capacity_and_hasher(members.len(), Default::default());
    let mut values: Vec<Writers> = Vec::with_capacity(members.len());
    let mut of_write: Vec<u32> = Vec::with_capacity(members.len());
    for &index in members {
        let Some((value, resets)) = written_value(operations[index].0) else {
            continue;
        };
        let next = values.len() as u32;
        let id = *ids.entry(value).or_insert(next);
        if id == next {
            values.push(Writers {
                count: 0,
                appends: 0,
                any: index,
                any_append: index,
                any_resets: resets,
            });
        }
        let writers = &mut values[id as usize];
        writers.count += 1;
        if !resets {
            writers.appends += 1;
            writers.any_append = index;
        }
        of_write.push(id);
    }
    // Writers grouped by value, in member order within a value.
    let mut starts = vec![0usize; values.len() + 1];
    for &id in &of_write {
        starts[id as usize + 1] += 1;
    }
    for id in 0..values.len() {
        starts[id + 1] += starts[id];
    }
    let mut fill = starts.clone();
    let mut writers = vec![0usize; of_write.len()];
    let written = members
        .iter()
        .copied()
        .filter(|&index| written_value(operations[index].0).is_some());
    for (index, &id) in written.zip(&of_write) {
        writers[fill[id as usize]] = index;
        fill[id as usize] += 1;
    }
    let mut lengths: Vec<usize> = ids.keys().map(|value| value.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    Writes {
        ids,
        values,
        starts,
        writers,
        lengths,
    }
}

/// Buffers reused across gets.
#[derive(Default)]
struct Scratch {
    ways: Vec<u8>,
    from: Vec<(usize, u32)>,
    pieces: Vec<u32>,
    named: Vec<usize>,
    distinct: Vec<usize>,
}

fn key_precedences(
    operations: &[(&KvInput, Option<&KvOutput>)],
    members: &[usize],
    group: usize,
    edges: &mut Vec<Precedence>,
    scratch: &mut Scratch,
) {
    let writes = writes(operations, members);
    // An empty write splits nothing and could hide anywhere: no claims.
    if writes.lengths.first().is_none_or(|&length| length == 0) {
        return;
    }
    let mut windows = false;
    for &get in members {
        let (input, Some(Some(value))) = operations[get] else {
            continue;
        };
        if input.op != KvOp::Get || value.is_empty() || !unique_split(value, &writes, scratch) {
            continue;
        }
        let Scratch {
            pieces,
            named,
            distinct,
            ..
        } = &mut *scratch;
        named.clear();
        named.extend(
            pieces
                .iter()
                .enumerate()
                .filter_map(|(i, &piece)| writes.only_writer(piece, i == 0))
                .map(|(writer, _)| writer),
        );
        distinct.clear();
        distinct.extend_from_slice(named);
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != named.len() {
            continue; // one write used twice: the get is impossible, the search will say so
        }
        for pair in named.windows(2) {
            edges.push(Precedence::Before(pair[0], pair[1]));
        }
        if let Some(&last) = named.last() {
            edges.push(Precedence::Before(last, get));
        }
        // Who reset the key last before the get: nobody, or the one writer of the first piece.
        let after = match writes.only_writer(pieces[0], true) {
            Some((first, true)) => Some(first),
            Some((_, false)) => None,
            None => continue, // several candidates: no claims about the others
        };
        pieces.sort_unstable();
        pieces.dedup();
        let except = pieces
            .iter()
            .flat_map(|&piece| writes.writers_of(piece).iter().copied())
            .collect();
        edges.push(Precedence::NoneBetween {
            group,
            after,
            before: get,
            except,
        });
        windows = true;
    }
    if windows {
        let written = members
            .iter()
            .copied()
            .filter(|&index| written_value(operations[index].0).is_some());
        edges.extend(written.map(|op| Precedence::Member { op, group }));
    }
}

/// Splits `value` into written values (ids into `writes`, left in `scratch.pieces`) if it
/// splits in exactly one way.
fn unique_split(value: &str, writes: &Writes<'_>, scratch: &mut Scratch) -> bool {
    let bytes = value.len();
    // ways[i]: number of splits of value[..i] (capped at 2); from[i]: where the last piece
    // starts, and its value.
    scratch.ways.clear();
    scratch.ways.resize(bytes + 1, 0);
    scratch.from.clear();
    scratch.from.resize(bytes + 1, (0, 0));
    let (ways, from) = (&mut scratch.ways, &mut scratch.from);
    ways[0] = 1;
    // Forward, from reachable positions only (a handful of piece lengths, so this is cheap).
    for start in 0..bytes {
        if ways[start] == 0 {
            continue;
        }
        for &length in &writes.lengths {
            let end = start + length;
            if end > bytes {
                break;
            }
            let Some(piece) = value.get(start..end) else {
                continue;
            };
            let Some(&id) = writes.ids.get(piece) else {
                continue;
            };
            if writes.can_write(id, start == 0) {
                ways[end] = (ways[end] + ways[start]).min(2);
                from[end] = (start, id);
            }
        }
    }
    if ways[bytes] != 1 {
        return false;
    }
    scratch.pieces.clear();
    let mut end = bytes;
    while end > 0 {
        let (start, id) = from[end];
        scratch.pieces.push(id);
        end = start;
    }
    scratch.pieces.reverse();
    true
}
