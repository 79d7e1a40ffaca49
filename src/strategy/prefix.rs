//! A decision source that replays a prefix of values and then continues with a seeded
//! generator: the input of the campaign strategies. Unlike `ReplaySource` it is lenient
//! (a mutated prefix no longer matches the run's kinds, by design) and its tail is random
//! rather than zeros, so a mutated or cut trace still explores past its end. The run that
//! consumes it is recorded, and that recording replays exactly with `ReplaySource`.

use std::cell::RefCell;
use std::rc::Rc;

use dst_sim::decision::{DecisionKind, DecisionSource, SeededSource};

/// Bound on the decisions whose bounds a source logs (enumeration looks at the first few).
pub const LOGGED_MAX: usize = 100_000;

/// The kind and bound of each decision a run took, shared with the caller.
pub type BoundLog = Rc<RefCell<Vec<(DecisionKind, u64)>>>;

/// Replays `prefix`, then draws from `SeededSource::new(tail_seed)`.
pub struct PrefixSource {
    prefix: Vec<u64>,
    position: usize,
    tail: SeededSource,
    log: Option<BoundLog>,
}

impl PrefixSource {
    /// A source that replays `prefix` (each value clamped to its decision's bound).
    pub fn new(prefix: Vec<u64>, tail_seed: u64) -> Self {
        PrefixSource {
            prefix,
            position: 0,
            tail: SeededSource::new(tail_seed),
            log: None,
        }
    }

    /// Also logs the kind and bound of each decision (the first [`LOGGED_MAX`]).
    pub fn with_log(mut self, log: BoundLog) -> Self {
        self.log = Some(log);
        self
    }
}

impl DecisionSource for PrefixSource {
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        let value = match self.prefix.get(self.position) {
            Some(&value) => value.min(bound - 1),
            None => self.tail.choose(kind, bound),
        };
        self.position += 1;
        if let Some(log) = &self.log {
            let mut log = log.borrow_mut();
            if log.len() < LOGGED_MAX {
                log.push((kind, bound));
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_prefix_then_draws_from_the_seed() {
        let log: BoundLog = Rc::default();
        let mut source = PrefixSource::new(vec![5, 900], 7).with_log(log.clone());
        assert_eq!(source.choose(DecisionKind::Tie, 10), 5);
        assert_eq!(source.choose(DecisionKind::Drop, 100), 99, "clamped");
        let mut seeded = SeededSource::new(7);
        assert_eq!(
            source.choose(DecisionKind::Latency, 1000),
            seeded.choose(DecisionKind::Latency, 1000)
        );
        assert_eq!(log.borrow().len(), 3);
        assert_eq!(log.borrow()[1], (DecisionKind::Drop, 100));
    }
}
