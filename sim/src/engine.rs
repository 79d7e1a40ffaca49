//! The engine: one event queue ordered by (virtual time, insertion sequence), nodes and
//! clients stepped one event at a time, effects applied in program order, faults injected by
//! the profile's random process and the scripted plan, and a hash chain over every event.
//!
//! ```ignore
//! let profile = FaultProfile::named("light", &mut SeededSource::new(seed))?;
//! let mut config = SimConfig::new(5, 3, profile);          // 5 nodes, 3 clients
//! config.plan = parse_plan("at 120ms partition 0,1 | 2,3,4; at 400ms heal")?;
//! let mut sim = Sim::new(config, Box::new(|id| MyNode::new(id)), clients,
//!                        Box::new(SeededSource::new(seed)), /* record trace */ false);
//! let summary = sim.run();                 // RunSummary: events, trace_hash, stats, ...
//! let observations = sim.take_observations(); // Vec<(time_ns, N::Obs)> for the oracles
//! ```
//!
//! A run ends when every client is done, at `end_ns`, or after `events_max` events. At
//! `quiet_at_ns` the quiet phase starts: the random fault process stops, the network heals,
//! link and storage faults turn off, and crashed or paused nodes come back, so liveness can
//! be judged. Swarm knobs and initial clocks are drawn from the decision source before
//! anything else, so a trace replays them too.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::auth::CpuCosts;
use crate::clock::NodeClock;
use crate::decision::{Decide, DecisionKind, DecisionSource, Divergence, Hint};
use crate::faults::{FaultAction, FaultProfile, ScriptedFault};
use crate::hash::stable_hash;
use crate::net::{corrupt_bytes, Network, PPM};
use crate::node::{
    Client, ClientCtx, ClientEffect, ClientId, Effect, Node, NodeCtx, NodeId, Payload, TimerId,
};
use crate::queue::CalendarQueue;
use crate::storage::{Storage, StorageFaults, StorageStats};
use crate::time::{fmt_ms, MS, SEC};
use crate::trace::{Decider, Decision};

/// How to order events scheduled for the same instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TieBreak {
    /// Insertion order (fast; the default).
    #[default]
    Fifo,
    /// Ask the decision source (for PCT and exhaustive exploration).
    Decide,
}

/// Everything that shapes a run besides the decisions.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: u32,
    pub clients: u32,
    pub profile: FaultProfile,
    pub plan: Vec<ScriptedFault>,
    /// Faults stop and everything heals at this time.
    pub quiet_at_ns: u64,
    /// Hard stop of virtual time.
    pub end_ns: u64,
    /// Hard stop on the number of events.
    pub events_max: u64,
    /// Stop as soon as every client is done.
    pub stop_when_clients_done: bool,
    pub fsync_min_ns: u64,
    pub fsync_max_ns: u64,
    pub tie_break: TieBreak,
    /// Encode and decode every message on every hop, even without corruption.
    pub encode_every_hop: bool,
    /// Bound on the events queued for a paused node; more are dropped and counted.
    pub paused_inbox_max: usize,
    /// The random fault process keeps at most this many nodes crashed or paused at once.
    pub down_max: u32,
    /// The random fault process wipes at most this many disks in a run (default 1). More is
    /// survivable only if each wiped machine is re-admitted before the next wipe and the
    /// current configuration still has a majority with its data, which the simulator
    /// cannot know (membership churn can shrink a configuration to three voters).
    pub wipes_max: u32,
    /// Latent storage damage (bit flips found on read, misdirected writes) reaches at most
    /// this many nodes' disks in a run: once that many are damaged, the others are spared
    /// it (their other storage faults stay). Default: a minority, `(nodes - 1) / 2`. A
    /// majority of damaged disks can lose entries only they held, which no protocol
    /// survives; BFT runs count damaged disks against `f`.
    pub damaged_disks_max: u32,
    /// Keep a record per event (for the determinism self-check).
    pub record_events: bool,
    /// Print one line per event to stderr.
    pub log_events: bool,
    /// Client sessions carry an end-to-end checksum (as a TLS-like client library would): a
    /// corrupted request or reply is detected and dropped, never delivered as another
    /// well-formed message. Replica-to-replica links are the protocol's responsibility.
    pub client_checksums: bool,
    /// Virtual CPU charged per signature and verification (see [`crate::auth`]).
    pub cpu: CpuCosts,
    /// Count the encoded size of every message sent (costs an encoding per send when
    /// messages are not encoded anyway).
    pub measure_bytes: bool,
    /// A handler's panic ends the run as `EndReason::Panicked` (see [`RunSummary::panic`])
    /// instead of unwinding out of [`Sim::run`]. Off by default, so a test that drives the
    /// simulator itself still fails on a panic; the runner behind `dst` turns it on.
    pub catch_panics: bool,
}

impl SimConfig {
    /// A configuration with the given profile and sensible defaults.
    pub fn new(nodes: u32, clients: u32, profile: FaultProfile) -> Self {
        SimConfig {
            nodes,
            clients,
            profile,
            plan: Vec::new(),
            quiet_at_ns: 10 * SEC,
            end_ns: 30 * SEC,
            events_max: 50_000_000,
            stop_when_clients_done: true,
            fsync_min_ns: 100_000,
            fsync_max_ns: 2 * MS,
            tie_break: TieBreak::Fifo,
            encode_every_hop: false,
            paused_inbox_max: 10_000,
            down_max: nodes.saturating_sub(1) / 2,
            wipes_max: 1,
            damaged_disks_max: nodes.saturating_sub(1) / 2,
            record_events: false,
            log_events: false,
            measure_bytes: false,
            client_checksums: true,
            cpu: CpuCosts::default(),
            catch_panics: false,
        }
    }
}

/// What the run did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub events: u64,
    pub messages_sent: u64,
    /// Encoded bytes of the messages sent (replica to replica), when measured or encoded.
    pub bytes_sent: u64,
    pub messages_delivered: u64,
    pub requests_delivered: u64,
    pub replies_delivered: u64,
    pub dropped_partition: u64,
    pub dropped_loss: u64,
    pub dropped_down: u64,
    pub dropped_inbox_full: u64,
    /// Sends addressed to a node that does not exist.
    pub dropped_unknown_destination: u64,
    /// Events that waited because their node was busy with virtual CPU work.
    pub deferred_busy: u64,
    /// Largest protocol state a replica reported (`Node::footprint_bytes`), when measured.
    pub replica_memory_bytes_max: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub corrupt_rejected: u64,
    pub corrupt_delivered: u64,
    pub timers_fired: u64,
    pub syncs: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub faults: u64,
    pub decisions: u64,
    /// Messages nodes ignored, by reason.
    pub ignored: BTreeMap<String, u64>,
    pub storage: StorageStats,
}

/// One event as the determinism self-check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub index: u64,
    pub time_ns: u64,
    pub target: String,
    pub kind: &'static str,
    /// Hash chain value after this event.
    pub chain: u64,
    /// Short description of the event and what its handler produced.
    pub detail: String,
}

/// Why the run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    ClientsDone,
    TimeLimit,
    EventLimit,
    QueueEmpty,
    /// A node's or client's handler panicked (see [`RunSummary::panic`]).
    Panicked,
}

/// The outcome of a run, apart from the observations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub events: u64,
    pub virtual_ns: u64,
    pub trace_hash: u64,
    pub end_reason: EndReason,
    pub quiet_at_ns: u64,
    pub stats: SimStats,
    /// Protocol invariant failures reported by `Node::check_invariants`.
    pub invariant_failures: Vec<String>,
    /// Per client: requests still pending at the end.
    pub clients_pending: Vec<usize>,
    /// Faults applied, with their time (formatted only when someone prints them).
    pub fault_log: Vec<(u64, FaultAction)>,
    /// Where a replayed trace stopped matching.
    #[serde(skip)]
    pub divergence: Option<Divergence>,
    /// What a handler's panic said, when one ended the run (`EndReason::Panicked`): the
    /// event's index and time, the message, and where it was raised if the panic hook is
    /// installed (`dst_sim::panic::install_hook`).
    #[serde(default)]
    pub panic: Option<String>,
}

/// What one hop through bytes delivered (see `Sim::encode_hop`).
enum Hop<P> {
    /// The message as sent: it was not encoded.
    Intact,
    /// What its bytes decoded to, and their size.
    Decoded { decoded: P, size_bytes: usize },
    /// Nothing: the bytes were corrupted and rejected.
    Lost,
}

enum Outgoing<N: Node> {
    Send { to: NodeId, msg: N::Msg },
    Broadcast { msg: N::Msg },
    Reply { client: ClientId, reply: N::Reply },
}

enum Event<N: Node, C: Client> {
    Message {
        from: NodeId,
        to: NodeId,
        msg: N::Msg,
    },
    Request {
        from: ClientId,
        to: NodeId,
        request: N::Request,
    },
    Reply {
        from: NodeId,
        to: ClientId,
        reply: N::Reply,
    },
    NodeTimer {
        node: NodeId,
        incarnation: u32,
        id: TimerId,
        timer: N::Timer,
    },
    ClientTimer {
        client: ClientId,
        id: TimerId,
        timer: C::Timer,
    },
    SyncDone {
        node: NodeId,
        incarnation: u32,
        up_to: u64,
        held: Vec<Outgoing<N>>,
    },
    Fault(FaultAction),
    FaultTick,
}

impl<N: Node, C: Client> Event<N, C> {
    fn kind(&self) -> &'static str {
        match self {
            Event::Message { .. } => "message",
            Event::Request { .. } => "request",
            Event::Reply { .. } => "reply",
            Event::NodeTimer { .. } => "timer",
            Event::ClientTimer { .. } => "client-timer",
            Event::SyncDone { .. } => "sync-done",
            Event::Fault(_) => "fault",
            Event::FaultTick => "fault-tick",
        }
    }

    fn target(&self) -> String {
        match self {
            Event::Message { to, .. } | Event::Request { to, .. } => to.to_string(),
            Event::Reply { to, .. } => to.to_string(),
            Event::NodeTimer { node, .. } | Event::SyncDone { node, .. } => node.to_string(),
            Event::ClientTimer { client, .. } => client.to_string(),
            Event::Fault(_) | Event::FaultTick => "sim".to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Event::Message { from, msg, .. } => format!("from {from}: {msg:?}"),
            Event::Request { from, request, .. } => format!("from {from}: {request:?}"),
            Event::Reply { from, reply, .. } => format!("from {from}: {reply:?}"),
            Event::NodeTimer { timer, .. } => format!("{timer:?}"),
            Event::ClientTimer { timer, .. } => format!("{timer:?}"),
            Event::SyncDone { up_to, held, .. } => {
                format!("up to write {up_to}, releasing {}", held.len())
            }
            Event::Fault(action) => action.to_string(),
            Event::FaultTick => String::new(),
        }
    }

    /// Hash of the parts of the event that identify it (payloads are hashed when sent).
    #[inline]
    fn identity(&self) -> u64 {
        let link = |tag: u64, from: u32, to: u32| (tag << 56) | ((from as u64) << 28) | to as u64;
        match self {
            Event::Message { from, to, .. } => link(1, from.0, to.0),
            Event::Request { from, to, .. } => link(2, from.0, to.0),
            Event::Reply { from, to, .. } => link(3, from.0, to.0),
            Event::NodeTimer {
                node, id, timer, ..
            } => stable_hash(&(4u8, node.0, id.0, timer)),
            Event::ClientTimer { client, id, timer } => stable_hash(&(5u8, client.0, id.0, timer)),
            Event::SyncDone { node, up_to, .. } => stable_hash(&(6u8, node.0, *up_to)),
            Event::Fault(action) => stable_hash(&(7u8, action.to_string())),
            Event::FaultTick => 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Up,
    Paused,
    Crashed,
}

struct NodeSlot<N: Node, C: Client> {
    node: Option<N>,
    status: Status,
    incarnation: u32,
    storage: Storage,
    clock: NodeClock,
    next_timer_id: u64,
    live_timers: LiveTimers,
    // invariant: empty unless status == Paused; bounded by paused_inbox_max.
    paused_inbox: VecDeque<Event<N, C>>,
    /// Time the latest pending sync of this incarnation completes (syncs complete in order).
    sync_done_ns: u64,
    /// The node is computing (signing, verifying) until this time; its events wait.
    busy_until_ns: u64,
}

struct ClientSlot<C: Client> {
    client: C,
    next_timer_id: u64,
    live_timers: LiveTimers,
}

/// The timers of one node or client that are set and have neither fired nor been cancelled,
/// each with the queue key of its event (so that a cancel can take the event off the queue).
/// A handful at a time, set in increasing id order: a sorted vector beats a tree here (a
/// timer is set, cancelled or fired on most steps).
#[derive(Default)]
struct LiveTimers {
    // invariant: strictly increasing ids. Bounded by the timer events still queued: each id
    // leaves when its timer fires, is cancelled, or the incarnation ends.
    ids: Vec<(TimerId, u128)>,
}

impl LiveTimers {
    fn insert(&mut self, id: TimerId, key: u128) {
        match self.ids.last() {
            Some(&(last, _)) if last >= id => match self.find(&id) {
                Ok(at) => self.ids[at].1 = key,
                Err(at) => self.ids.insert(at, (id, key)),
            },
            _ => self.ids.push((id, key)),
        }
    }

    fn find(&self, id: &TimerId) -> Result<usize, usize> {
        self.ids.binary_search_by_key(id, |&(live, _)| live)
    }

    fn contains(&self, id: &TimerId) -> bool {
        self.find(id).is_ok()
    }

    /// Removes `id`; returns its event's queue key if it was live.
    fn remove(&mut self, id: &TimerId) -> Option<u128> {
        let at = self.find(id).ok()?;
        Some(self.ids.remove(at).1)
    }

    fn clear(&mut self) {
        self.ids.clear();
    }
}

/// A node factory: builds a fresh instance (at start and after every crash).
pub type NodeFactory<N> = Box<dyn FnMut(NodeId) -> N>;

/// The simulator.
pub struct Sim<N: Node, C: Client<Node = N>> {
    config: SimConfig,
    now_ns: u64,
    sequence: u64,
    // invariant: each key is `pack_key(time, sequence, slot)`; ordering keys orders events by
    // (time, sequence), and sequences are unique.
    queue: CalendarQueue,
    /// With `TieBreak::Decide`: keys of events at the current instant passed over by the
    /// last choice, in key order; they precede every queued event of the same instant.
    held_ties: Vec<u128>,
    slab: Vec<Option<Event<N, C>>>,
    free_slots: Vec<u32>,
    nodes: Vec<NodeSlot<N, C>>,
    /// `damaged_disks_max` disks are damaged and the others spared (see `bound_damage`).
    damage_bounded: bool,
    clients: Vec<ClientSlot<C>>,
    make_node: NodeFactory<N>,
    network: Network,
    decider: Decider,
    effects: Vec<Effect<N>>,
    client_effects: Vec<ClientEffect<C>>,
    ignored: Vec<&'static str>,
    observations: Vec<(u64, N::Obs)>,
    stats: SimStats,
    chain: u64,
    step_hash: u64,
    step_detail: String,
    /// The event being handled, described (only when events are described).
    stepping: Option<(&'static str, String, String)>,
    records: Vec<EventRecord>,
    invariant_failures: Vec<String>,
    fault_log: Vec<(u64, FaultAction)>,
    quiet: bool,
    encode: bool,
    /// CPU time of the handler whose effects are being applied: its sends leave that late.
    send_delay_ns: u64,
    /// Reused buffer for messages encoded on the wire.
    wire: Vec<u8>,
    /// Disks the random fault process wiped so far.
    wipes: u32,
    // invariant: every vector is empty; at most HELD_POOL_MAX of them.
    /// Emptied lists of sends that waited for a sync, kept for the next sync to fill: a
    /// leader syncs on nearly every handler, and growing a fresh list each time showed up
    /// in profiles.
    held_pool: Vec<Vec<Outgoing<N>>>,
}

/// Bound on [`Sim::held_pool`]: more syncs than this are rarely in flight at once.
const HELD_POOL_MAX: usize = 64;

impl<N: Node, C: Client<Node = N>> Sim<N, C> {
    /// Builds a simulator. `source` takes every decision; `record` keeps them for a trace.
    pub fn new(
        config: SimConfig,
        make_node: NodeFactory<N>,
        clients: Vec<C>,
        source: impl Into<Decider>,
        record: bool,
    ) -> Self {
        let mut decider = source.into();
        decider.set_recording(record);
        assert!(config.nodes > 0, "a cluster needs at least one node");
        assert_eq!(
            clients.len(),
            config.clients as usize,
            "config.clients must match the clients given"
        );
        let endpoints = (config.nodes + config.clients) as usize;
        let encode = config.encode_every_hop || config.profile.link.needs_bytes();
        let network = Network::new(endpoints, config.profile.link);
        let nodes = (0..config.nodes)
            .map(|_| NodeSlot {
                node: None,
                status: Status::Crashed,
                incarnation: 0,
                storage: Storage::new(config.profile.storage),
                clock: NodeClock::default(),
                next_timer_id: 0,
                live_timers: LiveTimers::default(),
                paused_inbox: VecDeque::new(),
                sync_done_ns: 0,
                busy_until_ns: 0,
            })
            .collect();
        let clients = clients
            .into_iter()
            .map(|client| ClientSlot {
                client,
                next_timer_id: 0,
                live_timers: LiveTimers::default(),
            })
            .collect();
        Sim {
            config,
            now_ns: 0,
            sequence: 0,
            queue: CalendarQueue::new(),
            held_ties: Vec::new(),
            slab: Vec::new(),
            free_slots: Vec::new(),
            nodes,
            damage_bounded: false,
            clients,
            make_node,
            network,
            decider,
            effects: Vec::new(),
            client_effects: Vec::new(),
            ignored: Vec::new(),
            observations: Vec::new(),
            stats: SimStats::default(),
            chain: 0,
            step_hash: 0,
            step_detail: String::new(),
            stepping: None,
            records: Vec::new(),
            invariant_failures: Vec::new(),
            fault_log: Vec::new(),
            quiet: false,
            encode,
            send_delay_ns: 0,
            wire: Vec::new(),
            wipes: 0,
            held_pool: Vec::new(),
        }
    }

    /// Keeps a per-event record for the determinism self-check (see [`check_determinism`]).
    pub fn record_events(&mut self, on: bool) {
        self.config.record_events = on;
    }

    /// Observations reported so far, with the true time they were reported at.
    pub fn observations(&self) -> &[(u64, N::Obs)] {
        &self.observations
    }

    /// Makes room for `additional` more observations, so that a caller who knows about how
    /// many a run reports (from the seed before) spares the log its regrowth and copies.
    pub fn reserve_observations(&mut self, additional: usize) {
        self.observations.reserve(additional);
    }

    /// Takes the observations out of the simulator.
    pub fn take_observations(&mut self) -> Vec<(u64, N::Obs)> {
        std::mem::take(&mut self.observations)
    }

    /// The recorded decisions (empty unless recording was asked for).
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        self.decider.take_recording()
    }

    /// Per-event records (empty unless `config.record_events`).
    pub fn take_records(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.records)
    }

    /// A node's instance, if it is up or paused (for cross-node invariant checks in tests).
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.nodes[id.0 as usize].node.as_ref()
    }

    /// A client.
    pub fn client(&self, id: ClientId) -> &C {
        &self.clients[id.0 as usize].client
    }

    /// A node's storage.
    pub fn storage(&self, id: NodeId) -> &Storage {
        &self.nodes[id.0 as usize].storage
    }

    /// A node's clock reading now.
    pub fn node_clock_ns(&self, id: NodeId) -> u64 {
        self.nodes[id.0 as usize].clock.local_ns(self.now_ns)
    }

    /// Current true virtual time.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Whether events and effects are described in words (self-check records or the log).
    #[inline]
    fn describing(&self) -> bool {
        self.config.record_events || self.config.log_events
    }

    /// Runs to the end and summarises.
    pub fn run(&mut self) -> RunSummary {
        let catch_panics = self.config.catch_panics;
        let mut run = || {
            self.start();
            self.run_loop()
        };
        let ran = if catch_panics {
            crate::panic::capture(run)
        } else {
            Ok(run())
        };
        match ran {
            Ok(end_reason) => self.summary(end_reason, None),
            Err(message) => {
                let panic = self.describe_panic(message);
                self.summary(EndReason::Panicked, Some(panic))
            }
        }
    }

    /// Names the event whose handler panicked: its index and time, and what it was if the
    /// run describes its events.
    fn describe_panic(&mut self, message: String) -> String {
        let mut described = match self.stats.events {
            0 => format!("at start: {message}"),
            events => format!("event {} at {}: {message}", events - 1, fmt_ms(self.now_ns)),
        };
        if let Some((kind, target, detail)) = self.stepping.take() {
            described.push_str(&format!("; handling {kind} {target} {detail}"));
        }
        described
    }

    fn summary(&mut self, end_reason: EndReason, panic: Option<String>) -> RunSummary {
        let mut stats = self.stats.clone();
        stats.decisions = self.decider.count();
        for slot in &self.nodes {
            let s = &slot.storage.stats;
            let total = &mut stats.storage;
            total.writes += s.writes;
            total.syncs += s.syncs;
            total.lost_on_crash += s.lost_on_crash;
            total.torn_on_crash += s.torn_on_crash;
            total.kept_on_crash += s.kept_on_crash;
            total.corrupted_reads += s.corrupted_reads;
            total.misdirected_writes += s.misdirected_writes;
            total.io_errors += s.io_errors;
            total.full_errors += s.full_errors;
        }
        RunSummary {
            events: self.stats.events,
            virtual_ns: self.now_ns,
            trace_hash: self.chain,
            end_reason,
            quiet_at_ns: self.config.quiet_at_ns,
            stats,
            invariant_failures: self.invariant_failures.clone(),
            clients_pending: self.clients.iter().map(|c| c.client.pending()).collect(),
            fault_log: self.fault_log.clone(),
            divergence: self.decider.divergence(),
            panic,
        }
    }

    fn start(&mut self) {
        self.bound_damage();
        self.draw_clocks();
        for index in 0..self.config.nodes {
            self.boot(NodeId(index), false);
        }
        for index in 0..self.config.clients {
            self.step_client(ClientId(index), |client, ctx| client.on_start(ctx));
        }
        let plan = std::mem::take(&mut self.config.plan);
        for fault in &plan {
            self.schedule(fault.at_ns, Event::Fault(fault.action.clone()));
        }
        self.config.plan = plan;
        self.schedule(self.config.quiet_at_ns, Event::Fault(FaultAction::Quiet));
        if self.config.profile.has_fault_process() {
            let first = self.next_fault_delay();
            self.schedule(first, Event::FaultTick);
        }
    }

    fn draw_clocks(&mut self) {
        let drift_max = self.config.profile.drift_ppm_max;
        if drift_max == 0 {
            return;
        }
        for index in 0..self.nodes.len() {
            let drift = self.decider.below(DecisionKind::Clock, 2 * drift_max + 1) as i64;
            let offset = self.decider.below(DecisionKind::Clock, SEC) as i64;
            let clock = &mut self.nodes[index].clock;
            clock.drift_ppm = drift - drift_max as i64;
            clock.offset_ns = offset;
        }
    }

    fn run_loop(&mut self) -> EndReason {
        loop {
            if self.stats.events >= self.config.events_max {
                return EndReason::EventLimit;
            }
            let Some((time_ns, slot)) = self.pop() else {
                return EndReason::QueueEmpty;
            };
            if time_ns > self.config.end_ns {
                self.now_ns = self.config.end_ns;
                return EndReason::TimeLimit;
            }
            self.now_ns = time_ns;
            let event = self.take_event(slot);
            self.step(event);
            if self.config.stop_when_clients_done
                && !self.clients.is_empty()
                && self.clients.iter().all(|c| c.client.is_done())
            {
                return EndReason::ClientsDone;
            }
        }
    }

    #[inline(always)]
    fn step(&mut self, event: Event<N, C>) {
        self.stats.events += 1;
        let identity = event.identity();
        let describing = self.describing();
        if describing {
            // Kept on the simulator while the handler runs, so a panic can name the event.
            self.stepping = Some((event.kind(), event.target(), event.describe()));
        }
        self.step_hash = 0;
        self.dispatch(event);
        self.chain = fold(
            fold(fold(self.chain, self.now_ns), identity),
            self.step_hash,
        );
        if describing {
            if let Some((kind, target, detail)) = self.stepping.take() {
                self.record(kind, target, detail);
            }
        }
    }

    fn record(&mut self, kind: &'static str, target: String, mut detail: String) {
        if !self.step_detail.is_empty() {
            detail.push_str(" => ");
            detail.push_str(&self.step_detail);
            self.step_detail.clear();
        }
        if self.config.log_events {
            eprintln!(
                "{:>12} {:<4} {:<12} {}",
                fmt_ms(self.now_ns),
                target,
                kind,
                detail
            );
        }
        if self.config.record_events {
            detail.truncate(300);
            self.records.push(EventRecord {
                index: self.stats.events - 1,
                time_ns: self.now_ns,
                target,
                kind,
                chain: self.chain,
                detail,
            });
        }
    }

    #[inline(always)]
    fn dispatch(&mut self, event: Event<N, C>) {
        match event {
            Event::Message { from, to, msg } => {
                if self.nodes[to.0 as usize].status != Status::Up {
                    self.hold_if_paused(to, Event::Message { from, to, msg });
                    return;
                }
                if let Some(until_ns) = self.busy_until(to) {
                    self.schedule(until_ns, Event::Message { from, to, msg });
                    return;
                }
                self.stats.messages_delivered += 1;
                self.step_node(to, |node, ctx| node.on_message(ctx, from, msg));
            }
            Event::Request { from, to, request } => {
                if self.nodes[to.0 as usize].status != Status::Up {
                    self.hold_if_paused(to, Event::Request { from, to, request });
                    return;
                }
                if let Some(until_ns) = self.busy_until(to) {
                    self.schedule(until_ns, Event::Request { from, to, request });
                    return;
                }
                self.stats.requests_delivered += 1;
                self.step_node(to, |node, ctx| node.on_request(ctx, from, request));
            }
            Event::Reply { from, to, reply } => {
                self.stats.replies_delivered += 1;
                self.step_client(to, |client, ctx| client.on_reply(ctx, from, reply));
            }
            Event::NodeTimer {
                node,
                incarnation,
                id,
                timer,
            } => self.fire_node_timer(node, incarnation, id, timer),
            Event::ClientTimer { client, id, timer } => {
                if self.clients[client.0 as usize]
                    .live_timers
                    .remove(&id)
                    .is_some()
                {
                    self.stats.timers_fired += 1;
                    self.step_client(client, |c, ctx| c.on_timer(ctx, timer));
                }
            }
            Event::SyncDone {
                node,
                incarnation,
                up_to,
                held,
            } => self.complete_sync(node, incarnation, up_to, held),
            Event::Fault(action) => self.apply_fault(action),
            Event::FaultTick => {
                let applied_before = self.fault_log.len();
                self.random_fault();
                if self.describing() {
                    // Random faults are applied inside a fault tick: name them in its record.
                    for (_, action) in &self.fault_log[applied_before..] {
                        self.step_detail.push_str(&format!("{action}; "));
                    }
                }
            }
        }
    }

    /// If the node is still busy with CPU work of an earlier handler: until when.
    #[inline]
    fn busy_until(&mut self, node: NodeId) -> Option<u64> {
        let until_ns = self.nodes[node.0 as usize].busy_until_ns;
        (until_ns > self.now_ns).then(|| {
            self.stats.deferred_busy += 1;
            until_ns
        })
    }

    /// For a node that is not up: queues the event if it is paused, drops it if crashed.
    fn hold_if_paused(&mut self, node: NodeId, event: Event<N, C>) {
        let inbox_max = self.config.paused_inbox_max;
        let slot = &mut self.nodes[node.0 as usize];
        match slot.status {
            Status::Up => unreachable!("events for a running node are delivered, not held"),
            Status::Crashed => self.stats.dropped_down += 1,
            Status::Paused => {
                if slot.paused_inbox.len() < inbox_max {
                    slot.paused_inbox.push_back(event);
                } else {
                    self.stats.dropped_inbox_full += 1;
                }
            }
        }
    }

    fn fire_node_timer(&mut self, node: NodeId, incarnation: u32, id: TimerId, timer: N::Timer) {
        let slot = &mut self.nodes[node.0 as usize];
        if slot.incarnation != incarnation || !slot.live_timers.contains(&id) {
            return;
        }
        if slot.status == Status::Paused {
            let event = Event::NodeTimer {
                node,
                incarnation,
                id,
                timer,
            };
            self.hold_if_paused(node, event);
            return;
        }
        if let Some(until_ns) = self.busy_until(node) {
            let event = Event::NodeTimer {
                node,
                incarnation,
                id,
                timer,
            };
            let key = self.schedule(until_ns, event);
            // A cancel must find the deferred event under its new key.
            self.nodes[node.0 as usize].live_timers.insert(id, key);
            return;
        }
        let slot = &mut self.nodes[node.0 as usize];
        slot.live_timers.remove(&id);
        self.stats.timers_fired += 1;
        self.step_node(node, |n, ctx| n.on_timer(ctx, timer));
    }

    fn complete_sync(
        &mut self,
        node: NodeId,
        incarnation: u32,
        up_to: u64,
        mut held: Vec<Outgoing<N>>,
    ) {
        let slot = &mut self.nodes[node.0 as usize];
        if slot.incarnation != incarnation || slot.status == Status::Crashed {
            return;
        }
        slot.storage.complete_sync(up_to);
        self.stats.syncs += 1;
        for outgoing in held.drain(..) {
            self.send_outgoing(node, outgoing);
        }
        if self.held_pool.len() < HELD_POOL_MAX {
            self.held_pool.push(held);
        }
    }

    /// Runs a node handler and applies its effects.
    fn step_node(&mut self, id: NodeId, handler: impl FnOnce(&mut N, &mut NodeCtx<'_, N>)) {
        let cluster_size = self.config.nodes;
        let now_ns = self.now_ns;
        let slot = &mut self.nodes[id.0 as usize];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        let local_now_ns = slot.clock.local_ns(now_ns);
        let was_damaged = slot.storage.damaged();
        // Everything a handler logs through `tracing` carries the node and the true virtual
        // time; with no subscriber this costs one cached check.
        let span = tracing::debug_span!("node", id = id.0, t = %fmt_ms(now_ns));
        let _entered = span.enter();
        let mut ctx = NodeCtx::new(
            id,
            cluster_size,
            local_now_ns,
            &mut self.effects,
            &mut slot.storage,
            &mut self.decider,
            &mut slot.next_timer_id,
            &mut self.ignored,
        )
        .with_monotonic_ns(slot.clock.monotonic_ns(now_ns))
        .with_costs(self.config.cpu);
        handler(node, &mut ctx);
        let cpu_ns = ctx.cpu_used_ns();
        if cpu_ns > 0 {
            slot.busy_until_ns = now_ns + cpu_ns;
        }
        // Sampled, not exact: a replica's footprint changes slowly compared to events.
        if self.config.measure_bytes && self.stats.events.is_multiple_of(16) {
            let bytes = node.footprint_bytes();
            let max = &mut self.stats.replica_memory_bytes_max;
            *max = (*max).max(bytes);
        }
        if let Err(failure) = node.check_invariants() {
            let message = format!("{} at {}: {failure}", id, fmt_ms(now_ns));
            self.invariant_failures.push(message);
        }
        if !self.damage_bounded && !was_damaged && slot.storage.damaged() {
            self.bound_damage();
        }
        self.send_delay_ns = cpu_ns;
        self.apply_node_effects(id);
        self.send_delay_ns = 0;
        if !self.ignored.is_empty() {
            self.count_ignored();
        }
    }

    fn count_ignored(&mut self) {
        for reason in self.ignored.drain(..) {
            // Inside the handler's node span, which names the node and the time.
            tracing::debug!(reason, "ignored message");
            if self.config.log_events {
                self.step_detail.push_str(&format!("ignored ({reason}) "));
            }
            match self.stats.ignored.get_mut(reason) {
                Some(count) => *count += 1,
                None => {
                    self.stats.ignored.insert(reason.to_string(), 1);
                }
            }
        }
    }

    fn apply_node_effects(&mut self, id: NodeId) {
        let mut effects = std::mem::take(&mut self.effects);
        // Sends after a sync wait for it: they ride on the sync's completion event.
        let mut held: Option<(u64, Vec<Outgoing<N>>)> = None;
        for effect in effects.drain(..) {
            let outgoing = match effect {
                // The common case goes straight to the wire.
                Effect::Send { to, msg } if held.is_none() => {
                    self.send_message(id, to, msg);
                    continue;
                }
                Effect::Send { to, msg } => Outgoing::Send { to, msg },
                Effect::Broadcast { msg } => Outgoing::Broadcast { msg },
                Effect::Reply { client, reply } => Outgoing::Reply { client, reply },
                Effect::SetTimer {
                    id: timer_id,
                    delay_ns,
                    timer,
                } => {
                    self.set_node_timer(id, timer_id, delay_ns, timer);
                    continue;
                }
                Effect::CancelTimer { id: timer_id } => {
                    if let Some(key) = self.nodes[id.0 as usize].live_timers.remove(&timer_id) {
                        self.unschedule(key);
                    }
                    continue;
                }
                Effect::Sync { up_to } => {
                    if let Some((previous, messages)) = held.take() {
                        self.schedule_sync(id, previous, messages);
                    }
                    held = Some((up_to, self.held_pool.pop().unwrap_or_default()));
                    continue;
                }
                Effect::Observe(obs) => {
                    self.observations.push((self.now_ns, obs));
                    continue;
                }
            };
            match &mut held {
                Some((_, messages)) => messages.push(outgoing),
                None => self.send_outgoing(id, outgoing),
            }
        }
        if let Some((up_to, messages)) = held {
            self.schedule_sync(id, up_to, messages);
        }
        self.effects = effects;
    }

    fn schedule_sync(&mut self, id: NodeId, up_to: u64, held: Vec<Outgoing<N>>) {
        let latency_ns = self.decider.between(
            DecisionKind::Latency,
            self.config.fsync_min_ns,
            self.config.fsync_max_ns,
        );
        let slot = &mut self.nodes[id.0 as usize];
        // Syncs of one node complete in the order they were issued.
        let done_ns = (self.now_ns + self.send_delay_ns + latency_ns).max(slot.sync_done_ns);
        slot.sync_done_ns = done_ns;
        let incarnation = slot.incarnation;
        self.schedule(
            done_ns,
            Event::SyncDone {
                node: id,
                incarnation,
                up_to,
                held,
            },
        );
    }

    /// Once `damaged_disks_max` disks are damaged, spares the others (a spared disk is
    /// never damaged later, so the count only grows until then).
    fn bound_damage(&mut self) {
        let damaged = self.nodes.iter().filter(|slot| slot.storage.damaged());
        if damaged.count() < self.config.damaged_disks_max as usize {
            return;
        }
        for slot in self.nodes.iter_mut() {
            if !slot.storage.damaged() {
                slot.storage.spare_damage();
            }
        }
        self.damage_bounded = true;
    }

    fn set_node_timer(&mut self, id: NodeId, timer_id: TimerId, delay_ns: u64, timer: N::Timer) {
        let slot = &self.nodes[id.0 as usize];
        let true_delay_ns = slot.clock.true_duration_ns(delay_ns);
        let incarnation = slot.incarnation;
        let key = self.schedule(
            self.now_ns.saturating_add(true_delay_ns),
            Event::NodeTimer {
                node: id,
                incarnation,
                id: timer_id,
                timer,
            },
        );
        self.nodes[id.0 as usize].live_timers.insert(timer_id, key);
    }

    fn send_outgoing(&mut self, from: NodeId, outgoing: Outgoing<N>) {
        match outgoing {
            Outgoing::Send { to, msg } => self.send_message(from, to, msg),
            Outgoing::Broadcast { msg } => {
                for index in 0..self.config.nodes {
                    if index != from.0 {
                        self.send_message(from, NodeId(index), msg.clone());
                    }
                }
            }
            Outgoing::Reply { client, reply } => {
                let from_endpoint = from.0 as usize;
                let to_endpoint = (self.config.nodes + client.0) as usize;
                self.step_hash = stable_hash(&(self.step_hash, 3u8, client.0, &reply));
                if self.describing() {
                    self.step_detail
                        .push_str(&format!("reply {client} {reply:?}; "));
                }
                let checked = self.config.client_checksums;
                self.transmit(from_endpoint, to_endpoint, reply, checked, |reply| {
                    Event::Reply {
                        from,
                        to: client,
                        reply,
                    }
                });
            }
        }
    }

    fn send_message(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        if to.0 >= self.config.nodes {
            self.drop_unknown_destination(&from.to_string(), to);
            return;
        }
        self.stats.messages_sent += 1;
        if self.config.measure_bytes {
            if let Ok(bytes) = crate::encode::append(&msg, self.take_wire()) {
                self.stats.bytes_sent += bytes.len() as u64;
                self.wire = bytes;
            }
        }
        self.step_hash = fold(self.step_hash, stable_hash(&(to.0, &msg)));
        if self.describing() {
            self.step_detail.push_str(&format!("send {to} {msg:?}; "));
        }
        self.transmit(from.0 as usize, to.0 as usize, msg, false, |msg| {
            Event::Message { from, to, msg }
        });
    }

    /// Puts one payload on the wire: partitions, loss, corruption, latency, reordering,
    /// clogs, bandwidth and duplication. Schedules each copy that arrives as `wrap(payload)`.
    /// On a `checked` link corruption is detected at the receiver and the message dropped.
    fn transmit<P: Payload>(
        &mut self,
        from: usize,
        to: usize,
        payload: P,
        checked: bool,
        wrap: impl Fn(P) -> Event<N, C>,
    ) {
        if self.network.is_blocked(from, to) {
            self.stats.dropped_partition += 1;
            return;
        }
        self.decider.hint(Hint::Transmit {
            from: from as u32,
            to: to as u32,
        });
        let link = self.network.link;
        if self.decider.chance(DecisionKind::Drop, link.loss_ppm, PPM) {
            self.stats.dropped_loss += 1;
            return;
        }
        let duplicate = self
            .decider
            .chance(DecisionKind::Duplicate, link.duplicate_ppm, PPM);
        // Replaced in place when it went through bytes: moving a whole message through
        // temporaries stalled the send path (its copies reload bytes just stored).
        let mut payload = payload;
        let mut size_bytes = 0;
        if self.encode {
            match self.encode_hop(&payload, link.corrupt_ppm, checked) {
                Hop::Intact => {}
                Hop::Decoded {
                    decoded,
                    size_bytes: size,
                } => {
                    payload = decoded;
                    size_bytes = size;
                }
                Hop::Lost => return,
            }
        }
        if duplicate {
            self.stats.duplicated += 1;
            let arrival_ns = self.arrival_ns(from, to, size_bytes);
            self.schedule(arrival_ns, wrap(payload.clone()));
        }
        let arrival_ns = self.arrival_ns(from, to, size_bytes);
        self.schedule(arrival_ns, wrap(payload));
    }

    #[inline]
    fn arrival_ns(&mut self, from: usize, to: usize, size_bytes: usize) -> u64 {
        let link = &self.network.link;
        let (latency, reorder_ppm, window_ns) =
            (link.latency, link.reorder_ppm, link.reorder_window_ns);
        let mut latency_ns = latency.sample(&mut self.decider);
        if self.decider.chance(DecisionKind::Reorder, reorder_ppm, PPM) {
            self.stats.reordered += 1;
            latency_ns += self.decider.below(DecisionKind::Reorder, window_ns + 1);
        }
        let depart_ns = self.now_ns + self.send_delay_ns;
        self.network
            .arrival_ns(from, to, depart_ns, latency_ns, size_bytes)
    }

    /// The run's one wire buffer, empty: encoding allocates nothing after warm-up. Callers
    /// put it back in `self.wire` when done.
    fn take_wire(&mut self) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.wire);
        buffer.clear();
        buffer
    }

    /// Encodes a payload to bytes, maybe corrupts them, and decodes what arrives.
    fn encode_hop<P: Payload>(&mut self, payload: &P, corrupt_ppm: u64, checked: bool) -> Hop<P> {
        let corrupted = self.decider.chance(DecisionKind::Corrupt, corrupt_ppm, PPM);
        // Intact bytes decode to the message they came from: skip the round trip unless
        // every hop must make it or the link needs the size (bandwidth).
        let sized = self.network.link.bandwidth_bytes_per_sec > 0;
        if !corrupted && !sized && !self.config.encode_every_hop {
            return Hop::Intact;
        }
        let mut bytes = match crate::encode::append(payload, self.take_wire()) {
            Ok(bytes) => bytes,
            Err(error) => panic!("message {payload:?} does not encode: {error}"),
        };
        let size_bytes = bytes.len();
        if corrupted {
            self.stats.corrupted += 1;
            corrupt_bytes(&mut bytes, &mut self.decider);
            if checked {
                self.stats.corrupt_rejected += 1;
                self.wire = bytes;
                return Hop::Lost;
            }
        }
        let decoded = postcard::from_bytes::<P>(&bytes);
        self.wire = bytes;
        match decoded {
            Ok(decoded) => {
                if corrupted {
                    self.stats.corrupt_delivered += 1;
                }
                Hop::Decoded {
                    decoded,
                    size_bytes,
                }
            }
            Err(_) => {
                // Receivers drop bytes that do not decode; the simulator counts them for them.
                self.stats.corrupt_rejected += 1;
                Hop::Lost
            }
        }
    }

    /// A process addressed a node that does not exist (for example after believing a corrupted
    /// leader hint): the message goes nowhere, and the run counts it.
    fn drop_unknown_destination(&mut self, sender: &str, to: NodeId) {
        self.stats.dropped_unknown_destination += 1;
        tracing::debug!(
            time_ns = self.now_ns,
            sender,
            to = to.0,
            "send to unknown node dropped"
        );
    }

    /// Runs a client handler and applies its effects.
    fn step_client(&mut self, id: ClientId, handler: impl FnOnce(&mut C, &mut ClientCtx<'_, C>)) {
        let cluster_size = self.config.nodes;
        let slot = &mut self.clients[id.0 as usize];
        let span = tracing::debug_span!("client", id = id.0, t = %fmt_ms(self.now_ns));
        let _entered = span.enter();
        let mut ctx = ClientCtx::new(
            id,
            cluster_size,
            self.now_ns,
            &mut self.client_effects,
            &mut self.decider,
            &mut slot.next_timer_id,
        );
        handler(&mut slot.client, &mut ctx);
        let mut effects = std::mem::take(&mut self.client_effects);
        for effect in effects.drain(..) {
            self.apply_client_effect(id, effect);
        }
        self.client_effects = effects;
    }

    fn apply_client_effect(&mut self, id: ClientId, effect: ClientEffect<C>) {
        match effect {
            ClientEffect::Send { to, request } => {
                if to.0 >= self.config.nodes {
                    self.drop_unknown_destination(&id.to_string(), to);
                    return;
                }
                self.step_hash = stable_hash(&(self.step_hash, 2u8, to.0, &request));
                if self.describing() {
                    self.step_detail
                        .push_str(&format!("request {to} {request:?}; "));
                }
                let from_endpoint = (self.config.nodes + id.0) as usize;
                let checked = self.config.client_checksums;
                self.transmit(from_endpoint, to.0 as usize, request, checked, |request| {
                    Event::Request {
                        from: id,
                        to,
                        request,
                    }
                });
            }
            ClientEffect::SetTimer {
                id: timer_id,
                delay_ns,
                timer,
            } => {
                let key = self.schedule(
                    self.now_ns.saturating_add(delay_ns),
                    Event::ClientTimer {
                        client: id,
                        id: timer_id,
                        timer,
                    },
                );
                self.clients[id.0 as usize]
                    .live_timers
                    .insert(timer_id, key);
            }
            ClientEffect::CancelTimer { id: timer_id } => {
                if let Some(key) = self.clients[id.0 as usize].live_timers.remove(&timer_id) {
                    self.unschedule(key);
                }
            }
            ClientEffect::Observe(obs) => self.observations.push((self.now_ns, obs)),
        }
    }

    /// Queues `event` at `time_ns`; returns its queue key.
    fn schedule(&mut self, time_ns: u64, event: Event<N, C>) -> u128 {
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                (self.slab.len() - 1) as u32
            }
        };
        let key = pack_key(time_ns, self.sequence, slot);
        self.queue.push(key);
        self.sequence += 1;
        key
    }

    /// Takes a cancelled timer's event off the queue, so that it is neither popped nor
    /// offered as a tie. An event the queue no longer holds under `key` (held by a paused
    /// node, or parked in the overflow heap) stays where it is: it is dropped when it comes
    /// up, because its timer is no longer live.
    fn unschedule(&mut self, key: u128) {
        let held = self.held_ties.iter().position(|&tie| tie == key);
        let removed = match held {
            Some(at) => {
                self.held_ties.remove(at);
                true
            }
            None => self.queue.remove(key),
        };
        if removed {
            let slot = unpack_key(key).2;
            self.slab[slot as usize] = None;
            self.free_slots.push(slot);
        }
    }

    /// The next event's time and slab slot. The event stays in the slab until
    /// [`Sim::take_event`]: returned beside the time, it was copied once more, through a
    /// differently laid out temporary whose reload stalled the loop.
    fn pop(&mut self) -> Option<(u64, u32)> {
        let key = match self.config.tie_break {
            TieBreak::Fifo => self.queue.pop()?,
            TieBreak::Decide => self.choose_among_ties()?,
        };
        let (time_ns, _, slot) = unpack_key(key);
        Some((time_ns, slot))
    }

    /// Takes a popped event out of the slab and frees its slot.
    #[inline(always)]
    fn take_event(&mut self, slot: u32) -> Event<N, C> {
        let event = self.slab[slot as usize]
            .take()
            .expect("queued slot holds an event");
        self.free_slots.push(slot);
        event
    }

    /// With `TieBreak::Decide`, the decision source picks among events at the same instant.
    /// The others are held back in key order, so their order is kept, and they stay ahead
    /// of events scheduled later for the same instant (which get higher sequences).
    fn choose_among_ties(&mut self) -> Option<u128> {
        let mut ties = std::mem::take(&mut self.held_ties);
        if ties.is_empty() {
            ties.push(self.queue.pop()?);
        }
        let time_ns = unpack_key(ties[0]).0;
        while let Some(key) = self.queue.peek() {
            if unpack_key(key).0 != time_ns {
                break;
            }
            self.queue.pop();
            ties.push(key);
        }
        if ties.len() > 1 {
            for &key in &ties {
                let slot = unpack_key(key).2;
                let actor = self.slab[slot as usize]
                    .as_ref()
                    .map_or(u32::MAX, |event| self.actor(event));
                self.decider.hint(Hint::Candidate { actor });
            }
        }
        let chosen = self.decider.below(DecisionKind::Tie, ties.len() as u64) as usize;
        let key = ties.remove(chosen);
        self.held_ties = ties;
        Some(key)
    }

    /// The endpoint an event is delivered to (replicas first, then clients).
    fn actor(&self, event: &Event<N, C>) -> u32 {
        match event {
            Event::Message { to, .. } | Event::Request { to, .. } => to.0,
            Event::NodeTimer { node, .. } | Event::SyncDone { node, .. } => node.0,
            Event::Reply { to, .. } => self.config.nodes + to.0,
            Event::ClientTimer { client, .. } => self.config.nodes + client.0,
            Event::Fault(_) | Event::FaultTick => u32::MAX,
        }
    }

    fn boot(&mut self, id: NodeId, restart: bool) {
        let node = (self.make_node)(id);
        let slot = &mut self.nodes[id.0 as usize];
        slot.node = Some(node);
        slot.status = Status::Up;
        if restart {
            self.step_node(id, |n, ctx| n.on_restart(ctx));
        } else {
            self.step_node(id, |n, ctx| n.on_start(ctx));
        }
    }

    fn crash(&mut self, id: NodeId) {
        let slot = &mut self.nodes[id.0 as usize];
        if slot.status == Status::Crashed {
            return;
        }
        slot.node = None;
        slot.status = Status::Crashed;
        slot.incarnation += 1;
        slot.live_timers.clear();
        slot.paused_inbox.clear();
        slot.sync_done_ns = 0;
        slot.busy_until_ns = 0;
        slot.storage.crash(&mut self.decider);
        self.stats.crashes += 1;
    }

    fn restart(&mut self, id: NodeId) {
        if self.nodes[id.0 as usize].status != Status::Crashed {
            return;
        }
        self.stats.restarts += 1;
        self.boot(id, true);
    }

    fn resume(&mut self, id: NodeId) {
        let slot = &mut self.nodes[id.0 as usize];
        if slot.status != Status::Paused {
            return;
        }
        slot.status = Status::Up;
        let inbox = std::mem::take(&mut slot.paused_inbox);
        for event in inbox {
            self.schedule(self.now_ns, event);
        }
    }

    fn down_count(&self) -> u32 {
        self.nodes.iter().filter(|s| s.status != Status::Up).count() as u32
    }

    fn apply_fault(&mut self, action: FaultAction) {
        self.stats.faults += 1;
        self.fault_log.push((self.now_ns, action.clone()));
        tracing::debug!(time_ns = self.now_ns, fault = %action, "fault");
        match action {
            FaultAction::Partition { groups } => {
                let links = partition_links(&groups);
                self.block(&links);
            }
            FaultAction::OneWay { from, to } => {
                let links: Vec<_> = from
                    .iter()
                    .flat_map(|&a| to.iter().map(move |&b| (a, b)))
                    .collect();
                self.block(&links);
            }
            FaultAction::Cut { links } => {
                let both: Vec<_> = links.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
                self.block(&both);
            }
            FaultAction::Restore { links } => {
                for (a, b) in links {
                    self.network.set_blocked(a.0 as usize, b.0 as usize, false);
                }
            }
            FaultAction::Heal => self.network.heal(),
            FaultAction::Clog {
                from,
                to,
                duration_ns,
            } => self.network.clog(
                from.0 as usize,
                to.0 as usize,
                self.now_ns.saturating_add(duration_ns),
            ),
            FaultAction::Unclog { from, to } => self.network.unclog(from.0 as usize, to.0 as usize),
            FaultAction::Crash(id) => self.crash(id),
            FaultAction::Restart(id) => self.restart(id),
            FaultAction::Pause(id) => {
                let slot = &mut self.nodes[id.0 as usize];
                if slot.status == Status::Up {
                    slot.status = Status::Paused;
                    self.stats.pauses += 1;
                }
            }
            FaultAction::Resume(id) => self.resume(id),
            FaultAction::Wipe(id) => {
                self.crash(id);
                self.nodes[id.0 as usize].storage.wipe();
                self.restart(id);
            }
            FaultAction::ClockJump { node, delta_ns } => {
                self.nodes[node.0 as usize].clock.jump(delta_ns)
            }
            FaultAction::ClockDrift { node, drift_ppm } => {
                self.nodes[node.0 as usize].clock.drift_ppm = drift_ppm
            }
            FaultAction::Quiet => self.enter_quiet_phase(),
        }
    }

    fn block(&mut self, links: &[(NodeId, NodeId)]) {
        for &(a, b) in links {
            let valid = a.0 < self.config.nodes && b.0 < self.config.nodes;
            if valid && a != b {
                self.network.set_blocked(a.0 as usize, b.0 as usize, true);
            }
        }
    }

    fn enter_quiet_phase(&mut self) {
        self.quiet = true;
        self.network.heal();
        self.network.link = self.network.link.quiet();
        for index in 0..self.config.nodes {
            let id = NodeId(index);
            self.nodes[index as usize]
                .storage
                .set_faults(StorageFaults::default());
            self.resume(id);
            self.restart(id);
        }
    }

    fn next_fault_delay(&mut self) -> u64 {
        let interval = self.config.profile.fault_interval_ns;
        self.now_ns
            + self
                .decider
                .between(DecisionKind::FaultTime, interval / 2, interval * 3 / 2)
    }

    fn random_fault(&mut self) {
        // A replay past the end of its trace would draw zeros here, which mean a fault of the
        // first kind at the soonest time, tick after tick (see `DecisionSource::exhausted`).
        if self.quiet || self.decider.exhausted() {
            return;
        }
        let next = self.next_fault_delay();
        self.schedule(next, Event::FaultTick);
        let weights = self.config.profile.weights;
        let table = [
            weights.partition,
            weights.one_way,
            weights.partial,
            weights.crash,
            weights.pause,
            weights.clog,
            weights.swizzle,
            weights.clock_jump,
            weights.wipe,
        ];
        let total: u64 = table.iter().sum();
        let mut pick = self.decider.below(DecisionKind::FaultChoice, total);
        let kind = table
            .iter()
            .position(|&weight| {
                if pick < weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .expect("pick is below the total weight");
        let duration_ns = self.decider.between(
            DecisionKind::FaultTime,
            self.config.profile.fault_duration_min_ns,
            self.config.profile.fault_duration_max_ns,
        );
        match kind {
            0 => self.random_partition(duration_ns),
            1 => self.random_one_way(duration_ns),
            2 => self.random_partial(duration_ns),
            3 | 4 => self.random_process_fault(kind == 3, duration_ns),
            5 => self.random_clog(duration_ns),
            6 => self.swizzle_clog(duration_ns),
            7 => self.random_clock_jump(),
            _ => self.random_wipe(),
        }
    }

    fn random_node(&mut self) -> NodeId {
        NodeId(
            self.decider
                .below(DecisionKind::FaultChoice, self.config.nodes as u64) as u32,
        )
    }

    fn shuffled_nodes(&mut self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = (0..self.config.nodes).map(NodeId).collect();
        for index in (1..nodes.len()).rev() {
            let other =
                self.decider
                    .below(DecisionKind::FaultChoice, index as u64 + 1) as usize;
            nodes.swap(index, other);
        }
        nodes
    }

    fn apply_for(&mut self, action: FaultAction, undo: FaultAction, duration_ns: u64) {
        self.apply_fault(action);
        self.schedule(self.now_ns + duration_ns, Event::Fault(undo));
    }

    fn random_partition(&mut self, duration_ns: u64) {
        if self.config.nodes < 2 {
            return;
        }
        let nodes = self.shuffled_nodes();
        let cut = 1 + self
            .decider
            .below(DecisionKind::FaultChoice, nodes.len() as u64 - 1);
        let groups = vec![
            nodes[..cut as usize].to_vec(),
            nodes[cut as usize..].to_vec(),
        ];
        let links = partition_links(&groups);
        self.apply_for(
            FaultAction::Partition { groups },
            FaultAction::Restore { links },
            duration_ns,
        );
    }

    fn random_one_way(&mut self, duration_ns: u64) {
        if self.config.nodes < 2 {
            return;
        }
        let nodes = self.shuffled_nodes();
        let cut = 1 + self
            .decider
            .below(DecisionKind::FaultChoice, nodes.len() as u64 - 1);
        let (from, to) = (
            nodes[..cut as usize].to_vec(),
            nodes[cut as usize..].to_vec(),
        );
        let links = from
            .iter()
            .flat_map(|&a| to.iter().map(move |&b| (a, b)))
            .collect();
        self.apply_for(
            FaultAction::OneWay { from, to },
            FaultAction::Restore { links },
            duration_ns,
        );
    }

    fn random_partial(&mut self, duration_ns: u64) {
        let mut links = Vec::new();
        for a in 0..self.config.nodes {
            for b in a + 1..self.config.nodes {
                if self.decider.chance(DecisionKind::FaultChoice, 1, 3) {
                    links.push((NodeId(a), NodeId(b)));
                }
            }
        }
        if links.is_empty() {
            return;
        }
        let both = links.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        self.apply_for(
            FaultAction::Cut { links },
            FaultAction::Restore { links: both },
            duration_ns,
        );
    }

    fn random_process_fault(&mut self, crash: bool, duration_ns: u64) {
        if self.down_count() >= self.config.down_max {
            return;
        }
        let node = self.random_node();
        if self.nodes[node.0 as usize].status != Status::Up {
            return;
        }
        if crash {
            self.apply_for(
                FaultAction::Crash(node),
                FaultAction::Restart(node),
                duration_ns,
            );
        } else {
            self.apply_for(
                FaultAction::Pause(node),
                FaultAction::Resume(node),
                duration_ns,
            );
        }
    }

    /// Wipes a running node's disk, at most `wipes_max` times in a run: wiping a majority
    /// of a configuration loses committed data, which no protocol can survive.
    fn random_wipe(&mut self) {
        if self.wipes >= self.config.wipes_max || self.down_count() >= self.config.down_max {
            return;
        }
        let node = self.random_node();
        if self.nodes[node.0 as usize].status != Status::Up {
            return;
        }
        self.wipes += 1;
        self.apply_fault(FaultAction::Wipe(node));
    }

    fn random_clog(&mut self, duration_ns: u64) {
        let from = self.random_node();
        let to = self.random_node();
        if from != to {
            self.apply_fault(FaultAction::Clog {
                from,
                to,
                duration_ns,
            });
        }
    }

    /// FoundationDB's swizzle-clog: clog a random subset of nodes one at a time, then unclog
    /// them one at a time in reverse order.
    fn swizzle_clog(&mut self, duration_ns: u64) {
        let nodes = self.shuffled_nodes();
        let count = 1 + self
            .decider
            .below(DecisionKind::FaultChoice, nodes.len() as u64);
        let chosen = &nodes[..count as usize];
        let step_ns = (duration_ns / (2 * count + 1)).max(MS);
        let everyone: Vec<NodeId> = (0..self.config.nodes).map(NodeId).collect();
        for (index, &node) in chosen.iter().enumerate() {
            let clog_at = self.now_ns + step_ns * index as u64;
            let unclog_at = self.now_ns + duration_ns - step_ns * index as u64;
            for &other in everyone.iter().filter(|&&o| o != node) {
                for (from, to) in [(node, other), (other, node)] {
                    let clog = FaultAction::Clog {
                        from,
                        to,
                        duration_ns: duration_ns * 2,
                    };
                    self.schedule(clog_at, Event::Fault(clog));
                    self.schedule(unclog_at, Event::Fault(FaultAction::Unclog { from, to }));
                }
            }
        }
    }

    fn random_clock_jump(&mut self) {
        let jump_max = self.config.profile.jump_ns_max;
        if jump_max == 0 {
            return;
        }
        let node = self.random_node();
        let delta =
            self.decider.below(DecisionKind::Clock, 2 * jump_max + 1) as i64 - jump_max as i64;
        self.apply_fault(FaultAction::ClockJump {
            node,
            delta_ns: delta,
        });
    }
}

const SLOT_BITS: u32 = 24;
const SEQUENCE_BITS: u32 = 40;

/// Packs an event's queue key into one integer, so the heap compares and moves 16 bytes.
#[inline]
fn pack_key(time_ns: u64, sequence: u64, slot: u32) -> u128 {
    assert!(
        slot < 1 << SLOT_BITS,
        "more than 2^24 events pending at once"
    );
    assert!(
        sequence < 1 << SEQUENCE_BITS,
        "more than 2^40 events scheduled in one run"
    );
    ((time_ns as u128) << 64) | ((sequence as u128) << SLOT_BITS) | slot as u128
}

#[inline]
fn unpack_key(key: u128) -> (u64, u64, u32) {
    let low = key as u64;
    (
        (key >> 64) as u64,
        low >> SLOT_BITS,
        (low & ((1 << SLOT_BITS) - 1)) as u32,
    )
}

/// One step of the hash chain: cheap, and stable across runs and platforms.
#[inline]
fn fold(accumulator: u64, word: u64) -> u64 {
    (accumulator.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Directed links cut by a symmetric partition into `groups`.
fn partition_links(groups: &[Vec<NodeId>]) -> Vec<(NodeId, NodeId)> {
    let mut links = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        for other in groups.iter().skip(index + 1) {
            for &a in group {
                for &b in other {
                    links.push((a, b));
                    links.push((b, a));
                }
            }
        }
    }
    links
}

/// A client that does nothing: for simulations without a workload (benchmarks, tests).
#[derive(Debug)]
pub struct NoClient<N>(std::marker::PhantomData<N>);

impl<N> Default for NoClient<N> {
    fn default() -> Self {
        NoClient(std::marker::PhantomData)
    }
}

impl<N: Node> Client for NoClient<N> {
    type Node = N;
    type Timer = ();
    fn on_start(&mut self, _ctx: &mut ClientCtx<'_, Self>) {}
    fn on_reply(&mut self, _ctx: &mut ClientCtx<'_, Self>, _from: NodeId, _reply: N::Reply) {}
    fn on_timer(&mut self, _ctx: &mut ClientCtx<'_, Self>, _timer: ()) {}
    fn pending(&self) -> usize {
        0
    }
    fn is_done(&self) -> bool {
        true
    }
}

/// The determinism self-check: builds and runs the same simulation twice and compares the
/// per-event hash chain. On mismatch the error names the first divergent event (virtual
/// time, node, event kind, and both versions of it). Returns the trace hash otherwise.
pub fn check_determinism<N: Node, C: Client<Node = N>>(
    mut build: impl FnMut() -> Sim<N, C>,
) -> Result<u64, String> {
    let mut run = || {
        let mut sim = build();
        sim.record_events(true);
        let summary = sim.run();
        (summary.trace_hash, sim.take_records())
    };
    let (hash, first) = run();
    let (_, second) = run();
    match first_divergence(&first, &second) {
        Some(message) => Err(message),
        None => Ok(hash),
    }
}

/// Compares two event-record streams; names the first event where they differ.
pub fn first_divergence(left: &[EventRecord], right: &[EventRecord]) -> Option<String> {
    for (a, b) in left.iter().zip(right) {
        if a.chain != b.chain || a.time_ns != b.time_ns || a.target != b.target || a.kind != b.kind
        {
            return Some(format!(
                "first divergent event #{} at {}: {} {} [{}] in the first run, {} {} {} [{}] in the second",
                a.index,
                fmt_ms(a.time_ns),
                a.target,
                a.kind,
                a.detail,
                fmt_ms(b.time_ns),
                b.target,
                b.kind,
                b.detail
            ));
        }
    }
    if left.len() != right.len() {
        return Some(format!(
            "the runs have different lengths: {} and {} events",
            left.len(),
            right.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::LiveTimers;
    use crate::decision::{Decide, DecisionKind, SeededSource};
    use crate::TimerId;

    #[test]
    fn live_timers_behave_like_a_map_of_ids_to_keys() {
        for seed in 0..50 {
            let mut draws = SeededSource::new(seed);
            let mut draw = |bound: u64| draws.below(DecisionKind::NodeRandom, bound);
            let (mut timers, mut model) = (LiveTimers::default(), BTreeMap::new());
            let mut next = 0;
            for _ in 0..400 {
                match draw(4) {
                    // Mostly fresh ids, as a node sets them; sometimes an old one again.
                    0 | 1 => {
                        next += 1 + draw(3);
                        let id = if draw(5) == 0 { draw(next + 1) } else { next };
                        let key = u128::from(draw(1_000));
                        timers.insert(TimerId(id), key);
                        model.insert(TimerId(id), key);
                    }
                    2 => {
                        let id = TimerId(draw(next + 1));
                        assert_eq!(timers.remove(&id), model.remove(&id), "seed {seed}");
                    }
                    _ if draw(50) == 0 => {
                        timers.clear();
                        model.clear();
                    }
                    _ => {
                        let id = TimerId(draw(next + 1));
                        assert_eq!(timers.contains(&id), model.contains_key(&id), "seed {seed}");
                    }
                }
                let ids: Vec<(TimerId, u128)> = model.iter().map(|(&id, &key)| (id, key)).collect();
                assert_eq!(timers.ids, ids, "seed {seed}");
            }
        }
    }
}
