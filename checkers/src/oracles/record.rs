//! The oracles' input: what a run recorded, in plain types.
//!
//! These types know nothing of the simulator or of any protocol: ids are plain integers and
//! commands are represented by their digests. A harness next to the protocols converts its
//! observations into a [`RunRecord`]; the oracles only read it.

use serde::{Deserialize, Serialize};

/// A client request's identity: unique per request, shared by all its retries.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct RequestId {
    pub client: u32,
    /// Per-client request number.
    pub sequence: u64,
}

impl RequestId {
    /// The request `sequence` of `client`.
    pub fn new(client: u32, sequence: u64) -> Self {
        RequestId { client, sequence }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "c{}#{}", self.client, self.sequence)
    }
}

/// What sits in a committed slot: a client request, or a no-op (`request == None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub request: Option<RequestId>,
    /// Digest of the entry's command (0 for a no-op).
    pub command_digest: u64,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.request {
            Some(request) => write!(formatter, "{request} (digest {:#x})", self.command_digest),
            None => write!(formatter, "no-op (digest {:#x})", self.command_digest),
        }
    }
}

/// A client sent a new request (its first send).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub time_ns: u64,
    pub request: RequestId,
    /// Digest of the command, computed the same way the protocol computes commit digests.
    pub command_digest: u64,
    /// True when the request need not go through the log (a read served by ReadIndex or a
    /// lease); durability does not require such requests to be committed.
    pub read_only: bool,
}

/// A client accepted a reply for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub time_ns: u64,
    pub request: RequestId,
}

/// A client gave up on a request (it may or may not have taken effect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abandonment {
    pub time_ns: u64,
    pub request: RequestId,
}

/// A node learned that `slot` is committed with `entry`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub time_ns: u64,
    pub node: u32,
    pub slot: u64,
    pub entry: Entry,
}

/// A node applied the entry at `slot`; `state_digest` is its service's digest afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    pub time_ns: u64,
    pub node: u32,
    pub slot: u64,
    pub request: Option<RequestId>,
    pub state_digest: u64,
}

/// A node reported that one of its own invariants broke. By convention `what` reads
/// `"name: detail"`; the name becomes the property `invariant:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedViolation {
    pub time_ns: u64,
    pub node: u32,
    pub what: String,
}

/// Everything the safety and liveness oracles read. Each list is in the order the run
/// recorded it (non-decreasing `time_ns`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub invocations: Vec<Invocation>,
    pub completions: Vec<Completion>,
    pub abandonments: Vec<Abandonment>,
    pub commits: Vec<CommitRecord>,
    pub applies: Vec<ApplyRecord>,
    pub reported: Vec<ReportedViolation>,
}
