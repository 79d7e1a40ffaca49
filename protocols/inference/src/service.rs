//! The inference service as a replicated state machine.
//!
//! Rules, applied by [`InferenceService::apply`] (a pure function of state and command):
//! - `OpenSession` assigns the next session id (ids are never reused) unless `sessions_max`
//!   sessions are open.
//! - `Append` / `AppendTokens` prefill a session: one decode step per token, in order. Bytes are
//!   token ids; token ids must be `< 256`; at most `append_tokens_max` per request; the session
//!   may not exceed the model's context limit.
//! - `Generate { tokens, sampling }` draws a token from the last hidden vector, feeds it back,
//!   `tokens` times; the session must hold at least one token.
//! - `ReadDigest` returns the session's state digest; `Close` drops the session.
//! - Every rejected command is an [`Output::Error`] and leaves the state untouched: all
//!   validation happens before the first mutation.
//!
//! Replicated state: the service configuration (model seed, version, layer pattern, window,
//! limits), the next session id and each session's [`SessionState`]. Weights are not replicated:
//! each replica derives them from the configuration. Sessions are `Arc`s in an `im::OrdMap`, so
//! `clone()` (a speculative snapshot) costs O(1) and a later mutation copies only the one
//! session it touches.
//!
//! The service is also the sequential specification for the linearizability checker: `apply`
//! on a clone is the model's step function. Commands on different sessions commute except for
//! `OpenSession`'s id assignment and its `sessions_max` check, so a checker may partition a
//! history by session once ids are known.

use std::sync::Arc;

use dst_sim::StateMachine;
use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Sink, StableHasher};
use crate::model::{Model, ModelConfig, Sampling, SessionState};

/// A session's id, assigned by `OpenSession` in increasing order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct SessionId(pub u64);

/// Most sessions any configuration may allow (bounds decoding of untrusted snapshots).
pub const SESSIONS_LIMIT: u32 = 1 << 16;
/// Highest sampling temperature, in thousandths.
pub const TEMPERATURE_MILLI_MAX: u32 = 10_000;

/// Replicated configuration: the model and the service limits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub model: ModelConfig,
    pub sessions_max: u32,
    pub append_tokens_max: u32,
    pub generate_tokens_max: u32,
}

impl ServiceConfig {
    /// Default limits around `model`.
    pub fn new(model: ModelConfig) -> Self {
        ServiceConfig {
            model,
            sessions_max: 64,
            append_tokens_max: 4096,
            generate_tokens_max: 256,
        }
    }

    fn encode(&self, sink: &mut impl Sink) {
        self.model.encode(sink);
        sink.put_u32(self.sessions_max);
        sink.put_u32(self.append_tokens_max);
        sink.put_u32(self.generate_tokens_max);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, String> {
        let config = ServiceConfig {
            model: ModelConfig::decode(reader)?,
            sessions_max: reader.u32("sessions_max")?,
            append_tokens_max: reader.u32("append_tokens_max")?,
            generate_tokens_max: reader.u32("generate_tokens_max")?,
        };
        if config.sessions_max > SESSIONS_LIMIT {
            return Err(format!(
                "sessions_max {} over {SESSIONS_LIMIT}",
                config.sessions_max
            ));
        }
        Ok(config)
    }
}

/// A client command.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    OpenSession,
    /// Prefill with text; each byte is a token.
    Append {
        session: SessionId,
        text: Vec<u8>,
    },
    /// Prefill with token ids (each must be `< 256`).
    AppendTokens {
        session: SessionId,
        tokens: Vec<u32>,
    },
    Generate {
        session: SessionId,
        tokens: u32,
        sampling: Sampling,
    },
    ReadDigest {
        session: SessionId,
    },
    Close {
        session: SessionId,
    },
}

impl Command {
    /// The session a command addresses (`None` for `OpenSession`, whose session is in its
    /// output): the partition key for per-session linearizability checking.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Command::OpenSession => None,
            Command::Append { session, .. }
            | Command::AppendTokens { session, .. }
            | Command::Generate { session, .. }
            | Command::ReadDigest { session }
            | Command::Close { session } => Some(*session),
        }
    }
}

/// Why a command was rejected. Identical on every replica that holds the same state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceError {
    /// No such session was ever opened.
    UnknownSession {
        session: SessionId,
    },
    /// The session was opened and then closed.
    SessionClosed {
        session: SessionId,
    },
    TooManySessions {
        sessions_max: u32,
    },
    /// One request carried more tokens than `append_tokens_max`.
    InputTooLong {
        tokens: u64,
        append_tokens_max: u32,
    },
    /// The session would exceed the model's context limit.
    ContextFull {
        position: u64,
        requested: u64,
        context_tokens_max: u32,
    },
    InvalidToken {
        index: u32,
        token: u32,
    },
    /// Generate on a session that holds no token yet.
    EmptyContext {
        session: SessionId,
    },
    GenerateTooLong {
        tokens: u32,
        generate_tokens_max: u32,
    },
    InvalidTemperature {
        temperature_milli: u32,
    },
}

/// The result of a command.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Output {
    Opened {
        session: SessionId,
    },
    Appended {
        session: SessionId,
        position: u64,
    },
    Generated {
        session: SessionId,
        tokens: Vec<u8>,
        position: u64,
    },
    Digest {
        session: SessionId,
        digest: u64,
    },
    Closed {
        session: SessionId,
    },
    Error(ServiceError),
}

/// One session's state and its digest (kept in step with the state by every mutation).
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) state: SessionState,
    pub(crate) digest: u64,
}

/// Domain tags so that a session digest never equals a service digest by construction.
const SESSION_DOMAIN: u64 = 0x5345_5353_494f_4e00;
const SERVICE_DOMAIN: u64 = 0x5345_5256_4943_4500;
/// First bytes of every snapshot; the last byte is the format version.
const SNAPSHOT_MAGIC: [u8; 8] = *b"DSTINF\x00\x01";

impl Session {
    pub(crate) fn new(state: SessionState) -> Self {
        let mut session = Session { state, digest: 0 };
        session.refresh_digest();
        session
    }

    pub(crate) fn refresh_digest(&mut self) {
        let mut hasher = StableHasher::new(SESSION_DOMAIN);
        self.state.encode(&mut hasher);
        self.digest = hasher.finish();
    }
}

/// The replicated inference service.
#[derive(Clone)]
pub struct InferenceService {
    pub(crate) config: ServiceConfig,
    /// Local, not replicated: weights and kernel (faults may change them).
    pub(crate) model: Arc<Model>,
    pub(crate) next_session: u64,
    pub(crate) sessions: im::OrdMap<SessionId, Arc<Session>>,
}

/// Short on purpose: sessions hold tens of KiB of floats each, so traces show ids and digests.
impl std::fmt::Debug for InferenceService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions: Vec<(u64, u64, String)> = self
            .sessions
            .iter()
            .map(|(id, s)| (id.0, s.state.position, format!("{:016x}", s.digest)))
            .collect();
        formatter
            .debug_struct("InferenceService")
            .field("config", &self.config)
            .field("kernel", &self.model.kernel)
            .field("next_session", &self.next_session)
            .field("sessions (id, position, digest)", &sessions)
            .finish()
    }
}

impl InferenceService {
    pub fn new(config: ServiceConfig) -> Self {
        let model = Arc::new(Model::new(config.model.clone()));
        InferenceService {
            config,
            model,
            next_session: 0,
            sessions: im::OrdMap::new(),
        }
    }

    /// The sequential specification's step function (Porcupine style): the state after
    /// `command` and its output, leaving `self` untouched. Cheap: the clone shares sessions.
    pub fn step(&self, command: &Command) -> (InferenceService, Output) {
        let mut next = self.clone();
        let output = next.apply(command);
        (next, output)
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Open sessions, in id order.
    pub fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// A session's state, if open.
    pub fn session_state(&self, session: SessionId) -> Option<&SessionState> {
        self.sessions.get(&session).map(|entry| &entry.state)
    }

    fn lookup(&self, session: SessionId) -> Result<&Session, ServiceError> {
        match self.sessions.get(&session) {
            Some(entry) => Ok(entry),
            None if session.0 < self.next_session => Err(ServiceError::SessionClosed { session }),
            None => Err(ServiceError::UnknownSession { session }),
        }
    }

    /// Runs `change` on a session (copying it first if a snapshot shares it), then refreshes
    /// its digest.
    fn mutate<T>(
        &mut self,
        session: SessionId,
        change: impl FnOnce(&Model, &mut SessionState) -> T,
    ) -> T {
        let model = Arc::clone(&self.model);
        let entry = self
            .sessions
            .get_mut(&session)
            .expect("mutate: caller checked the session exists");
        let inner = Arc::make_mut(entry);
        let result = change(&model, &mut inner.state);
        inner.refresh_digest();
        result
    }

    fn open(&mut self) -> Result<Output, ServiceError> {
        if self.sessions.len() >= self.config.sessions_max as usize {
            return Err(ServiceError::TooManySessions {
                sessions_max: self.config.sessions_max,
            });
        }
        let session = SessionId(self.next_session);
        self.next_session += 1;
        let state = SessionState::new(&self.config.model);
        self.sessions.insert(session, Arc::new(Session::new(state)));
        Ok(Output::Opened { session })
    }

    fn check_room(&self, session: SessionId, tokens: u64) -> Result<(), ServiceError> {
        let position = self.lookup(session)?.state.position;
        let limit = self.config.model.context_tokens_max;
        if position + tokens > limit as u64 {
            return Err(ServiceError::ContextFull {
                position,
                requested: tokens,
                context_tokens_max: limit,
            });
        }
        Ok(())
    }

    fn append(&mut self, session: SessionId, tokens: &[u8]) -> Result<Output, ServiceError> {
        self.lookup(session)?;
        if tokens.len() as u64 > self.config.append_tokens_max as u64 {
            return Err(ServiceError::InputTooLong {
                tokens: tokens.len() as u64,
                append_tokens_max: self.config.append_tokens_max,
            });
        }
        self.check_room(session, tokens.len() as u64)?;
        let position = self.mutate(session, |model, state| {
            model.prefill(state, tokens);
            state.position
        });
        Ok(Output::Appended { session, position })
    }

    fn append_tokens(
        &mut self,
        session: SessionId,
        tokens: &[u32],
    ) -> Result<Output, ServiceError> {
        self.lookup(session)?;
        if tokens.len() as u64 > self.config.append_tokens_max as u64 {
            return Err(ServiceError::InputTooLong {
                tokens: tokens.len() as u64,
                append_tokens_max: self.config.append_tokens_max,
            });
        }
        let mut bytes = Vec::with_capacity(tokens.len());
        for (index, &token) in tokens.iter().enumerate() {
            let byte = u8::try_from(token).map_err(|_| ServiceError::InvalidToken {
                index: index as u32,
                token,
            })?;
            bytes.push(byte);
        }
        self.append(session, &bytes)
    }

    fn generate(
        &mut self,
        session: SessionId,
        tokens: u32,
        sampling: Sampling,
    ) -> Result<Output, ServiceError> {
        if self.lookup(session)?.state.position == 0 {
            return Err(ServiceError::EmptyContext { session });
        }
        if tokens > self.config.generate_tokens_max {
            return Err(ServiceError::GenerateTooLong {
                tokens,
                generate_tokens_max: self.config.generate_tokens_max,
            });
        }
        if let Sampling::Sampled {
            temperature_milli, ..
        } = sampling
        {
            if temperature_milli == 0 || temperature_milli > TEMPERATURE_MILLI_MAX {
                return Err(ServiceError::InvalidTemperature { temperature_milli });
            }
        }
        self.check_room(session, tokens as u64)?;
        let (generated, position) = self.mutate(session, |model, state| {
            let mut generated = Vec::with_capacity(tokens as usize);
            for _ in 0..tokens {
                let token = model.choose(state, session.0, sampling);
                model.prefill(state, &[token]);
                generated.push(token);
            }
            (generated, state.position)
        });
        Ok(Output::Generated {
            session,
            tokens: generated,
            position,
        })
    }

    fn dispatch(&mut self, command: &Command) -> Result<Output, ServiceError> {
        match command {
            Command::OpenSession => self.open(),
            Command::Append { session, text } => self.append(*session, text),
            Command::AppendTokens { session, tokens } => self.append_tokens(*session, tokens),
            Command::Generate {
                session,
                tokens,
                sampling,
            } => self.generate(*session, *tokens, *sampling),
            Command::ReadDigest { session } => Ok(Output::Digest {
                session: *session,
                digest: self.lookup(*session)?.digest,
            }),
            Command::Close { session } => {
                self.lookup(*session)?;
                self.sessions.remove(session);
                Ok(Output::Closed { session: *session })
            }
        }
    }

    /// Everything but the sessions' contents: configuration, id counter, session count.
    fn encode_header(&self, sink: &mut impl Sink) {
        sink.put_bytes(&SNAPSHOT_MAGIC);
        self.config.encode(sink);
        sink.put_u64(self.next_session);
        sink.put_u64(self.sessions.len() as u64);
    }
}

impl StateMachine for InferenceService {
    type Command = Command;
    type Output = Output;

    fn apply(&mut self, command: &Command) -> Output {
        self.dispatch(command).unwrap_or_else(Output::Error)
    }

    /// Layout: magic, config, next session id, session count, then per session in id order
    /// its id and its [`SessionState::encode`] bytes. All integers little-endian.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.encode_header(&mut bytes);
        for (id, session) in self.sessions.iter() {
            bytes.put_u64(id.0);
            session.state.encode(&mut bytes);
        }
        bytes
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        if reader.bytes(SNAPSHOT_MAGIC.len(), "magic")? != SNAPSHOT_MAGIC {
            return Err("not an inference service snapshot (bad magic)".into());
        }
        let config = ServiceConfig::decode(&mut reader)?;
        let next_session = reader.u64("next session id")?;
        let count = reader.u64("session count")?;
        if count > config.sessions_max as u64 {
            return Err(format!(
                "{count} sessions over sessions_max {}",
                config.sessions_max
            ));
        }
        let mut sessions = im::OrdMap::new();
        let mut previous: Option<u64> = None;
        for _ in 0..count {
            let id = reader.u64("session id")?;
            if id >= next_session || previous.is_some_and(|p| id <= p) {
                return Err(format!("session id {id} out of order or not yet assigned"));
            }
            previous = Some(id);
            let state = SessionState::decode(&mut reader, &config.model)?;
            sessions.insert(SessionId(id), Arc::new(Session::new(state)));
        }
        reader.finish()?;
        let model = Arc::new(Model::new(config.model.clone()));
        Ok(InferenceService {
            config,
            model,
            next_session,
            sessions,
        })
    }

    /// Hash of the header bytes followed by `(id, session digest)` per session: a two-level hash
    /// of the canonical serialisation, O(sessions) because session digests are kept current.
    fn digest(&self) -> u64 {
        let mut hasher = StableHasher::new(SERVICE_DOMAIN);
        self.encode_header(&mut hasher);
        for (id, session) in self.sessions.iter() {
            hasher.put_u64(id.0);
            hasher.put_u64(session.digest);
        }
        hasher.finish()
    }
}
