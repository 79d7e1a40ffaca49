//! Normal case: the fast path, the slow path, c > 0.

mod common;

use common::{latencies, paths, run, violations, Behaviour, Run};
use dst_sim::{NodeId, MS};

#[test]
fn without_faults_every_request_completes_on_the_fast_path_in_three_delays() {
    let mut setup = Run::new(1, "none");
    setup.constant_latency_ns = Some(5 * MS);
    setup.client.fast_timeout_ns = 100 * MS;
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    let (fast, slow) = paths(&outcome.observations);
    assert_eq!((fast, slow), (40, 0), "all 40 requests on the fast path");
    let latencies = latencies(&outcome.observations);
    assert_eq!(latencies.len(), 40);
    assert!(
        latencies.iter().all(|latency| *latency == 15 * MS),
        "three one-way delays of 5 ms: {latencies:?}"
    );
    let commits = outcome
        .observations
        .iter()
        .filter(|(_, observation)| matches!(observation, dst_protocols::Observation::Commit { .. }))
        .count();
    assert_eq!(
        commits,
        4 * 40,
        "every replica finalises every slot (stable checkpoints)"
    );
}

#[test]
fn one_silent_backup_at_c0_takes_the_slow_path_and_stays_live() {
    let mut setup = Run::new(2, "none");
    setup.behaviours.insert(NodeId(3), Behaviour::Silent);
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    let (fast, slow) = paths(&outcome.observations);
    assert_eq!((fast, slow), (0, 40), "every request on the slow path");
}

#[test]
fn with_c1_one_crashed_replica_keeps_the_fast_path() {
    let mut setup = Run::new(3, "none");
    setup.nodes = 6;
    setup.config.c = 1;
    setup.client.c = 1;
    setup.plan = "at 0ms crash 5";
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    let (fast, slow) = paths(&outcome.observations);
    assert_eq!(
        (fast, slow),
        (40, 0),
        "the fast path survives c crashed replicas"
    );
}

#[test]
fn a_lying_backup_forces_the_slow_path_without_a_view_change() {
    let mut setup = Run::new(4, "none");
    setup.behaviours.insert(NodeId(2), Behaviour::Liar);
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    let (fast, slow) = paths(&outcome.observations);
    assert_eq!((fast, slow), (0, 40));
    assert!(
        common::new_views(&outcome.observations).is_empty(),
        "no view change needed"
    );
}
