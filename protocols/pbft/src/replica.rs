//! The PBFT replica: state, handlers and the normal-case protocol. The view change lives in
//! `view_change.rs`, recovery and state transfer in `recovery.rs`.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::{command_digest, Observation, Reply, Sessions};
use dst_sim::{ClientId, Digest, Node, NodeCtx, NodeId, Signature, Signed, StateMachine, MS};
use serde::Serialize;

use crate::durable::{self, CheckpointRecord, PrePrepareRecord, StableRecord};
use crate::message::{
    check_body, check_commit_proof, check_request, check_statement, node_signer, request_digest,
    ClientRequest, CommitProof, Message, NewView, Phase, PreparedCert, Quorums, Seq, Statement,
    Status, View, ViewChange,
};
use crate::PbftConfig;

/// Most checkpoint sequence numbers kept per signer (its latest ones).
pub(crate) const CHECKPOINT_SEQS_PER_SIGNER: usize = 4;
/// Most target views kept per view-change signer (its latest ones).
pub(crate) const VIEW_CHANGE_VIEWS_PER_SIGNER: usize = 2;
/// Rough encoded size of one signed statement, for the memory metric.
const STATEMENT_BYTES: u64 = 96;

/// Timers of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PbftTimer {
    /// The view-change timer; stale unless `epoch` is the current one.
    ViewChange { epoch: u64 },
    /// Periodic status broadcast and retransmission.
    Status,
}

/// One slot of the log, for the view in `view`.
#[derive(Clone, Debug)]
pub(crate) struct Slot<C> {
    pub view: View,
    pub pre_prepare: Option<Signed<Statement>>,
    pub request: Option<ClientRequest<C>>,
    pub prepares: BTreeMap<NodeId, Signed<Statement>>,
    pub commits: BTreeMap<NodeId, Signed<Statement>>,
    /// Prepared in `view` (the certificate is durable and the commit was sent).
    pub prepared_here: bool,
    /// When the pre-prepare was accepted (retransmission waits a status interval).
    pub accepted_ns: u64,
    /// Committed (final): the certificate and body, whatever view it committed in.
    pub committed: Option<CommitProof<C>>,
}

impl<C> Slot<C> {
    pub fn new(view: View) -> Self {
        Slot {
            view,
            pre_prepare: None,
            request: None,
            prepares: BTreeMap::new(),
            commits: BTreeMap::new(),
            prepared_here: false,
            accepted_ns: 0,
            committed: None,
        }
    }

    /// Forgets everything of an older view (a commit is final and stays).
    fn enter(&mut self, view: View) {
        if self.view != view {
            let committed = self.committed.take();
            *self = Slot::new(view);
            self.committed = committed;
        }
    }
}

/// This replica's own checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct OwnCheckpoint {
    pub digest: Digest,
    pub snapshot: Vec<u8>,
}

/// A PBFT replica replicating the service `S` (inside [`Sessions`] for exactly-once).
pub struct Pbft<S: StateMachine> {
    pub(crate) config: PbftConfig,
    pub(crate) id: NodeId,
    pub(crate) quorums: Quorums,
    /// The current view, or the view being changed to while `view_changing`.
    pub(crate) view: View,
    pub(crate) view_changing: bool,
    /// Storage lost data this replica may have promised: it never sends again.
    pub(crate) mute: bool,
    pub(crate) state: Sessions<S>,
    pub(crate) last_executed: Seq,
    pub(crate) stable: StableRecord,
    pub(crate) meta_version: u64,
    // invariant: keys >= stable.seq.
    pub(crate) own_checkpoints: BTreeMap<Seq, OwnCheckpoint>,
    // invariant: keys > stable.seq; at most CHECKPOINT_SEQS_PER_SIGNER per signer.
    pub(crate) checkpoint_votes: BTreeMap<Seq, BTreeMap<NodeId, Signed<Statement>>>,
    // invariant: keys in (stable.seq, stable.seq + window].
    pub(crate) log: BTreeMap<Seq, Slot<S::Command>>,
    /// The P set: per slot the prepared certificate of the highest view, and its disk copy.
    pub(crate) prepared: BTreeMap<Seq, (PreparedCert<S::Command>, u8)>,
    /// Slots whose durable record was corrupt: no votes for them, no view change, until the
    /// stable checkpoint passes them.
    pub(crate) damaged: BTreeSet<Seq>,
    /// The primary's next sequence number to assign.
    pub(crate) next_seq: Seq,
    /// Requests received and not yet executed, the latest per client.
    pub(crate) pending: BTreeMap<ClientId, ClientRequest<S::Command>>,
    pub(crate) view_changes: ViewChanges<S::Command>,
    pub(crate) own_view_change: Option<Signed<ViewChange<S::Command>>>,
    /// The NEW-VIEW that installed the current view (to help lagging replicas).
    pub(crate) new_view: Option<Signed<NewView<S::Command>>>,
    /// The armed view-change timer: its epoch and the request it waits for (if any).
    pub(crate) view_change_timer: Option<ArmedTimer>,
    pub(crate) timer_epoch: u64,
    pub(crate) view_change_attempt: u32,
}

/// Signature verification as the pure checks take it.
pub(crate) type Verifier<'c> = dyn FnMut(&Signature, &Digest) -> bool + 'c;

/// Valid VIEW-CHANGEs held, by target view and signer.
pub(crate) type ViewChanges<C> = BTreeMap<View, BTreeMap<NodeId, Signed<ViewChange<C>>>>;

/// The armed view-change timer: its epoch, handle and the request it waits for (if any).
pub(crate) type ArmedTimer = (u64, dst_sim::TimerId, Option<(ClientId, u64)>);

/// A verifier that charges the context's virtual CPU.
pub(crate) fn verifier<'c, 'a: 'c, N: Node>(ctx: &'c mut NodeCtx<'a, N>) -> Box<Verifier<'c>> {
    Box::new(move |signature, digest| ctx.verify(signature, digest))
}

pub(crate) type Ctx<'a, 'b, S> = NodeCtx<'a, Pbft<S>>;

impl<S: StateMachine> Pbft<S> {
    /// A replica of `service`; the id and cluster size come from the context at start.
    pub fn for_service(config: PbftConfig, service: S) -> Self {
        Pbft {
            config,
            id: NodeId(0),
            quorums: Quorums::new(1),
            view: View(0),
            view_changing: false,
            mute: false,
            state: Sessions::new(service),
            last_executed: Seq(0),
            stable: StableRecord::default(),
            meta_version: 0,
            own_checkpoints: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            log: BTreeMap::new(),
            prepared: BTreeMap::new(),
            damaged: BTreeSet::new(),
            next_seq: Seq(1),
            pending: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            own_view_change: None,
            new_view: None,
            view_change_timer: None,
            timer_epoch: 0,
            view_change_attempt: 0,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The current view (or the target of a view change in progress).
    pub fn view(&self) -> View {
        self.view
    }
    /// True while changing views.
    pub fn is_view_changing(&self) -> bool {
        self.view_changing
    }
    /// The last executed sequence number.
    pub fn last_executed(&self) -> Seq {
        self.last_executed
    }
    /// The stable checkpoint's sequence number (the low water mark).
    pub fn stable_seq(&self) -> Seq {
        self.stable.seq
    }
    /// Slots held in the log.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }
    /// The replicated service with its sessions.
    pub fn state(&self) -> &Sessions<S> {
        &self.state
    }
    /// True if storage damage silenced this replica for good.
    pub fn is_mute(&self) -> bool {
        self.mute
    }

    /// A one-line account of the replica's state, for diagnostics.
    pub fn debug_summary(&self) -> String {
        format!(
            "damaged {:?} pending {} view-changes {:?} timer {:?} attempt {}",
            self.damaged,
            self.pending.len(),
            self.view_changes
                .iter()
                .map(|(view, changes)| (view.0, changes.keys().map(|n| n.0).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            self.view_change_timer
                .map(|(epoch, _, watched)| (epoch, watched)),
            self.view_change_attempt,
        )
    }

    pub(crate) fn primary(&self) -> NodeId {
        self.quorums.primary(self.view)
    }
    pub(crate) fn is_primary(&self) -> bool {
        self.primary() == self.id
    }
    pub(crate) fn high_water(&self) -> Seq {
        Seq(self.stable.seq.0.saturating_add(self.config.window))
    }
    pub(crate) fn in_window(&self, seq: Seq) -> bool {
        seq > self.stable.seq && seq <= self.high_water()
    }
    pub(crate) fn status_interval_ns(&self) -> u64 {
        self.config.status_interval_ms.max(1) * MS
    }

    pub(crate) fn init(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        self.id = ctx.id();
        self.quorums = Quorums::new(ctx.cluster_size()).with_leader_order(self.config.leader_order);
        ctx.set_timer(self.status_interval_ns(), PbftTimer::Status);
    }

    pub(crate) fn sign_statement(
        ctx: &mut Ctx<'_, '_, S>,
        phase: Phase,
        view: View,
        seq: Seq,
        digest: Digest,
    ) -> Signed<Statement> {
        ctx.sign_value(Statement {
            phase,
            view,
            seq,
            digest,
        })
    }

    /// Writes a record; false (and the message counted as ignored) on a storage error.
    pub(crate) fn persist<T: Serialize>(ctx: &mut Ctx<'_, '_, S>, key: &str, record: &T) -> bool {
        match ctx.write(key, durable::encode(key, record)) {
            Ok(()) => true,
            Err(_) => {
                ctx.ignore("storage: write failed");
                false
            }
        }
    }

    /// Writes a record to both of its copies.
    pub(crate) fn persist_copies<K: AsRef<str>, T: Serialize>(
        ctx: &mut Ctx<'_, '_, S>,
        keys: &[K; 2],
        record: &T,
    ) -> bool {
        keys.iter()
            .all(|key| Self::persist(ctx, key.as_ref(), record))
    }

    /// The slot `seq` in the current view (created or reset as needed).
    pub(crate) fn slot_in_view(&mut self, seq: Seq) -> &mut Slot<S::Command> {
        let view = self.view;
        let slot = self.log.entry(seq).or_insert_with(|| Slot::new(view));
        slot.enter(view);
        slot
    }

    // ---- requests ----

    pub(crate) fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        request: ClientRequest<S::Command>,
        from_client: bool,
    ) {
        let (client, sequence) = (request.value.client, request.value.sequence);
        match self.state.last_sequence(client) {
            Some(last) if sequence < last => return ctx.ignore("request: older than executed"),
            Some(last) if sequence == last => {
                if from_client {
                    // A retry of the last executed request: the session answers from its
                    // cache without applying again.
                    if let Some(output) = self.state.apply(&request.value).into_output() {
                        ctx.reply(client, Reply::Done { sequence, output });
                    }
                }
                return;
            }
            _ => {}
        }
        match self.pending.get(&client) {
            Some(held) if held.value.sequence > sequence => {
                return ctx.ignore("request: older than pending")
            }
            Some(held) if held.value.sequence == sequence => {}
            Some(_) => {
                self.pending.insert(client, request.clone());
            }
            None if self.pending.len() >= self.config.pending_max => {
                return ctx.ignore("request: pending requests full")
            }
            None => {
                self.pending.insert(client, request.clone());
            }
        }
        if self.view_changing || self.mute {
            return;
        }
        if self.is_primary() {
            self.order_pending(ctx);
        } else if from_client {
            ctx.send(self.primary(), Message::Request(request));
            let leader = Some(self.primary());
            ctx.reply(client, Reply::Redirect { sequence, leader });
        }
        self.arm_request_timer(ctx);
    }

    /// The primary assigns sequence numbers to pending requests not yet in its log.
    pub(crate) fn order_pending(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if self.view_changing || !self.is_primary() || self.mute {
            return;
        }
        self.next_seq = self
            .next_seq
            .max(Seq(self.last_executed.0 + 1))
            .max(Seq(self.stable.seq.0 + 1));
        let in_log: BTreeSet<(ClientId, u64)> = self
            .log
            .range(Seq(self.last_executed.0 + 1)..)
            .filter(|(_, slot)| slot.view == self.view && slot.committed.is_none())
            .filter_map(|(_, slot)| slot.request.as_ref())
            .map(|request| (request.value.client, request.value.sequence))
            .collect();
        let waiting: Vec<ClientRequest<S::Command>> = self
            .pending
            .values()
            .filter(|request| !in_log.contains(&(request.value.client, request.value.sequence)))
            .cloned()
            .collect();
        let mut outgoing = Vec::new();
        for request in waiting {
            let seq = self.next_seq;
            if seq > self.high_water() || self.damaged.contains(&seq) {
                break;
            }
            let statement = Self::sign_statement(
                ctx,
                Phase::PrePrepare,
                self.view,
                seq,
                request_digest(&request),
            );
            let record = PrePrepareRecord {
                statement: statement.clone(),
                request: Some(request.clone()),
            };
            if !Self::persist_copies(ctx, &durable::pre_prepare_keys(seq), &record) {
                break;
            }
            let now_ns = ctx.now_ns();
            let slot = self.slot_in_view(seq);
            slot.pre_prepare = Some(statement.clone());
            slot.request = Some(request.clone());
            slot.accepted_ns = now_ns;
            self.next_seq = Seq(seq.0 + 1);
            outgoing.push(Message::PrePrepare {
                statement,
                request: Some(request),
            });
        }
        if !outgoing.is_empty() {
            ctx.sync();
        }
        for message in outgoing {
            ctx.broadcast(message);
        }
    }

    // ---- normal case ----

    pub(crate) fn on_pre_prepare(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        statement: Signed<Statement>,
        request: Option<ClientRequest<S::Command>>,
    ) {
        let value = statement.value;
        if value.phase != Phase::PrePrepare {
            return ctx.ignore("pre-prepare: wrong phase");
        }
        if self.view_changing || value.view != self.view {
            return ctx.ignore("pre-prepare: not in the current view");
        }
        if self.is_primary() {
            return ctx.ignore("pre-prepare: addressed to the primary");
        }
        if !self.in_window(value.seq) {
            return ctx.ignore("pre-prepare: outside the water marks");
        }
        if self.damaged.contains(&value.seq) {
            return ctx.ignore("pre-prepare: slot damaged on disk");
        }
        if let Some(slot) = self
            .log
            .get(&value.seq)
            .filter(|slot| slot.view == self.view)
        {
            if let Some(accepted) = &slot.pre_prepare {
                if accepted.value != value {
                    return ctx.ignore("pre-prepare: conflicts with the accepted one");
                }
                // The primary retransmits: it may lack this replica's prepare.
                if let Some(prepare) = slot.prepares.get(&self.id).cloned() {
                    ctx.send(self.primary(), Message::Prepare(prepare));
                }
                return ctx.ignore("pre-prepare: duplicate");
            }
        }
        let primary = self.primary();
        if check_statement(&mut verifier(ctx), &statement, &value, self.quorums.n) != Some(primary)
        {
            return ctx.ignore("pre-prepare: not signed by the primary");
        }
        let checked = check_body(&mut verifier(ctx), &value.digest, &request);
        if let Err(reason) = checked {
            return ctx.ignore(reason);
        }
        let record = PrePrepareRecord {
            statement: statement.clone(),
            request: request.clone(),
        };
        if !Self::persist_copies(ctx, &durable::pre_prepare_keys(value.seq), &record) {
            return;
        }
        ctx.sync();
        let prepare =
            Self::sign_statement(ctx, Phase::Prepare, value.view, value.seq, value.digest);
        let now_ns = ctx.now_ns();
        let own = self.id;
        let slot = self.slot_in_view(value.seq);
        slot.pre_prepare = Some(statement);
        slot.request = request;
        slot.accepted_ns = now_ns;
        slot.prepares.insert(own, prepare.clone());
        ctx.broadcast(Message::Prepare(prepare));
        self.try_prepared(ctx, value.seq);
    }

    /// A PREPARE or COMMIT vote.
    pub(crate) fn on_vote(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        vote: Signed<Statement>,
        phase: Phase,
    ) {
        let value = vote.value;
        if value.phase != phase {
            return ctx.ignore("vote: wrong phase");
        }
        if self.view_changing || value.view != self.view {
            return ctx.ignore("vote: not in the current view");
        }
        if !self.in_window(value.seq) {
            return ctx.ignore("vote: outside the water marks");
        }
        let Some(signer) = node_signer(&vote.signature, self.quorums.n) else {
            return ctx.ignore("vote: foreign signer");
        };
        if phase == Phase::Prepare && signer == self.primary() {
            return ctx.ignore("vote: prepare from the primary");
        }
        if let Some(slot) = self
            .log
            .get(&value.seq)
            .filter(|slot| slot.view == self.view)
        {
            let votes = if phase == Phase::Prepare {
                &slot.prepares
            } else {
                &slot.commits
            };
            if votes.contains_key(&signer) {
                return ctx.ignore("vote: already have this signer's vote");
            }
        }
        if check_statement(&mut verifier(ctx), &vote, &value, self.quorums.n).is_none() {
            return ctx.ignore("vote: bad signature");
        }
        let slot = self.slot_in_view(value.seq);
        if phase == Phase::Prepare {
            slot.prepares.insert(signer, vote);
            self.try_prepared(ctx, value.seq);
        } else {
            slot.commits.insert(signer, vote);
            self.try_committed(ctx, value.seq);
        }
    }

    /// prepared(m, v, n): the pre-prepare and `2f` matching prepares from distinct backups.
    pub(crate) fn try_prepared(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: Seq) {
        let quorums = self.quorums;
        let Some(slot) = self.log.get(&seq) else {
            return;
        };
        let Some(pre_prepare) = slot.pre_prepare.clone() else {
            return;
        };
        if slot.view != self.view || slot.prepared_here || self.damaged.contains(&seq) {
            return;
        }
        let expected = Statement {
            phase: Phase::Prepare,
            ..pre_prepare.value
        };
        let prepares: Vec<Signed<Statement>> = slot
            .prepares
            .values()
            .filter(|vote| vote.value == expected)
            .cloned()
            .collect();
        if prepares.len() < quorums.prepares() {
            return;
        }
        let cert = PreparedCert {
            pre_prepare,
            prepares,
            request: slot.request.clone(),
        };
        let copy = match self.prepared.get(&seq) {
            Some((_, copy)) => 1 - copy,
            None => 0,
        };
        if !Self::persist(ctx, &durable::prepared_key(seq, copy), &cert) {
            return;
        }
        ctx.sync();
        self.prepared.insert(seq, (cert, copy));
        let commit = Self::sign_statement(ctx, Phase::Commit, self.view, seq, expected.digest);
        let own = self.id;
        let slot = self.slot_in_view(seq);
        slot.prepared_here = true;
        slot.commits.insert(own, commit.clone());
        ctx.broadcast(Message::Commit(commit));
        self.try_committed(ctx, seq);
    }

    /// committed-local(m, v, n): prepared and `2f + 1` matching commits.
    pub(crate) fn try_committed(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: Seq) {
        let quorum = self.quorums.quorum();
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        if slot.committed.is_some() || !slot.prepared_here || slot.view != self.view {
            return;
        }
        let Some(pre_prepare) = &slot.pre_prepare else {
            return;
        };
        let expected = Statement {
            phase: Phase::Commit,
            ..pre_prepare.value
        };
        let commits: Vec<Signed<Statement>> = slot
            .commits
            .values()
            .filter(|vote| vote.value == expected)
            .take(quorum)
            .cloned()
            .collect();
        if commits.len() < quorum {
            return;
        }
        slot.committed = Some(CommitProof {
            commits,
            request: slot.request.clone(),
        });
        self.execute_ready(ctx);
    }

    /// A committed certificate from a peer (catch-up).
    pub(crate) fn on_commit_proof(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        proof: CommitProof<S::Command>,
    ) {
        let Some(first) = proof.commits.first().map(|vote| vote.value) else {
            return ctx.ignore("commit proof: empty");
        };
        if first.seq <= self.last_executed || !self.in_window(first.seq) {
            return ctx.ignore("commit proof: not needed");
        }
        if self
            .log
            .get(&first.seq)
            .is_some_and(|slot| slot.committed.is_some())
        {
            return ctx.ignore("commit proof: already committed");
        }
        let quorums = self.quorums;
        let checked = check_commit_proof(&mut verifier(ctx), &proof, quorums);
        let statement = match checked {
            Ok(statement) => statement,
            Err(reason) => return ctx.ignore(reason),
        };
        let view = self.view;
        let slot = self
            .log
            .entry(statement.seq)
            .or_insert_with(|| Slot::new(view));
        slot.committed = Some(proof);
        self.execute_ready(ctx);
    }

    /// Executes committed slots in order.
    pub(crate) fn execute_ready(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        for _ in 0..=self.config.window {
            let next = Seq(self.last_executed.0 + 1);
            let Some(proof) = self.log.get(&next).and_then(|slot| slot.committed.as_ref()) else {
                break;
            };
            let request = proof.request.clone();
            self.execute(ctx, next, request);
        }
    }

    fn execute(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        seq: Seq,
        request: Option<ClientRequest<S::Command>>,
    ) {
        self.last_executed = seq;
        let node = self.id;
        let identity = request
            .as_ref()
            .map(|request| (request.value.client, request.value.sequence));
        ctx.observe(Observation::Commit {
            node,
            slot: seq.0,
            request: identity,
            command_digest: request
                .as_ref()
                .map_or(0, |request| command_digest(&request.value.command)),
        });
        let output = request
            .as_ref()
            .map(|request| self.state.apply(&request.value));
        ctx.observe(Observation::Apply {
            node,
            slot: seq.0,
            request: identity,
            state_digest: self.state.digest(),
        });
        if let (Some((client, sequence)), Some(output)) = (identity, output) {
            if let Some(output) = output.into_output() {
                ctx.reply(client, Reply::Done { sequence, output });
            }
            if self
                .pending
                .get(&client)
                .is_some_and(|held| held.value.sequence <= sequence)
            {
                self.pending.remove(&client);
            }
            self.on_request_executed(ctx, client, sequence);
        }
        if seq.0.is_multiple_of(self.config.checkpoint_interval.max(1)) {
            self.take_checkpoint(ctx, seq);
        }
    }

    // ---- checkpoints ----

    fn take_checkpoint(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: Seq) {
        let snapshot = self.state.snapshot();
        let digest = Digest::of_bytes(&snapshot);
        let record = CheckpointRecord {
            seq,
            snapshot: snapshot.clone(),
        };
        self.own_checkpoints
            .insert(seq, OwnCheckpoint { digest, snapshot });
        if !Self::persist(ctx, &durable::checkpoint_key(seq), &record) {
            return;
        }
        ctx.sync();
        let vote = Self::sign_statement(ctx, Phase::Checkpoint, View(0), seq, digest);
        ctx.broadcast(Message::Checkpoint(vote.clone()));
        self.checkpoint_votes
            .entry(seq)
            .or_default()
            .insert(self.id, vote);
        self.try_stable(ctx, seq);
    }

    pub(crate) fn on_checkpoint(&mut self, ctx: &mut Ctx<'_, '_, S>, vote: Signed<Statement>) {
        let value = vote.value;
        let interval = self.config.checkpoint_interval.max(1);
        if value.phase != Phase::Checkpoint
            || value.view != View(0)
            || !value.seq.0.is_multiple_of(interval)
        {
            return ctx.ignore("checkpoint: malformed");
        }
        if value.seq <= self.stable.seq {
            return ctx.ignore("checkpoint: not above the stable one");
        }
        let Some(signer) = node_signer(&vote.signature, self.quorums.n) else {
            return ctx.ignore("checkpoint: foreign signer");
        };
        if self
            .checkpoint_votes
            .get(&value.seq)
            .is_some_and(|votes| votes.contains_key(&signer))
        {
            return ctx.ignore("checkpoint: duplicate");
        }
        if check_statement(&mut verifier(ctx), &vote, &value, self.quorums.n).is_none() {
            return ctx.ignore("checkpoint: bad signature");
        }
        self.checkpoint_votes
            .entry(value.seq)
            .or_default()
            .insert(signer, vote);
        let held: Vec<Seq> = self
            .checkpoint_votes
            .iter()
            .filter(|(_, votes)| votes.contains_key(&signer))
            .map(|(seq, _)| *seq)
            .collect();
        if held.len() > CHECKPOINT_SEQS_PER_SIGNER {
            if let Some(votes) = self.checkpoint_votes.get_mut(&held[0]) {
                votes.remove(&signer);
            }
        }
        self.checkpoint_votes.retain(|_, votes| !votes.is_empty());
        self.try_stable(ctx, value.seq);
    }

    fn try_stable(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: Seq) {
        let Some(votes) = self.checkpoint_votes.get(&seq) else {
            return;
        };
        let mut by_digest: BTreeMap<Digest, Vec<Signed<Statement>>> = BTreeMap::new();
        for vote in votes.values() {
            by_digest
                .entry(vote.value.digest)
                .or_default()
                .push(vote.clone());
        }
        let quorum = self.quorums.quorum();
        if let Some((digest, mut proof)) = by_digest.into_iter().find(|(_, v)| v.len() >= quorum) {
            proof.truncate(quorum);
            self.make_stable(ctx, seq, digest, proof);
        }
    }

    /// Adopts a stable checkpoint (its proof already checked) and collects the garbage.
    pub(crate) fn make_stable(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        seq: Seq,
        digest: Digest,
        proof: Vec<Signed<Statement>>,
    ) {
        if seq <= self.stable.seq {
            return;
        }
        if let Some(own) = self.own_checkpoints.get(&seq) {
            if own.digest != digest {
                ctx.observe(Observation::InvariantViolated {
                    node: self.id,
                    what: format!("stable checkpoint {} differs from own state", seq.0),
                });
            }
        }
        let record = StableRecord {
            version: self.stable.version + 1,
            seq,
            digest,
            proof,
        };
        if !Self::persist_copies(ctx, &durable::STABLE_KEYS, &record) {
            return;
        }
        ctx.sync();
        self.stable = record;
        self.collect_garbage(ctx);
        if self.last_executed < seq {
            // Behind the cluster: peers answer a status with the snapshot.
            ctx.broadcast(Message::Status(self.status()));
        }
        if !self.view_changing && self.is_primary() {
            self.next_seq = self.next_seq.max(Seq(seq.0 + 1));
            self.order_pending(ctx);
        }
    }

    fn collect_garbage(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let low = self.stable.seq;
        let above = Seq(low.0 + 1);
        self.log = self.log.split_off(&above);
        self.prepared = self.prepared.split_off(&above);
        self.checkpoint_votes = self.checkpoint_votes.split_off(&above);
        self.damaged = self.damaged.split_off(&above);
        self.own_checkpoints = self.own_checkpoints.split_off(&low);
        let mut doomed = Vec::new();
        for (prefix, keep_from) in [
            (durable::PRE_PREPARE_PREFIX, above),
            (durable::PREPARED_PREFIX, above),
            (durable::CHECKPOINT_PREFIX, low),
        ] {
            for key in ctx.keys_with_prefix(prefix) {
                if durable::parse_seq(prefix, &key).is_none_or(|seq| seq < keep_from) {
                    doomed.push(key);
                }
            }
        }
        for key in doomed {
            // A failed delete leaves a record below the low water mark, ignored on recovery.
            let _ = ctx.delete(&key);
        }
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            view: self.view,
            view_changing: self.view_changing,
            last_executed: self.last_executed,
            stable: self.stable.seq,
        }
    }

    // ---- the view-change timer (armed while a request waits) ----

    pub(crate) fn arm_request_timer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if self.view_changing || self.view_change_timer.is_some() || self.mute {
            return;
        }
        let Some(waiting) = self.pending.values().next() else {
            return;
        };
        let watched = (waiting.value.client, waiting.value.sequence);
        let timeout_ns = self.config.view_change_timeout_ms.max(1) * MS;
        self.arm_timer(ctx, timeout_ns, Some(watched));
    }

    pub(crate) fn arm_timer(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        delay_ns: u64,
        watched: Option<(ClientId, u64)>,
    ) {
        self.cancel_timer(ctx);
        self.timer_epoch += 1;
        let epoch = self.timer_epoch;
        let id = ctx.set_timer(delay_ns, PbftTimer::ViewChange { epoch });
        self.view_change_timer = Some((epoch, id, watched));
    }

    pub(crate) fn cancel_timer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if let Some((_, id, _)) = self.view_change_timer.take() {
            ctx.cancel_timer(id);
        }
    }

    fn on_request_executed(&mut self, ctx: &mut Ctx<'_, '_, S>, client: ClientId, sequence: u64) {
        if self.view_changing {
            return;
        }
        if let Some((_, _, Some((watched_client, watched_sequence)))) = self.view_change_timer {
            if watched_client == client && watched_sequence <= sequence {
                self.cancel_timer(ctx);
                self.arm_request_timer(ctx);
            }
        }
    }

    /// Drops pending requests the service has executed (after a state transfer).
    pub(crate) fn prune_pending(&mut self) {
        let state = &self.state;
        self.pending.retain(|client, request| {
            state
                .last_sequence(*client)
                .is_none_or(|last| last < request.value.sequence)
        });
    }

    // ---- periodic status and retransmission ----

    pub(crate) fn on_status_timer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        ctx.set_timer(self.status_interval_ns(), PbftTimer::Status);
        if self.mute {
            return;
        }
        ctx.broadcast(Message::Status(self.status()));
        if self.view_changing {
            self.retransmit_view_change(ctx);
            return;
        }
        self.retransmit_slots(ctx);
        let latest = self
            .own_checkpoints
            .iter()
            .next_back()
            .filter(|(seq, _)| **seq > self.stable.seq)
            .map(|(seq, own)| (*seq, own.digest));
        if let Some((seq, digest)) = latest {
            let vote = Self::sign_statement(ctx, Phase::Checkpoint, View(0), seq, digest);
            ctx.broadcast(Message::Checkpoint(vote));
        }
        self.arm_request_timer(ctx);
    }

    fn retransmit_slots(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let now_ns = ctx.now_ns();
        let interval_ns = self.status_interval_ns();
        let primary = self.is_primary();
        let mut outgoing = Vec::new();
        for slot in self
            .log
            .range(Seq(self.last_executed.0 + 1)..)
            .map(|(_, s)| s)
        {
            if slot.view != self.view
                || slot.committed.is_some()
                || now_ns.saturating_sub(slot.accepted_ns) < interval_ns
            {
                continue;
            }
            if let (true, Some(statement)) = (primary, slot.pre_prepare.clone()) {
                outgoing.push(Message::PrePrepare {
                    statement,
                    request: slot.request.clone(),
                });
            }
            if let Some(prepare) = slot.prepares.get(&self.id) {
                outgoing.push(Message::Prepare(prepare.clone()));
            }
            if let Some(commit) = slot.commits.get(&self.id) {
                outgoing.push(Message::Commit(commit.clone()));
            }
        }
        for message in outgoing {
            ctx.broadcast(message);
        }
    }

    /// A peer's status: send what it lacks (state, committed certificates, the new view).
    pub(crate) fn on_status(&mut self, ctx: &mut Ctx<'_, '_, S>, from: NodeId, status: Status) {
        if from == self.id || from.0 >= self.quorums.n {
            return ctx.ignore("status: not from a peer");
        }
        if status.last_executed < self.stable.seq {
            if let Some(own) = self.own_checkpoints.get(&self.stable.seq) {
                let transfer = crate::message::StateTransfer {
                    proof: self.stable.proof.clone(),
                    snapshot: own.snapshot.clone(),
                };
                ctx.send(from, Message::State(transfer));
            }
        }
        if status.stable < self.stable.seq {
            // The signed proof lets the peer advance its low water mark (and drop slots it
            // may hold damaged) even when it has the state already.
            for vote in self.stable.proof.clone() {
                ctx.send(from, Message::Checkpoint(vote));
            }
        }
        let first = status
            .last_executed
            .max(self.stable.seq)
            .0
            .saturating_add(1);
        let last = self.last_executed.0.min(
            first
                .saturating_add(self.config.catch_up_max)
                .saturating_sub(1),
        );
        for seq in first..=last {
            if let Some(proof) = self.log.get(&Seq(seq)).and_then(|s| s.committed.clone()) {
                ctx.send(from, Message::CommitProof(proof));
            }
        }
        if let Some(new_view) = &self.new_view {
            let installed = new_view.value.view;
            let lags =
                status.view < installed || (status.view == installed && status.view_changing);
            if lags {
                ctx.send(from, Message::NewView(new_view.clone()));
            }
        }
    }

    pub(crate) fn on_client_request(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        client: ClientId,
        request: ClientRequest<S::Command>,
    ) {
        if request.value.client != client {
            return ctx.ignore("request: sender is not the named client");
        }
        if !check_request(&mut verifier(ctx), &request) {
            return ctx.ignore("request: bad client signature");
        }
        self.handle_request(ctx, request, true);
    }

    pub(crate) fn on_forwarded_request(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        request: ClientRequest<S::Command>,
    ) {
        if self.view_changing || !self.is_primary() {
            return ctx.ignore("forwarded request: not the primary");
        }
        if !check_request(&mut verifier(ctx), &request) {
            return ctx.ignore("forwarded request: bad client signature");
        }
        self.handle_request(ctx, request, false);
    }
}

/// Approximate encoded size of a value, for the memory metric.
pub(crate) fn encoded_bytes<T: Serialize>(value: &T) -> u64 {
    postcard::to_allocvec(value).map_or(0, |bytes| bytes.len() as u64)
}

impl<S: StateMachine> Pbft<S> {
    pub(crate) fn footprint(&self) -> u64 {
        let mut bytes = 0u64;
        for slot in self.log.values() {
            let statements = slot.prepares.len()
                + slot.commits.len()
                + usize::from(slot.pre_prepare.is_some())
                + slot
                    .committed
                    .as_ref()
                    .map_or(0, |proof| proof.commits.len());
            bytes += statements as u64 * STATEMENT_BYTES;
            bytes += slot.request.as_ref().map_or(0, encoded_bytes);
            bytes += 64;
        }
        for (cert, _) in self.prepared.values() {
            bytes += (1 + cert.prepares.len() as u64) * STATEMENT_BYTES;
            bytes += cert.request.as_ref().map_or(0, encoded_bytes);
        }
        for votes in self.checkpoint_votes.values() {
            bytes += votes.len() as u64 * STATEMENT_BYTES;
        }
        bytes += self.stable.proof.len() as u64 * STATEMENT_BYTES;
        for own in self.own_checkpoints.values() {
            bytes += own.snapshot.len() as u64 + 32;
        }
        for changes in self.view_changes.values() {
            bytes += changes.values().map(encoded_bytes).sum::<u64>();
        }
        bytes += self.new_view.as_ref().map_or(0, encoded_bytes);
        bytes += self.pending.values().map(encoded_bytes).sum::<u64>();
        bytes
    }

    pub(crate) fn invariants(&self) -> Result<(), String> {
        if let Some((seq, _)) = self.log.iter().next() {
            if *seq <= self.stable.seq {
                return Err(format!(
                    "log slot {} at or below the stable checkpoint",
                    seq.0
                ));
            }
        }
        if let Some((seq, _)) = self.log.iter().next_back() {
            if *seq > self.high_water() {
                return Err(format!("log slot {} above the high water mark", seq.0));
            }
        }
        if self
            .own_checkpoints
            .keys()
            .any(|seq| *seq < self.stable.seq)
        {
            return Err("own checkpoint below the stable one kept".to_string());
        }
        for (seq, slot) in &self.log {
            if let Some(proof) = &slot.committed {
                if proof.commits.len() < self.quorums.quorum() {
                    return Err(format!("slot {} committed without a quorum", seq.0));
                }
                if proof.commits.iter().any(|vote| vote.value.seq != *seq) {
                    return Err(format!(
                        "slot {} committed with another slot's votes",
                        seq.0
                    ));
                }
            }
        }
        if self.pending.len() > self.config.pending_max {
            return Err("pending requests over the bound".to_string());
        }
        Ok(())
    }
}
