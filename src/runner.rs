//! Runs one seed of a named protocol under a named fault profile, and judges it.
//!
//! Data flows one way: seed -> decisions -> events -> node handlers -> effects ->
//! observations -> oracles -> verdict.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use dst_checkers::linearizability::CheckConfig;
use dst_checkers::oracles::speculative::check_speculative;
use dst_fastbft::client::FastNode;
use dst_fastbft::{FastBft, FastBftClient, FastBftClientConfig, FastBftConfig};
use dst_hotstuff::{HotStuff, HotStuffConfig};
use dst_multipaxos::{MultiPaxos, PaxosConfig};
use dst_pbft::{Pbft, PbftConfig};
use dst_protocols::bft_client::{BftClient, BftClientConfig};
use dst_protocols::client::{ClientConfig, SimClient};
use dst_protocols::harness::{check_kv_run, speculative_events, RunFacts};
use dst_protocols::kv::{KvCommand, KvOutput, KvStore};
use dst_protocols::workload::{KvWorkload, KvWorkloadConfig};
use dst_protocols::{Configurable, Observation, Reply, Request};
use dst_raft::{Raft, RaftConfig};
use dst_sim::decision::SeededSource;
use dst_sim::engine::{check_determinism, NoClient, NodeFactory};

use crate::adversary::Adversary;
use dst_sim::testing::PingPong;
use dst_sim::trace::Decider;
use dst_sim::{
    parse_plan, Adversarial, Client, FaultProfile, Node, NodeId, ReplaySource, RunSummary, Signed,
    Sim, SimConfig, Trace, TraceHeader, MS, US,
};
use serde::Serialize;

/// The protocols `dst run` knows.
pub const PROTOCOLS: [&str; 6] = [
    "raft",
    "multipaxos",
    "pbft",
    "hotstuff",
    "fastbft",
    "pingpong",
];

/// The protocols that survive a wiped disk (profile `wipes`): Raft re-admits the machine by
/// membership changes; the others would forget promises they made.
pub const WIPE_PROTOCOLS: [&str; 2] = ["raft", "pingpong"];

/// The protocols that tolerate Byzantine replicas (profiles `byzantine` and `twins`).
pub const BFT_PROTOCOLS: [&str; 3] = ["pbft", "hotstuff", "fastbft"];

/// The default cluster size of a protocol: 5 replicas (f = 2) for crash-tolerant ones, 4
/// (f = 1) for Byzantine-tolerant ones.
pub fn default_nodes(protocol: &str) -> u32 {
    if BFT_PROTOCOLS.contains(&protocol) {
        4
    } else {
        5
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub protocol: String,
    pub seed: u64,
    pub profile: String,
    pub nodes: u32,
    pub clients: u32,
    pub ops: u64,
    /// A scripted fault plan (see `dst_sim::parse_plan`).
    pub plan: Option<String>,
    pub quiet_at_ms: u64,
    pub end_ms: u64,
    /// Replay these decisions instead of drawing from the seed.
    pub replay: Option<Trace>,
    /// Keep the decisions so they can be written as a trace.
    pub record: bool,
    pub log_events: bool,
    /// Measure bytes per message (for the performance metrics of `dst run`).
    pub measure: bool,
    /// Client sessions checksum their traffic (off: corrupted requests and replies can arrive
    /// as other well-formed messages, as without end-to-end checksums).
    pub client_checksums: bool,
    /// The exploration strategy that takes the decisions (see [`crate::strategy`]).
    pub strategy: String,
    /// Byzantine replicas (profiles `byzantine`, `twins`); None: f = (n-1)/3.
    pub byzantine: Option<u32>,
    /// Every Byzantine replica's behaviour (profile `byzantine`); None: drawn per replica.
    pub behaviour: Option<String>,
    /// Protocol design options (`--option name=value`), applied in order to its defaults.
    pub options: Vec<(String, String)>,
    /// Cost model overrides: virtual CPU per signature and per verification.
    pub sign_us: Option<u64>,
    pub verify_us: Option<u64>,
    /// Overrides the profile's message corruption rate (parts per million).
    pub corrupt_ppm: Option<u64>,
    /// Overrides the profile's latency with this constant one-way delay (microseconds).
    pub latency_us: Option<u64>,
    /// The replicated service: `kv` (default) or `inference` (the hybrid-model service).
    pub service: String,
    /// Per-replica service faults (`--service-fault "1:weight-flip@10,2:split-k"`).
    pub service_fault: Option<String>,
}

impl RunSpec {
    /// Defaults for a protocol.
    pub fn new(protocol: &str, seed: u64, profile: &str) -> Self {
        RunSpec {
            protocol: protocol.to_string(),
            seed,
            profile: profile.to_string(),
            nodes: default_nodes(protocol),
            clients: 3,
            ops: 200,
            plan: None,
            quiet_at_ms: 10_000,
            end_ms: 30_000,
            replay: None,
            record: false,
            log_events: false,
            measure: false,
            client_checksums: true,
            strategy: "random".to_string(),
            byzantine: None,
            behaviour: None,
            options: Vec::new(),
            sign_us: None,
            verify_us: None,
            corrupt_ppm: None,
            latency_us: None,
            service: "kv".to_string(),
            service_fault: None,
        }
    }

    /// The header a trace of this run carries; replay requires a matching one.
    pub fn trace_header(&self) -> TraceHeader {
        TraceHeader {
            protocol: self.protocol.clone(),
            profile: self.profile.clone(),
            nodes: self.nodes,
            clients: self.clients,
            ops: self.ops,
            seed: self.seed,
            config: format!(
                "plan={:?};quiet_at_ms={};end_ms={}{}{}{}",
                self.plan,
                self.quiet_at_ms,
                self.end_ms,
                if self.client_checksums {
                    ""
                } else {
                    ";client_checksums=off"
                },
                if self.strategy == "random" {
                    String::new()
                } else {
                    format!(";strategy={}", self.strategy)
                },
                self.adversary_options()
            ),
            trace_hash: String::new(),
            exhausted_at: None,
            args: self.run_args(),
        }
    }

    /// Cost and network model overrides that are set, by option name.
    fn model_overrides(&self) -> Vec<(&'static str, u64)> {
        [
            ("sign_us", self.sign_us),
            ("verify_us", self.verify_us),
            ("corrupt_ppm", self.corrupt_ppm),
            ("latency_us", self.latency_us),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect()
    }

    /// The adversary options as they appear in a trace header ("" when defaulted).
    fn adversary_options(&self) -> String {
        let mut options = String::new();
        if let Some(count) = self.byzantine {
            options.push_str(&format!(";byzantine={count}"));
        }
        if let Some(behaviour) = &self.behaviour {
            options.push_str(&format!(";behaviour={behaviour}"));
        }
        for (name, value) in &self.options {
            options.push_str(&format!(";option:{name}={value}"));
        }
        for (name, value) in self.model_overrides() {
            options.push_str(&format!(";{name}={value}"));
        }
        if self.service != "kv" {
            options.push_str(&format!(";service={}", self.service));
        }
        if let Some(faults) = &self.service_fault {
            options.push_str(&format!(";service_fault={faults}"));
        }
        options
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut command = String::from("dst run");
        for arg in self.run_args() {
            command.push(' ');
            command.push_str(&shell_word(&arg));
        }
        command
    }

    /// The `dst run` flags of [`RunSpec::command`], one per element: a trace keeps them, so
    /// that `dst run --replay FILE` alone rebuilds the recorded configuration.
    pub fn run_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            args.push(format!("--{name}"));
            args.extend(value);
        };
        flag("protocol", Some(self.protocol.clone()));
        flag("seed", Some(self.seed.to_string()));
        flag("profile", Some(self.profile.clone()));
        flag("nodes", Some(self.nodes.to_string()));
        flag("clients", Some(self.clients.to_string()));
        flag("ops", Some(self.ops.to_string()));
        if let Some(plan) = &self.plan {
            flag("plan", Some(plan.clone()));
        }
        if !self.client_checksums {
            flag("no-client-checksums", None);
        }
        if self.strategy != "random" {
            flag("strategy", Some(self.strategy.clone()));
        }
        if let Some(count) = self.byzantine {
            flag("byzantine", Some(count.to_string()));
        }
        if let Some(behaviour) = &self.behaviour {
            flag("behaviour", Some(behaviour.clone()));
        }
        for (name, value) in &self.options {
            flag("option", Some(format!("{name}={value}")));
        }
        for (name, value) in self.model_overrides() {
            flag(&name.replace('_', "-"), Some(value.to_string()));
        }
        if self.service != "kv" {
            flag("service", Some(self.service.clone()));
        }
        if let Some(faults) = &self.service_fault {
            flag("service-fault", Some(faults.clone()));
        }
        if self.quiet_at_ms != 10_000 || self.end_ms != 30_000 {
            flag("quiet-at-ms", Some(self.quiet_at_ms.to_string()));
            flag("end-ms", Some(self.end_ms.to_string()));
        }
        args
    }
}

/// `word` as one shell word: as it is when every character is safe, else single-quoted.
fn shell_word(word: &str) -> std::borrow::Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=.,:/@+%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.into()
    } else {
        format!("'{}'", word.replace('\'', r"'\''")).into()
    }
}

/// A property that broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which oracle fired: agreement, durability, linearizability, liveness, invariant:<name>...
    pub property: String,
    pub detail: String,
}

/// The outcome of one run.
#[derive(Debug)]
pub struct RunOutcome {
    pub spec: RunSpec,
    pub summary: RunSummary,
    pub violations: Vec<Violation>,
    /// Every knob the profile drew, for the log.
    pub knobs: Vec<(String, String)>,
    /// The recorded trace, when recording was asked for.
    pub trace: Option<Trace>,
    /// Measured protocol behaviour.
    pub metrics: Metrics,
}

/// Protocol behaviour measured over one run (the keys `dst run --json` reports).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// Distinct log slots committed by any replica.
    pub commits: u64,
    /// Client operations completed (accepted results).
    pub completed: u64,
    /// Client latency from first send to accepted reply.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    /// The median latency in units of the mean one-way network delay.
    pub latency_delays_p50: Option<f64>,
    pub messages_per_commit: Option<f64>,
    pub bytes_per_commit: Option<f64>,
    /// Not yet reported by the CFT protocols.
    pub view_changes: Option<u64>,
    /// FastBFT only.
    pub fast_path_share: Option<f64>,
    /// Not yet measured.
    pub replica_memory_bytes_max: Option<u64>,
}

impl RunOutcome {
    /// "ok" or "violation".
    pub fn verdict(&self) -> &'static str {
        if self.violations.is_empty() {
            "ok"
        } else {
            "violation"
        }
    }
}

/// A valid spec with every configuration field away from its default, for tests that a
/// configuration survives a round trip (trace flags, corpus entries).
#[doc(hidden)]
pub fn every_option_set() -> RunSpec {
    let mut spec = RunSpec::new("pbft", 17, "byzantine");
    spec.nodes = 7;
    spec.clients = 2;
    spec.ops = 40;
    spec.plan = Some("at 5ms crash 1; at 9ms restart 1 # it's 'quoted'".into());
    spec.quiet_at_ms = 700;
    spec.end_ms = 2_000;
    spec.client_checksums = false;
    spec.strategy = "pct".into();
    spec.byzantine = Some(2);
    spec.behaviour = Some("equivocate".into());
    spec.options = vec![("view_timeout_ms".into(), "300".into())];
    spec.sign_us = Some(7);
    spec.verify_us = Some(9);
    spec.corrupt_ppm = Some(11);
    spec.latency_us = Some(13);
    spec.service = "inference".into();
    spec.service_fault = Some("1:split-k".into());
    spec
}

/// Bound on `--end-ms` and `--quiet-at-ms` (about 11.6 days of virtual time): their
/// nanoseconds, and the time of every event, stay far inside a `u64`.
pub const TIME_MS_MAX: u64 = 1_000_000_000;

/// Checks the spec and the replay trace against it; errors are bad input (exit code 2).
pub fn validate(spec: &RunSpec) -> Result<(), String> {
    if !PROTOCOLS.contains(&spec.protocol.as_str()) {
        return Err(format!(
            "unknown protocol '{}' (expected one of: {})",
            spec.protocol,
            PROTOCOLS.join(", ")
        ));
    }
    FaultProfile::named(&spec.profile, &mut SeededSource::new(spec.seed))?;
    crate::strategy::validate(&spec.strategy)?;
    validate_service(spec)?;
    protocol_options(spec)?;
    if spec.corrupt_ppm.is_some_and(|ppm| ppm > 1_000_000) {
        return Err("--corrupt-ppm must be at most 1000000".into());
    }
    if [spec.sign_us, spec.verify_us, spec.latency_us]
        .iter()
        .flatten()
        .any(|us| *us > 1_000_000)
    {
        return Err("--sign-us, --verify-us and --latency-us must be at most 1000000".into());
    }
    if spec.latency_us == Some(0) {
        return Err("--latency-us must be positive".into());
    }
    if spec.end_ms == 0 || spec.end_ms > TIME_MS_MAX || spec.quiet_at_ms > TIME_MS_MAX {
        return Err(format!(
            "--end-ms must be between 1 and {TIME_MS_MAX}, and --quiet-at-ms at most {TIME_MS_MAX}"
        ));
    }
    crate::adversary::validate(
        &spec.profile,
        spec.nodes,
        spec.byzantine,
        spec.behaviour.as_deref(),
    )?;
    if spec.profile == "wipes" && !WIPE_PROTOCOLS.contains(&spec.protocol.as_str()) {
        return Err(format!(
            "--profile wipes needs a protocol that re-admits a wiped machine as a new member ({}), not {}",
            WIPE_PROTOCOLS.join(", "),
            spec.protocol
        ));
    }
    let adversarial = matches!(spec.profile.as_str(), "byzantine" | "twins");
    if adversarial && !BFT_PROTOCOLS.contains(&spec.protocol.as_str()) {
        return Err(format!(
            "--profile {} needs a Byzantine-fault-tolerant protocol ({}), not {}",
            spec.profile,
            BFT_PROTOCOLS.join(", "),
            spec.protocol
        ));
    }
    if spec.nodes == 0 || spec.nodes > 64 {
        return Err(format!(
            "--nodes must be between 1 and 64, not {}",
            spec.nodes
        ));
    }
    if spec.protocol == "pingpong" && spec.nodes < 2 {
        return Err("pingpong needs at least 2 nodes".into());
    }
    if let Some(plan) = &spec.plan {
        let faults = parse_plan(plan)?;
        let beyond =
            |f: &&dst_sim::ScriptedFault| f.action.nodes().iter().any(|n| n.0 >= spec.nodes);
        if let Some(bad) = faults.iter().find(beyond) {
            return Err(format!(
                "plan names a node that does not exist: '{}'",
                bad.action
            ));
        }
    }
    if let Some(trace) = &spec.replay {
        let mut expected = spec.trace_header();
        expected.seed = trace.header.seed;
        expected.trace_hash = trace.header.trace_hash.clone();
        expected.exhausted_at = trace.header.exhausted_at;
        // The flags spell the configuration a second way, and traces from before they
        // were kept have none: `config` and the fields above decide.
        expected.args = trace.header.args.clone();
        if trace.header != expected {
            let hint = if trace.header.args.is_empty() {
                ""
            } else {
                "; without configuration flags, --replay runs the recorded one"
            };
            return Err(format!(
                "the trace was recorded for another configuration: {} (this run: {}){hint}",
                describe_header(&trace.header),
                describe_header(&expected)
            ));
        }
    }
    Ok(())
}

fn describe_header(header: &TraceHeader) -> String {
    format!(
        "protocol={} profile={} nodes={} clients={} ops={} {}",
        header.protocol, header.profile, header.nodes, header.clients, header.ops, header.config
    )
}

/// Every design option of the spec's protocol with its value after `spec.options` are
/// applied; an unknown option or a bad value is an error.
pub fn protocol_options(spec: &RunSpec) -> Result<Vec<(String, String)>, String> {
    let list = match spec.protocol.as_str() {
        "raft" => raft_config(spec)?.options(),
        "multipaxos" => paxos_config(spec)?.options(),
        "pbft" => pbft_config(spec)?.options(),
        "hotstuff" => hotstuff_config(spec)?.options(),
        "fastbft" => fastbft_config(spec)?.options(),
        other => {
            if let Some((name, _)) = spec.options.first() {
                return Err(format!(
                    "{other} has no option '{name}' (it has no options)"
                ));
            }
            Vec::new()
        }
    };
    Ok(list
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect())
}

/// A protocol's configuration: its defaults with `spec.options` applied in order.
fn configured<C: Configurable + Default>(spec: &RunSpec) -> Result<C, String> {
    let mut config = C::default();
    config.apply_options(&spec.options)?;
    Ok(config)
}

fn raft_config(spec: &RunSpec) -> Result<RaftConfig, String> {
    configured(spec)
}

fn paxos_config(spec: &RunSpec) -> Result<PaxosConfig, String> {
    configured(spec)
}

fn pbft_config(spec: &RunSpec) -> Result<PbftConfig, String> {
    configured(spec)
}

fn hotstuff_config(spec: &RunSpec) -> Result<HotStuffConfig, String> {
    configured(spec)
}

fn fastbft_config(spec: &RunSpec) -> Result<FastBftConfig, String> {
    let config: FastBftConfig = configured(spec)?;
    let needed = 3 + 2 * config.c + 1;
    if spec.nodes < needed {
        return Err(format!(
            "fastbft with c={} needs at least 3f+2c+1 = {needed} replicas for f = 1, not {}",
            config.c, spec.nodes
        ));
    }
    Ok(config)
}

/// The services `--service` accepts, and the protocols that replicate the inference one.
pub const SERVICES: [&str; 2] = ["kv", "inference"];
const INFERENCE_PROTOCOLS: [&str; 2] = ["fastbft", "pbft"];

fn validate_service(spec: &RunSpec) -> Result<(), String> {
    if !SERVICES.contains(&spec.service.as_str()) {
        return Err(format!(
            "unknown service '{}' (expected one of: {})",
            spec.service,
            SERVICES.join(", ")
        ));
    }
    if spec.service == "inference" && !INFERENCE_PROTOCOLS.contains(&spec.protocol.as_str()) {
        return Err(format!(
            "--service inference runs on {}, not {}",
            INFERENCE_PROTOCOLS.join(", "),
            spec.protocol
        ));
    }
    if let Some(faults) = &spec.service_fault {
        if spec.service != "inference" {
            return Err("--service-fault needs --service inference".into());
        }
        dst_inference::faulty::parse_fault_plan(faults, spec.nodes)?;
    }
    Ok(())
}

/// Replicas whose service the plan makes faulty (they count as Byzantine).
fn service_faulty_nodes(spec: &RunSpec) -> BTreeSet<NodeId> {
    let plan = spec.service_fault.as_deref().unwrap_or("");
    dst_inference::faulty::parse_fault_plan(plan, spec.nodes)
        .map(|plan| dst_inference::faulty::faulty_nodes(&plan))
        .unwrap_or_default()
}

/// Runs one seed. Errors are bad input.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, String> {
    validate(spec)?;
    if spec.service == "inference" {
        return run_inference(spec);
    }
    match spec.protocol.as_str() {
        "pingpong" => Ok(simulate(
            spec,
            |_| Box::new(|_| PingPong::new(10)),
            |_| NoClient::<PingPong>::default(),
            |_, _, _| (Vec::new(), Metrics::default()),
        )),
        "raft" => {
            let config = raft_config(spec)?;
            Ok(simulate(
                spec,
                |_| Box::new(raft_node(config)),
                kv_client(spec),
                judge_kv(spec),
            ))
        }
        "multipaxos" => {
            let config = paxos_config(spec)?;
            Ok(simulate(
                spec,
                |_| Box::new(paxos_node(config)),
                kv_client(spec),
                judge_kv(spec),
            ))
        }
        "pbft" => Ok(run_bft(spec, pbft_config(spec)?, |config| {
            Pbft::for_service(config, KvStore::new())
        })),
        "hotstuff" => Ok(run_bft(spec, hotstuff_config(spec)?, |config| {
            HotStuff::for_service(config, KvStore::new())
        })),
        "fastbft" => {
            let config = fastbft_config(spec)?;
            Ok(run_fastbft(spec, config))
        }
        other => Err(format!("unknown protocol '{other}'")),
    }
}

/// FastBFT with its own client (speculative responses, commit certificates).
fn run_fastbft(spec: &RunSpec, config: FastBftConfig) -> RunOutcome {
    // Clients compute primaries too: they take the replicas' configuration as the adversary
    // left it (the node factory is built first).
    let client_config = Rc::new(RefCell::new(config.client_config()));
    let for_clients = client_config.clone();
    let options = spec.options.clone();
    let honest = move |adversary: &Adversary| {
        let config = adversary.configure(config, &options);
        *for_clients.borrow_mut() = config.client_config();
        move |_: NodeId| FastBft::for_service(config.clone(), KvStore::new())
    };
    let judge = judge_kv(spec);
    if spec.profile == "twins" {
        let clients = fastbft_client(spec, client_config);
        simulate(spec, |a| a.twins_factory(honest(a)), clients, judge)
    } else {
        let clients = fastbft_client(spec, client_config);
        simulate(spec, |a| a.byzantine_factory(honest(a)), clients, judge)
    }
}

fn fastbft_client<N: FastNode<KvCommand, KvOutput>>(
    spec: &RunSpec,
    config: Rc<RefCell<FastBftClientConfig>>,
) -> impl Fn(u32) -> FastBftClient<N, KvWorkload> {
    let (clients, ops) = (spec.clients.max(1) as u64, spec.ops);
    move |client| {
        let share = ops / clients + u64::from((client as u64) < ops % clients);
        let workload = KvWorkload::new(client, KvWorkloadConfig::contention(share));
        FastBftClient::new(config.borrow().clone(), workload)
    }
}

/// The hybrid-model inference service replicated by FastBFT or PBFT, with per-replica
/// service faults; judged by every oracle and linearizability against the reference model
/// (partitioned by session).
fn run_inference(spec: &RunSpec) -> Result<RunOutcome, String> {
    use dst_inference::{faulty, replication};
    let plan = faulty::parse_fault_plan(spec.service_fault.as_deref().unwrap_or(""), spec.nodes)?;
    let service_config = replication::run_service_config();
    let services = replication::replica_services(service_config.clone(), plan);
    let judge = judge_inference(spec, service_config);
    let twins = spec.profile == "twins";
    match spec.protocol.as_str() {
        "fastbft" => {
            let config = fastbft_config(spec)?;
            let client = config.client_config();
            let make = move |id| FastBft::for_service(config.clone(), services(id));
            Ok(if twins {
                let clients = inference_clients(spec, |w| FastBftClient::new(client.clone(), w));
                simulate(spec, |a| a.twins_factory(make), clients, judge)
            } else {
                let clients = inference_clients(spec, |w| FastBftClient::new(client.clone(), w));
                simulate(spec, |a| a.byzantine_factory(make), clients, judge)
            })
        }
        "pbft" => {
            let config = pbft_config(spec)?;
            let make = move |id| Pbft::for_service(config.clone(), services(id));
            let client = BftClientConfig::for_cluster(spec.nodes);
            Ok(if twins {
                let clients = inference_clients(spec, |w| BftClient::new(client.clone(), w));
                simulate(spec, |a| a.twins_factory(make), clients, judge)
            } else {
                let clients = inference_clients(spec, |w| BftClient::new(client.clone(), w));
                simulate(spec, |a| a.byzantine_factory(make), clients, judge)
            })
        }
        other => Err(format!("--service inference does not run on {other}")),
    }
}

/// Clients sharing `spec.ops` inference requests, each built by `make` from its workload.
fn inference_clients<C>(
    spec: &RunSpec,
    make: impl Fn(dst_inference::InferenceWorkload) -> C,
) -> impl Fn(u32) -> C {
    let (clients, ops) = (spec.clients.max(1) as u64, spec.ops);
    move |client| {
        let share = ops / clients + u64::from((client as u64) < ops % clients);
        make(dst_inference::replication::client_workload(share))
    }
}

type InferenceObserved = (
    u64,
    Observation<dst_inference::Command, dst_inference::Output>,
);

fn judge_inference(
    spec: &RunSpec,
    service_config: dst_inference::ServiceConfig,
) -> impl FnOnce(&RunSummary, &[InferenceObserved], &Adversary) -> (Vec<Violation>, Metrics) {
    let nodes = spec.nodes;
    let speculative = spec.protocol == "fastbft";
    let faulty = service_faulty_nodes(spec);
    let mean_delay_ns = mean_delay_ns(spec);
    move |summary, observations, adversary| {
        let metrics = measure(summary, observations, mean_delay_ns);
        let mut byzantine = adversary.byzantine.clone();
        byzantine.extend(faulty);
        let (quiet_ns, end_ns) = (summary.quiet_at_ns, summary.virtual_ns);
        let mut facts = RunFacts::byzantine_fault_tolerant(nodes, byzantine, quiet_ns, end_ns);
        facts.safety.speculative_acknowledgements = speculative;
        let reference = dst_inference::InferenceSpec::new(service_config);
        let mut verdict = dst_inference::check_inference_run(
            &reference,
            observations,
            &facts,
            &CheckConfig::default(),
        );
        if speculative {
            let events = speculative_events(observations, &facts.byzantine);
            verdict.violations.extend(check_speculative(&events));
        }
        (convert_violations(verdict.violations), metrics)
    }
}

fn convert_violations(violations: Vec<dst_checkers::oracles::Violation>) -> Vec<Violation> {
    violations
        .into_iter()
        .map(|violation| Violation {
            property: violation.property.to_string(),
            detail: violation.detail,
        })
        .collect()
}

/// The mean one-way delay of the run's link model, the unit of `latency_delays_p50`.
fn mean_delay_ns(spec: &RunSpec) -> u64 {
    match spec.latency_us {
        Some(us) => us * US,
        None => FaultProfile::named(&spec.profile, &mut SeededSource::new(spec.seed))
            .map_or(1, |p| mean_latency_ns(&p.link.latency)),
    }
}

/// A BFT replica type the key-value clients and oracles can drive.
pub trait KvBftNode:
    Adversarial
    + Node<
        Request = Signed<Request<KvCommand>>,
        Reply = Reply<KvOutput>,
        Obs = Observation<KvCommand, KvOutput>,
    >
{
}

impl<P> KvBftNode for P where
    P: Adversarial
        + Node<
            Request = Signed<Request<KvCommand>>,
            Reply = Reply<KvOutput>,
            Obs = Observation<KvCommand, KvOutput>,
        >
{
}

/// Runs a BFT protocol with its adversary: Twins hosts under `twins`, Byzantine wrappers
/// (honest ones passing through) otherwise.
fn run_bft<C, P>(spec: &RunSpec, config: C, build: impl Fn(C) -> P + 'static) -> RunOutcome
where
    C: Configurable + Clone + 'static,
    P: KvBftNode,
{
    let options = spec.options.clone();
    let honest = move |adversary: &Adversary| {
        let config = adversary.configure(config, &options);
        move |_: NodeId| build(config.clone())
    };
    if spec.profile == "twins" {
        simulate(
            spec,
            |a| a.twins_factory(honest(a)),
            bft_client(spec),
            judge_kv(spec),
        )
    } else {
        simulate(
            spec,
            |a| a.byzantine_factory(honest(a)),
            bft_client(spec),
            judge_kv(spec),
        )
    }
}

/// BFT clients share `spec.ops` operations and accept f + 1 matching replies.
fn bft_client<N: Node>(spec: &RunSpec) -> impl Fn(u32) -> BftClient<N, KvWorkload> {
    let (clients, ops, nodes) = (spec.clients.max(1) as u64, spec.ops, spec.nodes);
    move |client| {
        let share = ops / clients + u64::from((client as u64) < ops % clients);
        let workload = KvWorkload::new(client, KvWorkloadConfig::contention(share));
        BftClient::new(BftClientConfig::for_cluster(nodes), workload)
    }
}

type KvRaft = Raft<KvStore>;
type KvClient<N> = SimClient<N, KvWorkload>;

fn raft_node(config: RaftConfig) -> impl FnMut(NodeId) -> KvRaft + 'static {
    move |_| Raft::for_service(config.clone(), KvStore::new())
}

fn paxos_node(config: PaxosConfig) -> impl FnMut(NodeId) -> MultiPaxos<KvStore> + 'static {
    move |_| MultiPaxos::for_service(config.clone(), KvStore::new())
}

/// Clients share `spec.ops` operations on a few hot keys.
fn kv_client<N: Node>(spec: &RunSpec) -> impl Fn(u32) -> KvClient<N> {
    let (clients, ops) = (spec.clients.max(1) as u64, spec.ops);
    move |client| {
        let share = ops / clients + u64::from((client as u64) < ops % clients);
        let workload = KvWorkload::new(client, KvWorkloadConfig::contention(share));
        SimClient::new(ClientConfig::default(), workload)
    }
}

/// Every oracle over a key-value run: safety, liveness after the quiet phase, and
/// linearizability of the client history.
type KvObserved = (u64, Observation<KvCommand, KvOutput>);

fn judge_kv(
    spec: &RunSpec,
) -> impl FnOnce(&RunSummary, &[KvObserved], &Adversary) -> (Vec<Violation>, Metrics) {
    let nodes = spec.nodes;
    let bft = BFT_PROTOCOLS.contains(&spec.protocol.as_str());
    // FastBFT answers on the fast path before any replica knows the entry final.
    let speculative = spec.protocol == "fastbft";
    let profile = FaultProfile::named(&spec.profile, &mut SeededSource::new(spec.seed));
    let mean_delay_ns = match spec.latency_us {
        Some(us) => us * US,
        None => profile.map_or(1, |p| mean_latency_ns(&p.link.latency)),
    };
    move |summary, observations, adversary| {
        let metrics = measure(summary, observations, mean_delay_ns);
        let (quiet_ns, end_ns) = (summary.quiet_at_ns, summary.virtual_ns);
        let mut facts = if bft {
            RunFacts::byzantine_fault_tolerant(nodes, adversary.byzantine.clone(), quiet_ns, end_ns)
        } else {
            RunFacts::crash_fault_tolerant(nodes, quiet_ns, end_ns)
        };
        facts.safety.speculative_acknowledgements = speculative;
        let mut verdict = check_kv_run(observations, &facts, &CheckConfig::default());
        if speculative {
            let events = speculative_events(observations, &facts.byzantine);
            verdict.violations.extend(check_speculative(&events));
        }
        let violations = verdict
            .violations
            .into_iter()
            .map(|violation| Violation {
                property: violation.property.to_string(),
                detail: violation.detail,
            })
            .collect();
        (violations, metrics)
    }
}

fn mean_latency_ns(latency: &dst_sim::Latency) -> u64 {
    match *latency {
        dst_sim::Latency::Constant { latency_ns } => latency_ns,
        dst_sim::Latency::Uniform { min_ns, max_ns } => (min_ns + max_ns) / 2,
        dst_sim::Latency::Exponential {
            min_ns, mean_ns, ..
        } => min_ns + mean_ns,
    }
}

/// Runs the same seed twice and compares every event.
pub fn check_run_determinism(spec: &RunSpec) -> Result<Result<u64, String>, String> {
    validate(spec)?;
    match spec.protocol.as_str() {
        "pingpong" => Ok(check_determinism(|| {
            build_sim(
                spec,
                |_| Box::new(|_| PingPong::new(10)),
                |_| NoClient::<PingPong>::default(),
            )
            .0
        })),
        "pbft" => {
            let config = pbft_config(spec)?;
            let make = move |_| Pbft::for_service(config.clone(), KvStore::new());
            Ok(if spec.profile == "twins" {
                check_determinism(|| {
                    let make = make.clone();
                    let factory = |adversary: &Adversary| adversary.twins_factory(make);
                    build_sim(spec, factory, bft_client(spec)).0
                })
            } else {
                check_determinism(|| {
                    let make = make.clone();
                    let factory = |adversary: &Adversary| adversary.byzantine_factory(make);
                    build_sim(spec, factory, bft_client(spec)).0
                })
            })
        }
        "raft" => Ok(check_determinism(|| {
            let config = raft_config(spec).expect("validated options");
            build_sim(spec, |_| Box::new(raft_node(config)), kv_client(spec)).0
        })),
        other => Err(format!("unknown protocol '{other}'")),
    }
}

type Knobs = Vec<(String, String)>;

fn build_sim<N: Node, C: Client<Node = N>>(
    spec: &RunSpec,
    make_node: impl FnOnce(&Adversary) -> NodeFactory<N>,
    make_client: impl Fn(u32) -> C,
) -> (Sim<N, C>, Knobs, Adversary) {
    let mut decider: Decider = match &spec.replay {
        Some(trace) => ReplaySource::of(trace).into(),
        None => crate::strategy::decider(spec),
    };
    decider.set_recording(spec.record);
    // Swarm knobs are the first decisions of the run, so a replay draws the same ones.
    let profile = FaultProfile::named(&spec.profile, &mut decider).expect("validated profile");
    let adversary = crate::adversary::draw(
        &spec.profile,
        spec.nodes,
        spec.byzantine,
        spec.behaviour.as_deref(),
        &mut decider,
    );
    let adversary_knobs = adversary.knobs();
    let bft = BFT_PROTOCOLS.contains(&spec.protocol.as_str());
    let clients = if spec.protocol == "pingpong" {
        0
    } else {
        spec.clients
    };
    let mut profile = profile;
    if let Some(ppm) = spec.corrupt_ppm {
        profile.link.corrupt_ppm = ppm;
    }
    if let Some(us) = spec.latency_us {
        profile.link.latency = dst_sim::Latency::Constant {
            latency_ns: us * US,
        };
    }
    let mut config = SimConfig::new(spec.nodes, clients, profile);
    // A protocol's panic is a finding to report with the seed, not the end of a campaign.
    config.catch_panics = true;
    if let Some(us) = spec.sign_us {
        config.cpu.sign_ns = us * US;
    }
    if let Some(us) = spec.verify_us {
        config.cpu.verify_ns = us * US;
    }
    config.plan = spec
        .plan
        .as_deref()
        .map(|p| parse_plan(p).expect("validated plan"))
        .unwrap_or_default();
    config.quiet_at_ns = spec.quiet_at_ms * MS;
    config.end_ns = spec.end_ms * MS;
    config.log_events = spec.log_events;
    config.measure_bytes = spec.measure;
    config.client_checksums = spec.client_checksums;
    if bft {
        // Crashes and pauses count against f together with the Byzantine replicas.
        let faults_max = spec.nodes.saturating_sub(1) / 3;
        let mut byzantine = adversary.byzantine.clone();
        byzantine.extend(service_faulty_nodes(spec));
        config.down_max = faults_max.saturating_sub(byzantine.len() as u32);
        config.damaged_disks_max = faults_max.saturating_sub(byzantine.len() as u32);
    }
    crate::strategy::configure(spec, &mut config);
    // After the strategy: a per-seed strategy may redraw the profile's rates.
    let mut knobs = config.profile.knobs();
    knobs.extend(adversary_knobs);
    if spec.protocol == "pingpong" {
        config.events_max = spec.ops.max(1) * 1_000;
    }
    // The node factory first: it may settle configuration the clients share.
    let factory = make_node(&adversary);
    let clients = (0..clients).map(make_client).collect();
    (
        Sim::new(config, factory, clients, decider, spec.record),
        knobs,
        adversary,
    )
}

type Observed<'a, O> = &'a [(u64, O)];

thread_local! {
    /// How many observations the last run on this thread reported: seeds of one campaign
    /// report about as many (Raft at 1,000 operations: within 5%), and a log that starts a
    /// quarter larger is almost never regrown and copied (without the margin, every seed
    /// larger than the one before copied its whole log once: 0.8% of instructions).
    /// Capacity only: it cannot change a run.
    static OBSERVATIONS_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn simulate<N: Node, C: Client<Node = N>>(
    spec: &RunSpec,
    make_node: impl FnOnce(&Adversary) -> NodeFactory<N>,
    make_client: impl Fn(u32) -> C,
    judge: impl FnOnce(&RunSummary, Observed<'_, N::Obs>, &Adversary) -> (Vec<Violation>, Metrics),
) -> RunOutcome {
    let (mut sim, knobs, adversary) = build_sim(spec, make_node, make_client);
    let hint = OBSERVATIONS_HINT.get();
    sim.reserve_observations(hint + hint / 4);
    let summary = sim.run();
    let observations = sim.take_observations();
    OBSERVATIONS_HINT.set(observations.len());
    let mut violations: Vec<Violation> = summary
        .invariant_failures
        .iter()
        .map(|failure| Violation {
            property: "invariant".into(),
            detail: failure.clone(),
        })
        .collect();
    // A panicking handler ends the run: the oracles still judge what happened before it.
    violations.extend(summary.panic.iter().map(|panic| Violation {
        property: "panic".into(),
        detail: panic.clone(),
    }));
    let (judged, metrics) = judge(&summary, &observations, &adversary);
    violations.extend(judged);
    let trace = spec.record.then(|| {
        let mut header = spec.trace_header();
        header.trace_hash = format!("{:016x}", summary.trace_hash);
        let decisions = sim.take_decisions();
        // A run that went past the end of the trace it replayed stopped its fault process
        // there: its recording says where, so that it replays the same run.
        let replayed_end = spec.replay.as_ref().map(Trace::replay_end);
        header.exhausted_at = replayed_end
            .filter(|&end| decisions.len() > end)
            .map(|end| end as u64);
        Trace { header, decisions }
    });
    RunOutcome {
        spec: spec.clone(),
        summary,
        violations,
        knobs,
        trace,
        metrics,
    }
}

/// Measures commits, client latency and message cost from a run's observations.
pub fn measure<C, O>(
    summary: &RunSummary,
    observations: &[(u64, Observation<C, O>)],
    mean_delay_ns: u64,
) -> Metrics {
    // Every replica reports each commit: collect, then count distinct slots once.
    let mut slots = Vec::with_capacity(observations.len());
    // Requests in flight, each with its invocation time: a handful (one per client, and
    // the few abandoned), so a scan beats a map.
    let mut invoked: Vec<((dst_sim::ClientId, u64), u64)> = Vec::new();
    let mut latencies_ns = Vec::new();
    let mut views = std::collections::BTreeSet::new();
    let (mut fast, mut paths) = (0u64, 0u64);
    for (time_ns, observation) in observations {
        match observation {
            Observation::Commit { slot, .. } => {
                slots.push(*slot);
            }
            Observation::Invoke {
                client, sequence, ..
            } => {
                invoked.retain(|(request, _)| *request != (*client, *sequence));
                invoked.push(((*client, *sequence), *time_ns));
            }
            Observation::Complete {
                client, sequence, ..
            } => {
                let request = (*client, *sequence);
                if let Some(at) = invoked.iter().position(|(open, _)| *open == request) {
                    let (_, start) = invoked.swap_remove(at);
                    latencies_ns.push(time_ns - start);
                }
            }
            Observation::NewView { view, .. } => {
                views.insert(*view);
            }
            Observation::Path { fast: on_fast, .. } => {
                paths += 1;
                fast += u64::from(*on_fast);
            }
            _ => {}
        }
    }
    let mut percentile = |p: usize| {
        let rank = latencies_ns.len().checked_sub(1)? * p / 100;
        Some(*latencies_ns.select_nth_unstable(rank).1 as f64)
    };
    let (p50, p99) = (percentile(50), percentile(99));
    let commits = count_distinct(&mut slots);
    let per_commit = |total: u64| (commits > 0).then(|| total as f64 / commits as f64);
    let stats = &summary.stats;
    Metrics {
        commits,
        completed: latencies_ns.len() as u64,
        latency_ms_p50: p50.map(|ns| ns / 1e6),
        latency_ms_p99: p99.map(|ns| ns / 1e6),
        latency_delays_p50: p50.map(|ns| ns / mean_delay_ns.max(1) as f64),
        messages_per_commit: per_commit(
            stats.messages_sent + stats.requests_delivered + stats.replies_delivered,
        ),
        bytes_per_commit: (stats.bytes_sent > 0)
            .then(|| per_commit(stats.bytes_sent))
            .flatten(),
        // Views entered after the first: each distinct one is a view change or election.
        view_changes: Some(views.range(1..).count() as u64),
        fast_path_share: (paths > 0).then(|| fast as f64 / paths as f64),
        replica_memory_bytes_max: (stats.replica_memory_bytes_max > 0)
            .then_some(stats.replica_memory_bytes_max),
    }
}

/// Slots spanning more than this many times their count (plus a constant) are counted by
/// sorting; denser ones (every protocol's, as slots are log positions) by marking.
const DENSE_SPAN_PER_ITEM: u64 = 4;

/// The number of distinct values in `values` (reordered).
fn count_distinct(values: &mut Vec<u64>) -> u64 {
    let Some(&max) = values.iter().max() else {
        return 0;
    };
    if max > DENSE_SPAN_PER_ITEM * values.len() as u64 + 64 {
        values.sort_unstable();
        values.dedup();
        return values.len() as u64;
    }
    let mut seen = vec![false; max as usize + 1];
    let mut distinct = 0;
    for &value in values.iter() {
        let mark = &mut seen[value as usize];
        distinct += u64::from(!*mark);
        *mark = true;
    }
    distinct
}

#[cfg(test)]
mod tests {
    use super::*;
    use dst_sim::testing::Ball;
    use dst_sim::{ClientId, NodeCtx};

    /// Deliberately broken: ping-pong whose every node asserts that it never receives its
    /// `limit`-th ball.
    struct Overflowing {
        received: u64,
        limit: u64,
    }

    impl Node for Overflowing {
        type Msg = Ball;
        type Timer = ();
        type Request = ();
        type Reply = ();
        type Obs = ();

        fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
            let me = ctx.id().0;
            for to in (0..ctx.cluster_size()).filter(|to| *to != me) {
                ctx.send(NodeId(to), Ball { hops: 0 });
            }
        }

        fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Ball) {
            self.received += 1;
            assert!(self.received < self.limit, "mailbox overflow");
            ctx.send(from, Ball { hops: msg.hops + 1 });
        }

        fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}

        fn on_request(&mut self, _: &mut NodeCtx<'_, Self>, _: ClientId, _: ()) {}
    }

    #[test]
    fn the_reproducing_command_quotes_only_what_a_shell_would_split() {
        let mut spec = RunSpec::new("raft", 4, "heavy");
        spec.plan = Some("at 5ms crash 1 # it's".into());
        spec.options = vec![("read_mode".into(), "lease".into())];
        assert_eq!(
            spec.command(),
            "dst run --protocol raft --seed 4 --profile heavy --nodes 5 --clients 3 --ops 200 \
             --plan 'at 5ms crash 1 # it'\\''s' --option read_mode=lease"
        );
    }

    fn run_overflowing(limit: u64) -> RunOutcome {
        let mut spec = RunSpec::new("pingpong", 5, "heavy");
        spec.end_ms = 2_000;
        simulate(
            &spec,
            move |_| Box::new(move |_| Overflowing { received: 0, limit }),
            |_| NoClient::<Overflowing>::default(),
            |_, _, _| (Vec::new(), Metrics::default()),
        )
    }

    #[test]
    fn a_panicking_protocol_is_a_violation_with_its_message_and_seed() {
        dst_sim::panic::install_hook();
        let outcome = run_overflowing(40);
        assert_eq!(outcome.summary.end_reason, dst_sim::EndReason::Panicked);
        let panic = (outcome.violations.iter())
            .find(|violation| violation.property == "panic")
            .expect("the panic is a violation");
        assert!(
            panic.detail.contains("mailbox overflow"),
            "{}",
            panic.detail
        );
        assert!(panic.detail.contains("src/runner.rs:"), "{}", panic.detail);
        assert!(outcome.spec.command().contains("--seed 5"));
        let fine = run_overflowing(u64::MAX);
        assert!(fine.violations.is_empty(), "{:?}", fine.violations);
        assert_eq!(fine.summary.panic, None);
    }

    /// Both ways of counting (marking dense values, sorting sparse ones) agree with a set.
    #[test]
    fn distinct_values_are_counted_dense_or_sparse() {
        use dst_sim::decision::Decide;
        use dst_sim::DecisionKind::NodeRandom;
        let mut draws = SeededSource::new(5);
        for round in 0..200 {
            let len = draws.below(NodeRandom, 300);
            let span = if round % 2 == 0 { len + 1 } else { 1 << 40 };
            let mut values: Vec<u64> = (0..len).map(|_| draws.below(NodeRandom, span)).collect();
            let expected = values.iter().collect::<BTreeSet<_>>().len() as u64;
            assert_eq!(count_distinct(&mut values), expected, "round {round}");
        }
        assert_eq!(count_distinct(&mut Vec::new()), 0);
    }
}
