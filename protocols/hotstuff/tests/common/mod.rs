//! Shared helpers: run HotStuff replicating the KV store in the real simulator with the BFT
//! client, and judge runs with the harness's oracles.

#![allow(dead_code)]

use std::collections::BTreeSet;

use dst_checkers::linearizability::CheckConfig;
use dst_hotstuff::{HotStuff, HotStuffConfig};
use dst_protocols::bft_client::{BftClient, BftClientConfig};
use dst_protocols::harness::{check_kv_run, RunFacts, RunVerdict};
use dst_protocols::{KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig, Observation};
use dst_sim::{
    parse_plan, FaultProfile, Node, NodeId, RunSummary, SeededSource, Sim, SimConfig,
    StorageFaults, SEC,
};

pub type KvHotStuff = HotStuff<KvStore>;
pub type KvObs = Observation<KvCommand, KvOutput>;

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

/// One run's knobs.
pub struct Run {
    pub seed: u64,
    pub profile: &'static str,
    pub nodes: u32,
    pub clients: u32,
    pub requests_per_client: u64,
    pub reads_per_mille: u32,
    pub plan: &'static str,
    pub config: HotStuffConfig,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
    pub byzantine: BTreeSet<NodeId>,
    /// Keep running after the clients are done (until `end_ns`).
    pub run_to_end: bool,
    /// Storage fault rates replacing the profile's until the quiet phase.
    pub storage: Option<StorageFaults>,
}

impl Run {
    pub fn new(seed: u64, profile: &'static str) -> Self {
        Run {
            seed,
            profile,
            nodes: 4,
            clients: 3,
            requests_per_client: env_or("DST_REQUESTS", 20),
            reads_per_mille: 300,
            plan: "",
            config: HotStuffConfig::default(),
            quiet_at_ns: 4 * SEC,
            end_ns: 30 * SEC,
            byzantine: BTreeSet::new(),
            run_to_end: false,
            storage: None,
        }
    }

    /// The harness's facts for this run.
    pub fn facts(&self, summary: &RunSummary) -> RunFacts {
        let mut facts = RunFacts::byzantine_fault_tolerant(
            self.nodes,
            self.byzantine.clone(),
            summary.quiet_at_ns,
            summary.virtual_ns,
        );
        facts.engine_invariant_failures = summary.invariant_failures.clone();
        facts
    }
}

/// What a run left behind.
pub struct Outcome<N: KvNode> {
    pub summary: RunSummary,
    pub observations: Vec<(u64, KvObs)>,
    pub sim: Sim<N, BftClient<N, KvWorkload>>,
}

impl<N: KvNode> Outcome<N> {
    /// Every oracle of the harness.
    pub fn verdict(&self, run: &Run) -> RunVerdict {
        check_kv_run(
            &self.observations,
            &run.facts(&self.summary),
            &CheckConfig::default(),
        )
    }
}

/// Runs nodes built by `make` under the run's profile and plan.
pub fn run_with<N: KvNode>(run: &Run, make: impl FnMut(NodeId) -> N + 'static) -> Outcome<N> {
    let mut knobs = SeededSource::new(run.seed ^ 0x5eed);
    let mut profile = FaultProfile::named(run.profile, &mut knobs).expect("known profile");
    if let Some(storage) = run.storage {
        profile.storage = storage;
    }
    let mut config = SimConfig::new(run.nodes, run.clients, profile);
    config.plan = parse_plan(run.plan).expect("valid plan");
    config.quiet_at_ns = run.quiet_at_ns;
    config.end_ns = run.end_ns;
    config.stop_when_clients_done = !run.run_to_end;
    config.down_max = (run.nodes.saturating_sub(1) / 3).saturating_sub(run.byzantine.len() as u32);
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

/// Runs correct HotStuff replicas over the KV store.
pub fn run_hotstuff(run: &Run) -> Outcome<KvHotStuff> {
    let config = run.config.clone();
    run_with(run, move |_| {
        HotStuff::for_service(config.clone(), KvStore::new())
    })
}

/// Requests clients completed.
pub fn completed(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, obs)| matches!(obs, Observation::Complete { .. }))
        .count()
}

/// Requests clients invoked.
pub fn invoked(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, obs)| matches!(obs, Observation::Invoke { .. }))
        .count()
}

/// View changes replicas reported.
pub fn new_views(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, obs)| matches!(obs, Observation::NewView { .. }))
        .count()
}

/// Seeds to run: `DST_SEED` alone, or `DST_SEEDS` (default `default`) from `DST_FIRST_SEED`.
pub fn seeds(default: u64) -> Vec<u64> {
    dst_sim::testing::seeds_from_env(default)
}

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}
