//! Model-proven orderings ([`Model::precedences`]), indexed for the search and tracked as
//! counts of what holds an operation back: predecessors not yet linearized, and open windows
//! (`after` linearized, `before` not) it may not enter.
//!
//! A [`Precedence::NoneBetween`] window over a group is not expanded into one window per member:
//! the search keeps, per group, how many of its windows are open and, per operation, how many
//! of the open windows of its group name it as an exception. A member is held back by as many
//! windows as the difference, which is exactly the count the expanded windows would give.

use std::collections::BTreeMap;

use super::model::{Model, Precedence};
use super::search::Prepared;

const NONE: u32 = u32::MAX;

/// Lists by operation, flattened: the items of operation `i` are
/// `items[starts[i]..starts[i + 1]]` (no allocation when there are no items at all).
struct ByOperation<T> {
    starts: Vec<u32>,
    items: Vec<T>,
}

impl<T: Copy + Default> ByOperation<T> {
    /// Groups `pairs` (operation, item) by operation, keeping their order within one.
    fn new(operations: usize, pairs: &[(u32, T)]) -> Self {
        if pairs.is_empty() {
            return ByOperation {
                starts: Vec::new(),
                items: Vec::new(),
            };
        }
        let mut starts = vec![0u32; operations + 1];
        for &(op, _) in pairs {
            starts[op as usize + 1] += 1;
        }
        for op in 0..operations {
            starts[op + 1] += starts[op];
        }
        let mut fill = starts.clone();
        let mut items = vec![T::default(); pairs.len()];
        for &(op, item) in pairs {
            items[fill[op as usize] as usize] = item;
            fill[op as usize] += 1;
        }
        ByOperation { starts, items }
    }

    fn of(&self, op: usize) -> &[T] {
        match self.starts.get(op..op + 2) {
            Some(&[start, end]) => &self.items[start as usize..end as usize],
            _ => &[],
        }
    }
}

/// A `NoneBetween` window: `after` (`NONE`: open from the start), `before`, and its
/// exceptions `except[except_start..except_end]` (members of `group` only, deduplicated).
#[derive(Clone, Copy, Default)]
struct Window {
    group: u32,
    after: u32,
    before: u32,
    except_start: u32,
    except_end: u32,
}

/// The orderings of one search, with the counts that say whether an operation may go next.
pub struct Order {
    successors: ByOperation<u32>,
    missing: Vec<u32>,
    /// Per `after`: (before, op) windows it opens; per `before`: (after, op) windows it closes.
    opens: ByOperation<(u32, u32)>,
    closes: ByOperation<(u32, u32)>,
    blocked: Vec<u32>,
    windows: Vec<Window>,
    except: Vec<u32>,
    /// Group windows by `after`, and by `before`.
    window_opens: ByOperation<u32>,
    window_closes: ByOperation<u32>,
    /// Per operation its group (`NONE`: none); per group its open windows; per operation the
    /// open windows of its group that name it as an exception.
    group_of: Vec<u32>,
    open_in_group: Vec<u32>,
    exempt_open: Vec<u32>,
    linearized: Vec<bool>,
    /// Mentioned by some precedence (twin symmetry no longer holds).
    pub constrained: Vec<bool>,
}

/// What the model's precedences say, validated and in local form.
#[derive(Default)]
struct Facts {
    before: Vec<(u32, u32)>,
    not_between: Vec<(u32, u32, u32)>,
    windows: Vec<Window>,
    except: Vec<u32>,
    group_of: Vec<u32>,
    groups: usize,
}

impl Facts {
    fn new(precedences: Vec<Precedence>, operations: usize) -> Self {
        let valid = |i: usize| i < operations;
        let mut facts = Facts::default();
        // Groups first: windows name their members through them.
        let mut group_ids: BTreeMap<usize, u32> = BTreeMap::new();
        // Members come in runs of one group: look the group up once per run.
        let mut last: Option<(usize, u32)> = None;
        // The same pass counts the other facts: each list grows once, not step by step.
        let (mut befores, mut windows, mut excepts) = (0, 0, 0);
        for precedence in &precedences {
            match *precedence {
                Precedence::Member { op, group } if valid(op) => {
                    if facts.group_of.is_empty() {
                        facts.group_of = vec![NONE; operations];
                    }
                    let id = match last {
                        Some((known, id)) if known == group => id,
                        _ => {
                            let next = group_ids.len() as u32;
                            *group_ids.entry(group).or_insert(next)
                        }
                    };
                    last = Some((group, id));
                    facts.group_of[op] = id;
                }
                Precedence::Before(..) => befores += 1,
                Precedence::NoneBetween { ref except, .. } => {
                    windows += 1;
                    // `after` and `before` may join the exceptions.
                    excepts += except.len() + 2;
                }
                _ => {}
            }
        }
        facts.groups = group_ids.len();
        facts.before.reserve(befores);
        facts.windows.reserve(windows);
        facts.except.reserve(excepts);
        for precedence in precedences {
            match precedence {
                Precedence::Before(before, after)
                    if valid(before) && valid(after) && before != after =>
                {
                    facts.before.push((before as u32, after as u32));
                }
                Precedence::NotBetween { op, after, before }
                    if valid(op)
                        && valid(after)
                        && valid(before)
                        && op != after
                        && op != before =>
                {
                    facts
                        .not_between
                        .push((op as u32, after as u32, before as u32));
                }
                Precedence::NoneBetween {
                    group,
                    after,
                    before,
                    except,
                } if valid(before) && after.is_none_or(valid) => {
                    let group = group_ids.get(&group).copied().unwrap_or(NONE);
                    facts.window(group, after, before, except);
                }
                _ => {}
            }
        }
        facts
    }

    /// Adds a window; `after` and `before` are never inside their own window.
    fn window(&mut self, group: u32, after: Option<usize>, before: usize, except: Vec<usize>) {
        let start = self.except.len();
        let named = except.into_iter().chain(after).chain([before]);
        for op in named {
            if self.group_of.get(op) == Some(&group) && group != NONE {
                self.except.push(op as u32);
            }
        }
        self.except[start..].sort_unstable();
        let kept = dedup_tail(&mut self.except, start);
        self.windows.push(Window {
            group,
            after: after.map_or(NONE, |after| after as u32),
            before: before as u32,
            except_start: start as u32,
            except_end: kept as u32,
        });
    }
}

/// Deduplicates the sorted `items[start..]` in place; returns the new length.
fn dedup_tail(items: &mut Vec<u32>, start: usize) -> usize {
    let mut kept = start;
    for read in start..items.len() {
        if kept == start || items[kept - 1] != items[read] {
            items[kept] = items[read];
            kept += 1;
        }
    }
    items.truncate(kept);
    kept
}

impl Order {
    /// The orderings `model` proves for `ops`.
    pub fn new<M: Model>(model: &M, ops: &[Prepared<'_, M>]) -> Self {
        let n = ops.len();
        let view: Vec<_> = ops.iter().map(|op| (op.input, op.output)).collect();
        let facts = Facts::new(model.precedences(&view), n);
        let mut missing = vec![0u32; n];
        let mut constrained = vec![false; n];
        for &(before, after) in &facts.before {
            missing[after as usize] += 1;
            constrained[before as usize] = true;
            constrained[after as usize] = true;
        }
        let successors = ByOperation::new(n, &facts.before);
        let opens: Vec<(u32, (u32, u32))> = facts
            .not_between
            .iter()
            .map(|&(op, after, before)| (after, (before, op)))
            .collect();
        let closes: Vec<(u32, (u32, u32))> = facts
            .not_between
            .iter()
            .map(|&(op, after, before)| (before, (after, op)))
            .collect();
        for &(op, _, _) in &facts.not_between {
            constrained[op as usize] = true;
        }
        let mut order = Order {
            successors,
            missing,
            opens: ByOperation::new(n, &opens),
            closes: ByOperation::new(n, &closes),
            blocked: vec![0; n],
            windows: Vec::new(),
            except: Vec::new(),
            window_opens: ByOperation::new(0, &[]),
            window_closes: ByOperation::new(0, &[]),
            group_of: Vec::new(),
            open_in_group: Vec::new(),
            exempt_open: Vec::new(),
            linearized: vec![false; n],
            constrained,
        };
        if !facts.windows.is_empty() {
            order.add_windows(facts, n);
        }
        order
    }

    fn add_windows(&mut self, facts: Facts, n: usize) {
        self.constrain_windows(&facts, n);
        let by_after: Vec<(u32, u32)> = (facts.windows.iter().enumerate())
            .filter(|(_, window)| window.after != NONE)
            .map(|(index, window)| (window.after, index as u32))
            .collect();
        let by_before: Vec<(u32, u32)> = (facts.windows.iter().enumerate())
            .map(|(index, window)| (window.before, index as u32))
            .collect();
        self.window_opens = ByOperation::new(n, &by_after);
        self.window_closes = ByOperation::new(n, &by_before);
        self.group_of = if facts.group_of.is_empty() {
            vec![NONE; n]
        } else {
            facts.group_of
        };
        self.open_in_group = vec![0; facts.groups];
        self.exempt_open = vec![0; n];
        self.windows = facts.windows;
        self.except = facts.except;
        // A window without an `after` is open until its `before` is linearized.
        for index in 0..self.windows.len() {
            if self.windows[index].after == NONE {
                self.open(index as u32, 1);
            }
        }
    }

    /// A member is constrained if some window of its group does not except it; the `before`
    /// of a window without `after` is, as it precedes the members it does not except.
    fn constrain_windows(&mut self, facts: &Facts, n: usize) {
        let mut size = vec![0usize; facts.groups];
        for &group in facts.group_of.iter().filter(|&&group| group != NONE) {
            size[group as usize] += 1;
        }
        let mut windows_of = vec![0usize; facts.groups];
        let mut excepted = vec![0usize; n];
        for window in facts.windows.iter().filter(|window| window.group != NONE) {
            windows_of[window.group as usize] += 1;
            let except = &facts.except[window.except_start as usize..window.except_end as usize];
            for &op in except {
                excepted[op as usize] += 1;
            }
            let inside = size[window.group as usize] - except.len();
            if window.after == NONE && inside > 0 {
                self.constrained[window.before as usize] = true;
            }
        }
        for (op, &group) in facts.group_of.iter().enumerate() {
            if group != NONE && excepted[op] < windows_of[group as usize] {
                self.constrained[op] = true;
            }
        }
    }

    /// Opens (`delta == 1`) or closes (`u32::MAX`, wrapping) a group window.
    fn open(&mut self, window: u32, delta: u32) {
        let window = self.windows[window as usize];
        if window.group == NONE {
            return;
        }
        let group = &mut self.open_in_group[window.group as usize];
        *group = group.wrapping_add(delta);
        for &op in &self.except[window.except_start as usize..window.except_end as usize] {
            let exempt = &mut self.exempt_open[op as usize];
            *exempt = exempt.wrapping_add(delta);
        }
    }

    /// May `op` take effect next, as far as the orderings go?
    pub fn ready(&self, op: u32) -> bool {
        let op = op as usize;
        if self.missing[op] != 0 || self.blocked[op] != 0 {
            return false;
        }
        match self.group_of.get(op) {
            Some(&group) if group != NONE => {
                self.open_in_group[group as usize] == self.exempt_open[op]
            }
            _ => true,
        }
    }

    pub fn lift(&mut self, op: u32) {
        let op = op as usize;
        for &after in self.successors.of(op) {
            self.missing[after as usize] -= 1;
        }
        for &(before, inside) in self.opens.of(op) {
            if !self.linearized[before as usize] {
                self.blocked[inside as usize] += 1;
            }
        }
        for &(after, inside) in self.closes.of(op) {
            if self.linearized[after as usize] {
                self.blocked[inside as usize] -= 1;
            }
        }
        self.lift_windows(op);
        self.linearized[op] = true;
    }

    fn lift_windows(&mut self, op: usize) {
        for index in 0..self.window_opens.of(op).len() {
            let window = self.window_opens.of(op)[index];
            if !self.linearized[self.windows[window as usize].before as usize] {
                self.open(window, 1);
            }
        }
        for index in 0..self.window_closes.of(op).len() {
            let window = self.window_closes.of(op)[index];
            let after = self.windows[window as usize].after;
            if after == NONE || self.linearized[after as usize] {
                self.open(window, u32::MAX);
            }
        }
    }

    pub fn unlift(&mut self, op: u32) {
        let op = op as usize;
        self.linearized[op] = false;
        for &after in self.successors.of(op) {
            self.missing[after as usize] += 1;
        }
        for &(before, inside) in self.opens.of(op) {
            if !self.linearized[before as usize] {
                self.blocked[inside as usize] -= 1;
            }
        }
        for &(after, inside) in self.closes.of(op) {
            if self.linearized[after as usize] {
                self.blocked[inside as usize] += 1;
            }
        }
        self.unlift_windows(op);
    }

    fn unlift_windows(&mut self, op: usize) {
        for index in 0..self.window_opens.of(op).len() {
            let window = self.window_opens.of(op)[index];
            if !self.linearized[self.windows[window as usize].before as usize] {
                self.open(window, u32::MAX);
            }
        }
        for index in 0..self.window_closes.of(op).len() {
            let window = self.window_closes.of(op)[index];
            let after = self.windows[window as usize].after;
            if after == NONE || self.linearized[after as usize] {
                self.open(window, 1);
            }
        }
    }
}
