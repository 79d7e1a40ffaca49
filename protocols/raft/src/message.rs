//! Terms, log indices, log entries and the messages replicas exchange.

use std::sync::Arc;

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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry<C> {
    pub term: Term,
    pub index: LogIndex,
    /// `None` (and no configuration) is a no-op.
    pub request: Option<Request<C>>,
    /// A configuration entry: the voters from this index on (thesis 4.1: in force as soon
    /// as it is in the log, committed or not). Never together with a request.
    pub config: Option<Configuration>,
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
    pub term: Term,
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
