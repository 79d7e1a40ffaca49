//! Scripted scenarios named after the paper's claims, in the real simulator.

mod common;

use common::{completed, new_views, run_pbft, verdict, Run};
use dst_protocols::Observation;
use dst_sim::{NodeId, MS, SEC};

fn assert_clean_and_done(outcome: &common::Outcome<common::KvPbft>, run: &Run, what: &str) {
    let verdict = verdict(outcome, run.nodes, &[]);
    assert!(
        verdict.is_clean(),
        "seed {} {what}: {:?}",
        run.seed,
        verdict.violations
    );
    let expected = (run.clients as u64 * run.requests_per_client) as usize;
    assert_eq!(
        completed(&outcome.observations),
        expected,
        "seed {} {what}: clients did not finish",
        run.seed
    );
}

/// Backups whose requests are not executed time out, change view, and the new primary
/// (replica 1) orders the requests; clients complete without the old primary.
fn primary_replaced(plan: &'static str, what: &str) {
    for seed in 1..=3 {
        let mut run = Run::new(seed, "none");
        run.plan = plan;
        run.quiet_at_ns = 20 * SEC;
        run.end_ns = 30 * SEC;
        let outcome = run_pbft(&run);
        assert_clean_and_done(&outcome, &run, what);
        let installed: Vec<NodeId> = new_views(&outcome.observations)
            .into_iter()
            .filter(|(_, view)| *view >= 1)
            .map(|(node, _)| node)
            .collect();
        for backup in 1..4 {
            assert!(
                installed.contains(&NodeId(backup)),
                "seed {seed} {what}: n{backup} never entered a new view ({installed:?})"
            );
        }
        let after_fault = outcome
            .observations
            .iter()
            .filter(|(time_ns, obs)| {
                *time_ns > 150 * MS && matches!(obs, Observation::Complete { .. })
            })
            .count();
        assert!(
            after_fault > 0,
            "seed {seed} {what}: nothing completed after the fault"
        );
    }
}

#[test]
fn a_crashed_primary_is_replaced_by_a_view_change() {
    primary_replaced("at 150ms crash 0", "primary crashed");
}

#[test]
fn a_partitioned_primary_is_replaced_by_a_view_change() {
    primary_replaced("at 150ms partition 0 | 1,2,3", "primary partitioned");
}

/// A replica that missed more than a window of requests cannot catch up by the normal case
/// (its water marks reject everything); it fetches the service snapshot of a stable
/// checkpoint, checks it against the 2f + 1 signed checkpoint proof, and continues.
#[test]
fn a_replica_behind_a_stable_checkpoint_catches_up_by_state_transfer() {
    for seed in 1..=3 {
        let mut run = Run::new(seed, "none");
        run.pbft.checkpoint_interval = 8;
        run.pbft.window = 16;
        run.requests_per_client = 40;
        run.plan = "at 100ms crash 3; at 1500ms restart 3";
        run.quiet_at_ns = 20 * SEC;
        run.end_ns = 3 * SEC;
        run.run_to_end = true;
        let outcome = run_pbft(&run);
        assert_clean_and_done(&outcome, &run, "state transfer");
        let top = (0..3)
            .filter_map(|id| outcome.sim.node(NodeId(id)))
            .map(|node| node.last_executed())
            .max()
            .expect("replicas");
        let lagging = outcome.sim.node(NodeId(3)).expect("n3 restarted");
        assert_eq!(
            lagging.last_executed(),
            top,
            "seed {seed}: n3 did not catch up"
        );
        assert!(
            lagging.stable_seq().0 >= 8,
            "seed {seed}: n3 has no stable checkpoint"
        );
        // It skipped slots: some were never applied at n3, yet its state is the cluster's.
        let applied_by_n3 = outcome
            .observations
            .iter()
            .filter(|(_, obs)| matches!(obs, Observation::Apply { node, .. } if *node == NodeId(3)))
            .count() as u64;
        assert!(
            applied_by_n3 < top.0,
            "seed {seed}: n3 applied every slot ({applied_by_n3}), no state transfer happened"
        );
        let reference = outcome.sim.node(NodeId(0)).expect("n0").state();
        assert_eq!(
            lagging.state(),
            reference,
            "seed {seed}: n3's state differs"
        );
    }
}

/// Checkpoints every K slots become stable with 2f + 1 signatures and bound the log: no
/// replica ever holds more than the window.
#[test]
fn stable_checkpoints_collect_the_log() {
    let mut run = Run::new(7, "none");
    run.pbft.checkpoint_interval = 4;
    run.pbft.window = 8;
    run.requests_per_client = 30;
    let outcome = run_pbft(&run);
    assert_clean_and_done(&outcome, &run, "checkpoints");
    for id in 0..4 {
        let node = outcome.sim.node(NodeId(id)).expect("replica");
        assert!(node.log_len() <= 8, "n{id} holds {} slots", node.log_len());
        assert!(
            node.stable_seq().0 + 8 >= node.last_executed().0,
            "n{id}: stable {:?} lags executed {:?}",
            node.stable_seq(),
            node.last_executed()
        );
        assert!(
            node.stable_seq().0 >= 80,
            "n{id}: stable {:?}",
            node.stable_seq()
        );
    }
}
