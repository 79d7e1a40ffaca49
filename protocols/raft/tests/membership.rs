//! Single-server membership changes (Ongaro's thesis, chapter 4) in the real simulator:
//! random churn under fault profiles, with every oracle and Raft's invariants.

mod common;

use common::{check_agreement, completed, run_raft, seeds, Run};
use dst_checkers::linearizability::CheckConfig;
use dst_protocols::harness::{check_kv_run, RunFacts};
use dst_raft::ClusterMonitor;
use dst_sim::{NodeId, MS};

fn live_nodes(outcome: &common::Outcome<common::KvRaft>, nodes: u32) -> Vec<&common::KvRaft> {
    (0..nodes)
        .filter_map(|id| outcome.sim.node(NodeId(id)))
        .collect()
}

/// Runs `seeds` seeds of `profile` with churn every `churn_ms` and checks every oracle.
/// Returns how many configuration changes the runs committed in total.
fn churn_runs(profile: &'static str, nodes: u32, churn_ms: u64, seed_count: u64) -> u64 {
    let mut changes = 0;
    let first = common::env_or("DST_SEED", 0);
    for seed in first..first + seed_count {
        let mut run = Run::new(seed, profile);
        run.nodes = nodes;
        run.requests_per_client = common::env_or("DST_REQUESTS", 60);
        run.raft.membership_churn_ns = churn_ms * MS;
        let outcome = run_raft(&run);
        let reproduce =
            format!("DST_SEED={seed} profile {profile} nodes {nodes} churn {churn_ms} ms");
        check_agreement(&outcome.observations)
            .unwrap_or_else(|error| panic!("{reproduce}: {error}"));
        assert!(
            outcome.summary.invariant_failures.is_empty(),
            "{reproduce}: {:?}",
            outcome.summary.invariant_failures
        );
        let nodes_now = live_nodes(&outcome, nodes);
        ClusterMonitor::new()
            .observe(&nodes_now)
            .unwrap_or_else(|error| panic!("{reproduce}: {error}"));
        let request_corrupted = outcome.summary.stats.corrupt_delivered > 0;
        let facts = RunFacts::from_summary(nodes, &outcome.summary);
        let verdict = check_kv_run(&outcome.observations, &facts, &CheckConfig::default());
        assert!(
            request_corrupted || verdict.is_clean(),
            "{reproduce}: {:?}",
            verdict.violations
        );
        assert!(
            request_corrupted || outcome.summary.clients_pending.iter().all(|p| *p == 0),
            "{reproduce}: clients pending {:?}",
            outcome.summary.clients_pending
        );
        changes += nodes_now
            .iter()
            .map(|node| node.configs_applied())
            .max()
            .unwrap_or(0);
        if std::env::var("DST_VERBOSE").is_ok() {
            eprintln!(
                "{reproduce}: completed {} changes {changes}",
                completed(&outcome.observations)
            );
        }
    }
    changes
}

#[test]
fn churn_under_light_faults_keeps_every_oracle_clean() {
    let changes = churn_runs("light", 5, 300, seeds(4));
    assert!(changes > 0, "churn changed nothing");
}

#[test]
fn churn_under_heavy_faults_keeps_every_oracle_clean() {
    churn_runs("heavy", 5, 300, seeds(4));
}

#[test]
fn churn_under_swarm_keeps_every_oracle_clean() {
    churn_runs("swarm", 5, 300, seeds(4));
    churn_runs("swarm", 3, 300, seeds(2));
}
