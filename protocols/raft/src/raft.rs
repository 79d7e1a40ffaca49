//! The Raft replica: state, handlers and the persist-then-send discipline.
//!
//! Every handler mutates in-memory state, marks what must be written (`Dirty`) and queues its
//! outgoing messages in `outbox`. `Raft::finish` then applies committed entries, writes the
//! dirty state, syncs, and only then releases the outbox: by the host's ordering duty, no
//! message that depends on a write leaves before the write is durable. If a write fails
//! (I/O error, full disk, a misdirected write caught by read-back) the outbox is dropped and
//! the write is retried by the next handler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dst_protocols::options::{parse_bool, parse_ms, parse_number, unknown_option};
use dst_protocols::{Configurable, OptionList};
use dst_protocols::{Observation, Reply, Request, Service, Sessions};
use dst_sim::{ClientId, Node, NodeCtx, NodeId, StateMachine, StorageError, TimerId, MS};
use serde::{Deserialize, Serialize};

use crate::durable::{
    self, decode, parse_log_key, LogKey, LogRecord, Meta, RecordError, Recovery, SnapshotRecord,
    ALL_PREFIX, LOG_PREFIX, META_KEYS,
};
use crate::membership::{Configuration, Member};
use crate::message::{Body, Entry, LogIndex, RaftMsg, Term};

/// How linearizable reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// Reads go through the log like writes.
    Log,
    /// ReadIndex (thesis 6.4): record the commit index, confirm leadership with a heartbeat
    /// round acknowledged by a majority, wait until applied, then read locally.
    ReadIndex,
    /// Leader lease (thesis 6.4.1): skip the heartbeat round while a lease, derived from the
    /// last majority-acknowledged heartbeat and the clock-drift bound, holds. Unsafe if clocks
    /// drift beyond `clock_drift_bound_ppm` or jump.
    Lease,
}

/// Tunables. Defaults follow the paper (election timeout 150-300 ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfig {
    pub election_timeout_min_ns: u64,
    pub election_timeout_max_ns: u64,
    pub heartbeat_interval_ns: u64,
    /// Thesis 9.6: a candidate first asks whether it could win, without bumping terms.
    pub pre_vote: bool,
    /// Thesis 6.2: a leader steps down when it has not heard from a majority for an election
    /// timeout; followers ignore vote requests while they hear from a leader.
    pub check_quorum: bool,
    pub read_mode: ReadMode,
    /// Bound on relative clock drift between any two nodes, for leases.
    pub clock_drift_bound_ppm: u64,
    /// Reject messages whose checksum does not match their body.
    pub message_checksums: bool,
    /// Take a snapshot once this many applied entries follow the last one.
    pub snapshot_threshold_entries: u64,
    pub max_entries_per_message: usize,
    /// Bound on client writes a leader tracks for replies.
    pub max_pending_requests: usize,
    /// Bound on reads a leader holds while confirming leadership.
    pub max_pending_reads: usize,
    /// Delay before retrying a failed load or write.
    pub storage_retry_ns: u64,
    /// Random membership churn for simulation (0 = off): every this many ns of its own
    /// clock a leader draws a single-server change (see [`crate::membership`]).
    pub membership_churn_ns: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_min_ns: 150 * MS,
            election_timeout_max_ns: 300 * MS,
            heartbeat_interval_ns: 50 * MS,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            clock_drift_bound_ppm: 10_000,
            message_checksums: true,
            snapshot_threshold_entries: 64,
            max_entries_per_message: 64,
            max_pending_requests: 1024,
            max_pending_reads: 1024,
            storage_retry_ns: 10 * MS,
            membership_churn_ns: 0,
        }
    }
}

impl Configurable for RaftConfig {
    fn options(&self) -> OptionList {
        let read_mode = match self.read_mode {
            ReadMode::Log => "log",
            ReadMode::ReadIndex => "read_index",
            ReadMode::Lease => "lease",
        };
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
            ("pre_vote", self.pre_vote.to_string()),
            ("check_quorum", self.check_quorum.to_string()),
            ("read_mode", read_mode.to_string()),
            (
                "clock_drift_bound_ppm",
                self.clock_drift_bound_ppm.to_string(),
            ),
            ("message_checksums", self.message_checksums.to_string()),
            (
                "snapshot_threshold_entries",
                self.snapshot_threshold_entries.to_string(),
            ),
            ("batch_max", self.max_entries_per_message.to_string()),
            (
                "membership_churn_ms",
                (self.membership_churn_ns / MS).to_string(),
            ),
        ]
    }

    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "election_timeout_min_ms" => self.election_timeout_min_ns = parse_ms(name, value)?,
            "election_timeout_max_ms" => self.election_timeout_max_ns = parse_ms(name, value)?,
            "heartbeat_interval_ms" => self.heartbeat_interval_ns = parse_ms(name, value)?,
            "pre_vote" => self.pre_vote = parse_bool(name, value)?,
            "check_quorum" => self.check_quorum = parse_bool(name, value)?,
            "read_mode" => {
                self.read_mode = match value {
                    "log" => ReadMode::Log,
                    "read_index" => ReadMode::ReadIndex,
                    "lease" => ReadMode::Lease,
                    _ => {
                        return Err(format!(
                            "option read_mode: '{value}' is not log, read_index or lease"
                        ))
                    }
                }
            }
            "clock_drift_bound_ppm" => self.clock_drift_bound_ppm = parse_number(name, value)?,
            "message_checksums" => self.message_checksums = parse_bool(name, value)?,
            "snapshot_threshold_entries" => {
                self.snapshot_threshold_entries = parse_number(name, value)?
            }
            "batch_max" => self.max_entries_per_message = parse_number(name, value)?,
            "membership_churn_ms" => self.membership_churn_ns = parse_ms(name, value)?,
            _ => return Err(unknown_option("raft", name, &self.options())),
        }
        if self.election_timeout_min_ns == 0
            || self.election_timeout_max_ns <= self.election_timeout_min_ns
            || self.heartbeat_interval_ns == 0
            || self.max_entries_per_message == 0
            || self.snapshot_threshold_entries == 0
        {
            return Err(format!("option {name}={value} makes the configuration invalid (timeouts must be positive with min < max, batches and snapshot thresholds at least 1)"));
        }
        Ok(())
    }
}

/// A replica's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Timer payloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RaftTimer {
    Election,
    Heartbeat,
    /// Retry a failed load or write.
    StorageRetry,
    /// A leader's next random membership change (`membership_churn_ns`).
    Churn,
}

/// Whether the node can take part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Storage could not be read yet (I/O error); retrying.
    Loading,
    Running,
    /// The node found its term/vote record unreadable and refuses to take part: it cannot
    /// know whether it already voted, so any vote could be a second one.
    Halted(String),
}

#[derive(Clone, Debug)]
struct PendingRead<C> {
    client: ClientId,
    sequence: u64,
    command: C,
    read_index: LogIndex,
    round: u64,
}

/// How a service's reads are recognised and answered.
struct ReadFns<S: StateMachine> {
    is_read: fn(&S::Command) -> bool,
    query: fn(&S, &S::Command) -> Option<S::Output>,
}

impl<S: StateMachine> Clone for ReadFns<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: StateMachine> Copy for ReadFns<S> {}

/// Leader-only volatile state (Figure 2), indexed by node id.
#[derive(Clone, Debug)]
struct LeaderState {
    next_index: Vec<LogIndex>,
    match_index: Vec<LogIndex>,
    acked_round: Vec<u64>,
    /// Heard from since the last CheckQuorum tick.
    active: Vec<bool>,
    round: u64,
    /// Incarnation of the machine that last answered, per node: its acknowledgements count
    /// only for a voter of that incarnation.
    incarnation: Vec<Option<u64>>,
    /// A learner catching up before AddServer (thesis 4.2.1).
    catch_up: Option<CatchUp>,
    /// Send time of recent rounds (bounded by `ROUNDS_TRACKED_MAX`), for leases.
    round_sent_ns: BTreeMap<u64, u64>,
    /// Index of this term's no-op: reads wait until it is committed.
    term_start: LogIndex,
    lease_until_ns: u64,
    last_quorum_check_ns: u64,
    /// Monotonic time the latest round was sent (none yet: a heartbeat is due).
    last_round_ns: Option<u64>,
}

const ROUNDS_TRACKED_MAX: usize = 64;

/// A new server catching up in rounds (thesis 4.2.1): each round replicates up to the
/// leader's last index when the round began; the server is added once a round takes less
/// than an election timeout, and given up after `CATCH_UP_ROUNDS_MAX` rounds.
#[derive(Clone, Debug)]
struct CatchUp {
    member: Member,
    round: u32,
    round_target: LogIndex,
    round_start_ns: u64,
}

const CATCH_UP_ROUNDS_MAX: u32 = 10;

/// What must be written before the outbox may leave.
#[derive(Clone, Debug, Default)]
struct Dirty {
    meta: bool,
    snapshot: bool,
    /// Rewrite log entries from here to the end, and delete stale keys past the end.
    log_from: Option<LogIndex>,
}

#[derive(Debug)]
enum Out<C, O> {
    Send(NodeId, Body<C>),
    Broadcast(Body<C>),
    Reply(ClientId, Reply<O>),
}

#[derive(Debug)]
enum PersistError {
    Storage(StorageError),
    /// Read-back did not return what was written: the write went elsewhere or a bit flipped.
    Mismatch,
}

impl From<StorageError> for PersistError {
    fn from(error: StorageError) -> Self {
        PersistError::Storage(error)
    }
}

/// A Raft replica replicating service `S`.
pub struct Raft<S: StateMachine> {
    config: RaftConfig,
    reads: Option<ReadFns<S>>,
    initial: Sessions<S>,
    id: NodeId,
    cluster_size: u32,
    status: Status,

    // Persistent state (Figure 2), mirrored on disk by `persist`.
    meta: Meta,
    snapshot: SnapshotRecord,
    // invariant: log[k].index == snapshot.last_index + 1 + k.
    /// Entries are shared with the AppendEntries messages that carry them (never mutated).
    log: Vec<Arc<Entry<S::Command>>>,

    // Volatile state.
    commit_index: LogIndex,
    last_applied: LogIndex,
    /// The service behind its exactly-once session table.
    state: Sessions<S>,
    role: Role,
    leader_id: Option<NodeId>,
    /// Grants received this election, each naming the voter's incarnation.
    votes: BTreeSet<Member>,
    /// The latest configuration in the log (committed or not), or the snapshot's.
    members: Configuration,
    /// Index of the entry holding `members` (the snapshot index if it came from there).
    members_index: LogIndex,
    churn_timer: Option<TimerId>,
    /// Configuration entries applied since boot (statistics for tests and reports).
    configs_applied: u64,
    /// When this node last asked to rejoin (rate limit).
    last_rejoin_request_ns: Option<u64>,
    leader: Option<LeaderState>,
    /// Writes this leader appended and will answer when applied.
    pending_writes: BTreeSet<(ClientId, u64)>,
    pending_reads: Vec<PendingRead<S::Command>>,
    election_timer: Option<TimerId>,
    /// The election timeout is due at this monotonic time. Contact with a leader moves it
    /// on without touching the timer, which, when it fires early, is set for the rest.
    election_deadline_ns: u64,
    /// The randomised timeout drawn when the election timer was set, for this period.
    election_timeout_ns: u64,
    heartbeat_timer: Option<TimerId>,
    retry_timer: Option<TimerId>,
    last_leader_contact_ns: Option<u64>,
    /// Highest index known durable on this node's disk (learned from `Persisted`).
    persisted_index: LogIndex,
    /// Meta version that must be durable before a recovering node stores entries.
    recovery_unconfirmed: Option<u64>,
    /// Booted by `on_restart` (an empty disk then means it was wiped).
    restarted: bool,
    /// Send a `Persisted` note at the end of this handler even if nothing was written.
    note_wanted: bool,
    /// Recovery may end once the log is durable up to here.
    recovery_exit_at: Option<LogIndex>,
    /// Latest snapshot known durable, as (index, slot); new snapshots go to the other slot.
    durable_snapshot: (LogIndex, usize),
    /// Latest snapshot written, as (index, slot).
    written_snapshot: (LogIndex, usize),
    /// Highest log key that may exist on disk.
    disk_last_index: LogIndex,
    dirty: Dirty,
    outbox: Vec<Out<S::Command, S::Output>>,
    /// Reused for every record written (its contents are meaningless between writes).
    encode_buffer: Vec<u8>,
}

pub(crate) type Ctx<'a, S> = NodeCtx<'a, Raft<S>>;

mod handlers;
mod membership;
mod persist;

impl<S: StateMachine> Raft<S> {
    /// A replica whose service starts as `initial`. All commands go through the log unless
    /// read functions are set with [`Raft::with_reads`] (or built by [`Raft::for_service`]).
    pub fn new(config: RaftConfig, initial: S) -> Self {
        assert!(
            config.election_timeout_min_ns < config.election_timeout_max_ns,
            "election timeout range is empty"
        );
        assert!(
            config.heartbeat_interval_ns < config.election_timeout_min_ns,
            "heartbeats must come more often than election timeouts"
        );
        assert!(
            config.max_entries_per_message > 0,
            "max_entries_per_message must be positive"
        );
        Raft {
            config,
            reads: None,
            state: Sessions::new(initial.clone()),
            initial: Sessions::new(initial),
            id: NodeId(0),
            cluster_size: 1,
            status: Status::Loading,
            meta: Meta::default(),
            snapshot: SnapshotRecord::default(),
            log: Vec::new(),
            commit_index: LogIndex(0),
            last_applied: LogIndex(0),
            role: Role::Follower,
            leader_id: None,
            votes: BTreeSet::new(),
            members: Configuration::default(),
            members_index: LogIndex(0),
            churn_timer: None,
            last_rejoin_request_ns: None,
            configs_applied: 0,
            leader: None,
            pending_writes: BTreeSet::new(),
            pending_reads: Vec::new(),
            election_timer: None,
            election_deadline_ns: 0,
            election_timeout_ns: 0,
            heartbeat_timer: None,
            retry_timer: None,
            last_leader_contact_ns: None,
            persisted_index: LogIndex(0),
            note_wanted: false,
            recovery_unconfirmed: None,
            restarted: false,
            recovery_exit_at: None,
            durable_snapshot: (LogIndex(0), 1),
            written_snapshot: (LogIndex(0), 1),
            disk_last_index: LogIndex(0),
            dirty: Dirty::default(),
            outbox: Vec::new(),
            encode_buffer: Vec::new(),
        }
    }

    /// Serves commands `is_read` accepts by ReadIndex or lease instead of the log, answering
    /// them with `query` on the current state.
    pub fn with_reads(
        mut self,
        is_read: fn(&S::Command) -> bool,
        query: fn(&S, &S::Command) -> Option<S::Output>,
    ) -> Self {
        self.reads = Some(ReadFns { is_read, query });
        self
    }

    /// A replica of a [`Service`], whose read-only commands skip the log.
    pub fn for_service(config: RaftConfig, initial: S) -> Self
    where
        S: Service,
    {
        Raft::new(config, initial).with_reads(S::is_read_only, S::query)
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
    pub fn current_term(&self) -> Term {
        self.meta.current_term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.meta.voted_for
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }
    pub fn last_applied(&self) -> LogIndex {
        self.last_applied
    }
    pub fn is_recovering(&self) -> bool {
        self.meta.recovery.is_some()
    }
    /// The recovery bound, while recovering.
    pub fn recovery(&self) -> Option<Recovery> {
        self.meta.recovery
    }
    /// Entries after the snapshot.
    pub fn entries(&self) -> &[Arc<Entry<S::Command>>] {
        &self.log
    }
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.last_index
    }
    pub fn snapshot_term(&self) -> Term {
        self.snapshot.last_term
    }
    /// The replicated service.
    pub fn state(&self) -> &S {
        self.state.service()
    }
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.last_index.0 + self.log.len() as u64)
    }
    pub fn last_term(&self) -> Term {
        self.log
            .last()
            .map_or(self.snapshot.last_term, |entry| entry.term)
    }
    /// Term of the entry at `index`; `None` if compacted away or beyond the log.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        self.entry(index).map(|entry| entry.term)
    }
    /// The entry at `index`, if held (not compacted, not beyond the end).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry<S::Command>> {
        self.shared_entry(index).map(|entry| &**entry)
    }
    /// The entry at `index` as the log holds it (a clone is a reference count).
    fn shared_entry(&self, index: LogIndex) -> Option<&Arc<Entry<S::Command>>> {
        if index <= self.snapshot.last_index {
            return None;
        }
        self.log
            .get((index.0 - self.snapshot.last_index.0 - 1) as usize)
    }

    /// This machine as a member (its current incarnation).
    pub fn member(&self) -> Member {
        Member::new(self.id, self.meta.incarnation)
    }
    pub fn incarnation(&self) -> u64 {
        self.meta.incarnation
    }
    /// The latest configuration in the log, committed or not (thesis 4.1).
    pub fn members(&self) -> &Configuration {
        &self.members
    }
    /// Index of the entry holding [`Raft::members`].
    pub fn members_index(&self) -> LogIndex {
        self.members_index
    }
    /// Does this node's current incarnation vote in its latest configuration?
    pub fn is_voter(&self) -> bool {
        self.members.contains(self.member())
    }
    /// Configuration entries this node applied since it booted.
    pub fn configs_applied(&self) -> u64 {
        self.configs_applied
    }
    /// Rejoining after a wipe: neither votes nor stands until it is a voter again.
    pub fn is_rejoining(&self) -> bool {
        self.meta.rejoining
    }
    /// The latest configuration at or before `index` (held entries and the snapshot).
    pub fn config_at(&self, index: LogIndex) -> &Configuration {
        let held = index.0.saturating_sub(self.snapshot.last_index.0) as usize;
        self.log[..held.min(self.log.len())]
            .iter()
            .rev()
            .find_map(|entry| entry.config.as_ref())
            .unwrap_or(&self.snapshot.config)
    }

    /// Every machine except this one: leaders replicate to all of them, voters or not, so
    /// learners catch up and removed servers learn of their removal.
    fn peers(&self) -> impl Iterator<Item = NodeId> {
        let me = self.id;
        (0..self.cluster_size)
            .map(NodeId)
            .filter(move |node| *node != me)
    }
    /// Whether vote requests are ignored while hearing from a leader: for CheckQuorum and
    /// leases, and (thesis 4.2.3) once the membership changed, so removed servers cannot
    /// disrupt the cluster.
    fn stickiness(&self) -> bool {
        self.config.check_quorum
            || self.config.read_mode == ReadMode::Lease
            || self.members != Configuration::initial(self.cluster_size)
    }
    /// Thesis 4.2.3: while a node hears from a leader it ignores vote requests, so a
    /// partitioned node rejoining cannot depose a working leader (and leases stay valid).
    fn in_leader_lease(&self, now_ns: u64) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        self.last_leader_contact_ns
            .is_some_and(|heard_ns| now_ns < heard_ns + self.config.election_timeout_min_ns)
    }
}

// ---- the Node interface ----

impl<S: StateMachine> Node for Raft<S> {
    type Msg = RaftMsg<S::Command>;
    type Timer = RaftTimer;
    type Request = Request<S::Command>;
    type Reply = Reply<S::Output>;
    type Obs = Observation<S::Command, S::Output>;

    fn on_start(&mut self, ctx: &mut Ctx<'_, S>) {
        self.boot(ctx);
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, S>) {
        self.restarted = true;
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
        match msg.body {
            Body::PreVote(request) => self.on_pre_vote(ctx, from, request),
            Body::PreVoteResponse(response) => self.on_pre_vote_response(ctx, from, response),
            Body::RequestVote(request) => self.on_request_vote(ctx, from, request),
            Body::RequestVoteResponse(response) => self.on_vote_response(ctx, from, response),
            Body::AppendEntries(append) => self.on_append_entries(ctx, from, append),
            Body::AppendEntriesResponse(response) | Body::InstallSnapshotResponse(response) => {
                self.on_append_response(ctx, from, response)
            }
            Body::InstallSnapshot(install) => self.on_install_snapshot(ctx, from, install),
            Body::Persisted(persisted) => self.on_persisted(ctx, from, persisted),
            Body::ChangeMembership(change) => self.on_change_request(ctx, from, change),
        }
        self.finish(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, S>, timer: RaftTimer) {
        match timer {
            RaftTimer::StorageRetry => {
                self.retry_timer = None;
                if self.status == Status::Loading {
                    self.boot(ctx);
                    return;
                }
            }
            RaftTimer::Election => {
                self.election_timer = None;
                if !self.running(ctx) {
                    return;
                }
                if !self.election_due(ctx) {
                    return;
                }
                self.on_election_timeout(ctx);
            }
            RaftTimer::Heartbeat => {
                self.heartbeat_timer = None;
                if !self.running(ctx) {
                    return;
                }
                self.on_heartbeat(ctx);
            }
            RaftTimer::Churn => {
                self.churn_timer = None;
                if !self.running(ctx) {
                    return;
                }
                self.on_churn(ctx);
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
        if self.role != Role::Leader {
            let reply = Reply::Redirect {
                sequence: request.sequence,
                leader: self.leader_id,
            };
            self.outbox.push(Out::Reply(client, reply));
        } else if self
            .reads
            .is_some_and(|reads| (reads.is_read)(&request.command))
            && self.config.read_mode != ReadMode::Log
        {
            self.on_read(ctx, request);
        } else {
            self.on_write(ctx, request);
        }
        self.finish(ctx);
    }

    /// The log (encoded), the latest snapshot and the live service state with its sessions.
    fn footprint_bytes(&self) -> u64 {
        let log = postcard::to_allocvec(&self.log).map_or(0, |bytes| bytes.len());
        let state = self.state.snapshot().len();
        (log + self.snapshot.data.len() + state) as u64
    }

    fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check_local(self)
    }
}

// ---- boot and recovery from disk ----

impl<S: StateMachine> Raft<S> {
    fn running(&self, ctx: &mut Ctx<'_, S>) -> bool {
        match self.status {
            Status::Running => true,
            Status::Loading => {
                ctx.ignore("still loading storage");
                false
            }
            Status::Halted(_) => {
                ctx.ignore("halted: term/vote state lost");
                false
            }
        }
    }

    fn boot(&mut self, ctx: &mut Ctx<'_, S>) {
        self.id = ctx.id();
        self.cluster_size = ctx.cluster_size();
        assert!(self.id.0 < self.cluster_size, "node id outside the cluster");
        match self.load(ctx) {
            Ok(()) => {}
            Err(_) => {
                // Transient read errors: forget the partial load and try again.
                self.reset();
                self.status = Status::Loading;
                self.retry_timer =
                    Some(ctx.set_timer(self.config.storage_retry_ns, RaftTimer::StorageRetry));
                return;
            }
        }
        if let Status::Halted(reason) = &self.status {
            tracing::warn!(node = %self.id, %reason, "raft node halted");
            return;
        }
        if self.config.read_mode == ReadMode::Lease {
            // We may have heard from a leader just before crashing: honour its lease.
            self.last_leader_contact_ns = Some(ctx.now_ns());
        }
        self.reset_election_timer(ctx);
        self.finish(ctx);
    }

    /// Reads everything back. `Err` only for I/O errors (retry); damage is handled here.
    /// Back to the state of a freshly built instance (identity kept).
    fn reset(&mut self) {
        *self = Raft {
            config: self.config.clone(),
            reads: self.reads,
            state: self.initial.clone(),
            initial: self.initial.clone(),
            restarted: self.restarted,
            ..Raft::new(self.config.clone(), self.initial.service().clone())
        }
        .with_identity(self.id, self.cluster_size);
    }

    fn load(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(), StorageError> {
        self.reset();
        self.status = Status::Running;
        if ctx.keys_with_prefix(ALL_PREFIX).is_empty() {
            if self.restarted {
                // First boot writes a term record before anything else: an empty disk
                // after a restart was wiped. The member this machine was may have voted and
                // acknowledged entries it no longer knows of: it is gone for good. The
                // machine comes back as a new member, which votes only once the cluster
                // removed the old one and added it (see the crate docs).
                self.meta.incarnation = 1 + ctx.random_below(u64::MAX - 1);
                self.meta.rejoining = true;
                tracing::info!(node = %self.id, incarnation = self.meta.incarnation, "wiped disk: rejoining as a new member");
            }
            self.dirty.meta = true;
            return Ok(());
        }
        let Some(meta) = self.load_meta(ctx)? else {
            self.status = Status::Halted("no readable term/vote record".to_string());
            return Ok(());
        };
        self.meta = meta;
        let snapshot_damaged = self.load_snapshot(ctx)?;
        let log_damaged = self.load_log(ctx)?;
        // Loaded entries may survive from an unsynced batch whose term record was lost:
        // they may be acknowledged from now on, so the bound covers them.
        let loaded_term_max = self.last_term().max(self.snapshot.last_term);
        if loaded_term_max > self.meta.entry_term_max {
            self.meta.entry_term_max = loaded_term_max;
            self.dirty.meta = true;
        }
        if snapshot_damaged || log_damaged {
            self.begin_recovery();
        }
        // Entries of a newer term whose term record was lost in the same unsynced batch:
        // nothing of that term was acknowledged, so adopting it without a vote is safe.
        let newest = self.last_term().max(self.snapshot.last_term);
        if newest > self.meta.current_term {
            self.meta.current_term = newest;
            self.meta.voted_for = None;
            self.dirty.meta = true;
        }
        self.commit_index = self.snapshot.last_index;
        self.last_applied = self.snapshot.last_index;
        self.persisted_index = self.last_index();
        self.refresh_members();
        Ok(())
    }

    fn with_identity(mut self, id: NodeId, cluster_size: u32) -> Self {
        self.id = id;
        self.cluster_size = cluster_size;
        self.snapshot.config = Configuration::initial(cluster_size);
        self.members = self.snapshot.config.clone();
        self
    }

    fn load_meta(&mut self, ctx: &mut Ctx<'_, S>) -> Result<Option<Meta>, StorageError> {
        let mut best: Option<Meta> = None;
        for key in META_KEYS {
            let Some(decoded) =
                ctx.read_with(key, |bytes| bytes.map(|b| decode::<Meta>(key, b)))?
            else {
                continue;
            };
            match decoded {
                Ok(meta) if best.as_ref().is_none_or(|b| meta.version > b.version) => {
                    best = Some(meta)
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(node = %self.id, key, "damaged term/vote copy"),
            }
        }
        Ok(best)
    }

    /// Loads the newest valid snapshot slot. Returns true if any slot was damaged: the
    /// damaged one may have been the newest durable snapshot, whose log prefix is gone.
    fn load_snapshot(&mut self, ctx: &mut Ctx<'_, S>) -> Result<bool, StorageError> {
        let mut damaged = false;
        let mut best: Option<(SnapshotRecord, usize)> = None;
        for (slot, key) in durable::SNAPSHOT_KEYS.iter().enumerate() {
            let decode_slot =
                |bytes: Option<&[u8]>| bytes.map(|b| decode::<SnapshotRecord>(key, b));
            let Some(decoded) = ctx.read_with(key, decode_slot)? else {
                continue;
            };
            match decoded {
                Ok(record) => {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| record.last_index > b.last_index)
                    {
                        best = Some((record, slot));
                    }
                }
                // A torn slot is an unsynced snapshot: the other slot holds the durable one.
                Err(RecordError::Torn) => {}
                Err(RecordError::Corrupt) => damaged = true,
            }
        }
        if let Some((record, slot)) = best {
            match self.restore_snapshot(&record) {
                Ok(()) => {
                    self.durable_snapshot = (record.last_index, slot);
                    self.written_snapshot = (record.last_index, slot);
                    self.snapshot = record;
                }
                Err(_) => damaged = true,
            }
        }
        Ok(damaged)
    }

    /// Loads the longest chain of valid entries after the snapshot. A missing key, a torn
    /// record or a broken chain (an entry whose `prev_term` disagrees with its predecessor)
    /// is where unsynced writes stopped: cut there. A corrupt record may be one we
    /// acknowledged: cut there too, and report damage so the node enters recovery.
    fn load_log(&mut self, ctx: &mut Ctx<'_, S>) -> Result<bool, StorageError> {
        let keys = ctx.keys_with_prefix(LOG_PREFIX);
        let max_key = keys.iter().filter_map(|key| parse_log_key(key)).max();
        self.disk_last_index = max_key.unwrap_or_default();
        let mut index = self.snapshot.last_index.next();
        let mut prev_term = self.snapshot.last_term;
        let mut damaged = false;
        // Bounded: each step consumes one existing key.
        while index <= self.disk_last_index {
            let key = LogKey::new(index);
            let key = key.as_str();
            let decode_entry =
                |bytes: Option<&[u8]>| bytes.map(|b| decode::<LogRecord<S::Command>>(key, b));
            let Some(decoded) = ctx.read_with(key, decode_entry)? else {
                break;
            };
            let record = match decoded {
                Ok(record) => record,
                // Unsynced, so unacknowledged (or superseded): the log ends before it.
                Err(RecordError::Torn) => break,
                Err(RecordError::Corrupt) => {
                    damaged = true;
                    break;
                }
            };
            if record.entry.index != index || record.prev_term != prev_term {
                break;
            }
            prev_term = record.entry.term;
            self.log.push(Arc::new(record.entry));
            index = index.next();
        }
        if damaged {
            self.recovery_bound(self.disk_last_index);
        }
        Ok(damaged)
    }

    /// Every entry this node may have acknowledged has a term of at most `entry_term_max`
    /// and an index of at most `last_index` (the highest log key on disk).
    fn recovery_bound(&mut self, last_index: LogIndex) {
        let term = self.meta.entry_term_max;
        let bound = match self.meta.recovery {
            Some(previous) => Recovery {
                term: previous.term.max(term),
                last_index: previous.last_index.max(last_index),
            },
            None => Recovery { term, last_index },
        };
        self.meta.recovery = Some(bound);
    }

    fn begin_recovery(&mut self) {
        self.recovery_bound(self.disk_last_index.max(self.last_index()));
        tracing::warn!(node = %self.id, recovery = ?self.meta.recovery, "damaged log: recovering");
        self.dirty.meta = true;
        // The damaged keys are the only evidence of what this node may have acknowledged:
        // until the recovery bound is durable (a `Persisted` note for the next meta version
        // arrives), the node stores no entries, so nothing overwrites that evidence.
        self.recovery_unconfirmed = Some(self.meta.version + 1);
    }

    fn restore_snapshot(&mut self, record: &SnapshotRecord) -> Result<(), String> {
        self.state = if record.last_index == LogIndex(0) {
            self.initial.clone()
        } else {
            Sessions::restore(&record.data)?
        };
        Ok(())
    }
}
