//! The inference service replicated by FastBFT (and PBFT for comparison): seeded runs under
//! every adversarial profile, judged by every oracle and the reference model.

mod common;

use common::{completed_outputs, judge, run, Protocol, Run};
use dst_inference::Output;
use dst_sim::testing::seeds_from_env;

fn clean(protocol: Protocol, profile: &'static str, seeds: u64) {
    for seed in seeds_from_env(seeds) {
        let spec = Run::new(protocol, seed, profile);
        let outcome = run(&spec);
        let verdict = judge(&spec, &outcome);
        assert!(
            verdict.is_clean(),
            "{protocol:?} {profile} seed {seed}: {:#?}",
            verdict.violations
        );
        let outputs = completed_outputs(&outcome.observations);
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Generated { .. })),
            "{protocol:?} {profile} seed {seed}: no generation completed"
        );
    }
}

#[test]
fn fastbft_none() {
    clean(Protocol::FastBft, "none", 2);
}

#[test]
fn fastbft_corruption() {
    clean(Protocol::FastBft, "corruption", 2);
}

#[test]
fn fastbft_byzantine() {
    clean(Protocol::FastBft, "byzantine", 3);
}

#[test]
fn fastbft_twins() {
    clean(Protocol::FastBft, "twins", 2);
}

#[test]
fn pbft_none() {
    clean(Protocol::Pbft, "none", 1);
}

#[test]
fn pbft_corruption() {
    clean(Protocol::Pbft, "corruption", 1);
}

#[test]
fn pbft_byzantine() {
    clean(Protocol::Pbft, "byzantine", 2);
}

#[test]
fn pbft_twins() {
    clean(Protocol::Pbft, "twins", 1);
}

#[test]
fn a_seed_replays_exactly() {
    for profile in ["corruption", "byzantine", "twins"] {
        let spec = Run::new(Protocol::FastBft, 11, profile);
        let (first, second) = (run(&spec), run(&spec));
        assert_eq!(
            first.summary.trace_hash, second.summary.trace_hash,
            "{profile}"
        );
        assert_eq!(first.summary.events, second.summary.events, "{profile}");
        let other = run(&Run::new(Protocol::FastBft, 12, profile));
        assert_ne!(
            first.summary.trace_hash, other.summary.trace_hash,
            "{profile}"
        );
    }
}

/// Many seeds, for measuring (release):
/// `DST_SEEDS=500 cargo test --release -p dst-inference --test replicated -- --ignored --nocapture`
/// Profiles from `DST_PROFILES` (comma-separated; default byzantine,twins,corruption) and the
/// protocol from `DST_PROTOCOL` (fastbft or pbft), service faults from `DST_SERVICE_FAULTS`
/// (e.g. `1:weight-flip@10`, marked Byzantine; at most f with the adversary's). Prints
/// seeds/s and every failing seed.
#[test]
#[ignore]
fn many_seeds() {
    let profiles =
        std::env::var("DST_PROFILES").unwrap_or_else(|_| "byzantine,twins,corruption".to_string());
    let protocol = match std::env::var("DST_PROTOCOL").as_deref() {
        Ok("pbft") => Protocol::Pbft,
        _ => Protocol::FastBft,
    };
    let faults = std::env::var("DST_SERVICE_FAULTS").unwrap_or_default();
    let faults = dst_inference::faulty::parse_fault_plan(&faults, 4).expect("valid fault plan");
    let mut failing = Vec::new();
    for profile in profiles.split(',') {
        let profile: &'static str = Box::leak(profile.trim().to_string().into_boxed_str());
        let seeds = seeds_from_env(500);
        #[allow(clippy::disallowed_methods)] // wall time of a measurement, not of the simulation
        let started = std::time::Instant::now();
        let (mut completions, mut bad) = (0, 0);
        for &seed in &seeds {
            let spec = Run {
                faults: faults.clone(),
                ..Run::new(protocol, seed, profile)
            };
            let outcome = run(&spec);
            completions += common::completions(&outcome.observations);
            let verdict = judge(&spec, &outcome);
            if !verdict.is_clean() {
                bad += 1;
                println!(
                    "{protocol:?} {profile} seed {seed}: {:?}",
                    verdict.violations
                );
                failing.push((profile, seed));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{protocol:?} {profile}: {} seeds, {bad} with violations, {completions} completions, {elapsed:.1} s, {:.1} seeds/s",
            seeds.len(),
            seeds.len() as f64 / elapsed
        );
    }
    assert!(failing.is_empty(), "failing seeds: {failing:?}");
}
