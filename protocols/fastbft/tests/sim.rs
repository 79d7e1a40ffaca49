//! Seeded runs under the fault profiles, and view changes.

mod common;

use common::{completions, new_views, paths, run, unreported_slots, violations, Behaviour, Run};
use dst_sim::testing::seeds_from_env;
use dst_sim::NodeId;

fn profile_runs(profile: &'static str) {
    for seed in seeds_from_env(8) {
        let setup = Run::new(seed, profile);
        let outcome = run(&setup);
        let found = violations(&setup, &outcome);
        assert!(
            found.is_empty(),
            "DST_SEED={seed} profile {profile}: {found:#?}\nsummary: {:?}",
            outcome.summary.end_reason
        );
        assert!(
            completions(&outcome.observations) > 0,
            "DST_SEED={seed}: nothing completed"
        );
        // Slots skipped by state transfers are reported from the archived final entries.
        let unreported = unreported_slots(&setup, &outcome.observations);
        assert!(
            unreported.is_empty(),
            "DST_SEED={seed} profile {profile}: unreported {unreported:?}"
        );
    }
}

#[test]
fn seeded_runs_without_faults_have_no_violations() {
    profile_runs("none");
}

#[test]
fn seeded_runs_under_light_faults_have_no_violations() {
    profile_runs("light");
}

#[test]
fn seeded_runs_under_heavy_faults_have_no_violations() {
    profile_runs("heavy");
}

#[test]
fn seeded_runs_under_corruption_have_no_violations() {
    profile_runs("corruption");
}

#[test]
fn a_crashed_primary_is_replaced_by_a_view_change() {
    let mut setup = Run::new(7, "none");
    setup.plan = "at 100ms crash 0";
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    assert!(
        !new_views(&outcome.observations).is_empty(),
        "a view change happened"
    );
    assert_eq!(
        completions(&outcome.observations),
        40,
        "every request completed"
    );
}

#[test]
fn a_silent_primary_is_replaced_by_a_view_change() {
    let mut setup = Run::new(8, "none");
    setup.behaviours.insert(NodeId(0), Behaviour::Silent);
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    assert!(
        new_views(&outcome.observations).contains(&1),
        "view 1 installed"
    );
    let (fast, slow) = paths(&outcome.observations);
    assert_eq!(fast + slow, 40, "every request completed");
}

#[test]
fn a_forging_replica_is_harmless() {
    for forger in [0, 2] {
        let mut setup = Run::new(9 + forger as u64, "light");
        setup.behaviours.insert(NodeId(forger), Behaviour::Forger);
        let outcome = run(&setup);
        let found = violations(&setup, &outcome);
        assert!(found.is_empty(), "forger n{forger}: {found:#?}");
        assert_eq!(
            completions(&outcome.observations),
            40,
            "forger n{forger}: all completed"
        );
    }
}

#[test]
fn an_equivocating_primary_is_replaced_and_completions_stay_consistent() {
    for seed in seeds_from_env(4) {
        let mut setup = Run::new(seed, "none");
        setup.behaviours.insert(NodeId(0), Behaviour::Equivocator);
        let outcome = run(&setup);
        let found = violations(&setup, &outcome);
        assert!(found.is_empty(), "DST_SEED={seed}: {found:#?}");
        assert!(
            new_views(&outcome.observations).contains(&1),
            "DST_SEED={seed}: view 1 installed"
        );
        assert_eq!(
            completions(&outcome.observations),
            40,
            "DST_SEED={seed}: all completed"
        );
    }
}

#[test]
fn one_byzantine_replica_of_any_kind_under_light_faults_breaks_nothing() {
    let kinds = [
        Behaviour::Silent,
        Behaviour::Liar,
        Behaviour::Forger,
        Behaviour::Equivocator,
    ];
    for seed in seeds_from_env(2) {
        for (index, behaviour) in kinds.iter().enumerate() {
            let node = NodeId(((seed as usize + index) % 4) as u32);
            let profile = if std::env::var("FASTBFT_HEAVY").is_ok() {
                "heavy"
            } else {
                "light"
            };
            let mut setup = Run::new(seed, profile);
            setup.behaviours.insert(node, *behaviour);
            let outcome = run(&setup);
            let found = violations(&setup, &outcome);
            assert!(
                found.is_empty(),
                "DST_SEED={seed} {behaviour:?} at {node}: {found:#?}"
            );
        }
    }
}

#[test]
fn slots_skipped_by_a_state_transfer_asked_for_before_a_checkpoint_are_reported() {
    // Seed 193 under heavy faults: node 2 asks for state from checkpoint 8, reaches 16,
    // then installs 24 from replies that carry the entries from 8.
    let setup = Run::new(193, "heavy");
    let outcome = run(&setup);
    assert!(violations(&setup, &outcome).is_empty());
    let unreported = unreported_slots(&setup, &outcome.observations);
    assert!(unreported.is_empty(), "unreported {unreported:?}");
}
