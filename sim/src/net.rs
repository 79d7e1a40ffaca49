//! The simulated network: per-link latency distributions, loss, duplication, explicit
//! reordering, byte-level corruption, partitions (symmetric, one-way, partial), clogging and
//! optional per-link bandwidth. Endpoints are replicas `0..n` followed by clients.

use serde::{Deserialize, Serialize};

use crate::decision::{Decide, DecisionKind, DecisionSource};

/// Parts per million, the unit of every rate.
pub const PPM: u64 = 1_000_000;

/// A latency distribution, sampled with integer arithmetic only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Latency {
    /// Always the same.
    Constant { latency_ns: u64 },
    /// Uniform in `min_ns..=max_ns`.
    Uniform { min_ns: u64, max_ns: u64 },
    /// `min_ns` plus an exponential tail with mean `mean_ns`, capped at `max_ns`.
    Exponential {
        min_ns: u64,
        mean_ns: u64,
        max_ns: u64,
    },
}

impl Latency {
    /// Draws one latency.
    #[inline]
    pub fn sample(&self, decisions: &mut dyn DecisionSource) -> u64 {
        match *self {
            Latency::Constant { latency_ns } => latency_ns,
            Latency::Uniform { min_ns, max_ns } => {
                decisions.between(DecisionKind::Latency, min_ns, max_ns)
            }
            Latency::Exponential {
                min_ns,
                mean_ns,
                max_ns,
            } => {
                // Geometric count of halvings (P(k) = 2^-(k+1)) times ln 2, smoothed by a
                // uniform fraction: an exponential with the given mean, in integers only.
                let bits = decisions.below(DecisionKind::Latency, 1 << 32);
                let halvings = (bits as u32).trailing_zeros().min(31) as u64;
                let fraction = decisions.below(DecisionKind::Latency, 693);
                let tail = mean_ns.saturating_mul(halvings * 693 + fraction) / 1000;
                min_ns.saturating_add(tail).min(max_ns)
            }
        }
    }

    /// The smallest latency this distribution can produce.
    pub fn min_ns(&self) -> u64 {
        match *self {
            Latency::Constant { latency_ns } => latency_ns,
            Latency::Uniform { min_ns, .. } | Latency::Exponential { min_ns, .. } => min_ns,
        }
    }
}

/// Fault rates and latency of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConfig {
    pub latency: Latency,
    pub loss_ppm: u64,
    pub duplicate_ppm: u64,
    /// Chance a message is held back by up to `reorder_window_ns` so later ones overtake it.
    pub reorder_ppm: u64,
    pub reorder_window_ns: u64,
    /// Chance a message's encoded bytes are corrupted (bit flips or truncation).
    pub corrupt_ppm: u64,
    /// Bytes per second a link can carry; 0 means unlimited.
    pub bandwidth_bytes_per_sec: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency: Latency::Uniform {
                min_ns: 1_000_000,
                max_ns: 10_000_000,
            },
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            reorder_window_ns: 20_000_000,
            corrupt_ppm: 0,
            bandwidth_bytes_per_sec: 0,
        }
    }
}

impl LinkConfig {
    /// True when messages must be encoded to bytes on this link.
    pub fn needs_bytes(&self) -> bool {
        self.corrupt_ppm > 0 || self.bandwidth_bytes_per_sec > 0
    }

    /// The same latency with every fault rate set to zero (the quiet phase).
    pub fn quiet(&self) -> LinkConfig {
        LinkConfig {
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            corrupt_ppm: 0,
            ..*self
        }
    }
}

/// Per-link dynamic state: partitions, clogs and bandwidth queues.
#[derive(Clone, Debug)]
pub struct Network {
    endpoints: usize,
    /// Fault rates and latency, the same on every link.
    pub link: LinkConfig,
    // invariant: blocked[from * endpoints + to] is true iff the link from -> to drops everything.
    blocked: Vec<bool>,
    clogged_until_ns: Vec<u64>,
    busy_until_ns: Vec<u64>,
    /// How many links are currently blocked; 0 lets the hot path skip the lookup.
    blocked_links: usize,
}

impl Network {
    /// A fully connected network of `endpoints`.
    pub fn new(endpoints: usize, link: LinkConfig) -> Self {
        Network {
            endpoints,
            link,
            blocked: vec![false; endpoints * endpoints],
            clogged_until_ns: vec![0; endpoints * endpoints],
            busy_until_ns: vec![0; endpoints * endpoints],
            blocked_links: 0,
        }
    }

    #[inline]
    fn index(&self, from: usize, to: usize) -> usize {
        from * self.endpoints + to
    }

    /// Whether the link from -> to is cut.
    #[inline]
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked_links > 0 && self.blocked[self.index(from, to)]
    }

    /// Cuts or restores one direction of one link.
    pub fn set_blocked(&mut self, from: usize, to: usize, blocked: bool) {
        let index = self.index(from, to);
        if self.blocked[index] != blocked {
            self.blocked[index] = blocked;
            if blocked {
                self.blocked_links += 1;
            } else {
                self.blocked_links -= 1;
            }
        }
    }

    /// Restores every link and releases every clog.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.blocked_links = 0;
        self.clogged_until_ns.iter_mut().for_each(|t| *t = 0);
    }

    /// Holds everything sent on from -> to until `until_ns`.
    pub fn clog(&mut self, from: usize, to: usize, until_ns: u64) {
        let index = self.index(from, to);
        self.clogged_until_ns[index] = self.clogged_until_ns[index].max(until_ns);
    }

    /// Releases a clog now.
    pub fn unclog(&mut self, from: usize, to: usize) {
        let index = self.index(from, to);
        self.clogged_until_ns[index] = 0;
    }

    /// Number of blocked directed links.
    pub fn blocked_links(&self) -> usize {
        self.blocked_links
    }

    /// Arrival time of a message sent at `now_ns` with `latency_ns`, after clogs and bandwidth.
    #[inline]
    pub fn arrival_ns(
        &mut self,
        from: usize,
        to: usize,
        now_ns: u64,
        latency_ns: u64,
        size_bytes: usize,
    ) -> u64 {
        let index = self.index(from, to);
        let mut departure_ns = now_ns;
        let bits_ns = (size_bytes as u64).saturating_mul(1_000_000_000);
        if let Some(transmit_ns) = bits_ns.checked_div(self.link.bandwidth_bytes_per_sec) {
            departure_ns = departure_ns.max(self.busy_until_ns[index]) + transmit_ns;
            self.busy_until_ns[index] = departure_ns;
        }
        let arrival_ns = departure_ns + latency_ns;
        arrival_ns.max(self.clogged_until_ns[index])
    }
}

/// Corrupts encoded bytes: flips 1..=3 bits, or truncates. Returns a description.
pub fn corrupt_bytes(bytes: &mut Vec<u8>, decisions: &mut dyn DecisionSource) -> &'static str {
    if bytes.is_empty() {
        return "empty";
    }
    // Value 0 (the ordinary choice) flips bits; 1 truncates.
    if decisions.below(DecisionKind::Corrupt, 4) == 3 {
        let keep = decisions.below(DecisionKind::Corrupt, bytes.len() as u64);
        bytes.truncate(keep as usize);
        return "truncated";
    }
    // Distinct bits, so two flips never cancel out.
    let length_bits = bytes.len() as u64 * 8;
    let flips = (1 + decisions.below(DecisionKind::Corrupt, 3)).min(length_bits);
    let start = decisions.below(DecisionKind::Corrupt, length_bits);
    for offset in 0..flips {
        let bit = (start + offset * 7) % length_bits;
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    }
    "bit flips"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SeededSource;

    #[test]
    fn exponential_latency_has_the_configured_mean_and_cap() {
        let mut decisions = SeededSource::new(9);
        let latency = Latency::Exponential {
            min_ns: 1000,
            mean_ns: 10_000,
            max_ns: 200_000,
        };
        let samples: Vec<u64> = (0..50_000)
            .map(|_| latency.sample(&mut decisions))
            .collect();
        let mean = samples.iter().sum::<u64>() / samples.len() as u64;
        assert!(
            (10_000..12_500).contains(&mean),
            "mean {mean} is not about 11000"
        );
        assert!(samples.iter().all(|&s| (1000..=200_000).contains(&s)));
        assert!(samples.iter().any(|&s| s > 50_000), "no long tail");
    }

    #[test]
    fn clogged_link_holds_messages_until_release() {
        let mut network = Network::new(3, LinkConfig::default());
        network.clog(0, 1, 500);
        assert_eq!(network.arrival_ns(0, 1, 10, 5, 0), 500);
        assert_eq!(network.arrival_ns(1, 0, 10, 5, 0), 15, "clogs are one-way");
    }

    #[test]
    fn bandwidth_serialises_a_link() {
        let link = LinkConfig {
            bandwidth_bytes_per_sec: 1_000_000,
            ..LinkConfig::default()
        };
        let mut network = Network::new(2, link);
        // 1000 bytes at 1 MB/s take 1 ms each; the second queues behind the first.
        assert_eq!(network.arrival_ns(0, 1, 0, 0, 1000), 1_000_000);
        assert_eq!(network.arrival_ns(0, 1, 0, 0, 1000), 2_000_000);
    }

    #[test]
    fn corruption_changes_bytes() {
        let mut decisions = SeededSource::new(1);
        for _ in 0..100 {
            let original = vec![0xAAu8; 16];
            let mut bytes = original.clone();
            corrupt_bytes(&mut bytes, &mut decisions);
            assert_ne!(bytes, original);
        }
    }
}
