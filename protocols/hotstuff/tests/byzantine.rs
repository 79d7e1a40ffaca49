//! HotStuff against the typed Byzantine adversaries and Twins: with at most f Byzantine
//! replicas every oracle holds; with f + 1 equivocators the checkers report violations.

mod common;

use std::collections::BTreeSet;

use common::{completed, run_with, seeds, KvHotStuff, Run};
use dst_hotstuff::{HotStuff, HotStuffConfig};
use dst_protocols::harness::RunVerdict;
use dst_protocols::KvStore;
use dst_sim::{Behaviour, Byzantine, NodeId, TwinsHost, TwinsScenario, MS};

/// The fault profile under the adversary: `light`, or `DST_PROFILE`.
fn profile() -> &'static str {
    match std::env::var("DST_PROFILE") {
        Ok(name) => dst_sim::PROFILE_NAMES
            .iter()
            .find(|known| **known == name)
            .copied()
            .unwrap_or_else(|| panic!("DST_PROFILE={name:?} is not a profile")),
        Err(_) => "light",
    }
}

fn honest() -> KvHotStuff {
    HotStuff::for_service(HotStuffConfig::default(), KvStore::new())
}

/// Runs with `behaviour` on the nodes of `byzantine`, everyone else honest.
fn run_byzantine(run: &Run, behaviour: &'static str) -> (RunVerdict, usize) {
    let byzantine = run.byzantine.clone();
    let nodes = run.nodes;
    let outcome = run_with(run, move |id| {
        let behaviour = if byzantine.contains(&id) {
            Behaviour::named(behaviour, id, nodes).expect("known behaviour")
        } else {
            Behaviour::Honest
        };
        let twin = (behaviour == Behaviour::Equivocate).then(honest);
        Byzantine::new(behaviour, honest(), twin)
    });
    (outcome.verdict(run), completed(&outcome.observations))
}

#[test]
fn one_byzantine_replica_of_each_kind_changes_nothing() {
    for behaviour in Behaviour::NAMES {
        for seed in seeds(2) {
            // Node 1 leads rounds 1, 5, 9, ...; node 2 is an ordinary backup at first.
            for node in [1, 2] {
                let mut run = Run::new(seed, profile());
                run.byzantine = BTreeSet::from([NodeId(node)]);
                let (verdict, done) = run_byzantine(&run, behaviour);
                assert!(
                    verdict.is_clean(),
                    "{behaviour} on n{node} DST_SEED={seed}: {:?} (completed {done})",
                    verdict.violations
                );
            }
        }
    }
}

/// f + 1 = 2 equivocators out of 4: each of them runs two honest instances talking to the
/// two halves of the cluster, so each half can gather a quorum of its own. The checkers
/// must see the split (a seed shows it).
#[test]
fn two_equivocators_of_four_break_agreement_and_the_checkers_say_so() {
    let mut caught = Vec::new();
    for seed in 1..=8 {
        let mut run = Run::new(seed, "none");
        run.byzantine = BTreeSet::from([NodeId(2), NodeId(3)]);
        let (verdict, _) = run_byzantine(&run, "equivocate");
        if !verdict.is_clean() {
            caught.push((seed, verdict.violations[0].clone()));
        }
    }
    assert!(
        !caught.is_empty(),
        "no seed of 8 showed a violation with f + 1 equivocators"
    );
    eprintln!("f + 1 equivocators, caught: {caught:?}");
}

/// Twins (Bano et al.): one identity runs twice with per-round partitions; the protocol
/// stays safe over a sample of enumerated scenarios.
#[test]
fn twins_scenarios_stay_safe() {
    let twins = vec![NodeId(1)];
    let codes = TwinsScenario::canonical_codes(4, &twins, 3, 100_000);
    assert!(!codes.is_empty());
    for seed in seeds(6) {
        let code = codes[(seed as usize * 7919) % codes.len()];
        let scenario = TwinsScenario::from_code(4, twins.clone(), 3, 400 * MS, code);
        let mut run = Run::new(seed, profile());
        run.byzantine = BTreeSet::from([NodeId(1)]);
        let outcome = run_with(&run, move |id| {
            let twin = scenario.twins.contains(&id).then(honest);
            TwinsHost::new(scenario.clone(), honest(), twin)
        });
        let verdict = outcome.verdict(&run);
        assert!(
            verdict.is_clean(),
            "twins scenario {code} DST_SEED={seed}: {:?}",
            verdict.violations
        );
    }
}

/// A TC of the last round of a tenure skips the next tenure (its leader was to collect the
/// votes and did not): a silent replica costs one timeout per rotation, not two. So the
/// correct replicas (almost) never enter a round the silent replica leads through a TC,
/// while clients still complete everything.
#[test]
fn a_tc_naming_a_silent_leader_skips_its_tenure() {
    let config = HotStuffConfig::default();
    let leader_rounds = config.leader_rounds;
    assert!(
        leader_rounds > 1,
        "the skip needs tenures of several rounds"
    );
    for seed in seeds(2) {
        let mut run = Run::new(seed, "none");
        let silent = NodeId(2);
        run.byzantine = BTreeSet::from([silent]);
        let byzantine = run.byzantine.clone();
        let nodes = run.nodes;
        let outcome = run_with(&run, move |id| {
            let behaviour = if byzantine.contains(&id) {
                Behaviour::named("silent", id, nodes).expect("known behaviour")
            } else {
                Behaviour::Honest
            };
            Byzantine::new(behaviour, honest(), None)
        });
        let verdict = outcome.verdict(&run);
        assert!(
            verdict.is_clean(),
            "DST_SEED={seed}: {:?}",
            verdict.violations
        );
        let (mut into_silent, mut view_changes) = (0, 0);
        for (_, obs) in &outcome.observations {
            if let dst_protocols::Observation::NewView { node, view } = obs {
                if *node == silent {
                    continue;
                }
                view_changes += 1;
                let leader = (view / leader_rounds) % u64::from(nodes);
                into_silent += usize::from(leader == u64::from(silent.0));
            }
        }
        assert!(
            view_changes > 0,
            "DST_SEED={seed}: the silent leader cost no timeout?"
        );
        assert!(
            into_silent * 10 <= view_changes,
            "DST_SEED={seed}: {into_silent} of {view_changes} view changes entered the silent \
             leader's tenure"
        );
    }
}
