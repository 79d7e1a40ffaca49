//! Terms, log indices, log entries and the messages replicas exchange.

use std::sync::Arc;

use dst_protocols::Request;
use dst_sim::NodeId;

use crate::membership::{Configuration, MembershipChange};
use serde::de::DeserializeOwned;
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

/// A message between replicas: the body and its seal.
///
/// On the wire a message is `postcard(body) ++ varint(checksum)`, where the checksum covers
/// the body's encoding (0 when checksums are off), so a corrupted message that still decodes
/// into a well-formed body is rejected. The checksum belongs to the encoding: a sender seals
/// a body ([`Seal::Fresh`]) and the checksum is computed only if the message is encoded; a
/// message decoded from bytes carries the checksum it arrived with ([`Seal::Received`]) and
/// [`RaftMsg::verify`] checks it. A message handed over without encoding (the simulator's
/// intact hops) is the sender's own value, so it needs no check, and neither side pays for
/// the hash. The bytes are the same as if the checksum were a stored field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftMsg<C> {
    pub body: Body<C>,
    pub seal: Seal,
}

/// Where a message's checksum comes from (see [`RaftMsg`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// Checksums are off: encodes as 0.
    Off,
    /// Sealed by its sender: encodes as the checksum of the body.
    Fresh,
    /// Decoded from bytes, with this checksum.
    Received(u64),
}

impl<C: Serialize + DeserializeOwned> RaftMsg<C> {
    /// Wraps a body, sealed when `with_checksum`.
    pub fn seal(body: Body<C>, with_checksum: bool) -> Self {
        let seal = if with_checksum {
            Seal::Fresh
        } else {
            Seal::Off
        };
        RaftMsg { body, seal }
    }

    /// The checksum this message encodes with.
    pub fn checksum(&self) -> u64 {
        match self.seal {
            Seal::Off => 0,
            Seal::Fresh => body_checksum(&self.body),
            Seal::Received(checksum) => checksum,
        }
    }

    /// True if the checksum matches the body (or checksums are off). A message its sender
    /// sealed passes: its checksum is by definition the body's.
    pub fn verify(&self, with_checksum: bool) -> bool {
        if !with_checksum {
            return true;
        }
        match self.seal {
            Seal::Off => false,
            Seal::Fresh => true,
            Seal::Received(checksum) => checksum == body_checksum(&self.body),
        }
    }
}

/// The checksum is a function of the body except in a corrupted message, and the trace
/// records corruption as decisions: hashing the body is enough to tell runs apart, and does
/// not make every send pay for the checksum.
impl<C: std::hash::Hash> std::hash::Hash for RaftMsg<C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.body.hash(state);
    }
}

impl<C: Serialize> Serialize for RaftMsg<C> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let checksum = match self.seal {
            Seal::Off => 0,
            Seal::Fresh => body_checksum(&self.body),
            Seal::Received(checksum) => checksum,
        };
        let mut fields = serializer.serialize_struct("RaftMsg", 2)?;
        fields.serialize_field("body", &self.body)?;
        fields.serialize_field("checksum", &checksum)?;
        fields.end()
    }
}

impl<'de, C: Deserialize<'de>> Deserialize<'de> for RaftMsg<C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The encoded shape.
        #[derive(Deserialize)]
        #[serde(rename = "RaftMsg")]
        struct Wire<C> {
            body: Body<C>,
            checksum: u64,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(RaftMsg {
            body: wire.body,
            seal: Seal::Received(wire.checksum),
        })
    }
}

fn body_checksum<C: Serialize>(body: &Body<C>) -> u64 {
    // A body that cannot be encoded cannot have come from an honest sender: give it a
    // checksum no sender produces (senders encode the same type, so this never mismatches
    // spuriously).
    dst_protocols::digest::try_hash_value(0x6d73_675f_7261_6674, body).map_or(0, |hash| hash | 1)
}

/// FNV-1a with a seeded basis and a SplitMix64 finish, shared with the service digests. Not
/// cryptographic: it detects accidents (torn writes, bit flips, misdirected writes), not
/// adversaries.
pub use dst_protocols::digest::hash_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    type Msg = RaftMsg<u32>;

    fn vote(term: u64) -> Body<u32> {
        Body::RequestVote(RequestVote {
            term: Term(term),
            candidate: NodeId(2),
            last_log_index: LogIndex(7),
            last_log_term: Term(3),
        })
    }

    #[test]
    fn a_sealed_message_encodes_its_body_then_the_body_checksum() {
        let msg = Msg::seal(vote(4), true);
        let expected = postcard::to_allocvec(&(vote(4), body_checksum(&vote(4)))).unwrap();
        assert_eq!(postcard::to_allocvec(&msg).unwrap(), expected);
        let off = Msg::seal(vote(4), false);
        let expected_off = postcard::to_allocvec(&(vote(4), 0u64)).unwrap();
        assert_eq!(postcard::to_allocvec(&off).unwrap(), expected_off);
    }

    #[test]
    fn a_decoded_message_is_checked_against_the_checksum_it_carried() {
        let bytes = postcard::to_allocvec(&Msg::seal(vote(4), true)).unwrap();
        let decoded: Msg = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.seal, Seal::Received(body_checksum(&vote(4))));
        assert!(decoded.verify(true));
        // The term is the byte after the variant tag: 4 becomes 5, still well formed.
        let mut flipped = bytes.clone();
        flipped[1] ^= 1;
        let forged: Msg = postcard::from_bytes(&flipped).unwrap();
        assert_eq!(forged.body, vote(5));
        assert!(
            !forged.verify(true),
            "a changed body passed its old checksum"
        );
        assert!(
            forged.verify(false),
            "checksums off must accept anything that decodes"
        );
        let unsealed: Msg =
            postcard::from_bytes(&postcard::to_allocvec(&Msg::seal(vote(4), false)).unwrap())
                .unwrap();
        assert!(
            !unsealed.verify(true),
            "a message sent without a checksum passed one"
        );
    }
}
