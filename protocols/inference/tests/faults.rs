//! Service faults injected per replica: one faulty replica (at most f) is outvoted and every
//! run is clean; f + 1 colluding replicas with the same fault are caught by the checkers.

mod common;

use common::{judge, run, Protocol, Run};
use dst_inference::ServiceFault;

const FAULTS: [&str; 5] = [
    "weight-flip@10",
    "session-flip@10",
    "stale-model@5",
    "split-k@5",
    "forge-output@10",
];

fn with_faults(protocol: Protocol, seed: u64, nodes: &[u32], fault: &str, mark: bool) -> Run {
    let fault = ServiceFault::parse(fault).expect("valid fault");
    Run {
        faults: nodes.iter().map(|&node| (node, fault)).collect(),
        mark_faulty: mark,
        ..Run::new(protocol, seed, "none")
    }
}

/// Colluding faults whose harm reaches the clients on every seed tried (1-20), even with
/// both colluders marked Byzantine. A weight flip or a split-k kernel may change nothing a
/// client sees before the run ends (PBFT clients may accept the two honest replies first),
/// and a session flip can heal (the session is closed before anything reveals it): those are
/// asserted with the colluders counted as correct only (see `colluder_table`).
const HARMFUL: [&str; 2] = ["stale-model@5", "forge-output@10"];

fn seeds(default: u64) -> Vec<u64> {
    dst_sim::testing::seeds_from_env(default)
}

fn property_names(spec: &Run) -> Vec<String> {
    let outcome = run(spec);
    let mut names: Vec<String> = judge(spec, &outcome)
        .violations
        .iter()
        .map(|violation| format!("{:?}", violation.property))
        .collect();
    names.dedup();
    names
}

/// One faulty replica of four (f = 1), marked Byzantine for the oracles: the protocol
/// outvotes it, clients get the reference model's outputs, the correct replicas agree.
fn one_faulty_replica_is_outvoted(protocol: Protocol) {
    for seed in seeds(2) {
        for (index, fault) in FAULTS.into_iter().enumerate() {
            // Every node in turn, the primary of view 0 too: its divergent responses must not
            // win either.
            let node = ((seed + index as u64) % 4) as u32;
            let spec = with_faults(protocol, seed, &[node], fault, true);
            let found = property_names(&spec);
            assert!(
                found.is_empty(),
                "{protocol:?} seed {seed}, {fault} on n{node}: {found:?}"
            );
        }
    }
}

#[test]
fn one_faulty_replica_is_outvoted_by_fastbft() {
    one_faulty_replica_is_outvoted(Protocol::FastBft);
}

#[test]
fn one_faulty_replica_is_outvoted_by_pbft() {
    one_faulty_replica_is_outvoted(Protocol::Pbft);
}

/// f + 1 = 2 replicas of four with the same fault. Counted as correct (the fault assumption
/// says at most f are not), the oracles see correct replicas disagree or requests stall;
/// marked Byzantine, they still see the harm: PBFT clients accept f + 1 matching wrong
/// outputs (linearizability), FastBFT clients are answered speculatively but nothing becomes
/// final (durability).
fn colluders_are_caught(protocol: Protocol) {
    for seed in seeds(1) {
        for fault in FAULTS {
            let spec = with_faults(protocol, seed, &[1, 2], fault, false);
            let found = property_names(&spec);
            assert!(
                !found.is_empty(),
                "{protocol:?} seed {seed}: colluding {fault} on n1, n2 (counted correct) not caught"
            );
        }
        let kernel = (protocol == Protocol::FastBft).then_some("split-k@5");
        for fault in HARMFUL.into_iter().chain(kernel) {
            let spec = with_faults(protocol, seed, &[1, 2], fault, true);
            let found = property_names(&spec);
            assert!(
                !found.is_empty(),
                "{protocol:?} seed {seed}: colluding {fault} on n1, n2 (marked Byzantine) not caught"
            );
        }
    }
}

#[test]
fn colluders_are_caught_under_fastbft() {
    colluders_are_caught(Protocol::FastBft);
}

#[test]
fn colluders_are_caught_under_pbft() {
    colluders_are_caught(Protocol::Pbft);
}

/// The non-canonical kernel on f + 1 replicas: PBFT clients accept its outputs and the
/// reference model rejects them.
#[test]
fn non_canonical_kernel_on_f_plus_one_breaks_linearizability_under_pbft() {
    let caught: Vec<u64> = (1..=4)
        .filter(|&seed| {
            let spec = with_faults(Protocol::Pbft, seed, &[1, 2], "split-k@5", true);
            property_names(&spec).contains(&"Linearizability".to_string())
        })
        .collect();
    assert!(
        !caught.is_empty(),
        "no seed of 1..=4 caught the split-k colluders by linearizability"
    );
}

/// The colluder table for the notes:
/// `DST_SEEDS=20 cargo test --release -p dst-inference --test faults -- --ignored --nocapture`
#[test]
#[ignore]
fn colluder_table() {
    for protocol in [Protocol::FastBft, Protocol::Pbft] {
        for fault in FAULTS {
            for mark in [true, false] {
                let mut missed = Vec::new();
                let mut properties = std::collections::BTreeMap::new();
                let all = seeds(20);
                for &seed in &all {
                    let found = property_names(&with_faults(protocol, seed, &[1, 2], fault, mark));
                    if found.is_empty() {
                        missed.push(seed);
                    }
                    for name in found {
                        *properties.entry(name).or_insert(0) += 1;
                    }
                }
                println!(
                    "{protocol:?} {fault} on n1,n2 marked={mark}: caught {}/{}, missed seeds {missed:?}, by {properties:?}",
                    all.len() - missed.len(),
                    all.len()
                );
            }
        }
    }
}
