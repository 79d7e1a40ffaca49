//! The event queue: a calendar queue over packed `u128` keys.
//!
//! Keys pack (virtual time, insertion sequence, slab slot) so that key order is event order.
//! A discrete-event simulator never schedules into the past, and most events land a few
//! milliseconds ahead (message latencies, syncs), so the queue keeps a ring of `BUCKETS`
//! time buckets of `2^BUCKET_SHIFT` ns each: a push into a future bucket is one `Vec::push`.
//! When time reaches a bucket, its keys are sorted once (largest first) and popped from the
//! end. Keys beyond the ring's horizon (long timers) wait in an overflow heap and move into
//! the ring as time reaches them.
//!
//! Buckets are 524 us wide (2^19 ns). Narrower buckets cost a ring step per event when
//! events are sparse (Raft at 1,000 operations has one event per ~550 us of virtual time);
//! wider ones put more keys into the bucket being popped, where each push is a sorted insert.
//! Measured against 131 us buckets (session 7): pingpong 4% faster, Raft the same wall time
//! on 1.4% fewer instructions; 1 ms buckets made pingpong 2% slower. (An earlier design
//! kept the current bucket in a binary heap, whose sifts mispredicted about 1.8 branches per
//! event; see docs/performance.md.)
//!
//! The pop order is exactly the key order, like a binary heap of the same keys.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const BUCKET_SHIFT: u32 = 19;
const BUCKETS: usize = 2048;
const WORDS: usize = BUCKETS / 64;

#[inline]
fn bucket_of(key: u128) -> u64 {
    ((key >> 64) as u64) >> BUCKET_SHIFT
}

/// A min-queue of unique `u128` keys, each pushed no smaller than the last key popped.
#[derive(Debug)]
pub struct CalendarQueue {
    // invariant: sorted in decreasing order, so the smallest key is last.
    /// Keys of the current bucket (`current`).
    active: Vec<u128>,
    // invariant: ring[b % BUCKETS] holds exactly the keys with bucket b, for
    // current < b < current + BUCKETS, unordered.
    ring: Vec<Vec<u128>>,
    // invariant: bit i set iff ring[i] is non-empty.
    occupied: [u64; WORDS],
    /// Keys with bucket >= current + BUCKETS.
    overflow: BinaryHeap<Reverse<u128>>,
    current: u64,
    last: u128,
    len: usize,
}

/// Emptied rings kept for reuse on this thread (at most this many).
const SPARE_RINGS_MAX: usize = 2;

thread_local! {
    /// Rings of queues dropped on this thread, every bucket empty but keeping its capacity.
    /// A campaign builds a queue per seed, and growing 2,048 buckets anew cost each seed
    /// about 2,000 allocations. Capacity only: it cannot change what a queue does.
    static SPARE_RINGS: RefCell<Vec<Vec<Vec<u128>>>> = const { RefCell::new(Vec::new()) };
}

impl Drop for CalendarQueue {
    fn drop(&mut self) {
        let mut ring = std::mem::take(&mut self.ring);
        ring.iter_mut().for_each(Vec::clear);
        // `try_with`: a queue dropped while the thread's locals are torn down just frees.
        let _ = SPARE_RINGS.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_RINGS_MAX {
                spare.push(ring);
            }
        });
    }
}

impl Default for CalendarQueue {
    fn default() -> Self {
        let spare = SPARE_RINGS
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        CalendarQueue {
            active: Vec::new(),
            ring: spare.unwrap_or_else(|| (0..BUCKETS).map(|_| Vec::new()).collect()),
            occupied: [0; WORDS],
            overflow: BinaryHeap::new(),
            current: 0,
            last: 0,
            len: 0,
        }
    }
}

impl CalendarQueue {
    /// An empty queue.
    pub fn new() -> Self {
        CalendarQueue::default()
    }

    /// Number of keys queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `key`, which must not be below the last key popped.
    #[inline]
    pub fn push(&mut self, key: u128) {
        assert!(
            key >= self.last,
            "the event queue is monotone: pushed {key} below the last popped {}",
            self.last
        );
        self.place(key);
        self.len += 1;
    }

    #[inline]
    fn place(&mut self, key: u128) {
        let bucket = bucket_of(key);
        if bucket <= self.current {
            // Rare: only events due within the current bucket's span land here.
            let at = self.active.partition_point(|&queued| queued > key);
            self.active.insert(at, key);
        } else if bucket - self.current < BUCKETS as u64 {
            let index = (bucket % BUCKETS as u64) as usize;
            self.ring[index].push(key);
            self.occupied[index / 64] |= 1 << (index % 64);
        } else {
            self.overflow.push(Reverse(key));
        }
    }

    /// The smallest key, without removing it.
    #[inline]
    pub fn peek(&mut self) -> Option<u128> {
        if self.active.is_empty() {
            if self.len == 0 {
                return None;
            }
            self.advance();
        }
        self.active.last().copied()
    }

    /// Removes and returns the smallest key.
    #[inline]
    pub fn pop(&mut self) -> Option<u128> {
        self.peek()?;
        let key = self.active.pop().expect("peek found a key");
        self.last = key;
        self.len -= 1;
        Some(key)
    }

    /// Removes `key` if it is queued in the current bucket or the ring; returns whether it
    /// was. Keys in the overflow heap stay (a heap cannot remove them cheaply): the caller
    /// must then be ready to pop and discard it.
    pub fn remove(&mut self, key: u128) -> bool {
        if key < self.last {
            return false;
        }
        let bucket = bucket_of(key);
        let removed = if bucket <= self.current {
            match self.active.binary_search_by(|queued| key.cmp(queued)) {
                Ok(at) => {
                    self.active.remove(at);
                    true
                }
                Err(_) => false,
            }
        } else if bucket - self.current < BUCKETS as u64 {
            let index = (bucket % BUCKETS as u64) as usize;
            let keys = &mut self.ring[index];
            match keys.iter().position(|&queued| queued == key) {
                Some(at) => {
                    keys.swap_remove(at);
                    if keys.is_empty() {
                        self.occupied[index / 64] &= !(1 << (index % 64));
                    }
                    true
                }
                None => false,
            }
        } else {
            false
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Moves `current` to the earliest non-empty bucket and loads it into `active`.
    fn advance(&mut self) {
        let ring_next = self.next_occupied();
        let overflow_next = self.overflow.peek().map(|key| bucket_of(key.0));
        let next = match (ring_next, overflow_next) {
            (Some(ring), Some(overflow)) => ring.min(overflow),
            (Some(ring), None) => ring,
            (None, Some(overflow)) => overflow,
            (None, None) => unreachable!("advance is called only on a non-empty queue"),
        };
        self.current = next;
        let index = (next % BUCKETS as u64) as usize;
        if self.occupied[index / 64] & (1 << (index % 64)) != 0 {
            self.occupied[index / 64] &= !(1 << (index % 64));
            // `active` is empty here: swapping keeps both allocations.
            std::mem::swap(&mut self.active, &mut self.ring[index]);
            self.active.sort_unstable_by(|a, b| b.cmp(a));
        }
        while let Some(&Reverse(key)) = self.overflow.peek() {
            if bucket_of(key) - self.current >= BUCKETS as u64 {
                break;
            }
            self.overflow.pop();
            self.place(key);
        }
    }

    /// The bucket number of the first non-empty ring bucket after `current`.
    fn next_occupied(&self) -> Option<u64> {
        let start = ((self.current + 1) % BUCKETS as u64) as usize;
        for step in 0..=WORDS {
            let word_index = (start / 64 + step) % WORDS;
            let mut word = self.occupied[word_index];
            if step == 0 {
                word &= u64::MAX << (start % 64);
            } else if step == WORDS {
                word &= !(u64::MAX << (start % 64));
            }
            if word != 0 {
                let index = (word_index * 64 + word.trailing_zeros() as usize) as u64;
                let offset = (index + BUCKETS as u64 - start as u64) % BUCKETS as u64;
                return Some(self.current + 1 + offset);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SeededSource;
    use std::collections::BinaryHeap;

    /// Against a binary heap, on a simulator-like schedule: every push is at or after the
    /// last pop, with ties and wide gaps.
    #[test]
    fn pops_in_the_same_order_as_a_binary_heap() {
        let mut source = SeededSource::new(7);
        let mut queue = CalendarQueue::new();
        let mut heap = BinaryHeap::new();
        let mut now: u128 = 0;
        let mut sequence: u128 = 0;
        for round in 0..20_000u32 {
            let pushes = (source.next_u64() % 3) as u32 + u32::from(round < 50);
            for _ in 0..pushes {
                let delay = match source.next_u64() % 4 {
                    0 => 0,
                    1 => source.next_u64() % 16,
                    2 => source.next_u64() % 10_000_000,
                    _ => source.next_u64() % (1 << 40),
                };
                sequence += 1;
                let key = ((now + delay as u128) << 64) | sequence;
                queue.push(key);
                heap.push(std::cmp::Reverse(key));
            }
            let expected = heap.pop().map(|r| r.0);
            assert_eq!(queue.pop(), expected, "round {round}");
            assert_eq!(queue.len(), heap.len());
            if let Some(key) = expected {
                now = key >> 64;
            }
        }
        while let Some(std::cmp::Reverse(key)) = heap.pop() {
            assert_eq!(queue.pop(), Some(key));
        }
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
    }

    /// Against a sorted set: removals of queued keys (in the current bucket, the ring and
    /// the overflow heap) and of keys already popped, between pushes and pops. A key the
    /// queue declines to remove (overflow) must still pop in order.
    #[test]
    fn removed_keys_never_pop_and_the_rest_keep_their_order() {
        let mut source = SeededSource::new(11);
        let mut queue = CalendarQueue::new();
        let mut model = std::collections::BTreeSet::new();
        let (mut now, mut sequence, mut removed) = (0u128, 0u128, 0);
        for round in 0..20_000u32 {
            for _ in 0..(source.next_u64() % 3) + u64::from(round < 50) {
                let delay = match source.next_u64() % 3 {
                    0 => source.next_u64() % 1_000,
                    1 => source.next_u64() % 10_000_000,
                    _ => source.next_u64() % 4_000_000_000,
                };
                sequence += 1;
                let key = ((now + u128::from(delay)) << 64) | sequence;
                queue.push(key);
                model.insert(key);
            }
            if source.next_u64().is_multiple_of(2) && !model.is_empty() {
                let at = (source.next_u64() % model.len() as u64) as usize;
                let key = *model.iter().nth(at).expect("in range");
                if queue.remove(key) {
                    model.remove(&key);
                    removed += 1;
                }
                assert_eq!(queue.len(), model.len(), "round {round}");
            }
            let expected = model.pop_first();
            assert_eq!(queue.pop(), expected, "round {round}");
            if let Some(key) = expected {
                now = key >> 64;
                assert!(!queue.remove(key), "a popped key is no longer queued");
            }
        }
        assert!(removed > 1_000, "only {removed} removals took effect");
        while let Some(key) = model.pop_first() {
            assert_eq!(queue.pop(), Some(key));
        }
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn a_queue_on_a_reused_ring_starts_empty() {
        let key = |time_ns: u64, sequence: u64| (u128::from(time_ns) << 64) | u128::from(sequence);
        for _ in 0..=SPARE_RINGS_MAX {
            // Dropped with keys left in the ring, the current bucket and the overflow heap.
            let mut queue = CalendarQueue::new();
            for (sequence, time_ns) in [1 << 20, 1 << 22, 1 << 40, 7].into_iter().enumerate() {
                queue.push(key(time_ns, sequence as u64));
            }
            assert_eq!(queue.pop(), Some(key(7, 3)));
        }
        let spares = SPARE_RINGS.with(|spare| spare.borrow().len());
        assert!(spares >= 1, "dropped queues leave their rings");
        let mut queue = CalendarQueue::new();
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None, "no key of an earlier queue survives");
        queue.push(key(1 << 21, 0));
        queue.push(key(1 << 20, 1));
        assert_eq!(queue.pop(), Some(key(1 << 20, 1)));
        assert_eq!(queue.pop(), Some(key(1 << 21, 0)));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn peek_does_not_remove() {
        let mut queue = CalendarQueue::new();
        queue.push(5);
        queue.push(3);
        assert_eq!(queue.peek(), Some(3));
        assert_eq!(queue.peek(), Some(3));
        assert_eq!(queue.pop(), Some(3));
        assert_eq!(queue.pop(), Some(5));
        assert_eq!(queue.peek(), None);
    }

    #[test]
    #[should_panic(expected = "monotone")]
    fn pushing_into_the_past_is_refused() {
        let mut queue = CalendarQueue::new();
        queue.push(10);
        queue.pop();
        queue.push(9);
    }
}
