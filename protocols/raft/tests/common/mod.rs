//! Shared helpers: run Raft replicating the KV store in the real simulator, and an
//! agreement oracle written here independently of the protocol's own predicates.

#![allow(dead_code)]

use std::collections::BTreeMap;

use dst_protocols::{
    ClientConfig, KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig, Observation,
    SimClient,
};
use dst_raft::{Raft, RaftConfig};
use dst_sim::{parse_plan, FaultProfile, Node, NodeId, RunSummary, SeededSource, Sim, SimConfig};

pub type KvRaft = Raft<KvStore>;
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
    pub raft: RaftConfig,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
    /// Keep running after the clients are done (until `end_ns`).
    pub run_to_end: bool,
}

impl Run {
    pub fn new(seed: u64, profile: &'static str) -> Self {
        Run {
            seed,
            profile,
            nodes: 3,
            clients: 2,
            requests_per_client: 30,
            reads_per_mille: 300,
            plan: "",
            raft: RaftConfig::default(),
            quiet_at_ns: 5 * dst_sim::SEC,
            end_ns: 20 * dst_sim::SEC,
            run_to_end: false,
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
    pub observations: Vec<(u64, N::Obs)>,
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
    config.stop_when_clients_done = !run.run_to_end;
    let clients = (0..run.clients)
        .map(|client| {
            let workload = KvWorkloadConfig::contention(run.requests_per_client)
                .with_reads_per_mille(run.reads_per_mille);
            SimClient::new(ClientConfig::default(), KvWorkload::new(client, workload))
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

/// Runs Raft over the KV store.
pub fn run_raft(run: &Run) -> Outcome<KvRaft> {
    let config = run.raft.clone();
    run_with(run, move |_| {
        Raft::for_service(config.clone(), KvStore::new())
    })
}

/// The first commit seen of a slot: request, command digest, reporting node.
type FirstCommit = (Option<(dst_sim::ClientId, u64)>, u64, NodeId);

/// Agreement: every `Commit` of a slot names the same request and command digest, every
/// `Apply` of a slot leaves the same state digest, and no node reported a broken invariant.
pub fn check_agreement(observations: &[(u64, KvObs)]) -> Result<(), String> {
    let mut committed: BTreeMap<u64, FirstCommit> = BTreeMap::new();
    let mut applied: BTreeMap<u64, (u64, NodeId)> = BTreeMap::new();
    for (time_ns, observation) in observations {
        match observation {
            Observation::Commit {
                node,
                slot,
                request,
                command_digest,
            } => {
                let first = *committed
                    .entry(*slot)
                    .or_insert((*request, *command_digest, *node));
                if (first.0, first.1) != (*request, *command_digest) {
                    return Err(format!(
                        "at {time_ns}ns: slot {slot} committed as {:?} by {} and {:?} by {node}",
                        first.0, first.2, request
                    ));
                }
            }
            Observation::Apply {
                node,
                slot,
                state_digest,
                ..
            } => {
                let first = *applied.entry(*slot).or_insert((*state_digest, *node));
                if first.0 != *state_digest {
                    return Err(format!(
                        "at {time_ns}ns: slot {slot} applied to different states by {} and {node}",
                        first.1
                    ));
                }
            }
            Observation::InvariantViolated { node, what } => {
                return Err(format!("at {time_ns}ns: {node} reported {what}"));
            }
            _ => {}
        }
    }
    Ok(())
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

/// Highest slot any node reported committed.
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

/// Seeds to run: `DST_SEEDS` if set, else `default`.
pub fn seeds(default: u64) -> u64 {
    env_or("DST_SEEDS", default)
}

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}
