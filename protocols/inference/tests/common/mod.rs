//! Shared helpers: the inference service replicated by FastBFT or PBFT in the real simulator,
//! with the runner's adversaries (Byzantine wrappers, Twins) and service faults per replica,
//! judged by `check_inference_run`.

#![allow(dead_code)]

use std::collections::BTreeSet;

use dst_checkers::linearizability::CheckConfig;
use dst_fastbft::{FastBft, FastBftClient, FastBftClientConfig, FastBftConfig};
use dst_inference::faulty::faulty_nodes;
use dst_inference::replication::{client_workload, replica_services, run_service_config};
use dst_inference::{
    check_inference_run, Command, FaultyService, InferenceSpec, InferenceWorkload, Output,
    ServiceConfig, ServiceFault,
};
use dst_pbft::{Pbft, PbftConfig};
use dst_protocols::harness::{RunFacts, RunVerdict};
use dst_protocols::{BftClient, BftClientConfig, Observation};
use dst_sim::decision::{Decide, DecisionKind};

use dst_sim::engine::NodeFactory;
use dst_sim::{
    Adversarial, Behaviour, Byzantine, Client, FaultProfile, Node, NodeId, RunSummary,
    SeededSource, Sim, SimConfig, TwinsHost, TwinsScenario, MS, SEC,
};

pub type Obs = Observation<Command, Output>;

/// Rounds and round length of a Twins scenario (as the runner's adversary module).
const TWINS_ROUNDS: u32 = 3;
const TWINS_ROUND_NS: u64 = 400 * MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    FastBft,
    Pbft,
}

/// One run's knobs.
#[derive(Clone, Debug)]
pub struct Run {
    pub protocol: Protocol,
    pub seed: u64,
    pub profile: &'static str,
    pub nodes: u32,
    pub clients: u32,
    pub requests_per_client: u64,
    /// Service faults per replica.
    pub faults: Vec<(u32, ServiceFault)>,
    /// Mark the service-faulty replicas Byzantine in the oracles' facts.
    pub mark_faulty: bool,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
}

impl Run {
    pub fn new(protocol: Protocol, seed: u64, profile: &'static str) -> Self {
        Run {
            protocol,
            seed,
            profile,
            nodes: 4,
            clients: 2,
            requests_per_client: 16,
            faults: Vec::new(),
            mark_faulty: true,
            quiet_at_ns: 4 * SEC,
            end_ns: 30 * SEC,
        }
    }
}

/// The service every replica starts from (small hybrid model).
pub fn service_config() -> ServiceConfig {
    run_service_config()
}

/// Who is Byzantine, drawn from the seed like the runner does.
#[derive(Clone, Debug, Default)]
pub struct Adversary {
    pub byzantine: BTreeSet<NodeId>,
    pub behaviours: Vec<(NodeId, Behaviour)>,
    pub twins: Option<TwinsScenario>,
}

fn draw_adversary(profile: &str, nodes: u32, source: &mut SeededSource) -> Adversary {
    let f = (nodes - 1) / 3;
    let mut free: Vec<NodeId> = (0..nodes).map(NodeId).collect();
    let mut chosen: Vec<NodeId> = (0..f)
        .map(|_| free.remove(source.below(DecisionKind::Knob, free.len() as u64) as usize))
        .collect();
    chosen.sort();
    match profile {
        "byzantine" => {
            let behaviours = chosen
                .iter()
                .map(|&node| {
                    let names = Behaviour::NAMES;
                    let name = names[source.below(DecisionKind::Knob, names.len() as u64) as usize];
                    (
                        node,
                        Behaviour::named(name, node, nodes).expect("known name"),
                    )
                })
                .collect();
            Adversary {
                byzantine: chosen.into_iter().collect(),
                behaviours,
                twins: None,
            }
        }
        "twins" => {
            let codes = TwinsScenario::canonical_codes(nodes, &chosen, TWINS_ROUNDS, 100_000);
            let code = codes[source.below(DecisionKind::Knob, codes.len() as u64) as usize];
            let scenario =
                TwinsScenario::from_code(nodes, chosen.clone(), TWINS_ROUNDS, TWINS_ROUND_NS, code);
            Adversary {
                byzantine: chosen.into_iter().collect(),
                behaviours: Vec::new(),
                twins: Some(scenario),
            }
        }
        _ => Adversary::default(),
    }
}

/// What a run left behind.
pub struct Outcome {
    pub summary: RunSummary,
    pub observations: Vec<(u64, Obs)>,
    pub adversary: Adversary,
}

fn sim_config(run: &Run, adversary: &Adversary, knobs: &mut SeededSource) -> SimConfig {
    let profile = FaultProfile::named(run.profile, knobs).expect("known profile");
    let mut config = SimConfig::new(run.nodes, run.clients, profile);
    config.quiet_at_ns = run.quiet_at_ns;
    config.end_ns = run.end_ns;
    // Crashed, Byzantine and service-faulty replicas all count against f.
    let f = (run.nodes - 1) / 3;
    let mut faulty = adversary.byzantine.clone();
    faulty.extend(faulty_nodes(&run.faults));
    config.down_max = f.saturating_sub(faulty.len() as u32);
    config
}

fn workload(run: &Run) -> InferenceWorkload {
    client_workload(run.requests_per_client)
}

/// The service of replica `id`: the shared configuration with the plan's fault, if any.
fn service_factory(run: &Run) -> impl Fn(NodeId) -> FaultyService + Clone + 'static {
    replica_services(service_config(), run.faults.clone())
}

fn simulate<N: Node<Obs = Obs>, C: Client<Node = N>>(
    run: &Run,
    adversary: &Adversary,
    config: SimConfig,
    factory: NodeFactory<N>,
    client: impl Fn() -> C,
) -> Outcome {
    let clients = (0..run.clients).map(|_| client()).collect();
    let mut sim = Sim::new(config, factory, clients, SeededSource::new(run.seed), false);
    let summary = sim.run();
    let observations = sim.take_observations();
    Outcome {
        summary,
        observations,
        adversary: adversary.clone(),
    }
}

fn twins_factory<N: Node>(
    scenario: &TwinsScenario,
    mut make: impl FnMut(NodeId) -> N + 'static,
) -> NodeFactory<TwinsHost<N>> {
    let scenario = scenario.clone();
    Box::new(move |id| {
        let twin = scenario.twins.contains(&id).then(|| make(id));
        TwinsHost::new(scenario.clone(), make(id), twin)
    })
}

fn byzantine_factory<N: Adversarial>(
    behaviours: &[(NodeId, Behaviour)],
    mut make: impl FnMut(NodeId) -> N + 'static,
) -> NodeFactory<Byzantine<N>> {
    let behaviours = behaviours.to_vec();
    Box::new(move |id| {
        let behaviour = behaviours
            .iter()
            .find(|(node, _)| *node == id)
            .map_or(Behaviour::Honest, |(_, behaviour)| behaviour.clone());
        let twin = (behaviour == Behaviour::Equivocate).then(|| make(id));
        Byzantine::new(behaviour, make(id), twin)
    })
}

/// Runs the inference service replicated by the run's protocol.
pub fn run(run: &Run) -> Outcome {
    let mut knobs = SeededSource::new(run.seed ^ 0x5eed);
    let adversary = draw_adversary(run.profile, run.nodes, &mut knobs);
    let config = sim_config(run, &adversary, &mut knobs);
    let service = service_factory(run);
    match run.protocol {
        Protocol::FastBft => run_fastbft(run, &adversary, config, service),
        Protocol::Pbft => run_pbft(run, &adversary, config, service),
    }
}

fn run_fastbft(
    run: &Run,
    adversary: &Adversary,
    config: SimConfig,
    service: impl Fn(NodeId) -> FaultyService + Clone + 'static,
) -> Outcome {
    let replica = FastBftConfig {
        checkpoint_interval: 8,
        ..FastBftConfig::default()
    };
    let make = move |id: NodeId| FastBft::for_service(replica.clone(), service(id));
    let client = || FastBftClient::new(FastBftClientConfig::default(), workload(run));
    match &adversary.twins {
        Some(scenario) => {
            let factory = twins_factory(scenario, make);
            simulate(run, adversary, config, factory, client)
        }
        None => {
            let factory = byzantine_factory(&adversary.behaviours, make);
            let client = || FastBftClient::new(FastBftClientConfig::default(), workload(run));
            simulate(run, adversary, config, factory, client)
        }
    }
}

fn run_pbft(
    run: &Run,
    adversary: &Adversary,
    config: SimConfig,
    service: impl Fn(NodeId) -> FaultyService + Clone + 'static,
) -> Outcome {
    let replica = PbftConfig {
        checkpoint_interval: 8,
        window: 32,
        ..PbftConfig::default()
    };
    let make = move |id: NodeId| Pbft::for_service(replica.clone(), service(id));
    let client = || BftClient::new(BftClientConfig::for_cluster(run.nodes), workload(run));
    match &adversary.twins {
        Some(scenario) => {
            let factory = twins_factory(scenario, make);
            simulate(run, adversary, config, factory, client)
        }
        None => {
            let factory = byzantine_factory(&adversary.behaviours, make);
            let client = || BftClient::new(BftClientConfig::for_cluster(run.nodes), workload(run));
            simulate(run, adversary, config, factory, client)
        }
    }
}

/// The oracles' facts: the adversary's replicas and (if asked) the service-faulty ones are
/// Byzantine.
pub fn facts(run: &Run, outcome: &Outcome) -> RunFacts {
    let mut byzantine = outcome.adversary.byzantine.clone();
    if run.mark_faulty {
        byzantine.extend(faulty_nodes(&run.faults));
    }
    let mut facts = RunFacts::byzantine_fault_tolerant(
        run.nodes,
        byzantine,
        outcome.summary.quiet_at_ns,
        outcome.summary.virtual_ns,
    );
    facts.engine_invariant_failures = outcome.summary.invariant_failures.clone();
    facts.safety.speculative_acknowledgements = run.protocol == Protocol::FastBft;
    facts
}

pub fn judge(run: &Run, outcome: &Outcome) -> RunVerdict {
    let spec = InferenceSpec::new(service_config());
    check_inference_run(
        &spec,
        &outcome.observations,
        &facts(run, outcome),
        &CheckConfig::default(),
    )
}

/// Violations as text (empty when clean).
pub fn violations(run: &Run) -> Vec<String> {
    let outcome = self::run(run);
    judge(run, &outcome)
        .violations
        .iter()
        .map(|violation| format!("{violation:?}"))
        .collect()
}

pub fn completions(observations: &[(u64, Obs)]) -> usize {
    observations
        .iter()
        .filter(|(_, observation)| matches!(observation, Observation::Complete { .. }))
        .count()
}

/// Completed outputs of a kind, for checking the workload exercised the service.
pub fn completed_outputs(observations: &[(u64, Obs)]) -> Vec<Output> {
    observations
        .iter()
        .filter_map(|(_, observation)| match observation {
            Observation::Complete { output, .. } => Some(output.clone()),
            _ => None,
        })
        .collect()
}
