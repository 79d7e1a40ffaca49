//! The replica: state, the [`Node`] implementation and shared helpers. The handlers live in
//! `normal.rs` (ordering, speculative execution, fill-hole, COMMIT), `view.rs` (IHTP, POM,
//! view change, NEW-VIEW, rollback) and `checkpoint.rs` (checkpoints, state transfer).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::{command_digest, Observation, Sessions};
use dst_sim::{ClientId, Digest, Node, NodeCtx, NodeId, Signature, Signed, StateMachine, TimerId};
use serde::{Deserialize, Serialize};

use crate::config::{FastBftConfig, Params};
use crate::confirm::{ConfirmRecord, Confirming};
use crate::durable::{self, read_record, write_record};
use crate::msg::{
    CcEvidence, CheckpointBody, ClientMsg, FastReply, IhtpBody, Msg, NewViewBody, Order, OrderBody,
    SignedRequest, SpecBody, StableProof, ViewChangeBody, ViewChangeProof,
};

pub(crate) type Cmd<S> = <S as StateMachine>::Command;
pub(crate) type Out<S> = <S as StateMachine>::Output;
pub(crate) type Ctx<'a, 'b, S> = NodeCtx<'a, FastBft<S>>;
pub(crate) type SignedViewChange<S> = Signed<ViewChangeBody<Cmd<S>, Out<S>>>;
pub(crate) type BoxedNewView<S> = Box<Signed<NewViewBody<Cmd<S>, Out<S>>>>;
/// A signature check that charges the node's CPU.
pub(crate) type Verifier<'c> = Box<dyn FnMut(&Signature, &Digest) -> bool + 'c>;

/// Most ORDER-REQs buffered ahead of the log (also bounded by the window).
pub(crate) const BUFFER_MAX: usize = 512;
/// Most CCs kept (Pareto-maximal by (view, seq); more only under Byzantine floods).
pub(crate) const CCS_MAX: usize = 16;
/// Most checkpoint slots kept per replica and kind in the vote table.
pub(crate) const VOTE_SLOTS_PER_REPLICA: usize = 4;
/// Most service snapshots kept at checkpoint slots above the stable one.
pub(crate) const SNAPSHOTS_MAX: usize = 8;
/// Most forwarded requests waited on (one per client).
pub(crate) const FORWARDED_MAX: usize = 4_096;

/// One speculative log entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry<S: StateMachine> {
    pub order: Signed<OrderBody>,
    pub request: Option<SignedRequest<Cmd<S>>>,
    /// What execution returned to the client (None: no-op or nothing to answer).
    pub output: Option<Out<S>>,
    /// Service digest after executing this entry.
    pub state_digest: u64,
    /// The SPEC-RESPONSE sent, kept for resends (never re-signed differently).
    pub spec: Option<Signed<SpecBody<Out<S>>>>,
}

impl<S: StateMachine> Entry<S> {
    pub fn hist(&self) -> Digest {
        self.order.value.hist
    }
    pub fn as_order(&self) -> Order<Cmd<S>> {
        Order {
            order: self.order.clone(),
            request: self.request.clone(),
        }
    }
    pub fn request_id(&self) -> Option<(ClientId, u64)> {
        self.request
            .as_ref()
            .map(|request| (request.value.client, request.value.sequence))
    }
}

/// Normal operation in a view, or changing to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Status {
    Normal,
    ViewChange { target: u64 },
}

/// Timer payloads of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Periodic: idle checkpoints, retransmissions, state-transfer retries.
    Tick,
    /// A forwarded request should have been ordered by now.
    Forwarded { client: ClientId, sequence: u64 },
    /// A hole in the log is still open (`stage` 0: ask everyone, 1: complain).
    FillHole { view: u64, stage: u32 },
    /// No NEW-VIEW for `view` arrived in time.
    ViewChange { view: u64 },
    /// The installed `view` was not confirmed in time (VIEW-CONFIRM).
    Confirm { view: u64 },
}

/// A FastBFT replica replicating the service `S` (wrapped in exactly-once sessions).
pub struct FastBft<S: StateMachine> {
    pub(crate) config: FastBftConfig,
    pub(crate) params: Params,
    pub(crate) id: NodeId,
    pub(crate) view: u64,
    pub(crate) status: Status,
    pub(crate) stable: StableProof,
    pub(crate) stable_state: Sessions<S>,
    pub(crate) genesis_digest: u64,
    pub(crate) state: Sessions<S>,
    // invariant: keys are consecutive from stable.seq + 1; each hist chains from the previous.
    pub(crate) log: BTreeMap<u64, Entry<S>>,
    /// Service state right after executing a checkpoint slot above the stable checkpoint.
    pub(crate) snapshots: BTreeMap<u64, Sessions<S>>,
    pub(crate) buffer: BTreeMap<u64, Order<Cmd<S>>>,
    pub(crate) ccs: Vec<CcEvidence<Cmd<S>, Out<S>>>,
    pub(crate) checkpoint_votes: BTreeMap<(u64, bool), BTreeMap<NodeId, Signed<CheckpointBody>>>,
    pub(crate) own_votes: BTreeMap<(u64, bool), Signed<CheckpointBody>>,
    /// Since when this replica's oldest unstable checkpoint vote (in this view) waits.
    pub(crate) checkpoint_waiting_since_ns: Option<u64>,
    /// IHTPs about the judged view (the current one, or the awaited target).
    pub(crate) ihtp: BTreeMap<NodeId, Signed<IhtpBody>>,
    /// This replica's own IHTP while waiting for a NEW-VIEW (retransmitted on ticks).
    pub(crate) own_ihtp: Option<Signed<IhtpBody>>,
    pub(crate) view_changes: BTreeMap<NodeId, SignedViewChange<S>>,
    pub(crate) last_new_view: Option<BoxedNewView<S>>,
    /// The installed view while it waits for `Qs` VIEW-CONFIRMs (None: confirmed).
    pub(crate) confirming: Option<Confirming>,
    /// The end of the current view's confirmed NEW-VIEW history (None in view 0).
    pub(crate) confirmed_end: Option<(u64, Digest)>,
    pub(crate) confirm_timer: Option<TimerId>,
    /// Replicas sent this view's NEW-VIEW after they confirmed another end (once each).
    pub(crate) new_view_sent: BTreeSet<NodeId>,
    pub(crate) pending_new_view: Option<BoxedNewView<S>>,
    pub(crate) forwarded: BTreeMap<ClientId, u64>,
    pub(crate) final_replies: BTreeMap<ClientId, (u64, Out<S>)>,
    pub(crate) fill_timer: Option<TimerId>,
    pub(crate) view_change_timer: Option<TimerId>,
    /// View changes since the last installed view (timeout back-off exponent).
    pub(crate) failed_view_changes: u32,
    pub(crate) tick_tip: u64,
    pub(crate) state_target: Option<StableProof>,
    /// Slots the last state transfer skipped that are not reported yet.
    pub(crate) unreported: Option<crate::finals::Unreported<S>>,
    /// The view this replica built a NEW-VIEW for as its primary (built once: S5).
    pub(crate) built_new_view: Option<u64>,
    /// When this replica last asked for state without a proof in hand (rate limit).
    pub(crate) state_asked_ns: u64,
    /// S5 bookkeeping: what this replica signed per (view, seq).
    pub(crate) signed_orders: BTreeMap<(u64, u64), Digest>,
    pub(crate) signed_specs: BTreeMap<(u64, u64), Digest>,
    pub(crate) violation: Option<String>,
    /// The (checkpoint, tip) whose log last passed `check_log`.
    pub(crate) log_checked: Cell<Option<(u64, Digest, u64, Digest)>>,
    /// Encoded size of the stable service snapshot (for the footprint).
    pub(crate) stable_snapshot_bytes: Cell<u64>,
}

impl<S: StateMachine> FastBft<S> {
    /// A replica of a cluster replicating `service` (its initial state).
    pub fn for_service(config: FastBftConfig, service: S) -> Self {
        let state = Sessions::new(service.clone());
        let genesis_digest = state.digest();
        let genesis_bytes = state.snapshot().len() as u64;
        FastBft {
            params: Params::new(1, config.c),
            config,
            id: NodeId(0),
            view: 0,
            status: Status::Normal,
            stable: genesis_proof(genesis_digest),
            stable_state: state.clone(),
            genesis_digest,
            state,
            log: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            buffer: BTreeMap::new(),
            ccs: Vec::new(),
            checkpoint_votes: BTreeMap::new(),
            own_votes: BTreeMap::new(),
            checkpoint_waiting_since_ns: None,
            ihtp: BTreeMap::new(),
            own_ihtp: None,
            view_changes: BTreeMap::new(),
            last_new_view: None,
            confirming: None,
            confirmed_end: None,
            confirm_timer: None,
            new_view_sent: BTreeSet::new(),
            pending_new_view: None,
            forwarded: BTreeMap::new(),
            final_replies: BTreeMap::new(),
            fill_timer: None,
            view_change_timer: None,
            failed_view_changes: 0,
            tick_tip: 0,
            state_target: None,
            unreported: None,
            built_new_view: None,
            state_asked_ns: 0,
            signed_orders: BTreeMap::new(),
            signed_specs: BTreeMap::new(),
            violation: None,
            log_checked: Cell::new(None),
            stable_snapshot_bytes: Cell::new(genesis_bytes),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FastBftConfig {
        &self.config
    }
    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }
    /// The stable checkpoint's slot.
    pub fn stable_seq(&self) -> u64 {
        self.stable.seq
    }
    /// The last slot of the speculative log.
    pub fn tip(&self) -> u64 {
        self.log
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.stable.seq)
    }
    /// History digest at the tip.
    pub fn tip_hist(&self) -> Digest {
        self.log
            .values()
            .next_back()
            .map(Entry::hist)
            .unwrap_or(self.stable.hist)
    }
    /// True while no view change is under way.
    pub fn is_normal(&self) -> bool {
        self.status == Status::Normal
    }
    /// The view this replica is changing to, if a view change is under way.
    pub fn view_change_target(&self) -> Option<u64> {
        match self.status {
            Status::Normal => None,
            Status::ViewChange { target } => Some(target),
        }
    }
    /// The current service state (speculative).
    pub fn service_state(&self) -> &Sessions<S> {
        &self.state
    }

    pub(crate) fn primary(&self) -> NodeId {
        self.params.primary(self.view)
    }
    pub(crate) fn is_primary(&self) -> bool {
        self.primary() == self.id
    }
    /// History digest at `seq` (the stable one, or a log entry's).
    pub(crate) fn hist_at(&self, seq: u64) -> Option<Digest> {
        if seq == self.stable.seq {
            return Some(self.stable.hist);
        }
        self.log.get(&seq).map(Entry::hist)
    }

    /// Records an S5 breach: this replica signed two different things for one (view, seq).
    pub(crate) fn note_signed(&mut self, spec: bool, view: u64, seq: u64, hist: Digest) {
        let table = if spec {
            &mut self.signed_specs
        } else {
            &mut self.signed_orders
        };
        let previous = *table.entry((view, seq)).or_insert(hist);
        if previous != hist && self.violation.is_none() {
            let what = if spec { "SPEC-RESPONSE" } else { "ORDER-REQ" };
            self.violation = Some(format!(
                "S5: {} signed two {what}s for view {view} seq {seq}",
                self.id
            ));
        }
    }
}

/// The genesis checkpoint: slot 0, history digest zero.
pub(crate) fn genesis_proof(state_digest: u64) -> StableProof {
    StableProof {
        seq: 0,
        hist: Digest::ZERO,
        state_digest,
        votes: Vec::new(),
    }
}

/// Charges the context for a verification.
pub(crate) fn verifier<'c, 'a: 'c, S: StateMachine>(
    ctx: &'c mut NodeCtx<'a, FastBft<S>>,
) -> Verifier<'c> {
    Box::new(move |signature, digest| ctx.verify(signature, digest))
}

impl<S: StateMachine> FastBft<S> {
    fn boot(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        self.id = ctx.id();
        self.params = Params::new(ctx.cluster_size(), self.config.c)
            .with_leader_order(self.config.leader_order);
        ctx.set_timer(self.config.checkpoint_idle_ns, Timer::Tick);
    }

    /// Re-executes the log from the stable state: outputs, digests and snapshots.
    pub(crate) fn replay(&mut self) {
        let mut state = self.stable_state.clone();
        self.snapshots.clear();
        let interval = self.config.checkpoint_interval;
        for (seq, entry) in self.log.iter_mut() {
            entry.output = execute(&mut state, entry.request.as_ref());
            entry.state_digest = state.digest();
            if seq % interval == 0 && self.snapshots.len() < SNAPSHOTS_MAX {
                self.snapshots.insert(*seq, state.clone());
            }
        }
        self.state = state;
    }

    /// Reports `Commit` and `Apply` for the log entries up to `seq` (they became final).
    pub(crate) fn report_final(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: u64) {
        for (slot, entry) in self.log.range(..=seq) {
            let request = entry.request_id();
            let digest = entry
                .request
                .as_ref()
                .map_or(0, |request| command_digest(&request.value.command));
            ctx.observe(Observation::Commit {
                node: self.id,
                slot: *slot,
                request,
                command_digest: digest,
            });
            ctx.observe(Observation::Apply {
                node: self.id,
                slot: *slot,
                request,
                state_digest: entry.state_digest,
            });
            if let (Some((client, sequence)), Some(output)) = (request, &entry.output) {
                self.final_replies
                    .insert(client, (sequence, output.clone()));
            }
        }
    }

    fn recover(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if let Some((proof, snapshot)) =
            read_record::<Self, (StableProof, Vec<u8>)>(ctx, durable::STABLE_KEY)
        {
            if let Ok(state) = Sessions::<S>::restore(&snapshot) {
                if state.digest() == proof.state_digest {
                    self.stable_snapshot_bytes.set(snapshot.len() as u64);
                    self.stable = proof;
                    self.stable_state = state;
                }
            }
        }
        if let Some((view, target)) =
            read_record::<Self, (u64, Option<u64>)>(ctx, durable::VIEW_KEY)
        {
            self.view = view;
            if let Some(target) = target.filter(|target| *target > view) {
                self.status = Status::ViewChange { target };
            }
        }
        self.recover_log(ctx);
        self.built_new_view = read_record::<Self, u64>(ctx, durable::BUILT_KEY);
        if let Some(ccs) =
            read_record::<Self, Vec<CcEvidence<Cmd<S>, Out<S>>>>(ctx, durable::CCS_KEY)
        {
            self.ccs = ccs
                .into_iter()
                .filter(|evidence| evidence.cc.seq > self.stable.seq)
                .take(CCS_MAX)
                .collect();
        }
        self.replay();
    }

    /// Reads log records in slot order while they chain from the stable checkpoint.
    fn recover_log(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let keys = ctx.keys_with_prefix(durable::LOG_PREFIX);
        let mut hist = self.stable.hist;
        let mut next = self.stable.seq + 1;
        for key in keys {
            let Some(order) = read_record::<Self, Order<Cmd<S>>>(ctx, &key) else {
                continue;
            };
            let body = &order.order.value;
            if body.seq < next {
                continue;
            }
            if body.seq != next || hist.chain(&body.digest) != body.hist {
                break;
            }
            hist = body.hist;
            next += 1;
            self.view = self.view.max(body.view);
            self.log.insert(
                body.seq,
                Entry {
                    order: order.order,
                    request: order.request,
                    output: None,
                    state_digest: 0,
                    spec: None,
                },
            );
        }
    }

    /// Persists the view state; the caller syncs.
    pub(crate) fn persist_view(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let target = match self.status {
            Status::Normal => None,
            Status::ViewChange { target } => Some(target),
        };
        write_record(ctx, durable::VIEW_KEY, &(self.view, target));
    }

    pub(crate) fn persist_entry(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: u64) -> bool {
        match self.log.get(&seq) {
            Some(entry) => write_record(ctx, &durable::log_key(seq), &entry.as_order()),
            None => false,
        }
    }

    pub(crate) fn persist_ccs(&mut self, ctx: &mut Ctx<'_, '_, S>) -> bool {
        write_record(ctx, durable::CCS_KEY, &self.ccs)
    }
}

/// Applies an entry's request (a no-op applies nothing) and returns the client's output.
pub(crate) fn execute<S: StateMachine>(
    state: &mut Sessions<S>,
    request: Option<&SignedRequest<Cmd<S>>>,
) -> Option<Out<S>> {
    let request = request?;
    state.apply(&request.value).into_output()
}

impl<S: StateMachine> Node for FastBft<S> {
    type Msg = Msg<Cmd<S>, Out<S>>;
    type Timer = Timer;
    type Request = ClientMsg<Cmd<S>, Out<S>>;
    type Reply = FastReply<Out<S>>;
    type Obs = Observation<Cmd<S>, Out<S>>;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.boot(ctx);
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.boot(ctx);
        self.recover(ctx);
        if let Status::ViewChange { target } = self.status {
            // Send the VIEW-CHANGE again with its persisted proof; without one (a corrupted
            // record) stay out of the old view and wait for a NEW-VIEW or f+1 later ones.
            let proof = read_record::<Self, (u64, ViewChangeProof)>(ctx, durable::PROOF_KEY)
                .filter(|(view, proof)| *view == target && proof.covers(target));
            if let Some((_, proof)) = proof {
                self.status = Status::Normal;
                self.start_view_change(ctx, target, proof);
            }
        } else {
            let record = read_record::<Self, ConfirmRecord>(ctx, durable::CONFIRM_KEY);
            self.recover_confirm(record);
            self.announce_confirm(ctx);
        }
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        if !self.params.is_replica(from) {
            ctx.ignore("message from outside the cluster");
            return;
        }
        match msg {
            Msg::Order(order) => self.on_order(ctx, order),
            Msg::Forward(request) => self.on_client_request(ctx, request, Some(from)),
            Msg::FillHole {
                view,
                from_seq,
                to_seq,
            } => self.on_fill_hole(ctx, from, view, from_seq, to_seq),
            Msg::Pom { first, second } => self.on_pom(ctx, first, second),
            Msg::Ihtp(ihtp) => self.on_ihtp(ctx, ihtp),
            Msg::ViewChange(view_change) => self.on_view_change(ctx, from, *view_change),
            Msg::NewView(new_view) => self.on_new_view(ctx, new_view),
            Msg::Checkpoint(vote) => self.on_checkpoint(ctx, vote),
            Msg::StateRequest { seq, have } => self.on_state_request(ctx, from, seq, have),
            Msg::StateReply {
                proof,
                snapshot,
                entries,
                finals,
            } => self.on_state_reply(ctx, proof, snapshot, entries, finals),
            Msg::ViewConfirm {
                view,
                seq,
                hist,
                answer,
            } => self.on_view_confirm(ctx, from, view, (seq, hist), answer),
        }
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Timer) {
        match timer {
            Timer::Tick => {
                self.on_tick(ctx);
                ctx.set_timer(self.config.checkpoint_idle_ns, Timer::Tick);
            }
            Timer::Forwarded { client, sequence } => self.on_forward_timeout(ctx, client, sequence),
            Timer::FillHole { view, stage } => self.on_fill_timeout(ctx, view, stage),
            Timer::ViewChange { view } => self.on_view_change_timeout(ctx, view),
            Timer::Confirm { view } => self.on_confirm_timeout(ctx, view),
        }
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        match request {
            ClientMsg::Request(request) => {
                if request.value.client != client {
                    ctx.ignore("request names another client");
                    return;
                }
                self.on_client_request(ctx, request, None)
            }
            ClientMsg::Pom { first, second } => self.on_pom(ctx, first, second),
            ClientMsg::Commit { client: named, cc } => {
                if named != client {
                    ctx.ignore("commit names another client");
                    return;
                }
                self.on_commit(ctx, client, cc)
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        if let Some(violation) = &self.violation {
            return Err(violation.clone());
        }
        self.check_log()
    }

    /// An estimate from per-item sizes (sampled often, so nothing is encoded except the
    /// rare VIEW-CHANGEs held).
    fn footprint_bytes(&self) -> u64 {
        let mut bytes = self.log.len() as u64 * ENTRY_BYTES
            + self
                .log
                .values()
                .filter(|entry| entry.spec.is_some())
                .count() as u64
                * VOTE_BYTES;
        bytes += self.buffer.len() as u64 * ENTRY_BYTES;
        for held in &self.ccs {
            bytes +=
                held.cc.votes.len() as u64 * VOTE_BYTES + held.chain.len() as u64 * ENTRY_BYTES;
        }
        let snapshots = self.snapshots.len() as u64 + 1;
        bytes += snapshots * self.stable_snapshot_bytes.get();
        let votes: usize = self.checkpoint_votes.values().map(BTreeMap::len).sum();
        bytes += (votes + self.stable.votes.len()) as u64 * VOTE_BYTES;
        for view_change in self.view_changes.values() {
            bytes += postcard::to_allocvec(view_change).map_or(0, |encoded| encoded.len() as u64);
        }
        bytes
    }
}

/// Footprint estimate of a log entry (signed ORDER-REQ, signed request, digests).
const ENTRY_BYTES: u64 = 224;
/// Footprint estimate of one signed vote (SPEC-RESPONSE or checkpoint).
const VOTE_BYTES: u64 = 128;

impl<S: StateMachine> FastBft<S> {
    /// S4 and the log's own shape: consecutive slots chaining from the checkpoint, and no
    /// request twice.
    fn check_log(&self) -> Result<(), String> {
        // The hash chain pins every entry: an unchanged (checkpoint, tip) needs no recheck.
        let key = (
            self.stable.seq,
            self.stable.hist,
            self.tip(),
            self.tip_hist(),
        );
        if self.log_checked.get() == Some(key) {
            return Ok(());
        }
        let mut hist = self.stable.hist;
        let mut seen = BTreeSet::new();
        for (next, (seq, entry)) in (self.stable.seq + 1..).zip(self.log.iter()) {
            if *seq != next || hist.chain(&entry.order.value.digest) != entry.hist() {
                return Err(format!("{}: log does not chain at slot {seq}", self.id));
            }
            if let Some(id) = entry.request_id() {
                if !seen.insert(id) {
                    return Err(format!("S4: {} holds request {id:?} twice", self.id));
                }
            }
            hist = entry.hist();
        }
        self.log_checked.set(Some(key));
        Ok(())
    }
}
