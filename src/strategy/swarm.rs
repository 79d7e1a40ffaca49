//! The `swarm` strategy: swarm testing over the chosen profile (Groce et al., "Swarm
//! Testing"; TigerBeetle's VOPR). A run that has every fault kind on at once tends to hit
//! each one shallowly (a partition heals before the crash that would matter); a run with
//! only a few kinds on, each at its own rate, goes deeper into those. So each seed decides,
//! for every fault kind the profile enables, whether it is on, and scales its rate by a
//! factor of 1/4, 1/2, 1, 2 or 4.
//!
//! The draws come from a generator derived from the seed (not from the run's decision
//! stream), so the run's own decisions mean what they mean under `random`, and the seed
//! alone reproduces the run. A kind the profile turns off stays off: `swarm` over `none` is
//! `none`.

use dst_sim::decision::{splitmix64, Decide, DecisionKind, SeededSource};
use dst_sim::FaultProfile;

/// Distinguishes the swarm draws from the run's own stream of the same seed.
const SWARM_SALT: u64 = 0x5357_4152_4d00_0001;
/// Rates are parts per million; no fault kind gets more than half of the events.
const PPM_RATE_MAX: u64 = 500_000;

/// Draws which fault kinds of `profile` are on for `seed`, and how hard.
pub fn draw(seed: u64, profile: &mut FaultProfile) {
    let mut source = SeededSource::new(splitmix64(seed ^ SWARM_SALT));
    let mut knob = |value: &mut u64, cap: u64| {
        if *value == 0 {
            return;
        }
        if source.below(DecisionKind::Knob, 2) == 0 {
            *value = 0;
            return;
        }
        // Factor 2^(k-2) for k in 0..5: 1/4, 1/2, 1, 2, 4.
        let k = source.below(DecisionKind::Knob, 5);
        let scaled = value.saturating_mul(1 << k) / 4;
        *value = scaled.clamp(1, cap);
    };
    let link = &mut profile.link;
    knob(&mut link.loss_ppm, PPM_RATE_MAX);
    knob(&mut link.duplicate_ppm, PPM_RATE_MAX);
    knob(&mut link.reorder_ppm, PPM_RATE_MAX);
    knob(&mut link.corrupt_ppm, PPM_RATE_MAX);
    let storage = &mut profile.storage;
    knob(&mut storage.read_corrupt_ppm, PPM_RATE_MAX);
    knob(&mut storage.misdirect_ppm, PPM_RATE_MAX);
    knob(&mut storage.io_error_ppm, PPM_RATE_MAX);
    let weights = &mut profile.weights;
    for weight in [
        &mut weights.partition,
        &mut weights.one_way,
        &mut weights.partial,
        &mut weights.crash,
        &mut weights.pause,
        &mut weights.clog,
        &mut weights.swizzle,
        &mut weights.clock_jump,
    ] {
        knob(weight, 64);
    }
    // The fault process runs more or less often; its interval scales inversely.
    let mut interval_ms = profile.fault_interval_ns / dst_sim::MS;
    knob(&mut interval_ms, 60_000);
    profile.fault_interval_ns = interval_ms * dst_sim::MS;
    knob(&mut profile.drift_ppm_max, 100_000);
    knob(&mut profile.jump_ns_max, 60 * dst_sim::SEC);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heavy() -> FaultProfile {
        FaultProfile::named("heavy", &mut SeededSource::new(0)).expect("heavy exists")
    }

    #[test]
    fn seeds_turn_different_fault_kinds_on_and_off() {
        let base = heavy();
        let mut loss_off = 0;
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let mut profile = base.clone();
            draw(seed, &mut profile);
            loss_off += u32::from(profile.link.loss_ppm == 0);
            distinct.insert(format!("{:?}", profile.knobs()));
            let mut again = base.clone();
            draw(seed, &mut again);
            assert_eq!(profile, again, "seed {seed} must draw the same profile");
        }
        assert!((16..48).contains(&loss_off), "loss off in {loss_off} of 64");
        assert!(
            distinct.len() > 60,
            "only {} distinct profiles",
            distinct.len()
        );
    }

    #[test]
    fn a_kind_the_profile_leaves_off_stays_off() {
        let none = FaultProfile::named("none", &mut SeededSource::new(0)).expect("none");
        for seed in 0..16 {
            let mut profile = none.clone();
            draw(seed, &mut profile);
            assert_eq!(profile, none, "seed {seed}");
        }
    }
}
