//! Terms, log indices, log entries and the messages replicas exchange.

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use dst_protocols::{Checksummed, Request, Sealed};
use dst_sim::NodeId;

use crate::membership::{Configuration, MembershipChange};
use serde::{Deserialize, Serialize};

/// An election term. Terms only grow; each has at most one leader.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// A position in the replicated log, starting at 1 (0 means "before the first entry").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

impl LogIndex {
    /// The next index.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The previous index (saturating at 0).
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// One log entry: a client request, a configuration, or a no-op the leader appends at the
/// start of its term.
#[derive(Serialize, Deserialize)]
pub struct Entry<C> {
    pub term: Term,
    pub index: LogIndex,
    /// `None` (and no configuration) is a no-op.
    pub request: Option<Request<C>>,
    /// A configuration entry: the voters from this index on (thesis 4.1: in force as soon
    /// as it is in the log, committed or not). Never together with a request.
    pub config: Option<Configuration>,
    /// The entry's hash, computed the first time it is hashed. A leader sends each entry to
    /// every follower, often many times, and the simulator hashes every message it sends
    /// into the run's trace hash: one word per entry instead of all its fields. Not part of
    /// the entry's value: not encoded, compared or printed, and not kept by a clone (which
    /// may then be changed). The entries in a log never change once made.
    #[serde(skip)]
    hash: OnceLock<u64>,
}

impl<C: Clone> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Entry::new(
            self.term,
            self.index,
            self.request.clone(),
            self.config.clone(),
        )
    }
}

impl<C> Entry<C> {
    pub fn new(
        term: Term,
        index: LogIndex,
        request: Option<Request<C>>,
        config: Option<Configuration>,
    ) -> Self {
        Entry {
            term,
            index,
            request,
            config,
            hash: OnceLock::new(),
        }
    }
}

impl<C: PartialEq> PartialEq for Entry<C> {
    fn eq(&self, other: &Self) -> bool {
        (self.term, self.index) == (other.term, other.index)
            && self.request == other.request
            && self.config == other.config
    }
}

impl<C: Eq> Eq for Entry<C> {}

impl<C: Hash> Hash for Entry<C> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let fields = (self.term, self.index, &self.request, &self.config);
        state.write_u64(*self.hash.get_or_init(|| dst_sim::stable_hash(&fields)));
    }
}

impl<C: Debug> Debug for Entry<C> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Entry")
            .field("term", &self.term)
            .field("index", &self.index)
            .field("request", &self.request)
            .field("config", &self.config)
            .finish()
    }
}

/// RequestVote (and PreVote, which uses the same fields with the term the candidate would use).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestVote {
    pub term: Term,
    pub candidate: NodeId,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
}

/// Answer to RequestVote or PreVote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VoteResponse {
    /// The voter's term (for PreVote: the term of the request when granted).
    pub term: Term,
    pub granted: bool,
    /// The voter's incarnation: a vote counts only for the member it names.
    pub incarnation: u64,
}

/// AppendEntries: replicate entries after `(prev_log_index, prev_log_term)`; empty is a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendEntries<C> {
    pub term: Term,
    pub leader: NodeId,
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    /// Shared with the sender's log: a leader sends the same entries to every follower,
    /// often many times, and copies would cost more than the rest of the handling. Encodes,
    /// hashes and compares exactly like the entries themselves.
    pub entries: Vec<Arc<Entry<C>>>,
    pub leader_commit: LogIndex,
    /// The leader's last index when sending (lets a recovering follower know it holds the
    /// leader's whole log).
    pub leader_last_index: LogIndex,
    /// Heartbeat round, echoed in the response (ReadIndex and lease confirmation).
    pub round: u64,
}

/// Answer to AppendEntries or InstallSnapshot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendResponse {
    /// The responder's current term (a leader behind it steps down).
    pub term: Term,
    /// The term of the request this answers. A follower rejecting an AppendEntries of an
    /// earlier term answers in its own, later term; if the same node leads again by then,
    /// only this field tells it that the answer (and its round) belongs to another term.
    pub request_term: Term,
    pub success: bool,
    /// On success: the follower's log matches the leader's up to here.
    /// On failure: a hint; the leader retries from `match_or_hint + 1` at most.
    pub match_or_hint: LogIndex,
    pub round: u64,
    /// The follower's incarnation: an acknowledgement counts only for the member it names.
    pub incarnation: u64,
}

/// InstallSnapshot, sent in one piece (snapshots here are small).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstallSnapshot {
    pub term: Term,
    pub leader: NodeId,
    pub last_included_index: LogIndex,
    pub last_included_term: Term,
    /// The latest configuration at or before `last_included_index`.
    pub config: Configuration,
    pub data: Vec<u8>,
    pub round: u64,
}

/// A note a node sends to itself after a sync: the writes it covered are durable now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persisted {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub snapshot_index: LogIndex,
    pub snapshot_slot: u8,
    /// Version of the term/vote record written last.
    pub meta_version: u64,
}

/// Every message kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Body<C> {
    PreVote(RequestVote),
    PreVoteResponse(VoteResponse),
    RequestVote(RequestVote),
    RequestVoteResponse(VoteResponse),
    AppendEntries(AppendEntries<C>),
    AppendEntriesResponse(AppendResponse),
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(AppendResponse),
    Persisted(Persisted),
    /// An administrator's (or a rejoining machine's) membership change, for the leader.
    ChangeMembership(MembershipChange),
}

/// A message between replicas: the body, sealed with a checksum that belongs to its
/// encoding (see [`dst_protocols::sealed`]).
pub type RaftMsg<C> = Sealed<Body<C>>;

impl<C: Serialize> Checksummed for Body<C> {
    const CHECKSUM_SEED: u64 = 0x6d73_675f_7261_6674;
}

/// FNV-1a with a seeded basis and a SplitMix64 finish, shared with the service digests. Not
/// cryptographic: it detects accidents (torn writes, bit flips, misdirected writes), not
/// adversaries.
pub use dst_protocols::digest::hash_bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use dst_sim::{stable_hash, ClientId};

    fn put(index: u64, value: &str) -> Entry<String> {
        let request = Request {
            client: ClientId(1),
            sequence: index,
            command: value.to_string(),
        };
        Entry::new(Term(2), LogIndex(index), Some(request), None)
    }

    #[test]
    fn an_entry_hashes_by_value_however_often_and_wherever_it_was_hashed() {
        let entry = put(7, "x");
        let first = stable_hash(&entry);
        assert_eq!(
            stable_hash(&entry),
            first,
            "the cached hash is the same value"
        );
        assert_eq!(
            stable_hash(&put(7, "x")),
            first,
            "an equal entry hashes alike"
        );
        assert_eq!(stable_hash(&entry.clone()), first);
        let mut changed = entry.clone();
        changed.index = LogIndex(8);
        let fresh = Entry::new(Term(2), LogIndex(8), entry.request.clone(), None);
        assert_eq!(
            stable_hash(&changed),
            stable_hash(&fresh),
            "a clone hashes anew"
        );
        let decoded: Entry<String> =
            postcard::from_bytes(&postcard::to_allocvec(&entry).unwrap()).unwrap();
        assert_eq!(decoded, entry);
        assert_eq!(
            stable_hash(&decoded),
            first,
            "the cache is not part of the encoding"
        );
        assert_ne!(stable_hash(&put(7, "y")), first);
        assert_ne!(stable_hash(&put(8, "x")), first);
        let no_op = Entry::<String>::new(Term(2), LogIndex(7), None, None);
        assert_ne!(stable_hash(&no_op), first);
    }

    #[test]
    fn an_entry_prints_and_encodes_without_its_cache() {
        let entry = put(3, "v");
        let _ = stable_hash(&entry);
        let printed = format!("{entry:?}");
        assert!(printed.starts_with("Entry { term: Term(2), index: LogIndex(3), request: Some("));
        assert!(!printed.contains("hash"), "{printed}");
        let plain = (Term(2), LogIndex(3), &entry.request, &entry.config);
        assert_eq!(
            postcard::to_allocvec(&entry).unwrap(),
            postcard::to_allocvec(&plain).unwrap()
        );
    }
}
