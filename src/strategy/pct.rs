//! The `pct` strategy: probabilistic concurrency testing (Burckhardt et al., "A Randomized
//! Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010; Coyote's PCT),
//! combined with the fault model.
//!
//! PCT gives every actor a random priority and always runs the highest-priority enabled one;
//! at d random points in the run the currently highest actor drops below all others. A bug
//! of depth d (d ordering constraints) is then found with probability at least 1/(n k^(d-1))
//! per run, for n actors and k steps, where a uniformly random scheduler can do far worse.
//!
//! In a discrete-event simulator the schedule is the order of deliveries, which the latency
//! decisions set. So the source answers the latency decisions of a message by its sender's
//! priority rank (highest: minimum latency, lowest: maximum), which delivers the messages of
//! higher-priority senders first, and demotes the top actor at d change points spread over
//! the run's expected number of messages. With `TieBreak::Decide` it also picks among
//! simultaneous events: the highest-priority actor's event first (`Hint::Candidate` says
//! whose each is; the simulator's own events, such as faults, go first). Every
//! other decision (loss, duplication, reordering, corruption, crashes, node randomness) goes
//! to a seeded generator, so faults still happen at the profile's rates.
//!
//! Actors are the replicas `0..nodes` followed by the clients, as in `Hint::Transmit`.

use dst_sim::decision::{splitmix64, Decide, DecisionKind, DecisionSource, Hint, SeededSource};

/// Distinguishes the priority draws from the fault stream of the same seed.
const PCT_SALT: u64 = 0x5043_5400_0000_0001;
/// The exponential latency's first draw: its trailing zeros count halvings of the tail.
const EXPONENTIAL_BITS_BOUND: u64 = 1 << 32;

/// A PCT scheduler over message deliveries; every other decision is seeded.
pub struct PctSource {
    faults: SeededSource,
    /// Higher runs first. Initial priorities are d+1..=d+n; the i-th change point gives the
    /// top actor priority d-i, below every actor not yet demoted.
    priorities: Vec<u64>,
    /// Message indices (of `Hint::Transmit`) at which the top actor is demoted, ascending.
    change_points: Vec<u64>,
    changes_done: usize,
    transmits: u64,
    /// The sender of the message whose decisions come next.
    sender: Option<u32>,
    /// The actors of the tied events the next `Tie` decision chooses among, in its order.
    candidates: Vec<u32>,
}

impl PctSource {
    /// A scheduler for `actors` actors with `depth` change points within the first
    /// `horizon` messages.
    pub fn new(seed: u64, actors: u32, depth: u32, horizon: u64) -> Self {
        let mut draws = SeededSource::new(splitmix64(seed ^ PCT_SALT));
        let n = u64::from(actors.max(1));
        let depth_u64 = u64::from(depth);
        // Fisher-Yates over depth+1 ..= depth+n.
        let mut priorities: Vec<u64> = (depth_u64 + 1..=depth_u64 + n).collect();
        for i in (1..priorities.len()).rev() {
            let j = draws.below(DecisionKind::Knob, i as u64 + 1) as usize;
            priorities.swap(i, j);
        }
        let mut change_points: Vec<u64> = (0..depth)
            .map(|_| draws.below(DecisionKind::Knob, horizon.max(1)))
            .collect();
        change_points.sort_unstable();
        PctSource {
            faults: SeededSource::new(seed),
            priorities,
            change_points,
            changes_done: 0,
            transmits: 0,
            sender: None,
            candidates: Vec::new(),
        }
    }

    /// The current priority of each actor (for tests and logs).
    pub fn priorities(&self) -> &[u64] {
        &self.priorities
    }

    /// How many actors outrank `actor` (0: the top one).
    fn rank(&self, actor: u32) -> u64 {
        let Some(&mine) = self.priorities.get(actor as usize) else {
            return 0;
        };
        self.priorities.iter().filter(|&&p| p > mine).count() as u64
    }

    fn demote_top(&mut self) {
        // d - i: below every initial priority (d+1..) and every earlier demotion.
        let depth = self.change_points.len() as u64;
        let new_priority = depth.saturating_sub(self.changes_done as u64);
        if let Some(top) = (0..self.priorities.len()).max_by_key(|&i| self.priorities[i]) {
            self.priorities[top] = new_priority;
        }
        self.changes_done += 1;
    }

    /// A tie: the event of the highest-priority actor runs first. The simulator's own events
    /// (faults, the quiet phase) go before any actor's, so faults keep their times.
    fn tie(&mut self, bound: u64) -> u64 {
        let candidates = std::mem::take(&mut self.candidates);
        if candidates.len() as u64 != bound {
            // The engine did not say whose events these are: choose as the seed says.
            return self.faults.choose(DecisionKind::Tie, bound);
        }
        let key = |actor: u32| match actor {
            u32::MAX => u64::MAX,
            actor => self.priorities.get(actor as usize).copied().unwrap_or(0),
        };
        // The first of the highest: among one actor's events, keep their FIFO order.
        let best = candidates.iter().map(|&a| key(a)).max().unwrap_or(0);
        candidates
            .iter()
            .position(|&actor| key(actor) == best)
            .unwrap_or(0) as u64
    }

    /// A latency decision for the current sender: lower rank, lower latency.
    fn latency(&self, bound: u64) -> u64 {
        let Some(sender) = self.sender else {
            return 0;
        };
        let rank = self.rank(sender);
        let last_rank = (self.priorities.len() as u64).saturating_sub(1).max(1);
        if bound == EXPONENTIAL_BITS_BOUND {
            // Trailing zeros = halvings of the tail: rank r waits about r * 0.69 means.
            return 1 << rank.min(31);
        }
        (bound - 1).saturating_mul(rank) / last_rank
    }
}

impl DecisionSource for PctSource {
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        match kind {
            DecisionKind::Latency => self.latency(bound),
            DecisionKind::Tie => self.tie(bound),
            _ => self.faults.choose(kind, bound),
        }
    }

    fn hint(&mut self, hint: Hint) {
        match hint {
            Hint::Transmit { from, .. } => {
                self.sender = Some(from);
                while self
                    .change_points
                    .get(self.changes_done)
                    .is_some_and(|&point| point <= self.transmits)
                {
                    self.demote_top();
                }
                self.transmits += 1;
            }
            // Tie-breaking by priority is not used yet.
            Hint::Candidate { actor } => self.candidates.push(actor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_senders_get_lower_latency() {
        let mut source = PctSource::new(9, 4, 0, 100);
        let order: Vec<u32> = {
            let mut actors: Vec<u32> = (0..4).collect();
            actors.sort_by_key(|&a| std::cmp::Reverse(source.priorities()[a as usize]));
            actors
        };
        let mut latencies = Vec::new();
        for &actor in &order {
            source.hint(Hint::Transmit { from: actor, to: 0 });
            latencies.push(source.choose(DecisionKind::Latency, 1001));
        }
        assert_eq!(latencies, vec![0, 333, 666, 1000], "order {order:?}");
    }

    #[test]
    fn change_points_demote_the_top_actor_below_all_others() {
        let mut source = PctSource::new(3, 5, 2, 10);
        let top_before = (0..5).max_by_key(|&i| source.priorities()[i]).unwrap();
        for _ in 0..11 {
            source.hint(Hint::Transmit { from: 0, to: 1 });
        }
        assert_eq!(source.changes_done, 2, "both change points passed");
        let lowest = *source.priorities().iter().min().unwrap();
        assert!(
            lowest <= 2,
            "demoted priorities are d - i: {:?}",
            source.priorities()
        );
        assert_ne!(
            (0..5).max_by_key(|&i| source.priorities()[i]).unwrap(),
            top_before,
            "the top actor changed"
        );
        let mut distinct = source.priorities().to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "priorities stay distinct");
    }

    #[test]
    fn ties_go_to_the_highest_priority_actor() {
        let mut source = PctSource::new(5, 3, 0, 100);
        let top = (0..3u32)
            .max_by_key(|&a| source.priorities()[a as usize])
            .unwrap();
        let others: Vec<u32> = (0..3).filter(|&a| a != top).collect();
        for actor in [others[0], top, others[1], top] {
            source.hint(Hint::Candidate { actor });
        }
        assert_eq!(
            source.choose(DecisionKind::Tie, 4),
            1,
            "the top actor's first event"
        );
        source.hint(Hint::Candidate { actor: others[0] });
        source.hint(Hint::Candidate { actor: u32::MAX });
        assert_eq!(
            source.choose(DecisionKind::Tie, 2),
            1,
            "the simulator's own event first"
        );
        assert!(source.candidates.is_empty(), "candidates are used once");
    }

    #[test]
    fn faults_still_come_from_the_seed() {
        let mut source = PctSource::new(4, 3, 3, 100);
        let drops = (0..1000)
            .filter(|_| source.chance(DecisionKind::Drop, 100_000, 1_000_000))
            .count();
        assert!((50..200).contains(&drops), "10% loss gave {drops} of 1000");
    }
}
