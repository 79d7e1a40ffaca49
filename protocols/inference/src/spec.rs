//! The sequential reference model of the inference service for the linearizability checker,
//! partitioned by session, and the judge of a replicated run.
//!
//! Commands on one session depend only on that session's state and the configuration (the
//! model is pure per session; sampling is keyed by the session id), so a history splits into
//! one partition per session plus one for id assignment (P-compositionality):
//! - **session `s`**: the `OpenSession` that returned `s`, then every command addressing `s`.
//!   The state is an [`InferenceService`] holding only session `s`, stepped by
//!   [`InferenceService::step`] (the service itself is the specification). Before its open,
//!   a command on `s` must be refused as an unknown session.
//! - **`ids`**: every `OpenSession`. Ids are handed out `0, 1, 2, ...` in linearization order;
//!   an open whose outcome is unknown may have taken an id. `TooManySessions` depends on
//!   closes in other partitions and is accepted at any point (the one relaxation).
//!
//! An `OpenSession` thus appears twice in the checked history (once per partition it
//! constrains); the rewritten history keeps call and return events, so real-time order holds
//! in both.
//!
//! Model states compare by session id and service digest (a 64-bit hash of the canonical
//! serialisation): two states that differ only by a digest collision would be merged, which
//! is the price of hashing tens of KiB of floats per state.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use dst_checkers::linearizability::{self, CheckConfig, CheckReport, Model};
use dst_checkers::oracles::{Property, Violation};
use dst_checkers::{History, Operation, Outcome};
use dst_protocols::harness::{check_run, client_history, Observed, RunFacts, RunVerdict};
use dst_sim::StateMachine;

use crate::model::SessionState;
use crate::service::{Command, InferenceService, Output, ServiceConfig, ServiceError, SessionId};

/// An operation as the reference model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SpecInput {
    /// An `OpenSession` in the id-assignment partition.
    Open,
    /// An `OpenSession` that returned `session`, in that session's partition.
    OpenedAs(SessionId),
    /// Any other command, in its session's partition.
    Command(Command),
}

/// A reference-model state: where id assignment stands, or one session's service.
#[derive(Clone, Debug)]
pub enum SpecState {
    /// Before any operation of the partition.
    Start,
    /// The id the next `OpenSession` gets.
    Ids { next: u64 },
    /// A service holding only `session` (absent once closed), with ids up to it assigned.
    Session {
        session: SessionId,
        service: InferenceService,
    },
}

impl SpecState {
    fn key(&self) -> (u8, u64, u64) {
        match self {
            SpecState::Start => (0, 0, 0),
            SpecState::Ids { next } => (1, *next, 0),
            SpecState::Session { session, service } => (2, session.0, service.digest()),
        }
    }
}

impl PartialEq for SpecState {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for SpecState {}

impl Hash for SpecState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The reference model of an inference service with this configuration.
#[derive(Clone, Debug)]
pub struct InferenceSpec {
    /// An empty service: its configuration and canonical model are shared by every state.
    empty: InferenceService,
}

impl InferenceSpec {
    pub fn new(config: ServiceConfig) -> Self {
        InferenceSpec {
            empty: InferenceService::new(config),
        }
    }

    /// The service right after `OpenSession` returned `session`.
    fn opened(&self, session: SessionId) -> InferenceService {
        let mut service = self.empty.clone();
        service.next_session = session.0 + 1;
        let state = SessionState::new(&service.config.model);
        service
            .sessions
            .insert(session, Arc::new(crate::service::Session::new(state)));
        service
    }

    fn step_ids(next: u64, output: Option<&Output>, states: &mut Vec<SpecState>) {
        match output {
            None => states.push(SpecState::Ids { next: next + 1 }),
            Some(Output::Opened { session }) if session.0 == next => {
                states.push(SpecState::Ids { next: next + 1 })
            }
            Some(Output::Error(ServiceError::TooManySessions { .. })) => {
                states.push(SpecState::Ids { next })
            }
            Some(_) => {}
        }
    }

    fn step_command(
        &self,
        state: &SpecState,
        command: &Command,
        output: Option<&Output>,
        states: &mut Vec<SpecState>,
    ) {
        match state {
            SpecState::Session { session, service } => {
                let (next, expected) = service.step(command);
                if output.is_none_or(|seen| *seen == expected) {
                    states.push(SpecState::Session {
                        session: *session,
                        service: next,
                    });
                }
            }
            // Not opened yet in this history: only "unknown session" is possible.
            _ => {
                let session = command.session().unwrap_or_default();
                let expected = Output::Error(ServiceError::UnknownSession { session });
                if output.is_none_or(|seen| *seen == expected) {
                    states.push(state.clone());
                }
            }
        }
    }
}

impl Model for InferenceSpec {
    type Input = SpecInput;
    type Output = Output;
    type State = SpecState;

    fn init(&self) -> SpecState {
        SpecState::Start
    }

    fn step(
        &self,
        state: &SpecState,
        input: &SpecInput,
        output: Option<&Output>,
        next: &mut Vec<SpecState>,
    ) {
        match (input, state) {
            (SpecInput::Open, SpecState::Start) => Self::step_ids(0, output, next),
            (SpecInput::Open, SpecState::Ids { next: id }) => Self::step_ids(*id, output, next),
            // The one open of a session, first in its partition.
            (SpecInput::OpenedAs(session), SpecState::Start) => next.push(SpecState::Session {
                session: *session,
                service: self.opened(*session),
            }),
            (SpecInput::Command(command), _) => self.step_command(state, command, output, next),
            _ => {}
        }
    }

    fn partition(&self, input: &SpecInput) -> Option<String> {
        Some(match input {
            SpecInput::Open => "ids".to_string(),
            SpecInput::OpenedAs(session) => format!("session {}", session.0),
            SpecInput::Command(command) => {
                format!("session {}", command.session().unwrap_or_default().0)
            }
        })
    }

    fn is_read_only(&self, input: &SpecInput) -> bool {
        matches!(input, SpecInput::Command(Command::ReadDigest { .. }))
    }

    fn state_bytes(&self, state: &SpecState) -> usize {
        match state {
            SpecState::Session { service, .. } => service.snapshot().len(),
            _ => std::mem::size_of::<SpecState>(),
        }
    }

    fn describe(&self, input: &SpecInput, output: Option<&Output>) -> String {
        match output {
            Some(output) => format!("{input:?} -> {output:?}"),
            None => format!("{input:?} -> ?"),
        }
    }
}

/// The client history rewritten for [`InferenceSpec`]: each operation once, and each
/// `OpenSession` that returned a session a second time in that session's partition. Returns
/// the history and, per rewritten operation, the index of the original one.
pub fn spec_history(
    history: &History<Command, Output>,
) -> (History<SpecInput, Output>, Vec<usize>) {
    let mut operations = Vec::new();
    let mut origin = Vec::new();
    for (index, operation) in history.operations.iter().enumerate() {
        let mut push = |input: SpecInput| {
            operations.push(Operation {
                client: operation.client,
                input,
                outcome: operation.outcome.clone(),
                call: operation.call,
                ret: operation.ret,
                hint: operation.hint,
            });
            origin.push(index);
        };
        match &operation.input {
            Command::OpenSession => {
                push(SpecInput::Open);
                if let Outcome::Ok(Output::Opened { session }) = &operation.outcome {
                    push(SpecInput::OpenedAs(*session));
                }
            }
            command => push(SpecInput::Command(command.clone())),
        }
    }
    (History { operations }, origin)
}

/// Checks an inference client history against the reference model; a non-linearizable
/// history is one violation naming the partition and the first operation that cannot be
/// placed.
pub fn check_inference_linearizability(
    spec: &InferenceSpec,
    history: &History<Command, Output>,
    config: &CheckConfig,
) -> (CheckReport, Option<Violation>) {
    let (rewritten, origin) = spec_history(history);
    let report = linearizability::check(spec, &rewritten, config);
    let violation = report.first_illegal().map(|partition| {
        let failing = partition.failing_operation.and_then(|index| {
            let original = *origin.get(index)?;
            Some((original, history.operations.get(original)?))
        });
        let detail = match failing {
            Some((index, operation)) => format!(
                "{}: operation {index} of client c{} ({:?} -> {:?}) cannot be placed after a linearizable prefix of {}",
                partition.name,
                operation.client,
                operation.input,
                operation.outcome,
                partition.longest_prefix.len()
            ),
            None => format!("{}: not linearizable", partition.name),
        };
        Violation::new(Property::Linearizability, detail)
    });
    (report, violation)
}

/// Which commands need not be committed: reads of a session digest.
pub fn is_read_only(command: &Command) -> bool {
    matches!(command, Command::ReadDigest { .. })
}

/// Every oracle over a replicated inference run: [`check_run`] (agreement, validity,
/// exactly-once, durability, invariants, liveness; observations of `facts.byzantine`
/// replicas left out) plus linearizability of the client history against the reference
/// model.
pub fn check_inference_run(
    spec: &InferenceSpec,
    observations: &[Observed<Command, Output>],
    facts: &RunFacts,
    linearizability: &CheckConfig,
) -> RunVerdict {
    let mut verdict = check_run(observations, facts, is_read_only);
    let history = client_history(observations);
    let (report, violation) = check_inference_linearizability(spec, &history, linearizability);
    verdict.violations.extend(violation);
    verdict.linearizability = Some(report);
    verdict
}
