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
#[ignore]
fn show_one_run() {
    for protocol in [Protocol::FastBft, Protocol::Pbft] {
        for profile in ["none", "corruption", "byzantine", "twins"] {
            let spec = Run::new(protocol, 3, profile);
            let outcome = run(&spec);
            let verdict = judge(&spec, &outcome);
            let outputs = completed_outputs(&outcome.observations);
            let report = verdict.linearizability.as_ref().unwrap();
            println!(
                "{protocol:?} {profile}: {} completions, virtual {} ms, events {}, partitions {}, violations {:?}, adversary {:?}",
                outputs.len(),
                outcome.summary.virtual_ns / 1_000_000,
                outcome.summary.events,
                report.partitions.len(),
                verdict.violations,
                outcome.adversary.behaviours
            );
            if profile == "none" {
                for o in outputs.iter().take(12) {
                    println!("  {o:?}");
                }
            }
        }
    }
}
