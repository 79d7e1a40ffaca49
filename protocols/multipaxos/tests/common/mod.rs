//! Shared helpers: run Multi-Paxos replicating the KV store in the real simulator, and judge
//! the run with every oracle (mirrors the `dst` runner's `raft_node`, `kv_client`,
//! `judge_kv`).

#![allow(dead_code)]

use dst_checkers::linearizability::CheckConfig;
use dst_multipaxos::{ChosenMonitor, MultiPaxos, PaxosConfig};
use dst_protocols::harness::{check_kv_run, RunFacts};
use dst_protocols::{
    ClientConfig, KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig, Observation,
    SimClient,
};
use dst_sim::{parse_plan, FaultProfile, Node, NodeId, RunSummary, SeededSource, Sim, SimConfig};

pub type KvPaxos = MultiPaxos<KvStore>;
pub type KvObs = Observation<KvCommand, KvOutput>;

/// One run's knobs.
pub struct Run {
    pub seed: u64,
    pub profile: &'static str,
    pub nodes: u32,
    pub clients: u32,
    pub requests_per_client: u64,
    pub plan: &'static str,
    pub paxos: PaxosConfig,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
}

impl Run {
    pub fn new(seed: u64, profile: &'static str) -> Self {
        Run {
            seed,
            profile,
            nodes: 3,
            clients: 2,
            requests_per_client: 30,
            plan: "",
            paxos: PaxosConfig::default(),
            quiet_at_ns: 5 * dst_sim::SEC,
            end_ns: 20 * dst_sim::SEC,
        }
    }
}

/// The node types the KV clients can talk to.
pub trait KvNode:
    Node<
    Request = dst_protocols::Request<KvCommand>,
    Reply = dst_protocols::Reply<KvOutput>,
    Obs = KvObs,
>
{
}
impl<N> KvNode for N where
    N: Node<
        Request = dst_protocols::Request<KvCommand>,
        Reply = dst_protocols::Reply<KvOutput>,
        Obs = KvObs,
    >
{
}

/// What a run left behind.
pub struct Outcome<N: KvNode> {
    pub summary: RunSummary,
    pub observations: Vec<(u64, KvObs)>,
    pub sim: Sim<N, SimClient<N, KvWorkload>>,
}

/// Runs nodes built by `make` under the run's profile and plan.
pub fn run_with<N: KvNode>(run: &Run, make: impl FnMut(NodeId) -> N + 'static) -> Outcome<N> {
    let mut knobs = SeededSource::new(run.seed ^ 0x5eed);
    let profile = FaultProfile::named(run.profile, &mut knobs).expect("known profile");
    let mut config = SimConfig::new(run.nodes, run.clients, profile);
    config.plan = parse_plan(run.plan).expect("valid plan");
    config.quiet_at_ns = run.quiet_at_ns;
    config.end_ns = run.end_ns;
    config.stop_when_clients_done = true;
    let clients = (0..run.clients)
        .map(|client| {
            let workload = KvWorkloadConfig::contention(run.requests_per_client);
            SimClient::new(ClientConfig::default(), KvWorkload::new(client, workload))
        })
        .collect();
    let source = SeededSource::new(run.seed);
    run_to_end(Sim::new(config, Box::new(make), clients, source, false))
}

/// Runs `sim` and keeps what it left behind.
fn run_to_end<N: KvNode>(mut sim: Sim<N, SimClient<N, KvWorkload>>) -> Outcome<N> {
    let summary = sim.run();
    let observations = sim.take_observations();
    Outcome {
        summary,
        observations,
        sim,
    }
}

/// Runs Multi-Paxos over the KV store.
pub fn run_paxos(run: &Run) -> Outcome<KvPaxos> {
    let config = run.paxos.clone();
    run_with(run, move |_| {
        MultiPaxos::for_service(config.clone(), KvStore::new())
    })
}

/// Every oracle over the run: safety, the engine's invariant failures, liveness after the
/// quiet phase, linearizability. Returns the violations as text.
pub fn judge<N: KvNode>(run: &Run, outcome: &Outcome<N>) -> Vec<String> {
    let facts = RunFacts::from_summary(run.nodes, &outcome.summary);
    let verdict = check_kv_run(&outcome.observations, &facts, &CheckConfig::default());
    verdict
        .violations
        .iter()
        .map(|violation| format!("{}: {}", violation.property, violation.detail))
        .collect()
}

/// The cross-node check over the nodes still up at the end.
pub fn chosen_never_changes(outcome: &Outcome<KvPaxos>, nodes: u32) -> Result<(), String> {
    let live: Vec<&KvPaxos> = (0..nodes)
        .filter_map(|id| outcome.sim.node(NodeId(id)))
        .collect();
    ChosenMonitor::new().observe(&live)
}

/// Requests completed by clients.
pub fn completed(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, obs)| matches!(obs, Observation::Complete { .. }))
        .count()
}

pub fn seeds(default: u64) -> u64 {
    env_or("DST_SEEDS", default)
}

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `dst run --protocol multipaxos`'s default shape: 5 replicas, 3 clients sharing 200
/// operations, quiet at 10 s, end at 30 s.
pub const CLI_NODES: u32 = 5;
pub const CLI_CLIENTS: u32 = 3;
pub const CLI_OPS: u64 = 200;

/// Runs Multi-Paxos over the KV store the way `dst run --protocol multipaxos --profile
/// <profile> --seed <seed>` does (same shape, and the profile's knobs drawn from the run's
/// own decision source first), so a CLI seed reproduces here. `events_max` caps the run.
pub fn run_like_cli(
    seed: u64,
    profile: &str,
    paxos: PaxosConfig,
    events_max: u64,
) -> Outcome<KvPaxos> {
    let mut source = SeededSource::new(seed);
    let profile = FaultProfile::named(profile, &mut source).expect("known profile");
    let mut config = SimConfig::new(CLI_NODES, CLI_CLIENTS, profile);
    config.events_max = events_max;
    let clients = (0..CLI_CLIENTS)
        .map(|client| {
            let share = CLI_OPS / u64::from(CLI_CLIENTS)
                + u64::from(u64::from(client) < CLI_OPS % u64::from(CLI_CLIENTS));
            let workload = KvWorkload::new(client, KvWorkloadConfig::contention(share));
            SimClient::new(ClientConfig::default(), workload)
        })
        .collect();
    let make = move |_| MultiPaxos::for_service(paxos.clone(), KvStore::new());
    run_to_end(Sim::new(config, Box::new(make), clients, source, false))
}
