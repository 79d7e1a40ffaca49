//! Shared helpers: run PBFT replicating the KV store in the real simulator with BFT clients,
//! and judge the run with every oracle.

#![allow(dead_code)]

use std::collections::BTreeSet;

pub mod manual;

use dst_checkers::linearizability::CheckConfig;
use dst_pbft::{Pbft, PbftConfig};
use dst_protocols::bft_client::{BftClient, BftClientConfig};
use dst_protocols::harness::{check_kv_run, RunFacts, RunVerdict};
use dst_protocols::{KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig, Observation};
use dst_sim::{parse_plan, FaultProfile, Node, NodeId, RunSummary, SeededSource, Sim, SimConfig};

pub type KvPbft = Pbft<KvStore>;
pub type KvObs = Observation<KvCommand, KvOutput>;

/// One run's knobs.
pub struct Run {
    pub seed: u64,
    pub profile: &'static str,
    pub nodes: u32,
    pub clients: u32,
    pub requests_per_client: u64,
    pub reads_per_mille: u32,
    pub plan: &'static str,
    pub pbft: PbftConfig,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
    pub run_to_end: bool,
}

impl Run {
    pub fn new(seed: u64, profile: &'static str) -> Self {
        Run {
            seed,
            profile,
            nodes: 4,
            clients: 3,
            requests_per_client: 25,
            reads_per_mille: 200,
            plan: "",
            pbft: PbftConfig::default(),
            quiet_at_ns: 4 * dst_sim::SEC,
            end_ns: 25 * dst_sim::SEC,
            run_to_end: false,
        }
    }
}

/// The node types the KV BFT clients can talk to.
pub trait KvNode:
    Node<
    Request = dst_sim::Signed<dst_protocols::Request<KvCommand>>,
    Reply = dst_protocols::Reply<KvOutput>,
    Obs = KvObs,
>
{
}
impl<N> KvNode for N where
    N: Node<
        Request = dst_sim::Signed<dst_protocols::Request<KvCommand>>,
        Reply = dst_protocols::Reply<KvOutput>,
        Obs = KvObs,
    >
{
}

pub type KvClient<N> = BftClient<N, KvWorkload>;

/// What a run left behind.
pub struct Outcome<N: KvNode> {
    pub summary: RunSummary,
    pub observations: Vec<(u64, KvObs)>,
    pub sim: Sim<N, KvClient<N>>,
}

/// Runs nodes built by `make` under the run's profile and plan.
pub fn run_with<N: KvNode>(run: &Run, make: impl FnMut(NodeId) -> N + 'static) -> Outcome<N> {
    let mut knobs = SeededSource::new(run.seed ^ 0x5eed);
    let profile = FaultProfile::named(run.profile, &mut knobs).expect("known profile");
    let mut config = SimConfig::new(run.nodes, run.clients, profile);
    config.plan = parse_plan(run.plan).expect("valid plan");
    config.quiet_at_ns = run.quiet_at_ns;
    config.end_ns = run.end_ns;
    config.stop_when_clients_done = !run.run_to_end;
    config.down_max = run.nodes.saturating_sub(1) / 3;
    let clients = (0..run.clients)
        .map(|client| {
            let workload = KvWorkloadConfig::contention(run.requests_per_client)
                .with_reads_per_mille(run.reads_per_mille);
            BftClient::new(
                BftClientConfig::for_cluster(run.nodes),
                KvWorkload::new(client, workload),
            )
        })
        .collect();
    let mut sim = Sim::new(
        config,
        Box::new(make),
        clients,
        SeededSource::new(run.seed),
        false,
    );
    let summary = sim.run();
    let observations = sim.take_observations();
    Outcome {
        summary,
        observations,
        sim,
    }
}

/// Runs PBFT over the KV store.
pub fn run_pbft(run: &Run) -> Outcome<KvPbft> {
    let config = run.pbft.clone();
    run_with(run, move |_| {
        Pbft::for_service(config.clone(), KvStore::new())
    })
}

/// Every oracle over a run with these Byzantine replicas.
pub fn verdict<N: KvNode>(outcome: &Outcome<N>, nodes: u32, byzantine: &[u32]) -> RunVerdict {
    let byzantine: BTreeSet<NodeId> = byzantine.iter().map(|id| NodeId(*id)).collect();
    let mut facts = RunFacts::byzantine_fault_tolerant(
        nodes,
        byzantine,
        outcome.summary.quiet_at_ns,
        outcome.summary.virtual_ns,
    );
    facts.engine_invariant_failures = outcome.summary.invariant_failures.clone();
    check_kv_run(&outcome.observations, &facts, &CheckConfig::default())
}

/// Requests clients completed.
pub fn completed(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, obs)| matches!(obs, Observation::Complete { .. }))
        .count()
}

/// New views entered (by any replica).
pub fn new_views(observations: &[(u64, KvObs)]) -> Vec<(NodeId, u64)> {
    observations
        .iter()
        .filter_map(|(_, obs)| match obs {
            Observation::NewView { node, view } => Some((*node, *view)),
            _ => None,
        })
        .collect()
}

/// Highest slot any replica executed.
pub fn highest_commit(observations: &[(u64, KvObs)]) -> u64 {
    observations
        .iter()
        .filter_map(|(_, obs)| match obs {
            Observation::Commit { slot, .. } => Some(*slot),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}
