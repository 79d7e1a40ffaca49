//! The protocol interface: sans-IO nodes and clients, their contexts and effects.
//!
//! A handler never performs I/O. It reads its own clock, draws randomness, reads and writes
//! its durable storage through the context, and records effects (send, reply, timers, sync,
//! observations). The host applies the effects after the handler returns, in order.
//!
//! Ordering duty, stated here and enforced by the simulator: a message sent (or a reply given)
//! after `ctx.sync()` in the same handler leaves only once that sync has completed. If the
//! node crashes first, the message never leaves and the unsynced writes may be lost or torn.
//! Messages sent before the sync leave at once.

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{CpuCosts, Digest, Principal, Signature, Signed};
use crate::decision::{Decide, DecisionKind, DecisionSource};
use crate::storage::{Storage, StorageError, StorageKey};

/// A replica's identity, `0..n`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct NodeId(pub u32);

/// A simulated client's identity, `0..clients`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct ClientId(pub u32);

/// Handle of a timer, unique per process incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "n{}", self.0)
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "c{}", self.0)
    }
}

/// Anything that travels over the simulated network or into the trace hash.
pub trait Payload: Clone + Debug + Hash + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Debug + Hash + Serialize + DeserializeOwned + 'static> Payload for T {}

/// A replicated, deterministic service: what protocols replicate. Any protocol can replicate
/// any service through this interface.
pub trait StateMachine: Clone + Debug + 'static {
    /// A command submitted by a client.
    type Command: Payload + PartialEq + Eq;
    /// The result of applying a command.
    type Output: Payload + PartialEq + Eq;

    /// Applies one command. Must be a pure function of the state and the command.
    fn apply(&mut self, command: &Self::Command) -> Self::Output;
    /// A canonical serialisation of the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Rebuilds a state from [`StateMachine::snapshot`] bytes; errors on malformed input.
    fn restore(bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
    /// A digest of the whole state: equal states have equal digests on every replica.
    fn digest(&self) -> u64;
}

/// A sans-IO protocol replica.
pub trait Node: 'static {
    /// Replica-to-replica message.
    type Msg: Payload;
    /// Timer payload, handed back when the timer fires.
    type Timer: Clone + Debug + Hash + 'static;
    /// Client request.
    type Request: Payload;
    /// Reply to a client.
    type Reply: Payload;
    /// What nodes and clients report to the oracles (commits, history events, ...).
    type Obs: Clone + Debug + 'static;

    /// First boot, with empty storage.
    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>);
    /// Boot after a crash: the instance is fresh, storage holds what survived.
    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.on_start(ctx);
    }
    /// A message from another replica.
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg);
    /// A timer set by this incarnation fired.
    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Self::Timer);
    /// A request from a client.
    fn on_request(&mut self, ctx: &mut NodeCtx<'_, Self>, client: ClientId, request: Self::Request);
    /// Checked after every step; an error is a safety violation of the protocol itself.
    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
    /// Approximate bytes of protocol state this replica holds (log, certificates, buffered
    /// messages, service snapshots kept for rollback), for the memory metric. Sampled by the
    /// host when it measures.
    fn footprint_bytes(&self) -> u64 {
        0
    }
}

/// A simulated client that drives a workload against the replicas.
pub trait Client: 'static {
    /// The replica type this client talks to.
    type Node: Node;
    /// Timer payload.
    type Timer: Clone + Debug + Hash + 'static;

    /// Called once at time zero.
    fn on_start(&mut self, ctx: &mut ClientCtx<'_, Self>);
    /// A reply from a replica.
    fn on_reply(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        from: NodeId,
        reply: <Self::Node as Node>::Reply,
    );
    /// A timer fired.
    fn on_timer(&mut self, ctx: &mut ClientCtx<'_, Self>, timer: Self::Timer);
    /// Requests issued and not yet completed or abandoned (for the liveness oracle).
    fn pending(&self) -> usize;
    /// True once the client has issued its whole workload and has nothing pending.
    fn is_done(&self) -> bool;
}

/// What a node handler asks the host to do, in program order.
#[derive(Debug)]
pub enum Effect<N: Node + ?Sized> {
    /// Send a message to one replica.
    Send { to: NodeId, msg: N::Msg },
    /// Send a message to every other replica.
    Broadcast { msg: N::Msg },
    /// Reply to a client.
    Reply { client: ClientId, reply: N::Reply },
    /// Start a timer that fires after `delay_ns` of this node's clock.
    SetTimer {
        id: TimerId,
        delay_ns: u64,
        timer: N::Timer,
    },
    /// Cancel a timer; cancelling a fired or unknown timer is a no-op.
    CancelTimer { id: TimerId },
    /// Make every write up to storage sequence `up_to` durable; later sends wait for it.
    Sync { up_to: u64 },
    /// Report something to the oracles.
    Observe(N::Obs),
}

/// What a client handler asks the host to do.
#[derive(Debug)]
pub enum ClientEffect<C: Client + ?Sized> {
    /// Send a request to a replica.
    Send {
        to: NodeId,
        request: <C::Node as Node>::Request,
    },
    /// Start a timer.
    SetTimer {
        id: TimerId,
        delay_ns: u64,
        timer: C::Timer,
    },
    /// Cancel a timer.
    CancelTimer { id: TimerId },
    /// Report something to the oracles (history events).
    Observe(<C::Node as Node>::Obs),
}

/// Why a node ignored a message, counted per reason by the host.
pub type IgnoreReason = &'static str;

/// The context a node handler runs in.
pub struct NodeCtx<'a, N: Node + ?Sized> {
    id: NodeId,
    cluster_size: u32,
    local_now_ns: u64,
    monotonic_ns: u64,
    effects: &'a mut Vec<Effect<N>>,
    storage: &'a mut Storage,
    decisions: &'a mut dyn DecisionSource,
    next_timer_id: &'a mut u64,
    ignored: &'a mut Vec<IgnoreReason>,
    costs: CpuCosts,
    cpu_ns: u64,
}

impl<'a, N: Node + ?Sized> NodeCtx<'a, N> {
    /// Builds a context; hosts (the simulator, or another runtime) call this.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        cluster_size: u32,
        local_now_ns: u64,
        effects: &'a mut Vec<Effect<N>>,
        storage: &'a mut Storage,
        decisions: &'a mut dyn DecisionSource,
        next_timer_id: &'a mut u64,
        ignored: &'a mut Vec<IgnoreReason>,
    ) -> Self {
        NodeCtx {
            id,
            cluster_size,
            local_now_ns,
            monotonic_ns: local_now_ns,
            effects,
            storage,
            decisions,
            next_timer_id,
            ignored,
            costs: CpuCosts::FREE,
            cpu_ns: 0,
        }
    }

    /// Sets the monotonic clock's reading (hosts whose wall clock jumps call this; without
    /// it the monotonic clock reads like the wall clock).
    pub fn with_monotonic_ns(mut self, monotonic_ns: u64) -> Self {
        self.monotonic_ns = monotonic_ns;
        self
    }

    /// Sets the virtual CPU costs charged by `sign` and `verify` (hosts call this).
    pub fn with_costs(mut self, costs: CpuCosts) -> Self {
        self.costs = costs;
        self
    }

    /// Virtual CPU this handler used so far; the host delays its sends and keeps the node
    /// busy for that long.
    pub fn cpu_used_ns(&self) -> u64 {
        self.cpu_ns
    }

    /// Charges virtual CPU time (hashing, applying a command, ...).
    pub fn charge_cpu(&mut self, duration_ns: u64) {
        self.cpu_ns = self.cpu_ns.saturating_add(duration_ns);
    }

    /// Signs a digest as this node, charging the signing cost.
    pub fn sign(&mut self, digest: &Digest) -> Signature {
        self.charge_cpu(self.costs.sign_ns);
        Signature::mint(Principal::Node(self.id), digest)
    }

    /// Signs a value (over [`Digest::of`] it) as this node.
    pub fn sign_value<T: serde::Serialize>(&mut self, value: T) -> Signed<T> {
        let signature = self.sign(&Digest::of(&value));
        Signed { value, signature }
    }

    /// Checks a signature over a digest, charging the verification cost.
    pub fn verify(&mut self, signature: &Signature, digest: &Digest) -> bool {
        self.charge_cpu(self.costs.verify_ns);
        signature.verify(digest)
    }

    /// Checks a signed value, charging the verification cost.
    pub fn verify_signed<T: serde::Serialize>(&mut self, signed: &Signed<T>) -> bool {
        self.charge_cpu(self.costs.verify_ns);
        signed.verify()
    }

    /// Runs `handler` as another node type `M` with this node's identity, clock, decisions
    /// and timer ids, and returns the effects it asked for instead of applying them. Wrappers
    /// (Byzantine behaviours, Twins) use this to host honest nodes and rewrite what they do.
    /// `storage` replaces this node's storage for the nested node (a twin has its own disk).
    pub fn nest<M: Node + ?Sized>(
        &mut self,
        storage: Option<&mut Storage>,
        handler: impl FnOnce(&mut NodeCtx<'_, M>),
    ) -> Vec<Effect<M>> {
        let mut effects = Vec::new();
        let storage = match storage {
            Some(storage) => storage,
            None => &mut *self.storage,
        };
        let mut nested = NodeCtx {
            id: self.id,
            cluster_size: self.cluster_size,
            local_now_ns: self.local_now_ns,
            monotonic_ns: self.monotonic_ns,
            effects: &mut effects,
            storage,
            decisions: &mut *self.decisions,
            next_timer_id: &mut *self.next_timer_id,
            ignored: &mut *self.ignored,
            costs: self.costs,
            cpu_ns: 0,
        };
        handler(&mut nested);
        let used_ns = nested.cpu_ns;
        self.charge_cpu(used_ns);
        effects
    }

    /// Asks the host for an effect directly (wrappers re-emitting a nested node's effects).
    pub fn emit(&mut self, effect: Effect<N>) {
        self.effects.push(effect);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// Number of replicas in the cluster.
    pub fn cluster_size(&self) -> u32 {
        self.cluster_size
    }
    /// All replica ids, in order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> {
        (0..self.cluster_size).map(NodeId)
    }
    /// This node's own clock, in nanoseconds (offset, drift and jumps applied).
    pub fn now_ns(&self) -> u64 {
        self.local_now_ns
    }
    /// This node's monotonic clock: it drifts like `now_ns` but never jumps, and it is the
    /// clock timers run on. Measure intervals with it.
    pub fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns
    }
    /// Sends a message to one replica (sending to oneself is delivered like any other).
    pub fn send(&mut self, to: NodeId, msg: N::Msg) {
        self.effects.push(Effect::Send { to, msg });
    }
    /// Sends a message to every other replica.
    pub fn broadcast(&mut self, msg: N::Msg) {
        self.effects.push(Effect::Broadcast { msg });
    }
    /// Replies to a client.
    pub fn reply(&mut self, client: ClientId, reply: N::Reply) {
        self.effects.push(Effect::Reply { client, reply });
    }
    /// Starts a timer on this node's clock.
    pub fn set_timer(&mut self, delay_ns: u64, timer: N::Timer) -> TimerId {
        let id = TimerId(*self.next_timer_id);
        *self.next_timer_id += 1;
        self.effects.push(Effect::SetTimer {
            id,
            delay_ns,
            timer,
        });
        id
    }
    /// Cancels a timer.
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.effects.push(Effect::CancelTimer { id });
    }
    /// Uniform random value in `0..bound`, through the decision source.
    pub fn random_below(&mut self, bound: u64) -> u64 {
        self.decisions.below(DecisionKind::NodeRandom, bound)
    }
    /// Writes a value to durable storage (not durable until a sync completes). The bytes are
    /// copied, so a node may write from a buffer it reuses.
    pub fn write(&mut self, key: &str, value: impl AsRef<[u8]>) -> Result<(), StorageError> {
        self.storage.write(key, value, self.decisions)
    }
    /// Deletes a key (not durable until a sync completes).
    pub fn delete(&mut self, key: &str) -> Result<(), StorageError> {
        self.storage.delete(key, self.decisions)
    }
    /// Reads a value: this node's own latest write, or what survived on disk.
    pub fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.storage.read(key, self.decisions)
    }
    /// Reads a value like [`NodeCtx::read`] (the same faults) and lends it to `inspect`
    /// instead of copying it, e.g. to compare a write read back with what was written.
    pub fn read_with<R>(
        &mut self,
        key: &str,
        inspect: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StorageError> {
        self.storage.read_with(key, self.decisions, inspect)
    }
    /// Keys starting with `prefix`, in order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<StorageKey> {
        self.storage.keys_with_prefix(prefix)
    }
    /// Keys from `first` to `last` (both included), in order.
    pub fn keys_in_range(&self, first: &str, last: &str) -> Vec<StorageKey> {
        self.storage.keys_in_range(first, last)
    }
    /// Keys starting with `prefix`, in order, but for the last `keep` of them: what a node
    /// that keeps its newest versions deletes, listed without copying the ones it keeps.
    pub fn keys_with_prefix_but_last(&self, prefix: &str, keep: usize) -> Vec<StorageKey> {
        self.storage.keys_with_prefix_but_last(prefix, keep)
    }
    /// Makes every write so far durable; sends issued after this wait for it to complete.
    pub fn sync(&mut self) {
        let up_to = self.storage.last_sequence();
        self.effects.push(Effect::Sync { up_to });
    }
    /// Reports an observation to the oracles.
    pub fn observe(&mut self, obs: N::Obs) {
        self.effects.push(Effect::Observe(obs));
    }
    /// Records that a message was ignored, with the reason; the host logs and counts it.
    pub fn ignore(&mut self, reason: IgnoreReason) {
        self.ignored.push(reason);
    }
}

/// The context a client handler runs in.
pub struct ClientCtx<'a, C: Client + ?Sized> {
    id: ClientId,
    cluster_size: u32,
    now_ns: u64,
    effects: &'a mut Vec<ClientEffect<C>>,
    decisions: &'a mut dyn DecisionSource,
    next_timer_id: &'a mut u64,
}

impl<'a, C: Client + ?Sized> ClientCtx<'a, C> {
    /// Builds a context; hosts call this.
    pub fn new(
        id: ClientId,
        cluster_size: u32,
        now_ns: u64,
        effects: &'a mut Vec<ClientEffect<C>>,
        decisions: &'a mut dyn DecisionSource,
        next_timer_id: &'a mut u64,
    ) -> Self {
        ClientCtx {
            id,
            cluster_size,
            now_ns,
            effects,
            decisions,
            next_timer_id,
        }
    }
    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }
    /// Number of replicas.
    pub fn cluster_size(&self) -> u32 {
        self.cluster_size
    }
    /// Virtual time (clients use true time; they are the observers).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }
    /// Sends a request to a replica.
    pub fn send(&mut self, to: NodeId, request: <C::Node as Node>::Request) {
        self.effects.push(ClientEffect::Send { to, request });
    }
    /// Starts a timer.
    pub fn set_timer(&mut self, delay_ns: u64, timer: C::Timer) -> TimerId {
        let id = TimerId(*self.next_timer_id);
        *self.next_timer_id += 1;
        self.effects.push(ClientEffect::SetTimer {
            id,
            delay_ns,
            timer,
        });
        id
    }
    /// Cancels a timer.
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.effects.push(ClientEffect::CancelTimer { id });
    }
    /// Uniform random value in `0..bound`, through the decision source.
    pub fn random_below(&mut self, bound: u64) -> u64 {
        self.decisions.below(DecisionKind::ClientRandom, bound)
    }
    /// Reports an observation (a history event) to the oracles.
    pub fn observe(&mut self, obs: <C::Node as Node>::Obs) {
        self.effects.push(ClientEffect::Observe(obs));
    }
    /// Signs a digest as this client (clients are not charged CPU).
    pub fn sign(&mut self, digest: &Digest) -> Signature {
        Signature::mint(Principal::Client(self.id), digest)
    }
    /// Signs a value (over [`Digest::of`] it) as this client.
    pub fn sign_value<T: serde::Serialize>(&mut self, value: T) -> Signed<T> {
        let signature = self.sign(&Digest::of(&value));
        Signed { value, signature }
    }
}
