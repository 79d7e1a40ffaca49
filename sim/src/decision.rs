//! The one decision source.
//!
//! Every nondeterministic choice in a run (latency draws, drops, duplicates, corruption bits,
//! fault timing, choice among simultaneous events, node and client randomness) is a call to
//! [`DecisionSource::choose`] tagged with its [`DecisionKind`]. The seeded generator, trace
//! replay, and later PCT, fuzzer-driven and exhaustive exploration are implementations of this
//! one trait.
//!
//! Convention that makes shrinking work: value `0` is the most ordinary choice (no drop,
//! duplicate, reorder or corruption, no storage fault, minimum latency, first event in FIFO
//! order). A shrinker that zeroes such a decision removes a fault. A replay that runs past the
//! end of its trace continues with zeros, and the random fault process stops there (see
//! [`DecisionSource::exhausted`]). The fault process's own decisions (when the next fault
//! comes, which kind, which nodes) have no "none" value: zeroing one changes a fault, and only
//! cutting the trace before it removes it.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

/// What a decision is about. Recorded with every value so that a replay can tell when a trace
/// no longer matches the run that consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum DecisionKind {
    /// A swarm knob drawn once at the start of a run.
    Knob = 0,
    /// Message latency.
    Latency = 1,
    /// Whether a message is lost.
    Drop = 2,
    /// Whether a message is duplicated.
    Duplicate = 3,
    /// Whether a message is held back and overtaken (explicit reordering).
    Reorder = 4,
    /// Whether and how a message's bytes are corrupted.
    Corrupt = 5,
    /// Timing of the next random fault.
    FaultTime = 6,
    /// Which fault happens and to whom.
    FaultChoice = 7,
    /// Choice among events scheduled at the same virtual time.
    Tie = 8,
    /// Randomness a node asked for through its context.
    NodeRandom = 9,
    /// Randomness a client asked for through its context.
    ClientRandom = 10,
    /// Storage faults: torn writes, latent corruption, misdirection, I/O errors.
    Storage = 11,
    /// Clock faults and drift.
    Clock = 12,
}

impl DecisionKind {
    /// All kinds, in tag order.
    pub const ALL: [DecisionKind; 13] = [
        DecisionKind::Knob,
        DecisionKind::Latency,
        DecisionKind::Drop,
        DecisionKind::Duplicate,
        DecisionKind::Reorder,
        DecisionKind::Corrupt,
        DecisionKind::FaultTime,
        DecisionKind::FaultChoice,
        DecisionKind::Tie,
        DecisionKind::NodeRandom,
        DecisionKind::ClientRandom,
        DecisionKind::Storage,
        DecisionKind::Clock,
    ];

    /// The kind with the given tag, if any.
    pub fn from_tag(tag: u8) -> Option<DecisionKind> {
        Self::ALL.get(tag as usize).copied()
    }
}

/// Where a replayed trace stopped matching the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the decision in the trace.
    pub index: usize,
    /// The kind the run asked for.
    pub wanted: DecisionKind,
    /// The kind the trace holds there (None: the trace ended).
    pub found: Option<DecisionKind>,
}

/// The single interface through which every nondeterministic choice passes.
pub trait DecisionSource {
    /// Returns a value in `0..bound`. `bound` is at least 2: callers skip forced choices, so
    /// traces hold only real decisions.
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64;

    /// For replay sources: the first place where the trace did not match the run.
    fn divergence(&self) -> Option<Divergence> {
        None
    }

    /// For replay sources: true once every recorded decision has been used. The engine's
    /// random fault process then stops: zero is "no fault" for a message or a disk, but for
    /// the fault process it would mean "the soonest fault of the first kind", so a cut trace
    /// answered with zeros would end in a storm of faults the recorded run never had.
    fn exhausted(&self) -> bool {
        false
    }

    /// What the next decisions are about, for strategies that schedule by actor (PCT). Not a
    /// decision: it is not recorded, and sources that do not care ignore it.
    #[inline]
    fn hint(&mut self, _hint: Hint) {}
}

/// Context the engine gives the decision source before some decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// The next latency, drop, duplicate, reorder and corruption decisions are for a message
    /// between these endpoints (replicas are `0..nodes`, clients follow).
    Transmit { from: u32, to: u32 },
    /// Before a [`DecisionKind::Tie`] decision: one hint per tied event, in the order the
    /// decision's values index them; `actor` is the endpoint the event is delivered to
    /// (replicas `0..nodes`, clients follow; `u32::MAX` for the simulator's own events).
    Candidate { actor: u32 },
}

/// Convenience draws on top of [`DecisionSource::choose`]. Integer ratios only: a seed keeps
/// its meaning across dependency upgrades because no float sampling touches the schedule.
pub trait Decide: DecisionSource {
    /// Uniform in `0..bound`; no decision is taken when `bound <= 1`.
    #[inline]
    fn below(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        if bound <= 1 {
            0
        } else {
            self.choose(kind, bound)
        }
    }

    /// True with probability `numerator / denominator`. Value 0 means "no", so zeroed traces
    /// contain no faults. No decision is taken for probability 0 or 1.
    #[inline]
    fn chance(&mut self, kind: DecisionKind, numerator: u64, denominator: u64) -> bool {
        if numerator == 0 {
            return false;
        }
        if numerator >= denominator {
            return true;
        }
        self.choose(kind, denominator) >= denominator - numerator
    }

    /// Uniform in `low..=high`.
    #[inline]
    fn between(&mut self, kind: DecisionKind, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high, "between: empty range {low}..={high}");
        low + self.below(kind, high - low + 1)
    }
}

impl<T: DecisionSource + ?Sized> Decide for T {}

/// Uniform integer in `0..bound` from raw 64-bit words, by Lemire's multiply-and-reject
/// method. Our own code, so the mapping from bits to values never changes under us.
#[inline]
pub fn uniform_below(mut next_u64: impl FnMut() -> u64, bound: u64) -> u64 {
    debug_assert!(bound > 0, "uniform_below: bound must be positive");
    let mut product = (next_u64() as u128) * (bound as u128);
    let mut low = product as u64;
    if low < bound {
        let threshold = bound.wrapping_neg() % bound;
        while low < threshold {
            product = (next_u64() as u128) * (bound as u128);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

/// The default source: a PCG generator seeded with the run's seed.
pub struct SeededSource {
    rng: rand_pcg::Pcg64Mcg,
}

impl SeededSource {
    /// A source whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        // Spread the seed over 128 bits so that nearby seeds give unrelated streams.
        let state = ((splitmix64(seed) as u128) << 64) | splitmix64(seed ^ 0x9e37_79b9) as u128;
        SeededSource {
            rng: rand_pcg::Pcg64Mcg::new(state | 1),
        }
    }

    /// A raw 64-bit word, for sub-generators that are not schedule decisions.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

impl DecisionSource for SeededSource {
    #[inline]
    fn choose(&mut self, _kind: DecisionKind, bound: u64) -> u64 {
        let rng = &mut self.rng;
        uniform_below(|| rng.next_u64(), bound)
    }
}

/// SplitMix64 finaliser: a bijective mixer used to derive seeds and hashes.
#[inline]
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = SeededSource::new(7);
        let mut b = SeededSource::new(7);
        for _ in 0..1000 {
            assert_eq!(
                a.choose(DecisionKind::Latency, 1000),
                b.choose(DecisionKind::Latency, 1000)
            );
        }
    }

    #[test]
    fn seeded_values_are_pinned() {
        // A seed must mean the same run tomorrow: pin the first draws of seed 1.
        let mut source = SeededSource::new(1);
        let draws: Vec<u64> = (0..4)
            .map(|_| source.choose(DecisionKind::Drop, 100))
            .collect();
        let mut again = SeededSource::new(1);
        let redraw: Vec<u64> = (0..4)
            .map(|_| again.choose(DecisionKind::Drop, 100))
            .collect();
        assert_eq!(draws, redraw);
        assert!(
            draws.iter().all(|&v| v < 100),
            "draws out of range: {draws:?}"
        );
    }

    #[test]
    fn uniform_below_is_roughly_uniform() {
        let mut source = SeededSource::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[source.choose(DecisionKind::Latency, 10) as usize] += 1;
        }
        for (value, &count) in counts.iter().enumerate() {
            assert!(
                (9_000..11_000).contains(&count),
                "value {value} drawn {count} times out of 100000"
            );
        }
    }

    #[test]
    fn chance_extremes_take_no_decision() {
        struct Panics;
        impl DecisionSource for Panics {
            fn choose(&mut self, kind: DecisionKind, _bound: u64) -> u64 {
                panic!("unexpected decision {kind:?}")
            }
        }
        let mut source = Panics;
        assert!(!source.chance(DecisionKind::Drop, 0, 10));
        assert!(source.chance(DecisionKind::Drop, 10, 10));
        assert_eq!(source.below(DecisionKind::Tie, 1), 0);
    }

    #[test]
    fn zero_means_no_fault() {
        struct Zeros;
        impl DecisionSource for Zeros {
            fn choose(&mut self, _kind: DecisionKind, _bound: u64) -> u64 {
                0
            }
        }
        assert!(!Zeros.chance(DecisionKind::Drop, 999, 1000));
    }
}
