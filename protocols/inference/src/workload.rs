//! A client workload for the inference service: sessions of short prompts and generations.
//!
//! One client runs one session at a time: `OpenSession`, a short prompt (`Append`), then a
//! mix of `Generate` (greedy or sampled, the seed drawn into the request), further short
//! `Append`s and `ReadDigest`s, then `Close`; then the next session. A small share of
//! requests is bad input the service must answer with a typed error (an invalid token id, a
//! read of the session just closed). Every choice is drawn through [`Draw`], so one seed gives
//! one command stream.
//!
//! The workload needs the id `OpenSession` returned before it can address the session; if an
//! open is never answered (abandoned), the next step opens again.

use dst_protocols::workload::{Draw, Step, Workload};

use crate::model::Sampling;
use crate::service::{Command, Output, SessionId};

/// Shape of one client's inference workload. Small by default so a simulated run stays fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferenceWorkloadConfig {
    /// Requests this client issues in total (opens and closes included).
    pub requests: u64,
    /// Prompt length is uniform in `1..=prompt_bytes_max`.
    pub prompt_bytes_max: u32,
    /// Tokens per `Generate`, uniform in `1..=generate_tokens_max`.
    pub generate_tokens_max: u32,
    /// Commands per session between the prompt and the close, uniform in `1..=`.
    pub session_commands_max: u32,
    /// Relative weights of the commands inside a session.
    pub generate_weight: u32,
    pub append_weight: u32,
    pub read_weight: u32,
    /// Share of sampled (vs greedy) generations, per mille.
    pub sampled_per_mille: u32,
    /// Share of bad-input requests, per mille.
    pub bad_input_per_mille: u32,
    /// Think time before each request is uniform in `0..=think_ns_max`.
    pub think_ns_max: u64,
}

impl InferenceWorkloadConfig {
    /// A few dozen cheap requests: prompts of at most 6 bytes, at most 8 generated tokens.
    pub fn small(requests: u64) -> Self {
        InferenceWorkloadConfig {
            requests,
            prompt_bytes_max: 6,
            generate_tokens_max: 8,
            session_commands_max: 6,
            generate_weight: 3,
            append_weight: 1,
            read_weight: 2,
            sampled_per_mille: 500,
            bad_input_per_mille: 50,
            think_ns_max: 20 * dst_sim::MS,
        }
    }
}

/// Where a client is in its current session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No session: the next request opens one.
    Closed,
    /// An `OpenSession` is outstanding (its output names the session).
    Opening,
    /// The session is open and holds no token yet: the next request is the prompt.
    Fresh { session: SessionId },
    /// The session holds tokens; `left` commands before the close.
    Open { session: SessionId, left: u32 },
}

/// The inference workload of one client.
#[derive(Clone, Debug)]
pub struct InferenceWorkload {
    config: InferenceWorkloadConfig,
    issued: u64,
    phase: Phase,
    /// The session this client closed last (a read of it is bad input the service rejects).
    last_closed: Option<SessionId>,
}

impl InferenceWorkload {
    pub fn new(config: InferenceWorkloadConfig) -> Self {
        assert!(
            config.prompt_bytes_max >= 1 && config.generate_tokens_max >= 1,
            "prompts and generations need at least one token"
        );
        InferenceWorkload {
            config,
            issued: 0,
            phase: Phase::Closed,
            last_closed: None,
        }
    }

    fn text(&self, draw: &mut dyn Draw) -> Vec<u8> {
        let length = 1 + draw.below(u64::from(self.config.prompt_bytes_max));
        // Printable ASCII: the byte model's natural input; any byte is a valid token.
        (0..length).map(|_| b' ' + draw.below(95) as u8).collect()
    }

    fn sampling(&self, draw: &mut dyn Draw) -> Sampling {
        if draw.below(1000) < u64::from(self.config.sampled_per_mille) {
            Sampling::Sampled {
                seed: draw.below(u64::MAX),
                temperature_milli: 200 + draw.below(1800) as u32,
            }
        } else {
            Sampling::Greedy
        }
    }

    fn bad_input(&self, draw: &mut dyn Draw, session: SessionId) -> Command {
        match (draw.below(2), self.last_closed) {
            (0, Some(closed)) => Command::ReadDigest { session: closed },
            _ => Command::AppendTokens {
                session,
                tokens: vec![u32::from(b'a'), 256 + draw.below(1000) as u32],
            },
        }
    }

    fn in_session(&mut self, draw: &mut dyn Draw, session: SessionId, left: u32) -> Command {
        if left == 0 {
            self.phase = Phase::Closed;
            self.last_closed = Some(session);
            return Command::Close { session };
        }
        self.phase = Phase::Open {
            session,
            left: left - 1,
        };
        if draw.below(1000) < u64::from(self.config.bad_input_per_mille) {
            return self.bad_input(draw, session);
        }
        let config = &self.config;
        let total = (config.generate_weight + config.append_weight + config.read_weight).max(1);
        let pick = draw.below(u64::from(total)) as u32;
        if pick < config.generate_weight {
            Command::Generate {
                session,
                tokens: 1 + draw.below(u64::from(config.generate_tokens_max)) as u32,
                sampling: self.sampling(draw),
            }
        } else if pick < config.generate_weight + config.append_weight {
            Command::Append {
                session,
                text: self.text(draw),
            }
        } else {
            Command::ReadDigest { session }
        }
    }

    fn command(&mut self, draw: &mut dyn Draw) -> Command {
        match self.phase {
            // An open that was never answered is abandoned: open again.
            Phase::Closed | Phase::Opening => {
                self.phase = Phase::Opening;
                Command::OpenSession
            }
            Phase::Fresh { session } => {
                let left = 1 + draw.below(u64::from(self.config.session_commands_max)) as u32;
                self.phase = Phase::Open { session, left };
                Command::Append {
                    session,
                    text: self.text(draw),
                }
            }
            Phase::Open { session, left } => self.in_session(draw, session, left),
        }
    }
}

impl Workload for InferenceWorkload {
    type Command = Command;
    type Output = Output;

    fn next_step(&mut self, draw: &mut dyn Draw) -> Option<Step<Command>> {
        if self.issued >= self.config.requests {
            return None;
        }
        self.issued += 1;
        let think_ns = draw.below(self.config.think_ns_max.saturating_add(1));
        let command = self.command(draw);
        Some(Step { command, think_ns })
    }

    fn observe(&mut self, command: &Command, output: &Output) {
        match (command, output) {
            (Command::OpenSession, Output::Opened { session }) => {
                self.phase = Phase::Fresh { session: *session };
            }
            // Refused (too many sessions): try again later.
            (Command::OpenSession, _) => self.phase = Phase::Closed,
            _ => {}
        }
    }
}
