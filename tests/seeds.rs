//! Seeded simulations in `cargo test`: every protocol under every fault profile, judged by
//! every oracle (agreement, durability, validity, exactly-once, invariants, liveness after
//! the quiet phase, linearizability of the client history).
//!
//! `DST_SEEDS=n` runs more seeds; `DST_SEED=s` reruns one. A failure prints the command that
//! reproduces it.

use dst::runner::{self, RunSpec};
use dst_sim::testing::seeds_from_env;

fn run_profile(protocol: &str, profile: &str, default_seeds: u64) {
    let mut failures = Vec::new();
    for seed in seeds_from_env(default_seeds) {
        let mut spec = RunSpec::new(protocol, seed, profile);
        spec.ops = 120;
        let outcome = runner::run(&spec).expect("valid spec");
        if let Some(violation) = outcome.violations.first() {
            failures.push(format!(
                "seed {seed}: [{}] {}\n  reproduce: {}\n  for cargo test: DST_SEED={seed} cargo test --test seeds {protocol}_{profile}",
                violation.property,
                violation.detail,
                spec.command()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{protocol} under {profile}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn raft_none() {
    run_profile("raft", "none", 8);
}

#[test]
fn raft_light() {
    run_profile("raft", "light", 16);
}

#[test]
fn raft_heavy() {
    run_profile("raft", "heavy", 16);
}

#[test]
fn raft_partitions() {
    run_profile("raft", "partitions", 16);
}

#[test]
fn raft_clocks() {
    run_profile("raft", "clocks", 16);
}

#[test]
fn raft_storage() {
    run_profile("raft", "storage", 16);
}

#[test]
fn raft_wipes() {
    // Machines replaced mid-run rejoin as new members (single-server membership changes).
    run_profile("raft", "wipes", 16);
}

#[test]
fn raft_runs_are_deterministic_on_a_sample_of_seeds() {
    for seed in seeds_from_env(3) {
        for profile in ["heavy", "swarm"] {
            let mut spec = RunSpec::new("raft", seed, profile);
            spec.ops = 60;
            let result = runner::check_run_determinism(&spec).expect("valid spec");
            assert!(
                result.is_ok(),
                "seed {seed} under {profile}: {}",
                result.unwrap_err()
            );
        }
    }
}

#[test]
fn multipaxos_light() {
    run_profile("multipaxos", "light", 16);
}

#[test]
fn multipaxos_heavy() {
    run_profile("multipaxos", "heavy", 16);
}

#[test]
fn multipaxos_partitions() {
    run_profile("multipaxos", "partitions", 16);
}

#[test]
fn multipaxos_clocks() {
    run_profile("multipaxos", "clocks", 16);
}

#[test]
fn multipaxos_storage() {
    run_profile("multipaxos", "storage", 16);
}

#[test]
fn raft_corruption() {
    run_profile("raft", "corruption", 16);
}

#[test]
fn raft_swarm() {
    run_profile("raft", "swarm", 16);
}

#[test]
fn multipaxos_corruption() {
    run_profile("multipaxos", "corruption", 16);
}

// The BFT protocols through the runner, with at most f Byzantine replicas (n = 4, f = 1):
// typed adversaries drawn per seed, Twins scenarios drawn per seed, corruption, swarm.
macro_rules! bft_profiles {
    ($($name:ident: $protocol:literal, $profile:literal, $seeds:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_profile($protocol, $profile, $seeds);
            }
        )*
    };
}

bft_profiles! {
    pbft_byzantine: "pbft", "byzantine", 8;
    pbft_twins: "pbft", "twins", 4;
    pbft_corruption: "pbft", "corruption", 8;
    pbft_swarm: "pbft", "swarm", 8;
    hotstuff_byzantine: "hotstuff", "byzantine", 8;
    hotstuff_twins: "hotstuff", "twins", 4;
    hotstuff_corruption: "hotstuff", "corruption", 8;
    hotstuff_swarm: "hotstuff", "swarm", 8;
    fastbft_byzantine: "fastbft", "byzantine", 8;
    fastbft_twins: "fastbft", "twins", 4;
    fastbft_corruption: "fastbft", "corruption", 8;
    fastbft_swarm: "fastbft", "swarm", 8;
}

/// With f + 1 Byzantine replicas the oracles must fire: the same runner with one more liar,
/// twin or equivocator breaks a property within a few dozen seeds. Returns the first
/// violating seed.
fn first_violation_with_f_plus_one(
    protocol: &str,
    profile: &str,
    behaviour: Option<&str>,
    seeds_max: u64,
) -> Option<u64> {
    (1..=seeds_max).find(|&seed| {
        let mut spec = RunSpec::new(protocol, seed, profile);
        spec.byzantine = Some(2);
        spec.behaviour = behaviour.map(str::to_string);
        !runner::run(&spec)
            .expect("valid spec")
            .violations
            .is_empty()
    })
}

#[test]
fn f_plus_one_colluding_liars_are_caught() {
    for protocol in ["pbft", "hotstuff"] {
        let found = first_violation_with_f_plus_one(protocol, "byzantine", Some("lie"), 5);
        assert!(
            found.is_some(),
            "{protocol}: two liars of four went unnoticed"
        );
    }
}

#[test]
fn f_plus_one_twins_are_caught() {
    for protocol in ["pbft", "hotstuff"] {
        let found = first_violation_with_f_plus_one(protocol, "twins", None, 30);
        assert!(
            found.is_some(),
            "{protocol}: two twinned replicas of four went unnoticed"
        );
    }
}

#[test]
fn f_plus_one_fastbft_twins_are_caught() {
    let found = first_violation_with_f_plus_one("fastbft", "twins", None, 40);
    assert!(
        found.is_some(),
        "two twinned FastBFT replicas of four went unnoticed"
    );
}

#[test]
fn bft_runs_are_deterministic_on_a_sample_of_seeds() {
    for seed in seeds_from_env(2) {
        for (protocol, profile) in [("pbft", "byzantine"), ("pbft", "twins")] {
            let mut spec = RunSpec::new(protocol, seed, profile);
            spec.ops = 40;
            let result = runner::check_run_determinism(&spec).expect("valid spec");
            assert!(
                result.is_ok(),
                "{protocol} seed {seed} under {profile}: {result:?}"
            );
        }
    }
}

#[test]
fn bft_protocols_rotate_leaders_in_another_order_and_stay_safe_and_live() {
    // An order in which replica 0 does not lead view 0, so the rotation really changed.
    let order = (1..100u64)
        .find(|seed| dst_protocols::leaders::rotation_leader(*seed, 4, 0).0 != 0)
        .expect("some order starts elsewhere");
    for protocol in ["pbft", "hotstuff", "fastbft"] {
        for seed in seeds_from_env(2) {
            let mut spec = RunSpec::new(protocol, seed, "light");
            spec.ops = 60;
            spec.options = vec![("leader_order".into(), order.to_string())];
            let outcome = runner::run(&spec).expect("valid spec");
            assert!(
                outcome.violations.is_empty(),
                "{protocol} seed {seed} leader_order {order}: {:?}\n  reproduce: {}",
                outcome.violations.first(),
                spec.command()
            );
        }
    }
}
