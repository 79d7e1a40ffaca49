//! From a run's observations to the checkers' inputs, and one call that runs every oracle.
//!
//! The engine hands back the observations in run order with their virtual times
//! (`Vec<(time_ns, Observation)>`). From them:
//! - [`client_history`] builds the client history: one operation per invoked request, `call`
//!   and `ret` being observation indices (a total order of events); abandoned and still
//!   pending requests are [`Outcome::Unknown`] with `ret = u64::MAX`; the slot the request
//!   was first committed at is its ordering hint.
//! - [`run_record`] builds the safety and liveness oracles' [`RunRecord`]: invocations (with
//!   the same command digest protocols report at commit), completions, abandonments,
//!   commits, applies and invariant breaks the nodes reported.
//! - [`check_run`] runs agreement, durability, validity, exactly-once, node-reported and
//!   engine-reported invariants, and liveness; [`check_kv_run`] adds linearizability of the
//!   key-value history.

use std::collections::BTreeSet;

use dst_checkers::linearizability::{self, CheckConfig, CheckReport, KeyValue, KvInput, KvOp};
use dst_checkers::oracles::speculative::SpecEvent;
use dst_checkers::oracles::{
    check_liveness, check_safety, Abandonment, ApplyRecord, CommitRecord, Completion, Entry,
    Invocation, LivenessInput, LivenessReport, Property, ReportedViolation, RequestId, RequestMap,
    RunRecord, SafetyOptions, Violation,
};
use dst_checkers::{History, Operation, Outcome};
use dst_sim::{ClientId, NodeId};
use serde::Serialize;

use crate::api::Observation;
use crate::digest::command_digest;
use crate::kv::{KvCommand, KvOutput};

/// Observations as the engine returns them: virtual time and what was observed, in order.
pub type Observed<C, O> = (u64, Observation<C, O>);

/// The client history of a run.
pub fn client_history<C: Clone, O: Clone>(observations: &[Observed<C, O>]) -> History<C, O> {
    history_of(observations, C::clone, |output| Outcome::Ok(output.clone()))
}

/// The client history with each command and output converted as it is read (one pass, one
/// copy): `outcome` says how a completion with that output ended.
fn history_of<C, O, I, P>(
    observations: &[Observed<C, O>],
    input: impl Fn(&C) -> I,
    outcome: impl Fn(&O) -> Outcome<P>,
) -> History<I, P> {
    let invocations = observations
        .iter()
        .filter(|(_, observation)| matches!(observation, Observation::Invoke { .. }))
        .count();
    let mut history = History {
        operations: Vec::with_capacity(invocations),
    };
    let mut index_of = RequestMap::new(invocations);
    for (position, (_, observation)) in observations.iter().enumerate() {
        let position = position as u64;
        match observation {
            Observation::Invoke {
                client,
                sequence,
                command,
            } => {
                index_of.insert(
                    RequestId::new(client.0, *sequence),
                    history.operations.len(),
                );
                history.operations.push(Operation {
                    client: u64::from(client.0),
                    input: input(command),
                    outcome: Outcome::Unknown,
                    call: position,
                    ret: u64::MAX,
                    hint: None,
                });
            }
            Observation::Complete {
                client,
                sequence,
                output,
            } => {
                // A completion of a request never invoked is the validity oracle's to report.
                if let Some(index) = index_of.get(RequestId::new(client.0, *sequence)) {
                    let operation = &mut history.operations[index];
                    if operation.ret == u64::MAX {
                        operation.outcome = outcome(output);
                        operation.ret = position;
                    }
                }
            }
            Observation::Commit {
                request: Some((client, sequence)),
                slot,
                ..
            } => {
                if let Some(index) = index_of.get(RequestId::new(client.0, *sequence)) {
                    history.operations[index].hint.get_or_insert(*slot);
                }
            }
            _ => {}
        }
    }
    history
}

fn request_id((client, sequence): (ClientId, u64)) -> RequestId {
    RequestId::new(client.0, sequence)
}

/// The oracles' record of a run. `read_only` says which commands need not be committed.
pub fn run_record<C: Serialize, O>(
    observations: &[Observed<C, O>],
    read_only: impl Fn(&C) -> bool,
) -> RunRecord {
    run_record_of(observations.iter(), read_only)
}

fn run_record_of<'a, C: Serialize + 'a, O: 'a>(
    observations: impl Iterator<Item = &'a Observed<C, O>> + Clone,
    read_only: impl Fn(&C) -> bool,
) -> RunRecord {
    let mut record = sized_record(observations.clone());
    for (time_ns, observation) in observations {
        let time_ns = *time_ns;
        match observation {
            Observation::Invoke {
                client,
                sequence,
                command,
            } => record.invocations.push(Invocation {
                time_ns,
                request: request_id((*client, *sequence)),
                command_digest: command_digest(command),
                read_only: read_only(command),
            }),
            Observation::Complete {
                client, sequence, ..
            } => record.completions.push(Completion {
                time_ns,
                request: request_id((*client, *sequence)),
            }),
            Observation::Abandon { client, sequence } => record.abandonments.push(Abandonment {
                time_ns,
                request: request_id((*client, *sequence)),
            }),
            Observation::Commit {
                node,
                slot,
                request,
                command_digest,
            } => record.commits.push(CommitRecord {
                time_ns,
                node: node.0,
                slot: *slot,
                entry: Entry {
                    request: request.map(request_id),
                    command_digest: *command_digest,
                },
            }),
            Observation::Apply {
                node,
                slot,
                request,
                state_digest,
            } => record.applies.push(ApplyRecord {
                time_ns,
                node: node.0,
                slot: *slot,
                request: request.map(request_id),
                state_digest: *state_digest,
            }),
            Observation::InvariantViolated { node, what } => {
                record.reported.push(ReportedViolation {
                    time_ns,
                    node: node.0,
                    what: what.clone(),
                })
            }
            Observation::NewView { .. }
            | Observation::Path { .. }
            | Observation::SpecAccept { .. }
            | Observation::SpecComplete { .. }
            | Observation::SpecInstall { .. } => {}
        }
    }
    record
}

/// An empty record with room for what `observations` hold.
fn sized_record<'a, C: 'a, O: 'a>(
    observations: impl Iterator<Item = &'a Observed<C, O>>,
) -> RunRecord {
    let mut counts = [0usize; 6];
    for (_, observation) in observations {
        let kind = match observation {
            Observation::Invoke { .. } => 0,
            Observation::Complete { .. } => 1,
            Observation::Abandon { .. } => 2,
            Observation::Commit { .. } => 3,
            Observation::Apply { .. } => 4,
            Observation::InvariantViolated { .. } => 5,
            _ => continue,
        };
        counts[kind] += 1;
    }
    RunRecord {
        invocations: Vec::with_capacity(counts[0]),
        completions: Vec::with_capacity(counts[1]),
        abandonments: Vec::with_capacity(counts[2]),
        commits: Vec::with_capacity(counts[3]),
        applies: Vec::with_capacity(counts[4]),
        reported: Vec::with_capacity(counts[5]),
    }
}

/// What the oracles need to know about a run besides its observations.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// When the quiet phase started (faults stopped, network healed, nodes restarted).
    pub quiet_start_ns: u64,
    /// When the run ended.
    pub end_ns: u64,
    /// Time an open request has in the quiet phase to complete.
    pub liveness_bound_ns: u64,
    /// Correct nodes up and connected in the quiet phase.
    pub nodes_available: u32,
    /// Nodes the protocol needs for progress.
    pub nodes_required: u32,
    pub safety: SafetyOptions,
    /// `Node::check_invariants` failures the engine collected (`RunSummary`).
    pub engine_invariant_failures: Vec<String>,
    /// The panic that ended the run, if a handler panicked (`RunSummary::panic`).
    pub engine_panic: Option<String>,
    /// Byzantine replicas: what they report (commits, applies, invariant breaks) is not
    /// evidence about correct replicas and is left out of every oracle.
    pub byzantine: BTreeSet<NodeId>,
}

impl RunFacts {
    /// A crash-fault-tolerant cluster of `nodes` that heals completely at `quiet_start_ns`:
    /// every node comes back, a majority is needed.
    pub fn crash_fault_tolerant(nodes: u32, quiet_start_ns: u64, end_ns: u64) -> Self {
        RunFacts {
            quiet_start_ns,
            end_ns,
            liveness_bound_ns: 10 * dst_sim::SEC,
            nodes_available: nodes,
            nodes_required: nodes / 2 + 1,
            safety: SafetyOptions::default(),
            engine_invariant_failures: Vec::new(),
            engine_panic: None,
            byzantine: BTreeSet::new(),
        }
    }

    /// A Byzantine-fault-tolerant cluster of `nodes = 3f + 1 + extra` with these Byzantine
    /// members: `n - f` replicas are needed, the correct ones are available after the heal.
    pub fn byzantine_fault_tolerant(
        nodes: u32,
        byzantine: BTreeSet<NodeId>,
        quiet_start_ns: u64,
        end_ns: u64,
    ) -> Self {
        let faults_max = nodes.saturating_sub(1) / 3;
        RunFacts {
            nodes_available: nodes - byzantine.len() as u32,
            nodes_required: nodes - faults_max,
            byzantine,
            ..RunFacts::crash_fault_tolerant(nodes, quiet_start_ns, end_ns)
        }
    }

    /// Is this observation evidence about correct replicas and clients?
    fn counts<C, O>(&self, observation: &Observation<C, O>) -> bool {
        let node = match observation {
            Observation::Commit { node, .. }
            | Observation::Apply { node, .. }
            | Observation::InvariantViolated { node, .. }
            | Observation::NewView { node, .. } => node,
            _ => return true,
        };
        !self.byzantine.contains(node)
    }
}

impl RunFacts {
    /// The facts of an engine run of a crash-fault-tolerant cluster of `nodes` that healed at
    /// the summary's quiet start, with the invariant failures the engine collected.
    pub fn from_summary(nodes: u32, summary: &dst_sim::RunSummary) -> Self {
        RunFacts {
            engine_invariant_failures: summary.invariant_failures.clone(),
            engine_panic: summary.panic.clone(),
            ..RunFacts::crash_fault_tolerant(nodes, summary.quiet_at_ns, summary.virtual_ns)
        }
    }
}

/// Everything the oracles found.
#[derive(Clone, Debug, Default)]
pub struct RunVerdict {
    pub violations: Vec<Violation>,
    pub liveness: LivenessReport,
    /// The linearizability report, when the history was checked.
    pub linearizability: Option<CheckReport>,
}

impl RunVerdict {
    /// True when no property broke.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs the safety oracles, the invariants and liveness.
pub fn check_run<C: Serialize, O>(
    observations: &[Observed<C, O>],
    facts: &RunFacts,
    read_only: impl Fn(&C) -> bool,
) -> RunVerdict {
    let record = if facts.byzantine.is_empty() {
        run_record(observations, read_only)
    } else {
        let honest: Vec<&Observed<C, O>> = observations
            .iter()
            .filter(|(_, observation)| facts.counts(observation))
            .collect();
        run_record_of(honest.into_iter(), read_only)
    };
    let mut violations = check_safety(&record, &facts.safety);
    violations.extend(facts.engine_invariant_failures.iter().map(|failure| {
        Violation::new(Property::Invariant("check_invariants".to_string()), failure)
    }));
    violations.extend(
        (facts.engine_panic.iter()).map(|panic| Violation::new(Property::Panic, panic.as_str())),
    );
    let liveness = check_liveness(
        &record,
        &LivenessInput {
            quiet_start_ns: facts.quiet_start_ns,
            bound_ns: facts.liveness_bound_ns,
            end_ns: facts.end_ns,
            correct_clients: None,
            nodes_available: facts.nodes_available,
            nodes_required: facts.nodes_required,
        },
    );
    violations.extend(liveness.violations.iter().cloned());
    RunVerdict {
        violations,
        liveness,
        linearizability: None,
    }
}

/// The key-value history in the linearizability checker's model. The model treats an absent
/// key as holding `""`; workloads never write empty values, so the two agree.
pub fn kv_model_history(
    history: &History<KvCommand, KvOutput>,
) -> History<KvInput, Option<String>> {
    let operations = history
        .operations
        .iter()
        .map(|operation| Operation {
            client: operation.client,
            input: kv_input(&operation.input),
            outcome: match &operation.outcome {
                Outcome::Ok(output) => kv_outcome(output),
                Outcome::Fail => Outcome::Fail,
                Outcome::Unknown => Outcome::Unknown,
            },
            call: operation.call,
            ret: operation.ret,
            hint: operation.hint,
        })
        .collect();
    History { operations }
}

fn kv_input(command: &KvCommand) -> KvInput {
    let (key, op) = match command {
        KvCommand::Get { key } => (key, KvOp::Get),
        KvCommand::Put { key, value } => (key, KvOp::Put(value.clone())),
        KvCommand::Append { key, value } => (key, KvOp::Append(value.clone())),
        KvCommand::Cas { key, expected, new } => (
            key,
            KvOp::Cas {
                from: expected.clone().unwrap_or_default(),
                to: new.clone(),
            },
        ),
    };
    KvInput {
        key: key.clone(),
        op,
    }
}

/// How a completion with `output` ended in the model: a failed compare-and-set did not happen.
fn kv_outcome(output: &KvOutput) -> Outcome<Option<String>> {
    match output {
        KvOutput::Value(value) => Outcome::Ok(Some(value.clone().unwrap_or_default())),
        KvOutput::Swapped(false) => Outcome::Fail,
        KvOutput::Written | KvOutput::Swapped(true) => Outcome::Ok(None),
    }
}

/// Checks the key-value client history for linearizability; a non-linearizable history is
/// one violation naming the key and the first operation that cannot be placed.
pub fn check_kv_linearizability(
    history: &History<KvCommand, KvOutput>,
    config: &CheckConfig,
) -> (CheckReport, Option<Violation>) {
    let report = linearizability::check(&KeyValue, &kv_model_history(history), config);
    let violation = kv_violation(&report, history);
    (report, violation)
}

fn kv_violation(report: &CheckReport, history: &History<KvCommand, KvOutput>) -> Option<Violation> {
    report.first_illegal().map(|partition| {
        let failing = partition
            .failing_operation
            .and_then(|index| history.operations.get(index).map(|operation| (index, operation)));
        let detail = match failing {
            Some((index, operation)) => format!(
                "key {:?}: operation {index} of client c{} ({:?} -> {:?}) cannot be placed after a linearizable prefix of {}",
                partition.name,
                operation.client,
                operation.input,
                operation.outcome,
                partition.longest_prefix.len()
            ),
            None => format!("key {:?}: not linearizable", partition.name),
        };
        Violation::new(Property::Linearizability, detail)
    })
}

/// [`check_run`] plus linearizability of the key-value history.
pub fn check_kv_run(
    observations: &[Observed<KvCommand, KvOutput>],
    facts: &RunFacts,
    linearizability: &CheckConfig,
) -> RunVerdict {
    let mut verdict = check_run(observations, facts, KvCommand::is_read_only);
    // The model history straight from the observations; the client history (commands as
    // issued) only to name the failing operation of a violation.
    let model_history = history_of(observations, kv_input, kv_outcome);
    let report = linearizability::check(&KeyValue, &model_history, linearizability);
    if report.first_illegal().is_some() {
        verdict
            .violations
            .extend(kv_violation(&report, &client_history(observations)));
    }
    verdict.linearizability = Some(report);
    verdict
}

/// The speculative oracle's events (`dst_checkers::oracles::speculative`, FastBFT's S1-S3)
/// in a run's observations; what Byzantine replicas report is left out.
pub fn speculative_events<C, O>(
    observations: &[Observed<C, O>],
    byzantine: &BTreeSet<NodeId>,
) -> Vec<SpecEvent> {
    observations
        .iter()
        .filter_map(|(_, observation)| match *observation {
            Observation::SpecAccept {
                node,
                slot,
                prev,
                hist,
                ..
            } if !byzantine.contains(&node) => Some(SpecEvent::Accept {
                node: node.0,
                slot,
                prev,
                hist,
            }),
            Observation::SpecComplete {
                client,
                sequence,
                view,
                slot,
                hist,
            } => Some(SpecEvent::Complete {
                client: client.0,
                sequence,
                view,
                slot,
                hist,
            }),
            Observation::SpecInstall {
                node,
                view,
                slot,
                hist,
                state_digest,
            } if !byzantine.contains(&node) => Some(SpecEvent::Install {
                node: node.0,
                view,
                slot,
                hist,
                state_digest,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: u64) -> KvCommand {
        KvCommand::Put {
            key: "x".to_string(),
            value: value.to_string(),
        }
    }

    #[test]
    fn requests_with_any_client_and_sequence_number_are_matched() {
        // Huge client ids and sequence numbers, gaps and a reused identity, next to ordinary ones.
        let requests = [
            (0, 1),
            (5000, 1 << 40),
            (1, 3_000_000),
            (0, 2),
            (1, 7),
            (0, 2),
        ];
        let mut run: Vec<Observed<KvCommand, KvOutput>> = Vec::new();
        for (slot, &(client, sequence)) in requests.iter().enumerate() {
            let (client, slot) = (ClientId(client), slot as u64 + 1);
            let command = put(slot);
            run.push((
                slot,
                Observation::Invoke {
                    client,
                    sequence,
                    command,
                },
            ));
            run.push((
                slot,
                Observation::Commit {
                    node: NodeId(0),
                    slot,
                    request: Some((client, sequence)),
                    command_digest: 0,
                },
            ));
            let output = KvOutput::Written;
            run.push((
                slot,
                Observation::Complete {
                    client,
                    sequence,
                    output,
                },
            ));
        }
        let history = client_history(&run);
        for (index, operation) in history.operations.iter().enumerate() {
            assert_eq!(operation.outcome, Outcome::Ok(KvOutput::Written), "{index}");
            assert_eq!(operation.hint, Some(index as u64 + 1), "{index}");
            assert_eq!(operation.ret, operation.call + 2, "{index}");
        }
        let direct = history_of(&run, kv_input, kv_outcome);
        assert_eq!(direct, kv_model_history(&history));
    }
}
