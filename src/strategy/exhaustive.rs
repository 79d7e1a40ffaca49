//! The `exhaustive` strategy: bounded systematic enumeration of decision prefixes, for small
//! configurations (3 nodes, a client, a few operations).
//!
//! The base run draws every decision from the seed. Each run logs the kind and bound of every
//! decision it took; its children replay its recorded values with one value changed, at a
//! position after its own change and within the first `depth_max` decisions. Alternatives are
//! every other value of a small choice (ties, which fault, which node) and the two extremes of
//! a large one (no fault / certain fault, minimum / maximum latency). After the change the
//! child replays the parent's values leniently (the run may now want other kinds there) and,
//! past them, draws from its seed, so a deviation never silences the rest of the run.
//!
//! The enumeration is breadth-first in the number of deviations (all single deviations
//! first, then pairs, up to `deviations_max`), which finds shallow bugs before deep ones under
//! a budget, as delay- and preemption-bounded search does. State hashing prunes duplicates:
//! a run whose trace hash (the hash chain over every event) equals an earlier run's behaved
//! identically (the deviation did not matter, e.g. a loss draw that stays below the loss
//! rate), and its children are not enumerated again.
//!
//! Not done: node-symmetry reduction. Raft and Multi-Paxos are not symmetric in node ids
//! (ids order ballots and break ties), so permuting ids is not a sound reduction for them.

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use dst_sim::decision::DecisionKind;

use super::prefix::{BoundLog, PrefixSource};
use crate::runner::{RunOutcome, RunSpec};

/// Small choices up to this many values are enumerated in full.
pub const SMALL_CHOICE_MAX: u64 = 8;
/// Bound on the prefixes waiting to run.
pub const QUEUE_MAX: usize = 200_000;

/// Bounds of an enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Deviations happen only among the first this many decisions.
    pub depth_max: usize,
    /// At most this many deviations from the base run.
    pub deviations_max: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            depth_max: 200,
            deviations_max: 2,
        }
    }
}

/// A run to do: its parent's recorded values with one value changed.
struct Pending {
    /// The parent's recorded values (shared by all its children).
    base: Rc<Vec<u64>>,
    /// The changed position and its new value (None: the base run itself).
    change: Option<(usize, u64)>,
    deviations: u32,
}

/// A bounded enumeration over one configuration.
pub struct Exhaustive {
    template: RunSpec,
    bounds: Bounds,
    queue: VecDeque<Pending>,
    seen_hashes: BTreeSet<u64>,
    runs: u64,
    pruned: u64,
    dropped: u64,
}

impl Exhaustive {
    /// An enumeration of `template` (its strategy should be `exhaustive`; its seed drives the
    /// base run and every tail).
    pub fn new(template: &RunSpec, bounds: Bounds) -> Self {
        let mut template = template.clone();
        template.record = true;
        template.replay = None;
        let mut queue = VecDeque::new();
        queue.push_back(Pending {
            base: Rc::default(),
            change: None,
            deviations: 0,
        });
        Exhaustive {
            template,
            bounds,
            queue,
            seen_hashes: BTreeSet::new(),
            runs: 0,
            pruned: 0,
            dropped: 0,
        }
    }

    /// Runs the next prefix; None once the bounded space is exhausted.
    pub fn run(&mut self) -> Option<Result<RunOutcome, String>> {
        let pending = self.queue.pop_front()?;
        self.runs += 1;
        let log: BoundLog = Rc::default();
        let mut prefix = pending.base.as_ref().clone();
        if let Some((position, value)) = pending.change {
            prefix[position] = value;
        }
        let source = PrefixSource::new(prefix, self.template.seed).with_log(log.clone());
        let outcome = match super::run_with_source(&self.template, Box::new(source)) {
            Ok(outcome) => outcome,
            Err(error) => return Some(Err(error)),
        };
        if !self.seen_hashes.insert(outcome.summary.trace_hash) {
            self.pruned += 1;
            return Some(Ok(outcome));
        }
        if pending.deviations < self.bounds.deviations_max {
            let trace = outcome
                .trace
                .as_ref()
                .expect("exhaustive runs are recorded");
            let values: Rc<Vec<u64>> = Rc::new(trace.decisions.iter().map(|d| d.value).collect());
            self.expand(&pending, &values, &log.borrow());
        }
        Some(Ok(outcome))
    }

    /// Queues the children of a run: one changed value at each position after the parent's
    /// own change (earlier positions were enumerated by its ancestors).
    fn expand(&mut self, parent: &Pending, values: &Rc<Vec<u64>>, log: &[(DecisionKind, u64)]) {
        let start = parent.change.map_or(0, |(position, _)| position + 1);
        let end = self.bounds.depth_max.min(values.len()).min(log.len());
        for position in start..end {
            let (_, bound) = log[position];
            for alternative in alternatives(bound, values[position]) {
                if self.queue.len() >= QUEUE_MAX {
                    self.dropped += 1;
                    continue;
                }
                self.queue.push_back(Pending {
                    base: Rc::clone(values),
                    change: Some((position, alternative)),
                    deviations: parent.deviations + 1,
                });
            }
        }
    }

    /// One line for the campaign summary.
    pub fn describe(&self) -> String {
        format!(
            "exhaustive (depth {}, deviations {}): {} runs, {} pruned as duplicate states, {} waiting{}{}",
            self.bounds.depth_max,
            self.bounds.deviations_max,
            self.runs,
            self.pruned,
            self.queue.len(),
            if self.queue.is_empty() { " (space exhausted)" } else { "" },
            if self.dropped > 0 { format!(", {} dropped (queue full)", self.dropped) } else { String::new() }
        )
    }
}

/// The values tried instead of `taken` for a decision in `0..bound`.
pub fn alternatives(bound: u64, taken: u64) -> Vec<u64> {
    let candidates: Vec<u64> = if bound <= SMALL_CHOICE_MAX {
        (0..bound).collect()
    } else {
        vec![0, bound - 1]
    };
    candidates.into_iter().filter(|&v| v != taken).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_cover_small_choices_and_the_extremes_of_large_ones() {
        assert_eq!(alternatives(3, 1), vec![0, 2]);
        assert_eq!(alternatives(1_000_000, 17), vec![0, 999_999]);
        assert_eq!(alternatives(1_000_000, 0), vec![999_999]);
    }
}
