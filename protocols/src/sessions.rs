//! Client sessions: exactly-once execution on top of any service.
//!
//! A client numbers its requests `1, 2, 3, ...` and keeps at most one outstanding; a retry
//! carries the same number. The log may therefore hold a request more than once (the
//! client retried against a new leader before the first copy committed). [`Sessions`] wraps
//! a service and, per client, remembers the last sequence it applied and that request's
//! output (Ongaro's thesis, section 6.3):
//! - upon a request with `sequence > last`: apply it, remember `(sequence, output)`;
//! - upon `sequence == last`: do not apply; answer with the remembered output;
//! - upon `sequence < last`: do not apply; the client has moved on and wants no answer.
//!
//! The session table is part of the replicated state: it is in the snapshot and the digest,
//! so every replica deduplicates identically. Bound: at most [`SESSIONS_MAX`] clients; past
//! it the least recently active session is evicted (deterministically), after which a very
//! late retry of that client would be applied again. Simulations use far fewer clients.

use std::collections::BTreeMap;

use dst_sim::{ClientId, StateMachine};
use serde::{Deserialize, Serialize};

use crate::api::Request;
use crate::digest::{hash_bytes, hash_value};
use crate::service::Service;

/// Most client sessions kept; the least recently active one is evicted past this.
pub const SESSIONS_MAX: usize = 4_096;

/// Seed of the per-session hash ("session").
const SESSION_SEED: u64 = 0x0073_6573_7369_6f6e;

/// What a request through the session layer produced.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionOutput<O> {
    /// First time this request was applied.
    Applied(O),
    /// A retry of the client's last request: not applied again, answered from the cache.
    Duplicate(O),
    /// An older request than the client's last one: not applied, nothing to answer.
    Stale { last_sequence: u64 },
}

impl<O> SessionOutput<O> {
    /// The output to send the client, if any.
    pub fn into_output(self) -> Option<O> {
        match self {
            SessionOutput::Applied(output) | SessionOutput::Duplicate(output) => Some(output),
            SessionOutput::Stale { .. } => None,
        }
    }
}

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Session<O> {
    last_sequence: u64,
    output: O,
    /// Value of the apply counter when this session last applied a request (eviction order).
    touched: u64,
}

/// A service with per-client exactly-once sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sessions<S: StateMachine> {
    service: S,
    /// Each session with its `session_hash`, kept so that replacing it costs one hash.
    sessions: BTreeMap<ClientId, (Session<S::Output>, u64)>,
    /// Requests applied so far (not counting duplicates and stale ones).
    applied: u64,
    // invariant: sessions_hash == wrapping sum of session_hash over sessions.
    sessions_hash: u64,
}

/// The canonical snapshot layout.
#[derive(Serialize, Deserialize)]
struct SessionsSnapshot<O> {
    service: Vec<u8>,
    applied: u64,
    sessions: Vec<(ClientId, Session<O>)>,
}

fn session_hash<O: Serialize>(client: ClientId, session: &Session<O>) -> u64 {
    hash_value(SESSION_SEED, &(client, session))
}

impl<S: StateMachine> Sessions<S> {
    /// Wraps `service` with an empty session table.
    pub fn new(service: S) -> Self {
        Sessions {
            service,
            sessions: BTreeMap::new(),
            applied: 0,
            sessions_hash: 0,
        }
    }

    /// The wrapped service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The last sequence applied for `client`, if it has a session.
    pub fn last_sequence(&self, client: ClientId) -> Option<u64> {
        self.sessions
            .get(&client)
            .map(|(session, _)| session.last_sequence)
    }

    /// Number of sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn remember(&mut self, client: ClientId, session: Session<S::Output>) {
        let new_hash = session_hash(client, &session);
        if let Some((_, old_hash)) = self.sessions.insert(client, (session, new_hash)) {
            self.sessions_hash = self.sessions_hash.wrapping_sub(old_hash);
        }
        self.sessions_hash = self.sessions_hash.wrapping_add(new_hash);
        if self.sessions.len() > SESSIONS_MAX {
            self.evict_least_recent();
        }
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .sessions
            .iter()
            .min_by_key(|(client, (session, _))| (session.touched, **client))
            .map(|(client, _)| *client);
        if let Some(client) = oldest {
            if let Some((_, old_hash)) = self.sessions.remove(&client) {
                self.sessions_hash = self.sessions_hash.wrapping_sub(old_hash);
            }
        }
    }
}

impl<S: StateMachine> StateMachine for Sessions<S> {
    type Command = Request<S::Command>;
    type Output = SessionOutput<S::Output>;

    fn apply(&mut self, request: &Request<S::Command>) -> SessionOutput<S::Output> {
        if let Some((session, _)) = self.sessions.get(&request.client) {
            if request.sequence == session.last_sequence {
                return SessionOutput::Duplicate(session.output.clone());
            }
            if request.sequence < session.last_sequence {
                return SessionOutput::Stale {
                    last_sequence: session.last_sequence,
                };
            }
        }
        let output = self.service.apply(&request.command);
        self.applied += 1;
        let session = Session {
            last_sequence: request.sequence,
            output: output.clone(),
            touched: self.applied,
        };
        self.remember(request.client, session);
        SessionOutput::Applied(output)
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = SessionsSnapshot {
            service: self.service.snapshot(),
            applied: self.applied,
            sessions: self
                .sessions
                .iter()
                .map(|(client, (session, _))| (*client, session.clone()))
                .collect(),
        };
        // Serialising plain data into a Vec cannot fail.
        postcard::to_allocvec(&snapshot).unwrap_or_default()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let (snapshot, rest): (SessionsSnapshot<S::Output>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|error| format!("sessions: {error}"))?;
        if !rest.is_empty() {
            return Err(format!("sessions: {} trailing bytes", rest.len()));
        }
        if snapshot.sessions.len() > SESSIONS_MAX {
            return Err(format!(
                "sessions: {} sessions, at most {SESSIONS_MAX}",
                snapshot.sessions.len()
            ));
        }
        let mut restored = Sessions::new(S::restore(&snapshot.service)?);
        restored.applied = snapshot.applied;
        for (client, session) in snapshot.sessions {
            restored.remember(client, session);
        }
        if restored.snapshot() != bytes {
            return Err("sessions: not canonical (clients out of order or repeated)".to_string());
        }
        Ok(restored)
    }

    fn digest(&self) -> u64 {
        let mut parts = [0u8; 24];
        parts[..8].copy_from_slice(&self.service.digest().to_le_bytes());
        parts[8..16].copy_from_slice(&self.sessions_hash.to_le_bytes());
        parts[16..].copy_from_slice(&self.applied.to_le_bytes());
        hash_bytes(SESSION_SEED, &parts)
    }
}

impl<S: Service> Service for Sessions<S> {
    fn is_read_only(request: &Request<S::Command>) -> bool {
        S::is_read_only(&request.command)
    }

    /// Reads bypass the session table: answering a read twice is harmless.
    fn query(&self, request: &Request<S::Command>) -> Option<SessionOutput<S::Output>> {
        self.service
            .query(&request.command)
            .map(SessionOutput::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvCommand, KvOutput, KvStore};

    fn append(client: u32, sequence: u64, value: &str) -> Request<KvCommand> {
        Request {
            client: ClientId(client),
            sequence,
            command: KvCommand::Append {
                key: "k".to_string(),
                value: value.to_string(),
            },
        }
    }

    fn value_of(sessions: &Sessions<KvStore>) -> Option<&str> {
        sessions.service().get("k")
    }

    #[test]
    fn a_retried_request_is_applied_once_and_answered_from_the_cache() {
        let mut sessions = Sessions::new(KvStore::new());
        let request = append(1, 1, "a");
        assert_eq!(
            sessions.apply(&request),
            SessionOutput::Applied(KvOutput::Written)
        );
        let digest = sessions.digest();
        assert_eq!(
            sessions.apply(&request),
            SessionOutput::Duplicate(KvOutput::Written)
        );
        assert_eq!(
            value_of(&sessions),
            Some("a"),
            "the retry was applied again"
        );
        assert_eq!(sessions.digest(), digest, "a duplicate changed the state");
    }

    #[test]
    fn an_older_request_is_stale_and_not_applied() {
        let mut sessions = Sessions::new(KvStore::new());
        sessions.apply(&append(1, 1, "a"));
        sessions.apply(&append(1, 3, "b"));
        assert_eq!(
            sessions.apply(&append(1, 2, "x")),
            SessionOutput::Stale { last_sequence: 3 }
        );
        assert_eq!(value_of(&sessions), Some("ab"));
        assert_eq!(
            SessionOutput::<KvOutput>::Stale { last_sequence: 3 }.into_output(),
            None
        );
    }

    #[test]
    fn sessions_are_per_client() {
        let mut sessions = Sessions::new(KvStore::new());
        sessions.apply(&append(1, 1, "a"));
        sessions.apply(&append(2, 1, "b"));
        assert_eq!(value_of(&sessions), Some("ab"));
        assert_eq!(sessions.last_sequence(ClientId(2)), Some(1));
        assert_eq!(sessions.last_sequence(ClientId(3)), None);
    }

    #[test]
    fn snapshot_round_trips_with_the_session_table() {
        let mut sessions = Sessions::new(KvStore::new());
        sessions.apply(&append(1, 1, "a"));
        sessions.apply(&append(2, 5, "b"));
        let mut restored =
            Sessions::<KvStore>::restore(&sessions.snapshot()).expect("own snapshot restores");
        assert_eq!(restored, sessions);
        assert_eq!(restored.digest(), sessions.digest());
        // The restored table still deduplicates.
        assert_eq!(
            restored.apply(&append(2, 5, "b")),
            SessionOutput::Duplicate(KvOutput::Written)
        );
        assert_eq!(value_of(&restored), Some("ab"));
    }

    #[test]
    fn restore_rejects_malformed_bytes() {
        let mut sessions = Sessions::new(KvStore::new());
        sessions.apply(&append(1, 1, "a"));
        let bytes = sessions.snapshot();
        for cut in 0..bytes.len() {
            assert!(
                Sessions::<KvStore>::restore(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut source = dst_sim::SeededSource::new(5);
        for round in 0..2_000usize {
            let mut noisy = bytes.clone();
            let position = round % noisy.len();
            noisy[position] ^= (source.next_u64() as u8) | 1;
            if let Ok(restored) = Sessions::<KvStore>::restore(&noisy) {
                assert_eq!(
                    restored.snapshot(),
                    noisy,
                    "restore accepted a non-canonical form"
                );
            }
        }
    }

    #[test]
    fn digest_covers_the_session_table() {
        let mut one = Sessions::new(KvStore::new());
        let mut two = Sessions::new(KvStore::new());
        one.apply(&append(1, 1, "a"));
        two.apply(&append(2, 1, "a"));
        assert_eq!(one.service(), two.service());
        assert_ne!(one.digest(), two.digest());
    }

    #[test]
    fn sessions_are_bounded_and_evict_the_least_recent() {
        let mut sessions = Sessions::new(KvStore::new());
        for client in 0..=SESSIONS_MAX as u32 {
            sessions.apply(&append(client, 1, "x"));
        }
        assert_eq!(sessions.session_count(), SESSIONS_MAX);
        assert_eq!(sessions.last_sequence(ClientId(0)), None, "oldest kept");
        assert_eq!(sessions.last_sequence(ClientId(1)), Some(1));
    }

    #[test]
    fn reads_bypass_the_table() {
        let mut sessions = Sessions::new(KvStore::new());
        sessions.apply(&append(1, 1, "a"));
        let read = Request {
            client: ClientId(1),
            sequence: 2,
            command: KvCommand::Get {
                key: "k".to_string(),
            },
        };
        assert!(Sessions::<KvStore>::is_read_only(&read));
        assert_eq!(
            sessions.query(&read),
            Some(SessionOutput::Applied(KvOutput::Value(Some(
                "a".to_string()
            ))))
        );
        assert_eq!(sessions.last_sequence(ClientId(1)), Some(1));
    }
}
