//! Per-node clocks: offset, drift in parts per million, and forward/backward jumps.
//! A node reads only its own clock; the engine keeps true time.

use serde::{Deserialize, Serialize};

const PPM: i128 = 1_000_000;

/// One node's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeClock {
    /// Local minus true time at true time zero.
    pub offset_ns: i64,
    /// Rate error: the clock gains `drift_ppm` nanoseconds per million of true time.
    pub drift_ppm: i64,
    /// The sum of jumps so far (the wall clock's; the monotonic clock does not jump).
    pub jumped_ns: i64,
}

impl NodeClock {
    /// The node's wall-clock reading at true time `true_ns` (never negative).
    #[inline]
    pub fn local_ns(&self, true_ns: u64) -> u64 {
        self.read(true_ns, self.offset_ns as i128 + self.jumped_ns as i128)
    }

    /// The node's monotonic reading at true time `true_ns`: offset and drift, no jumps
    /// (what `CLOCK_MONOTONIC` gives a real process).
    #[inline]
    pub fn monotonic_ns(&self, true_ns: u64) -> u64 {
        self.read(true_ns, self.offset_ns as i128)
    }

    #[inline]
    fn read(&self, true_ns: u64, offset_ns: i128) -> u64 {
        if offset_ns == 0 && self.drift_ppm == 0 {
            return true_ns;
        }
        let drifted = true_ns as i128 + mul_div(true_ns as i128, self.drift_ppm as i128, PPM);
        (drifted + offset_ns).clamp(0, u64::MAX as i128) as u64
    }

    /// True duration that elapses while this clock advances by `local_ns`.
    #[inline]
    pub fn true_duration_ns(&self, local_ns: u64) -> u64 {
        if self.drift_ppm == 0 {
            return local_ns;
        }
        let rate = PPM + self.drift_ppm as i128;
        mul_div(local_ns as i128, PPM, rate.max(1)) as u64
    }

    /// Jumps the clock by `delta_ns` (negative: backwards).
    pub fn jump(&mut self, delta_ns: i64) {
        self.jumped_ns = self.jumped_ns.saturating_add(delta_ns);
    }
}

/// `value * numerator / denominator`, rounded toward zero, for a positive `denominator`.
/// In 64 bits when the product fits, as it does for any run shorter than about 10^12 s at a
/// drift of 10^6 ppm; in 128 bits otherwise. Both give the same value: 128-bit division is a
/// library call, and clocks are read on every timer a node sets.
#[inline]
fn mul_div(value: i128, numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0, "mul_div: denominator must be positive");
    let narrow = (i64::try_from(value), i64::try_from(numerator));
    if let (Ok(value), Ok(numerator), Ok(denominator)) =
        (narrow.0, narrow.1, i64::try_from(denominator))
    {
        if let Some(product) = value.checked_mul(numerator) {
            return i128::from(product / denominator);
        }
    }
    value * numerator / denominator
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SEC;

    #[test]
    fn drift_moves_the_clock_at_the_configured_rate() {
        let clock = NodeClock {
            drift_ppm: 500,
            ..NodeClock::default()
        };
        // 500 ppm fast: after 10 s of true time the clock reads 10.005 s.
        assert_eq!(clock.local_ns(10 * SEC), 10 * SEC + 5_000_000);
        let slow = NodeClock {
            drift_ppm: -250,
            ..NodeClock::default()
        };
        assert_eq!(slow.local_ns(4 * SEC), 4 * SEC - 1_000_000);
    }

    #[test]
    fn timers_follow_the_local_clock() {
        let clock = NodeClock {
            drift_ppm: 1000,
            ..NodeClock::default()
        };
        let true_ns = clock.true_duration_ns(1_001_000);
        assert_eq!(
            true_ns, 1_000_000,
            "a fast clock fires local timers early in true time"
        );
    }

    #[test]
    fn a_jump_moves_the_wall_clock_but_not_the_monotonic_one() {
        let mut clock = NodeClock {
            offset_ns: 7,
            drift_ppm: 100,
            jumped_ns: 0,
        };
        let before = (clock.local_ns(SEC), clock.monotonic_ns(SEC));
        assert_eq!(before.0, before.1, "no jump yet");
        clock.jump(-200_000_000);
        assert_eq!(clock.local_ns(SEC), before.0 - 200_000_000);
        assert_eq!(clock.monotonic_ns(SEC), before.1);
    }

    #[test]
    fn mul_div_agrees_with_128_bit_arithmetic() {
        let mut source = crate::decision::SeededSource::new(11);
        let edges = [
            0,
            1,
            -1,
            i64::MAX as i128,
            i64::MIN as i128,
            u64::MAX as i128,
        ];
        for round in 0..20_000u64 {
            let signed = |raw: u64| {
                let magnitude = (raw >> 1) as i128;
                if raw & 1 == 0 {
                    magnitude
                } else {
                    -magnitude
                }
            };
            // Values across the whole range (edges included); factors as clocks use them.
            let value = if round % 7 == 0 {
                edges[(round / 7 % edges.len() as u64) as usize]
            } else {
                signed(source.next_u64() >> (round % 64)) * 2
            };
            let numerator = signed(source.next_u64() >> 40);
            let denominator = signed(source.next_u64() >> 40).abs().max(1);
            assert_eq!(
                mul_div(value, numerator, denominator),
                value * numerator / denominator,
                "{value} * {numerator} / {denominator}"
            );
        }
    }

    #[test]
    fn jumps_move_the_offset_both_ways() {
        let mut clock = NodeClock::default();
        clock.jump(-5 * SEC as i64);
        assert_eq!(clock.local_ns(3 * SEC), 0, "local time clamps at zero");
        clock.jump(10 * SEC as i64);
        assert_eq!(clock.local_ns(3 * SEC), 8 * SEC);
    }
}
