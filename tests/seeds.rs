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
