//! Types shared by every protocol, its clients and the harness that feeds the oracles.

use dst_sim::{ClientId, NodeId};
use serde::{Deserialize, Serialize};

/// A client request as it travels to replicas. `(client, sequence)` identifies it uniquely;
/// a retry carries the same pair, and the service applies it at most once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request<C> {
    pub client: ClientId,
    /// Per-client request number, starting at 1, increasing by one per new request.
    pub sequence: u64,
    pub command: C,
}

/// A replica's answer to a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reply<O> {
    /// The request was executed (committed, or read linearizably) with this output.
    Done { sequence: u64, output: O },
    /// This replica cannot serve the request; `leader` is its best guess of who can.
    Redirect {
        sequence: u64,
        leader: Option<NodeId>,
    },
}

/// What nodes and clients report to the oracles.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Observation<C, O> {
    /// A client sent a new request (first send, not retries).
    Invoke {
        client: ClientId,
        sequence: u64,
        command: C,
    },
    /// A client accepted a result.
    Complete {
        client: ClientId,
        sequence: u64,
        output: O,
    },
    /// A client gave up on a request: it may or may not have taken effect.
    Abandon { client: ClientId, sequence: u64 },
    /// A replica learned that `slot` is committed with this entry. Reported once per node and
    /// slot (again after a restart is fine: it must be the same entry).
    Commit {
        node: NodeId,
        slot: u64,
        /// The request committed there, or None for a no-op.
        request: Option<(ClientId, u64)>,
        /// Digest of the committed entry's command (0 for a no-op).
        command_digest: u64,
    },
    /// A replica applied a committed entry to its state machine.
    Apply {
        node: NodeId,
        slot: u64,
        request: Option<(ClientId, u64)>,
        /// Digest of the state machine after applying.
        state_digest: u64,
    },
    /// A protocol-specific invariant broke (for example two leaders in one term).
    InvariantViolated { node: NodeId, what: String },
    /// A replica entered a new view (term, ballot, round of leadership): counted as a view
    /// change when `view` is above every view seen before.
    NewView { node: NodeId, view: u64 },
    /// A client completed a request on a protocol's fast (speculative) or slow path;
    /// reported just before the `Complete`.
    Path {
        client: ClientId,
        sequence: u64,
        fast: bool,
    },
    /// A speculative protocol's replica (FastBFT) accepted an entry: history digest `hist` at
    /// `slot` extends `prev` by the entry digest `entry` (short digests of the hash chain).
    SpecAccept {
        node: NodeId,
        view: u64,
        slot: u64,
        prev: u64,
        entry: u64,
        hist: u64,
    },
    /// A client completed a request at `(view, slot)` of a speculative history `hist`.
    SpecComplete {
        client: ClientId,
        sequence: u64,
        view: u64,
        slot: u64,
        hist: u64,
    },
    /// A replica installed a history ending at `slot` with digest `hist`: a NEW-VIEW's
    /// (`view: Some`) or a stable checkpoint's (`view: None`, with the service state digest).
    SpecInstall {
        node: NodeId,
        view: Option<u64>,
        slot: u64,
        hist: u64,
        state_digest: Option<u64>,
    },
}
