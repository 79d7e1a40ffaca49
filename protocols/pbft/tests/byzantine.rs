//! PBFT with up to f Byzantine replicas (the generic wrappers of `dst_sim::byzantine`, taught
//! PBFT's forgeries through `Adversarial`): every oracle stays clean, and clients finish.

mod common;

use common::{completed, run_with, verdict, Run};
use dst_pbft::{Pbft, PbftConfig};
use dst_protocols::KvStore;
use dst_sim::testing::seeds_from_env;
use dst_sim::{Behaviour, Byzantine, NodeId};

type Wrapped = Byzantine<Pbft<KvStore>>;

/// A cluster of 4 where the replicas in `byzantine` misbehave as `behaviour`.
fn run_byzantine(
    run: &Run,
    behaviour: &str,
    byzantine: &'static [u32],
) -> common::Outcome<Wrapped> {
    let nodes = run.nodes;
    let name = behaviour.to_string();
    run_with(run, move |id: NodeId| {
        let honest = || Pbft::for_service(PbftConfig::default(), KvStore::new());
        let behaviour = if byzantine.contains(&id.0) {
            Behaviour::named(&name, id, nodes).expect("known behaviour")
        } else {
            Behaviour::Honest
        };
        Byzantine::new(behaviour, honest(), Some(honest()))
    })
}

fn clean_with(behaviour: &str, byzantine: &'static [u32], profile: &'static str) {
    for seed in seeds_from_env(4) {
        let run = Run::new(seed, profile);
        let outcome = run_byzantine(&run, behaviour, byzantine);
        let verdict = verdict(&outcome, run.nodes, byzantine);
        assert!(
            verdict.is_clean(),
            "DST_SEED={seed} {behaviour} {byzantine:?} under {profile}: {:?}",
            verdict.violations
        );
        let expected = (run.clients as u64 * run.requests_per_client) as usize;
        assert_eq!(
            completed(&outcome.observations),
            expected,
            "DST_SEED={seed} {behaviour} {byzantine:?} under {profile}: clients did not finish"
        );
    }
}

#[test]
fn a_byzantine_primary_cannot_break_safety_or_liveness() {
    for behaviour in Behaviour::NAMES {
        clean_with(behaviour, &[0], "light");
    }
}

#[test]
fn a_byzantine_backup_cannot_break_safety_or_liveness() {
    for behaviour in Behaviour::NAMES {
        clean_with(behaviour, &[2], "light");
    }
}

/// Beyond the fault bound: with f + 1 = 2 lying replicas a client can collect f + 1 matching
/// wrong answers, and the linearizability oracle must notice.
#[test]
fn f_plus_one_liars_are_caught_by_the_oracles() {
    let mut caught = 0;
    for seed in 1..=3 {
        let run = Run::new(seed, "none");
        let outcome = run_byzantine(&run, "lie", &[0, 1]);
        let verdict = verdict(&outcome, run.nodes, &[0, 1]);
        if !verdict.is_clean() {
            caught += 1;
        }
    }
    assert_eq!(caught, 3, "the oracles missed f + 1 liars");
}
