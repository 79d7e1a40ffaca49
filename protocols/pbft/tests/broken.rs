//! Deliberately broken variants the oracles must catch, next to the correct replica passing
//! the same schedule.
//!
//! The schedule (Castro and Liskov, section 4.5: "replicas must persist their prepared and
//! pre-prepare promises"): a Byzantine primary (replica 0, played by the test) pre-prepares
//! request A at slot 1 for replicas 1 and 2; they prepare, commit and execute A. Replica 2
//! crashes and restarts. The primary now pre-prepares request B for slot 1 in the same view
//! to replicas 2 and 3 and votes for it itself.
//! - Correct replica 2 recovered its accepted pre-prepare from disk and refuses B: B never
//!   gathers 2f prepares from backups, nothing else commits in slot 1.
//! - The broken variant ("amnesiac": a replica whose disk is memory, so a crash forgets what
//!   it promised) accepts B; replicas 2 and 3 prepare and, with the primary's commit, commit
//!   B in slot 1 while replica 1 committed A. The agreement oracle must report it.

mod common;

use std::collections::BTreeSet;

use common::manual::{Manual, Msg, Sends};
use dst_checkers::linearizability::CheckConfig;
use dst_checkers::oracles::Property;
use dst_pbft::message::request_digest;
use dst_pbft::{Phase, Seq, Statement, View};
use dst_protocols::harness::{check_kv_run, RunFacts, RunVerdict};
use dst_protocols::{KvCommand, Observation};
use dst_sim::{ClientId, NodeId, SEC};

/// Sends of one step, delivered to `to` (one round; what they send back is returned).
fn round(manual: &mut Manual, from: u32, sends: &Sends, to: &[u32]) -> Vec<(u32, Sends)> {
    manual.deliver_all(from, sends, to)
}

fn pre_prepare(manual: &mut Manual, client: u32, value: &str) -> (Msg, dst_sim::Digest) {
    let request = manual.request(client, 1, value);
    let digest = request_digest(&request);
    let statement = manual.sign_as(
        0,
        Statement {
            phase: Phase::PrePrepare,
            view: View(0),
            seq: Seq(1),
            digest,
        },
    );
    let msg = Msg::PrePrepare {
        statement,
        request: Some(request),
    };
    (msg, digest)
}

/// The Byzantine primary's own commit for `digest` in slot 1.
fn primary_commit(manual: &mut Manual, digest: dst_sim::Digest) -> Sends {
    let vote = manual.sign_as(
        0,
        Statement {
            phase: Phase::Commit,
            view: View(0),
            seq: Seq(1),
            digest,
        },
    );
    vec![(None, Msg::Commit(vote))]
}

/// Runs the schedule; `amnesia` picks the broken variant. Returns the manual cluster.
fn equivocating_primary_and_a_restart(amnesia: bool) -> Manual {
    let mut manual = Manual::new(4);
    let (first, digest_a) = pre_prepare(&mut manual, 1, "a");
    // Replicas 1 and 2 accept A and exchange prepares; then commits (with the primary's).
    let prepares = round(&mut manual, 0, &vec![(None, first)], &[1, 2]);
    let mut commits = Vec::new();
    for (from, sends) in prepares {
        commits.extend(round(&mut manual, from, &sends, &[1, 2]));
    }
    for (from, sends) in commits {
        round(&mut manual, from, &sends, &[1, 2]);
    }
    let votes = primary_commit(&mut manual, digest_a);
    round(&mut manual, 0, &votes, &[1, 2]);

    manual.crash_restart(2, amnesia);

    let (second, digest_b) = pre_prepare(&mut manual, 2, "b");
    let prepares = round(&mut manual, 0, &vec![(None, second)], &[2, 3]);
    let mut commits = Vec::new();
    for (from, sends) in prepares {
        commits.extend(round(&mut manual, from, &sends, &[2, 3]));
    }
    for (from, sends) in commits {
        round(&mut manual, from, &sends, &[2, 3]);
    }
    let votes = primary_commit(&mut manual, digest_b);
    round(&mut manual, 0, &votes, &[2, 3]);
    manual
}

/// Every oracle over the manual run, replica 0 Byzantine.
fn judge(manual: &Manual) -> RunVerdict {
    let mut observations = vec![
        (
            0,
            Observation::Invoke {
                client: ClientId(1),
                sequence: 1,
                command: KvCommand::Put {
                    key: "k".to_string(),
                    value: "a".to_string(),
                },
            },
        ),
        (
            0,
            Observation::Invoke {
                client: ClientId(2),
                sequence: 1,
                command: KvCommand::Put {
                    key: "k".to_string(),
                    value: "b".to_string(),
                },
            },
        ),
    ];
    observations.extend(manual.observations.iter().cloned());
    let end_ns = SEC;
    let facts = RunFacts::byzantine_fault_tolerant(4, BTreeSet::from([NodeId(0)]), end_ns, end_ns);
    check_kv_run(&observations, &facts, &CheckConfig::default())
}

#[test]
fn a_restarted_replica_keeps_its_pre_prepare_promise() {
    let manual = equivocating_primary_and_a_restart(false);
    assert_eq!(
        manual.commits_of(1),
        vec![(1, Some((ClientId(1), 1)))],
        "replica 1 committed A"
    );
    assert!(
        manual
            .ignored_by(2)
            .contains(&"pre-prepare: conflicts with the accepted one"),
        "replica 2 forgot it accepted A"
    );
    for id in [2, 3] {
        assert!(
            manual
                .commits_of(id)
                .iter()
                .all(|(_, request)| *request == Some((ClientId(1), 1))),
            "replica {id} committed something else in slot 1"
        );
    }
    let verdict = judge(&manual);
    let safety: Vec<_> = verdict
        .violations
        .iter()
        .filter(|violation| violation.property != Property::Liveness)
        .collect();
    assert!(safety.is_empty(), "{safety:?}");
}

#[test]
fn deliberately_broken_amnesiac_replica_is_caught_by_the_agreement_oracle() {
    let manual = equivocating_primary_and_a_restart(true);
    assert_eq!(manual.commits_of(3), vec![(1, Some((ClientId(2), 1)))]);
    let verdict = judge(&manual);
    assert!(
        verdict
            .violations
            .iter()
            .any(|violation| violation.property == Property::Agreement),
        "the oracles missed two requests committed in slot 1: {:?}",
        verdict.violations
    );
}
