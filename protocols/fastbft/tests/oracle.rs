//! The speculative oracle itself: it must catch conflicting completions (S1), dropped
//! completions (S2) and diverging stable checkpoints (S3), and pass consistent histories.

mod common;

use std::collections::BTreeSet;

use common::speculative::check_speculative;
use dst_protocols::{KvCommand, KvOutput, Observation};
use dst_sim::{ClientId, NodeId};

type Obs = Observation<KvCommand, KvOutput>;

fn accept(node: u32, slot: u64, prev: u64, hist: u64) -> (u64, Obs) {
    (
        0,
        Observation::SpecAccept {
            node: NodeId(node),
            view: 0,
            slot,
            prev,
            entry: hist ^ prev,
            hist,
        },
    )
}

fn complete(client: u32, view: u64, slot: u64, hist: u64) -> (u64, Obs) {
    (
        1,
        Observation::SpecComplete {
            client: ClientId(client),
            sequence: 1,
            view,
            slot,
            hist,
        },
    )
}

fn stable(node: u32, slot: u64, hist: u64, state: u64) -> (u64, Obs) {
    (
        2,
        Observation::SpecInstall {
            node: NodeId(node),
            view: None,
            slot,
            hist,
            state_digest: Some(state),
        },
    )
}

/// Chain a: 0 -> 11 -> 12; chain b: 0 -> 21 -> 22.
fn chains() -> Vec<(u64, Obs)> {
    vec![
        accept(0, 1, 0, 11),
        accept(0, 2, 11, 12),
        accept(1, 1, 0, 21),
        accept(1, 2, 21, 22),
    ]
}

#[test]
fn consistent_completions_and_checkpoints_pass() {
    let mut observations = chains();
    observations.extend([
        complete(0, 0, 1, 11),
        complete(1, 0, 2, 12),
        stable(0, 2, 12, 7),
        stable(1, 2, 12, 7),
    ]);
    assert_eq!(
        check_speculative(&observations, &BTreeSet::new()),
        Vec::<String>::new()
    );
}

#[test]
fn conflicting_completions_break_s1() {
    let mut observations = chains();
    observations.extend([complete(0, 0, 1, 11), complete(1, 0, 2, 22)]);
    let found = check_speculative(&observations, &BTreeSet::new());
    assert!(
        found.iter().any(|violation| violation.starts_with("S1:")),
        "{found:?}"
    );
}

#[test]
fn a_checkpoint_dropping_a_completion_breaks_s2() {
    let mut observations = chains();
    observations.extend([complete(0, 0, 1, 11), stable(2, 2, 22, 7)]);
    let found = check_speculative(&observations, &BTreeSet::new());
    assert!(
        found.iter().any(|violation| violation.starts_with("S2:")),
        "{found:?}"
    );
}

#[test]
fn diverging_stable_checkpoints_break_s3() {
    let mut observations = chains();
    observations.extend([stable(0, 2, 12, 7), stable(1, 2, 12, 8)]);
    let found = check_speculative(&observations, &BTreeSet::new());
    assert!(
        found.iter().any(|violation| violation.starts_with("S3:")),
        "{found:?}"
    );
}

#[test]
fn byzantine_reports_are_not_evidence() {
    let mut observations = chains();
    observations.extend([stable(0, 2, 12, 7), stable(3, 2, 22, 9)]);
    assert!(check_speculative(&observations, &BTreeSet::from([NodeId(3)])).is_empty());
}
