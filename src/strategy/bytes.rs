//! A decision source that reads fuzzer bytes: each decision takes as many bytes as its bound
//! needs (1 for up to 256 values, then 2, 4 or 8), little-endian, modulo the bound. So a
//! coverage-guided fuzzer (libFuzzer, via `fuzz/`) chooses schedules and faults directly, and
//! its own coverage feedback drives them. Past the end of the bytes the run continues from a
//! generator seeded by a hash of the bytes: a short input still makes a complete, varied run
//! (all-zero decisions would, for example, give every Raft node the same election timeout).

use dst_sim::decision::{splitmix64, DecisionKind, DecisionSource, SeededSource};

/// Fuzzer bytes as decisions.
pub struct BytesSource {
    bytes: Vec<u8>,
    position: usize,
    tail: SeededSource,
}

impl BytesSource {
    /// Decisions from `bytes`, then from a generator seeded by their hash.
    pub fn new(bytes: &[u8]) -> Self {
        let seed = bytes.iter().fold(bytes.len() as u64, |hash, &b| {
            splitmix64(hash ^ u64::from(b))
        });
        BytesSource {
            bytes: bytes.to_vec(),
            position: 0,
            tail: SeededSource::new(seed),
        }
    }
}

/// Bytes a decision in `0..bound` takes.
fn width(bound: u64) -> usize {
    match bound {
        0..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        0x1_0001..=0x1_0000_0000 => 4,
        _ => 8,
    }
}

impl DecisionSource for BytesSource {
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        let width = width(bound);
        let Some(word) = self.bytes.get(self.position..self.position + width) else {
            // Once the bytes run short, every later decision comes from the tail.
            self.position = self.bytes.len();
            return self.tail.choose(kind, bound);
        };
        self.position += width;
        let value = word
            .iter()
            .rev()
            .fold(0u64, |value, &b| (value << 8) | u64::from(b));
        value % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_values_then_the_tail_takes_over() {
        let bytes = [3u8, 0x34, 0x12, 9];
        let mut source = BytesSource::new(&bytes);
        assert_eq!(source.choose(DecisionKind::Tie, 4), 3);
        assert_eq!(source.choose(DecisionKind::Latency, 60_000), 0x1234);
        assert_eq!(source.choose(DecisionKind::Latency, 1 << 20), {
            let mut tail = BytesSource::new(&bytes).tail;
            tail.choose(DecisionKind::Latency, 1 << 20)
        });
        assert!(source.choose(DecisionKind::Drop, 7) < 7);
    }
}
