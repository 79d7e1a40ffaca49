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

#[test]
#[ignore]
fn explore_colluders() {
    for protocol in [Protocol::FastBft, Protocol::Pbft] {
        for fault in FAULTS {
            for mark in [true, false] {
                for seed in 1..=4 {
                    let spec = with_faults(protocol, seed, &[1, 2], fault, mark);
                    let outcome = run(&spec);
                    let verdict = judge(&spec, &outcome);
                    let mut kinds: Vec<String> = verdict
                        .violations
                        .iter()
                        .map(|v| format!("{:?}", v.property))
                        .collect();
                    kinds.dedup();
                    println!("{protocol:?} {fault} mark={mark} seed {seed}: {kinds:?}");
                }
            }
        }
    }
}
