//! The Multi-Paxos replica: state, the `Node` interface, and the persist-then-send step.
//!
//! Every handler mutates in-memory state, marks what must be written and queues outgoing
//! messages in `outbox`. [`MultiPaxos::finish`] applies chosen slots, writes what is dirty,
//! reads it back, syncs, and only then releases the outbox: no promise or accept leaves
//! before it is durable. If a write fails the outbox is dropped and the write retried.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::options::{parse_bool, parse_ms, parse_number, unknown_option};
use dst_protocols::{Configurable, OptionList};
use dst_protocols::{Observation, Reply, Request, Service, Sessions};
use dst_sim::{ClientId, Node, NodeCtx, NodeId, StateMachine, StorageError, TimerId, MS};
use serde::{Deserialize, Serialize};

use crate::durable::{AcceptRecord, Meta};
use crate::message::{Ballot, Body, PaxosMsg, Report, Slot, Value};

/// Tunables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaxosConfig {
    pub election_timeout_min_ns: u64,
    pub election_timeout_max_ns: u64,
    pub heartbeat_interval_ns: u64,
    /// Reject messages whose checksum does not match their body.
    pub message_checksums: bool,
    /// Bound on slots a leader has proposed and not yet seen chosen (the pipeline window).
    pub max_open_slots: usize,
    /// Bound on chosen values sent to a lagging follower per heartbeat acknowledgement.
    pub max_catchup_per_message: u64,
    /// Delay before retrying a failed load or write.
    pub storage_retry_ns: u64,
    /// Leader leases: followers refuse promises for `election_timeout_min_ns` after hearing
    /// from the leader, and the leader answers read-only commands locally while a lease
    /// from a majority-acknowledged heartbeat round holds. Only as safe as the clock bound.
    pub leader_lease: bool,
    /// Bound on relative clock drift between any two nodes, for leases.
    pub clock_drift_bound_ppm: u64,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        PaxosConfig {
            election_timeout_min_ns: 150 * MS,
            election_timeout_max_ns: 300 * MS,
            heartbeat_interval_ns: 50 * MS,
            message_checksums: true,
            max_open_slots: 256,
            max_catchup_per_message: 64,
            storage_retry_ns: 10 * MS,
            leader_lease: false,
            clock_drift_bound_ppm: 10_000,
        }
    }
}

impl Configurable for PaxosConfig {
    fn options(&self) -> OptionList {
        vec![
            (
                "election_timeout_min_ms",
                (self.election_timeout_min_ns / MS).to_string(),
            ),
            (
                "election_timeout_max_ms",
                (self.election_timeout_max_ns / MS).to_string(),
            ),
            (
                "heartbeat_interval_ms",
                (self.heartbeat_interval_ns / MS).to_string(),
            ),
            ("message_checksums", self.message_checksums.to_string()),
            ("window", self.max_open_slots.to_string()),
            ("catchup_max", self.max_catchup_per_message.to_string()),
            ("leader_lease", self.leader_lease.to_string()),
            (
                "clock_drift_bound_ppm",
                self.clock_drift_bound_ppm.to_string(),
            ),
        ]
    }

    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "election_timeout_min_ms" => self.election_timeout_min_ns = parse_ms(name, value)?,
            "election_timeout_max_ms" => self.election_timeout_max_ns = parse_ms(name, value)?,
            "heartbeat_interval_ms" => self.heartbeat_interval_ns = parse_ms(name, value)?,
            "message_checksums" => self.message_checksums = parse_bool(name, value)?,
            "window" => self.max_open_slots = parse_number(name, value)?,
            "catchup_max" => self.max_catchup_per_message = parse_number(name, value)?,
            "leader_lease" => self.leader_lease = parse_bool(name, value)?,
            "clock_drift_bound_ppm" => self.clock_drift_bound_ppm = parse_number(name, value)?,
            _ => return Err(unknown_option("multipaxos", name, &self.options())),
        }
        if self.election_timeout_min_ns == 0
            || self.election_timeout_max_ns <= self.election_timeout_min_ns
            || self.heartbeat_interval_ns == 0
            || self.max_open_slots == 0
            || self.max_catchup_per_message == 0
        {
            return Err(format!("option {name}={value} makes the configuration invalid (timeouts must be positive with min < max, windows at least 1)"));
        }
        Ok(())
    }
}

/// A replica's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    /// Running phase 1 with its own ballot.
    Candidate,
    /// Phase 1 succeeded: proposes in phase 2 with its ballot.
    Leader,
}

/// Timer payloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PaxosTimer {
    Election,
    /// Leader heartbeats and retransmissions; candidate prepare retransmissions.
    Tick,
    /// Retry a failed load or write.
    StorageRetry,
}

/// Whether the node can take part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Storage could not be read yet (I/O error); retrying.
    Loading,
    Running,
    /// The promise record is unreadable: any promise or accept could break an earlier
    /// promise, so the node refuses to take part.
    Halted(String),
}

/// What a promise carries: reports and damaged slots.
pub(crate) type PromiseContent<C> = (Vec<Report<C>>, Vec<Slot>);

/// A slot the leader proposed in and has not yet seen chosen.
#[derive(Clone, Debug)]
pub(crate) struct Proposal<C> {
    pub(crate) value: Value<C>,
    pub(crate) accepted_by: BTreeSet<NodeId>,
}

/// How a service's reads are recognised and answered (for leases).
pub(crate) struct ReadFns<S: StateMachine> {
    pub(crate) is_read: fn(&S::Command) -> bool,
    pub(crate) query: fn(&S, &S::Command) -> Option<S::Output>,
}

impl<S: StateMachine> Clone for ReadFns<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: StateMachine> Copy for ReadFns<S> {}

/// Heartbeat rounds a leader remembers the send time of.
pub(crate) const ROUNDS_TRACKED_MAX: usize = 64;

/// How many pipeline windows (`max_open_slots`) beyond what it knows a replica takes a slot
/// named by one message: an accept or chosen value above its chosen prefix, a promise's
/// report above the slots it reports. With message checksums off a corrupted slot number
/// decodes as a well-formed message; unbounded, one such number made the next leader fill
/// every slot up to it with no-ops and retransmit them all every tick (swarm seed 66: slot
/// 8427 with the prefix at 106 ran for minutes; a slot near `u64::MAX` would never return).
/// An honest leader proposes at most one window beyond the prefix it knows, plus the gaps an
/// election fills; a follower lagging further ignores the slot, as if the message were lost,
/// and catches up through heartbeat acknowledgements first.
pub(crate) const WINDOWS_AHEAD_MAX: u64 = 4;

/// Leader-only lease bookkeeping.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseState {
    pub(crate) round: u64,
    /// Send time of recent rounds (bounded by `ROUNDS_TRACKED_MAX`).
    pub(crate) round_sent_ns: BTreeMap<u64, u64>,
    pub(crate) acked_round: BTreeMap<NodeId, u64>,
    pub(crate) lease_until_ns: u64,
    /// `next_slot` when leadership began: every value chosen before lies below it.
    pub(crate) leading_from: Slot,
}

/// What must be written before the outbox may leave.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) meta: bool,
    pub(crate) slots: BTreeSet<Slot>,
    /// A write went astray: rewrite everything.
    pub(crate) all: bool,
}

#[derive(Debug)]
pub(crate) enum Out<C, O> {
    Send(NodeId, Body<C>),
    Reply(ClientId, Reply<O>),
}

/// A Multi-Paxos replica replicating service `S`.
pub struct MultiPaxos<S: StateMachine> {
    pub(crate) config: PaxosConfig,
    pub(crate) reads: Option<ReadFns<S>>,
    pub(crate) initial: Sessions<S>,
    pub(crate) id: NodeId,
    pub(crate) cluster_size: u32,
    pub(crate) status: Status,

    // Acceptor state, mirrored on disk.
    pub(crate) meta: Meta,
    pub(crate) accepted: BTreeMap<Slot, AcceptRecord<S::Command>>,
    /// Slots whose record on disk is damaged: this acceptor may have accepted something
    /// there that it can no longer report. Re-derived at every boot (the damage stays on
    /// disk until the slot is rewritten).
    pub(crate) damaged: BTreeSet<Slot>,

    // Learner state.
    pub(crate) chosen: BTreeMap<Slot, Value<S::Command>>,
    /// First slot not known chosen; every slot below it is in `chosen`.
    pub(crate) chosen_below: Slot,
    /// Next slot to apply.
    pub(crate) applied_below: Slot,
    pub(crate) state: Sessions<S>,

    // Proposer state.
    pub(crate) role: Role,
    pub(crate) ballot: Ballot,
    pub(crate) leader_hint: Option<NodeId>,
    pub(crate) max_round_seen: u64,
    pub(crate) prepare_from: Slot,
    /// Promises for `ballot`: each promiser's reports and damaged slots.
    pub(crate) promises: BTreeMap<NodeId, PromiseContent<S::Command>>,
    pub(crate) proposals: BTreeMap<Slot, Proposal<S::Command>>,
    pub(crate) next_slot: Slot,
    /// Requests this node proposed and answers when applied (bounded by `max_open_slots`).
    pub(crate) pending: BTreeSet<(ClientId, u64)>,
    pub(crate) lease: LeaseState,
    /// When this node last heard from a leader (own clock), for leases.
    pub(crate) last_leader_contact_ns: Option<u64>,

    pub(crate) election_timer: Option<TimerId>,
    pub(crate) tick_timer: Option<TimerId>,
    pub(crate) retry_timer: Option<TimerId>,
    pub(crate) dirty: Dirty,
    pub(crate) outbox: Vec<Out<S::Command, S::Output>>,
}

pub(crate) type Ctx<'a, S> = NodeCtx<'a, MultiPaxos<S>>;

mod handlers;
mod persist;

impl<S: StateMachine> MultiPaxos<S> {
    /// A replica whose service starts as `initial`. Every command (reads too) goes through
    /// the log.
    pub fn new(config: PaxosConfig, initial: S) -> Self {
        assert!(
            config.election_timeout_min_ns < config.election_timeout_max_ns,
            "election timeout range is empty"
        );
        assert!(
            config.heartbeat_interval_ns < config.election_timeout_min_ns,
            "heartbeats must come more often than election timeouts"
        );
        assert!(config.max_open_slots > 0, "max_open_slots must be positive");
        MultiPaxos {
            config,
            reads: None,
            state: Sessions::new(initial.clone()),
            initial: Sessions::new(initial),
            id: NodeId(0),
            cluster_size: 1,
            status: Status::Loading,
            meta: Meta::default(),
            accepted: BTreeMap::new(),
            damaged: BTreeSet::new(),
            chosen: BTreeMap::new(),
            chosen_below: Slot::FIRST,
            applied_below: Slot::FIRST,
            role: Role::Follower,
            ballot: Ballot::ZERO,
            leader_hint: None,
            max_round_seen: 0,
            prepare_from: Slot::FIRST,
            promises: BTreeMap::new(),
            proposals: BTreeMap::new(),
            next_slot: Slot::FIRST,
            pending: BTreeSet::new(),
            lease: LeaseState::default(),
            last_leader_contact_ns: None,
            election_timer: None,
            tick_timer: None,
            retry_timer: None,
            dirty: Dirty::default(),
            outbox: Vec::new(),
        }
    }

    /// A replica of a [`Service`]: with `leader_lease` on, its read-only commands are
    /// answered by the leader under a lease; otherwise everything goes through the log.
    pub fn for_service(config: PaxosConfig, initial: S) -> Self
    where
        S: Service,
    {
        let mut node = MultiPaxos::new(config, initial);
        node.reads = Some(ReadFns {
            is_read: S::is_read_only,
            query: S::query,
        });
        node
    }

    // ---- accessors (tests, invariant checks) ----

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn status(&self) -> &Status {
        &self.status
    }
    /// The highest ballot this acceptor promised.
    pub fn promised(&self) -> Ballot {
        self.meta.promised
    }
    /// The ballot this node proposes with (meaningful as candidate or leader).
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader_hint
    }
    /// First slot not known chosen.
    pub fn chosen_below(&self) -> Slot {
        self.chosen_below
    }
    /// Next slot to apply.
    pub fn applied_below(&self) -> Slot {
        self.applied_below
    }
    /// Values this node knows chosen.
    pub fn chosen(&self) -> &BTreeMap<Slot, Value<S::Command>> {
        &self.chosen
    }
    /// This acceptor's accepted values.
    pub fn accepted(&self) -> &BTreeMap<Slot, AcceptRecord<S::Command>> {
        &self.accepted
    }
    /// True while some slot's accept record was found damaged and not yet rewritten.
    pub fn is_recovering(&self) -> bool {
        !self.damaged.is_empty()
    }
    /// Slots whose accept record was found damaged and not yet rewritten.
    pub fn damaged(&self) -> &BTreeSet<Slot> {
        &self.damaged
    }
    /// The replicated service.
    pub fn state(&self) -> &S {
        self.state.service()
    }
    pub fn config(&self) -> &PaxosConfig {
        &self.config
    }

    /// The furthest slot one message may name: `WINDOWS_AHEAD_MAX` windows beyond `base`.
    pub(crate) fn slot_bound(&self, base: Slot) -> Slot {
        let ahead = (self.config.max_open_slots as u64).saturating_mul(WINDOWS_AHEAD_MAX);
        Slot(base.0.saturating_add(ahead))
    }

    pub(crate) fn majority(&self) -> usize {
        self.cluster_size as usize / 2 + 1
    }
    /// Every replica, this one included: a proposer is also an acceptor and sends itself
    /// the same messages, so its own promises and accepts are durable before they count.
    pub(crate) fn all_nodes(&self) -> impl Iterator<Item = NodeId> + use<S> {
        (0..self.cluster_size).map(NodeId)
    }

    /// Every node but this one; borrows nothing, so a handler can queue while iterating.
    pub(crate) fn other_nodes(&self) -> impl Iterator<Item = NodeId> + use<S> {
        let me = self.id;
        self.all_nodes().filter(move |node| *node != me)
    }
}

impl<S: StateMachine> Node for MultiPaxos<S> {
    type Msg = PaxosMsg<S::Command>;
    type Timer = PaxosTimer;
    type Request = Request<S::Command>;
    type Reply = Reply<S::Output>;
    type Obs = Observation<S::Command, S::Output>;

    fn on_start(&mut self, ctx: &mut Ctx<'_, S>) {
        self.boot(ctx);
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, S>) {
        self.boot(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, msg: Self::Msg) {
        if !self.running(ctx) {
            return;
        }
        if !msg.verify(self.config.message_checksums) {
            ctx.ignore("message checksum mismatch");
            return;
        }
        if from.0 >= self.cluster_size {
            ctx.ignore("message from a node outside the cluster");
            return;
        }
        self.dispatch(ctx, from, msg.body);
        self.finish(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, S>, timer: PaxosTimer) {
        match timer {
            PaxosTimer::StorageRetry => {
                self.retry_timer = None;
                if self.status == Status::Loading {
                    self.boot(ctx);
                    return;
                }
            }
            PaxosTimer::Election => {
                self.election_timer = None;
                if !self.running(ctx) {
                    return;
                }
                self.on_election_timeout(ctx);
            }
            PaxosTimer::Tick => {
                self.tick_timer = None;
                if !self.running(ctx) {
                    return;
                }
                self.on_tick(ctx);
            }
        }
        if self.status == Status::Running {
            self.finish(ctx);
        }
    }

    fn on_request(&mut self, ctx: &mut Ctx<'_, S>, client: ClientId, request: Self::Request) {
        if !self.running(ctx) {
            return;
        }
        if request.client != client {
            ctx.ignore("request names another client");
            return;
        }
        self.on_client_request(ctx, request);
        self.finish(ctx);
    }

    /// Accepted and chosen values (encoded; never compacted) and the live service state.
    fn footprint_bytes(&self) -> u64 {
        let accepted = postcard::to_allocvec(&self.accepted).map_or(0, |bytes| bytes.len());
        let chosen = postcard::to_allocvec(&self.chosen).map_or(0, |bytes| bytes.len());
        (accepted + chosen + self.state.snapshot().len()) as u64
    }

    fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check_local(self)
    }
}

impl<S: StateMachine> MultiPaxos<S> {
    pub(crate) fn running(&self, ctx: &mut Ctx<'_, S>) -> bool {
        match self.status {
            Status::Running => true,
            Status::Loading => {
                ctx.ignore("still loading storage");
                false
            }
            Status::Halted(_) => {
                ctx.ignore("halted: promise record unreadable");
                false
            }
        }
    }

    /// Back to a freshly built instance (identity kept).
    pub(crate) fn reset(&mut self) {
        let (id, cluster_size) = (self.id, self.cluster_size);
        let mut fresh = MultiPaxos::new(self.config.clone(), self.initial.service().clone());
        fresh.reads = self.reads;
        fresh.initial = self.initial.clone();
        fresh.state = self.initial.clone();
        fresh.id = id;
        fresh.cluster_size = cluster_size;
        *self = fresh;
    }

    pub(crate) fn boot(&mut self, ctx: &mut Ctx<'_, S>) {
        self.id = ctx.id();
        self.cluster_size = ctx.cluster_size();
        assert!(self.id.0 < self.cluster_size, "node id outside the cluster");
        if let Err(StorageError::Io | StorageError::Full) = self.load(ctx) {
            // Transient read errors: forget the partial load and try again.
            self.reset();
            self.status = Status::Loading;
            self.retry_timer =
                Some(ctx.set_timer(self.config.storage_retry_ns, PaxosTimer::StorageRetry));
            return;
        }
        if let Status::Halted(reason) = &self.status {
            tracing::warn!(node = %self.id, %reason, "paxos node halted");
            return;
        }
        if self.config.leader_lease {
            // We may have acknowledged a leader just before crashing: honour its lease.
            self.last_leader_contact_ns = Some(ctx.now_ns());
        }
        self.reset_election_timer(ctx);
        self.finish(ctx);
    }
}
