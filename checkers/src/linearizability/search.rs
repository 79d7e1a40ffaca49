//! Wing & Gong's depth-first search for a linearization of one partition, with Lowe's memo.
//!
//! The history is a doubly linked list of call and return events in time order. At each step
//! the search tries, in order, every operation whose call comes before the first return still in
//! the list (those are exactly the operations that may take effect next). Linearizing one lifts
//! its call and return out of the list and restarts from the front; reaching a return means the
//! last choice was wrong, so the search backtracks. A configuration (linearized set, state)
//! already explored is never explored again (the memo).
//!
//! Semantics of outcomes: a failed operation did not happen and is not in the list. An
//! operation with an unknown outcome has no return (its return is at infinity): it may be
//! linearized anywhere after its call, or never, so the search succeeds once every definite
//! operation is linearized. Two reductions follow from that, both exact:
//! - linearizing an unknown operation that leaves the state unchanged is the same as dropping it,
//!   so it is skipped (this removes every timed-out read);
//! - unknown operations with equal inputs are interchangeable once both are called, so the
//!   later-called one is only tried after its earlier twin is linearized;
//! - a definite read-only operation (the model says it never changes the state) that may take
//!   effect now and is legal in the current state is linearized now, as the only choice: in any
//!   linearization of the rest it can be moved to the front (everything that must precede it is
//!   already linearized, and it changes nothing), so no other choice needs trying here, and if
//!   the configuration after it was already explored the current one fails too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::intern::{FastMap, Interner};
use super::memo::{key, zobrist, Memo};
use super::model::Model;
use super::order::Order;

/// One operation of a partition, ready for the search.
pub struct Prepared<'h, M: Model> {
    /// Index in the whole history.
    pub index: usize,
    pub call: u64,
    /// `None` when the outcome is unknown (return at infinity).
    pub ret: Option<u64>,
    pub input: &'h M::Input,
    pub output: Option<&'h M::Output>,
    /// Ordering hint: hinted operations are tried first, in hint order.
    pub hint: Option<u64>,
}

/// Why a search stopped without a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Steps,
    Memory,
    Timeout,
    Cancelled,
}

/// What the search found, in partition-local operation indices.
pub enum SearchResult {
    Linearizable {
        order: Vec<u32>,
    },
    Illegal {
        /// The longest linearizable prefix found.
        prefix: Vec<u32>,
        /// The operation whose return no explored configuration got past at that prefix.
        blocked: u32,
    },
    Stopped(StopReason),
}

/// Limits and cancellation for one search.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    pub steps_max: u64,
    pub memory_bytes_max: usize,
    pub deadline: Option<Instant>,
    /// The search stops when this drops to or below `partition`.
    pub cancel_at_or_below: &'a AtomicUsize,
    pub partition: usize,
    /// Record per operation the longest partial linearization containing it.
    pub explain: bool,
}

/// Per-operation longest partial linearizations (explain mode).
#[derive(Default)]
pub struct Partials {
    pub snapshots: Vec<Vec<u32>>,
    /// Per operation: index into `snapshots`, if it was ever linearized.
    pub best: Vec<Option<usize>>,
    /// Search steps taken.
    pub steps: u64,
}

struct Frame {
    op: u32,
    state_before: u32,
    /// Index of the choice in its node's candidates.
    position: usize,
    alternative: usize,
    /// Linearized as the only choice worth trying (a legal read-only operation).
    forced: bool,
}

const HEAD: usize = 0;
const CHECK_EVERY: u64 = 1024;

/// The event list: entry 0 is the head sentinel, the last one the tail sentinel.
struct Events {
    /// Per entry: (operation, is_return).
    kind: Vec<(u32, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_entry: Vec<usize>,
    return_entry: Vec<Option<usize>>,
}

impl Events {
    fn new<M: Model>(ops: &[Prepared<'_, M>]) -> Self {
        // Sort key: position, then calls before returns (intervals are closed). Operations
        // usually come in call order, so calls and returns are sorted apart and merged.
        let mut calls: Vec<(u64, bool, u32)> = (ops.iter().enumerate())
            .map(|(i, op)| (op.call, false, i as u32))
            .collect();
        if !calls.is_sorted() {
            calls.sort_unstable();
        }
        let mut returns: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len());
        returns.extend(
            (ops.iter().enumerate()).filter_map(|(i, op)| op.ret.map(|ret| (ret, true, i as u32))),
        );
        returns.sort_unstable();
        let events = merge_sorted(&calls, &returns);
        let count = events.len() + 2;
        let mut list = Events {
            kind: Vec::with_capacity(count),
            next: (1..=count).collect(),
            prev: (0..count).map(|i| i.wrapping_sub(1)).collect(),
            call_entry: vec![0; ops.len()],
            return_entry: vec![None; ops.len()],
        };
        list.kind.push((u32::MAX, false));
        for (entry, &(_, is_return, op)) in events.iter().enumerate() {
            let entry = entry + 1;
            list.kind.push((op, is_return));
            if is_return {
                list.return_entry[op as usize] = Some(entry);
            } else {
                list.call_entry[op as usize] = entry;
            }
        }
        list.kind.push((u32::MAX, true));
        list
    }

    fn tail(&self) -> usize {
        self.kind.len() - 1
    }

    fn unlink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = entry;
        self.prev[next] = entry;
    }

    fn lift(&mut self, op: u32) {
        self.unlink(self.call_entry[op as usize]);
        if let Some(ret) = self.return_entry[op as usize] {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, op: u32) {
        if let Some(ret) = self.return_entry[op as usize] {
            self.relink(ret);
        }
        self.relink(self.call_entry[op as usize]);
    }
}

/// The union of two sorted lists, sorted.
fn merge_sorted<T: Copy + Ord>(left: &[T], right: &[T]) -> Vec<T> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (0, 0);
    while l < left.len() && r < right.len() {
        if right[r] < left[l] {
            merged.push(right[r]);
            r += 1;
        } else {
            merged.push(left[l]);
            l += 1;
        }
    }
    merged.extend_from_slice(&left[l..]);
    merged.extend_from_slice(&right[r..]);
    merged
}

/// For each unknown operation, the latest earlier-called unknown operation with an equal input.
fn twins<M: Model>(ops: &[Prepared<'_, M>]) -> Vec<Option<u32>> {
    let mut order: Vec<u32> = (0..ops.len() as u32).collect();
    order.sort_by_key(|&i| ops[i as usize].call);
    let mut last: FastMap<&M::Input, u32> = FastMap::default();
    let mut twin = vec![None; ops.len()];
    for i in order {
        let op = &ops[i as usize];
        if op.ret.is_none() {
            twin[i as usize] = last.insert(op.input, i);
        }
    }
    twin
}

/// Mutable search position: the stack and everything derived from it.
struct Position {
    stack: Vec<Frame>,
    state: u32,
    hash: (u64, u64),
    linearized: Vec<bool>,
    definite_left: usize,
}

impl Position {
    fn order(&self) -> Vec<u32> {
        self.stack.iter().map(|frame| frame.op).collect()
    }

    fn hash_with(&self, words: &[(u64, u64)], op: u32) -> (u64, u64) {
        let (a, b) = words[op as usize];
        (self.hash.0 ^ a, self.hash.1 ^ b)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        op: u32,
        next: u32,
        hash: (u64, u64),
        (position, alternative): (usize, usize),
        forced: bool,
        events: &mut Events,
        order: &mut Order,
    ) {
        order.lift(op);
        self.stack.push(Frame {
            op,
            state_before: self.state,
            position,
            alternative,
            forced,
        });
        self.state = next;
        self.hash = hash;
        self.linearized[op as usize] = true;
        if events.return_entry[op as usize].is_some() {
            self.definite_left -= 1;
        }
        events.lift(op);
    }

    fn pop(
        &mut self,
        words: &[(u64, u64)],
        events: &mut Events,
        order: &mut Order,
    ) -> Option<Frame> {
        let frame = self.stack.pop()?;
        order.unlift(frame.op);
        events.unlift(frame.op);
        self.state = frame.state_before;
        self.hash = self.hash_with(words, frame.op);
        self.linearized[frame.op as usize] = false;
        if events.return_entry[frame.op as usize].is_some() {
            self.definite_left += 1;
        }
        Some(frame)
    }
}

/// Searches one partition for a linearization.
pub fn search<M: Model>(
    model: &M,
    ops: &[Prepared<'_, M>],
    interner: &mut Interner<'_, M>,
    limits: &Limits<'_>,
    partials: &mut Partials,
) -> SearchResult {
    let order = Order::new(model, ops);
    let mut twin = twins(ops);
    for (op, twin_of) in twin.iter_mut().enumerate() {
        if order.constrained[op] || twin_of.is_some_and(|t| order.constrained[t as usize]) {
            *twin_of = None;
        }
    }
    if limits.explain {
        partials.best = vec![None; ops.len()];
    }
    let mut search = Search {
        ops,
        events: Events::new(ops),
        order,
        twin,
        read_only: ops
            .iter()
            .map(|op| op.ret.is_some() && model.is_read_only(op.input))
            .collect(),
        words: (0..ops.len()).map(zobrist).collect(),
        memo: Memo::new(limits.memory_bytes_max / 2),
        at: Position {
            stack: Vec::with_capacity(ops.len()),
            state: Interner::<M>::INIT,
            hash: (0, 0),
            linearized: vec![false; ops.len()],
            definite_left: ops.iter().filter(|op| op.ret.is_some()).count(),
        },
        node: Node::default(),
        deepest_block: None,
        interner,
        limits,
        partials,
    };
    search.run()
}

/// Everything one search owns.
struct Search<'s, 'h, 'm, M: Model> {
    ops: &'s [Prepared<'h, M>],
    events: Events,
    order: Order,
    twin: Vec<Option<u32>>,
    read_only: Vec<bool>,
    words: Vec<(u64, u64)>,
    memo: Memo,
    at: Position,
    node: Node,
    /// (depth, blocked operation, prefix) of the deepest dead end.
    deepest_block: Option<(usize, u32, Vec<u32>)>,
    interner: &'s mut Interner<'m, M>,
    limits: &'s Limits<'s>,
    partials: &'s mut Partials,
}

/// What to do next.
enum Next {
    /// A node just entered: look for a forced choice, then list the choices.
    Enter,
    /// Try the node's next choice.
    Choose,
    /// Undo the last choice.
    Backtrack,
}

impl<M: Model> Search<'_, '_, '_, M> {
    fn run(&mut self) -> SearchResult {
        let mut next = Next::Enter;
        loop {
            if self.at.definite_left == 0 {
                return SearchResult::Linearizable {
                    order: self.at.order(),
                };
            }
            if let Some(reason) = self.over_budget() {
                return SearchResult::Stopped(reason);
            }
            next = match next {
                Next::Enter => self.enter(),
                Next::Choose => self.choose(),
                Next::Backtrack => match self.backtrack() {
                    Ok(next) => next,
                    Err(illegal) => return illegal,
                },
            };
        }
    }

    fn over_budget(&mut self) -> Option<StopReason> {
        self.partials.steps += 1;
        if self.partials.steps >= self.limits.steps_max {
            return Some(StopReason::Steps);
        }
        if self.partials.steps.is_multiple_of(CHECK_EVERY) {
            return over_limits(self.limits, &self.memo, self.interner);
        }
        None
    }

    fn list_choices(&mut self) {
        let (ops, events, order) = (self.ops, &self.events, &self.order);
        self.node.candidates(
            ops,
            events,
            &self.read_only,
            order,
            &self.twin,
            &self.at.linearized,
        );
    }

    /// A definite read-only operation that is legal now can be linearized now without losing
    /// any linearization (see the module doc), so it is the only choice tried.
    fn enter(&mut self) -> Next {
        let forced = legal_read_only(
            self.ops,
            &self.events,
            &self.read_only,
            &self.order,
            self.interner,
            self.at.state,
        );
        let Some(op) = forced else {
            self.list_choices();
            return Next::Choose;
        };
        let hash = self.at.hash_with(&self.words, op);
        if !self.memo.insert(key(hash, self.at.state)) {
            return Next::Backtrack;
        }
        let state = self.at.state;
        self.lift(op, state, hash, (0, usize::MAX), true);
        Next::Enter
    }

    /// Tries the node's next choice (each of its successor states not yet explored).
    fn choose(&mut self) -> Next {
        let Some(&op) = self.node.ops.get(self.node.position) else {
            // Nothing left to try here: the first pending return cannot be passed.
            let depth = self.at.stack.len();
            if self
                .deepest_block
                .as_ref()
                .is_none_or(|(best, _, _)| depth > *best)
            {
                self.deepest_block = Some((depth, self.node.barrier, self.at.order()));
            }
            return Next::Backtrack;
        };
        let from = std::mem::take(&mut self.node.resume);
        let prepared = &self.ops[op as usize];
        let definite = prepared.ret.is_some();
        let state = self.at.state;
        let successors = self
            .interner
            .step(op, state, prepared.input, prepared.output);
        let hash = self.at.hash_with(&self.words, op);
        let mut chosen = None;
        for (alternative, &next) in successors.iter().enumerate().skip(from) {
            // (An operation a precedence names must stay linearizable: it may free others.)
            if !definite && next == state && !self.order.constrained[op as usize] {
                continue;
            }
            if self.memo.insert(key(hash, next)) {
                chosen = Some((alternative, next));
                break;
            }
        }
        let Some((alternative, next)) = chosen else {
            self.node.position += 1;
            return Next::Choose;
        };
        self.lift(op, next, hash, (self.node.position, alternative), false);
        Next::Enter
    }

    fn lift(&mut self, op: u32, next: u32, hash: (u64, u64), choice: (usize, usize), forced: bool) {
        self.at.push(
            op,
            next,
            hash,
            choice,
            forced,
            &mut self.events,
            &mut self.order,
        );
        if self.limits.explain {
            record_partial(&self.at, self.partials);
        }
    }

    /// Undoes the last choice; `Err` when there is none left (the history is illegal).
    fn backtrack(&mut self) -> Result<Next, SearchResult> {
        let Some(frame) = self.at.pop(&self.words, &mut self.events, &mut self.order) else {
            let (prefix, blocked) = match self.deepest_block.take() {
                Some((_, blocked, prefix)) => (prefix, blocked),
                None => (Vec::new(), u32::MAX),
            };
            return Err(SearchResult::Illegal { prefix, blocked });
        };
        if frame.forced {
            // Backtracking out of a forced choice backtracks out of its parent as well.
            return Ok(Next::Backtrack);
        }
        self.list_choices();
        self.node.position = frame.position;
        self.node.resume = frame.alternative + 1;
        Ok(Next::Choose)
    }
}

/// The choices at the current search node, in the order they are tried.
#[derive(Default)]
struct Node {
    ops: Vec<u32>,
    /// Next choice to try, and its first alternative successor state.
    position: usize,
    resume: usize,
    /// The operation of the first return still in the list.
    barrier: u32,
}

impl Node {
    /// The operations that may take effect next (called before the first pending return),
    /// minus those handled elsewhere, ordered by hint, then return (the most urgent first: a
    /// long-running operation is not linearized before it has to be), then call.
    fn candidates<M: Model>(
        &mut self,
        ops: &[Prepared<'_, M>],
        events: &Events,
        read_only: &[bool],
        order: &Order,
        twin: &[Option<u32>],
        linearized: &[bool],
    ) {
        self.ops.clear();
        self.position = 0;
        self.resume = 0;
        self.barrier = u32::MAX;
        let mut entry = events.next[HEAD];
        while entry != events.tail() {
            let (op, is_return) = events.kind[entry];
            if is_return {
                self.barrier = op;
                break;
            }
            let twin_waits = twin[op as usize].is_some_and(|t| !linearized[t as usize]);
            if !read_only[op as usize] && order.ready(op) && !twin_waits {
                self.ops.push(op);
            }
            entry = events.next[entry];
        }
        self.ops.sort_by_key(|&op| {
            let op = &ops[op as usize];
            (
                op.hint.unwrap_or(u64::MAX),
                op.ret.unwrap_or(u64::MAX),
                op.call,
            )
        });
    }
}

/// The first definite read-only operation that may take effect now and is legal in `state`.
fn legal_read_only<M: Model>(
    ops: &[Prepared<'_, M>],
    events: &Events,
    read_only: &[bool],
    order: &Order,
    interner: &mut Interner<'_, M>,
    state: u32,
) -> Option<u32> {
    let mut entry = events.next[HEAD];
    while entry != events.tail() {
        let (op, is_return) = events.kind[entry];
        if is_return {
            return None;
        }
        if read_only[op as usize] && order.ready(op) {
            let prepared = &ops[op as usize];
            if interner
                .step(op, state, prepared.input, prepared.output)
                .contains(&state)
            {
                return Some(op);
            }
        }
        entry = events.next[entry];
    }
    None
}

fn over_limits<M: Model>(
    limits: &Limits<'_>,
    memo: &Memo,
    interner: &Interner<'_, M>,
) -> Option<StopReason> {
    if limits.cancel_at_or_below.load(Ordering::Relaxed) <= limits.partition {
        return Some(StopReason::Cancelled);
    }
    if memo.bytes() + interner.bytes > limits.memory_bytes_max {
        return Some(StopReason::Memory);
    }
    // The wall clock only bounds the checker's own run time; it never decides a verdict.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    match limits.deadline {
        Some(deadline) if now >= deadline => Some(StopReason::Timeout),
        _ => None,
    }
}

fn record_partial(at: &Position, partials: &mut Partials) {
    let depth = at.stack.len();
    let improves = |op: u32, partials: &Partials| {
        partials.best[op as usize].is_none_or(|snapshot| partials.snapshots[snapshot].len() < depth)
    };
    if !at.stack.iter().any(|frame| improves(frame.op, partials)) {
        return;
    }
    let snapshot = partials.snapshots.len();
    partials.snapshots.push(at.order());
    for frame in &at.stack {
        if improves(frame.op, partials) {
            partials.best[frame.op as usize] = Some(snapshot);
        }
    }
}
