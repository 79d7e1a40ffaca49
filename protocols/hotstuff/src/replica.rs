//! The replica: state, the `Node` implementation, client requests and execution.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::digest::command_digest;
use dst_protocols::{Observation, Reply, Request, Sessions};
use dst_sim::{
    ClientId, Digest, Node, NodeCtx, NodeId, Principal, Signature, StateMachine, TimerId,
};

use crate::config::HotStuffConfig;
use crate::types::{Block, ClientRequest, HotStuffTimer, Message, Qc, Round, Tc, TimeoutVote};

pub(crate) type Ctx<'a, S> = NodeCtx<'a, HotStuff<S>>;

/// Most proposals held while their ancestors are fetched.
pub(crate) const PENDING_MAX: usize = 16;
/// Most blocks being fetched at once.
pub(crate) const FETCHING_MAX: usize = 64;
/// Most verified certificates remembered (to skip verifying them again).
pub(crate) const VERIFIED_QCS_MAX: usize = 256;
/// Most `(round, block)` vote tallies a leader keeps.
pub(crate) const VOTE_TALLIES_MAX: usize = 64;
/// Votes for rounds further than this past the current one are ignored.
pub(crate) const VOTE_ROUNDS_AHEAD_MAX: u64 = 64;

/// A Chained HotStuff replica of service `S` (see the crate documentation for the rules).
pub struct HotStuff<S: StateMachine> {
    pub(crate) config: HotStuffConfig,
    pub(crate) id: NodeId,
    pub(crate) nodes: u32,
    pub(crate) genesis: Digest,

    // Safety data, persisted before every vote.
    pub(crate) safety_version: u64,
    // invariant: never decreases within an incarnation; a vote is for a higher round.
    pub(crate) last_voted_round: Round,
    pub(crate) locked_qc: Qc,
    /// A lower bound of the locked round read from the name of an unreadable safety record
    /// (0 normally): votes need a justify QC at least this high.
    pub(crate) lock_floor: Round,
    // invariant: high_qc.round >= locked_qc.round.
    pub(crate) high_qc: Qc,

    // Pacemaker.
    pub(crate) current_round: Round,
    pub(crate) round_timer: Option<TimerId>,
    /// Timeouts since the last round entered through a QC (the backoff exponent).
    pub(crate) timeouts_in_row: u32,
    /// Highest round this replica gave up on.
    pub(crate) timed_out_round: Round,
    pub(crate) high_tc: Option<Tc>,
    // invariant: at most one (the latest) timeout per replica, so at most n entries.
    pub(crate) peer_timeouts: BTreeMap<NodeId, (Round, TimeoutVote)>,

    // Leader.
    pub(crate) proposed_round: Round,
    // invariant: at most VOTE_TALLIES_MAX tallies, each with at most n votes.
    pub(crate) votes: BTreeMap<(Round, Digest), BTreeMap<NodeId, Signature>>,

    // Blocks.
    // invariant: holds the committed anchor and blocks of higher rounds only.
    pub(crate) blocks: BTreeMap<Digest, Block<S::Command>>,
    /// The last committed block (the anchor every accepted chain goes through).
    pub(crate) committed: Digest,
    pub(crate) committed_round: Round,
    pub(crate) committed_height: u64,
    /// Held blocks (above the committed anchor) with a chain record on disk.
    // invariant: a subset of the keys of `blocks`.
    pub(crate) stored: BTreeSet<Digest>,
    /// Verified proposals waiting for missing ancestors, by block digest.
    pub(crate) pending: BTreeMap<Digest, (Block<S::Command>, Option<Tc>)>,
    /// The highest verified QC whose block chain is not complete here yet.
    pub(crate) pending_qc: Option<Qc>,
    /// Blocks asked for, with their height hint.
    pub(crate) fetching: BTreeMap<Digest, u64>,
    pub(crate) verified_qcs: BTreeMap<(Round, Digest), Qc>,
    /// The round of the QC whose processing committed requests here, until a proposal
    /// carries a newer QC: the others commit them only once a proposal shows them this QC.
    pub(crate) unannounced_commit: Option<Round>,

    // Execution.
    pub(crate) state: Sessions<S>,
    /// Requests executed so far: the slot of the last one.
    pub(crate) executed_slot: u64,
    /// Set while re-executing committed blocks from disk after a restart (no replies).
    pub(crate) replaying: bool,
    // invariant: at most config.mempool_max clients, one request (the newest) each.
    pub(crate) mempool: BTreeMap<ClientId, ClientRequest<S::Command>>,
}

impl<S: StateMachine> HotStuff<S> {
    /// A replica whose service starts as `service`.
    pub fn for_service(config: HotStuffConfig, service: S) -> Self {
        assert!(
            config.batch_max > 0,
            "blocks must be able to carry requests"
        );
        assert!(config.leader_rounds > 0, "leaders keep at least one round");
        let genesis = Block::<S::Command>::genesis();
        let genesis_digest = genesis.digest();
        let genesis_qc = Qc::genesis(genesis_digest);
        HotStuff {
            config,
            id: NodeId(0),
            nodes: 1,
            genesis: genesis_digest,
            safety_version: 0,
            last_voted_round: Round(0),
            locked_qc: genesis_qc.clone(),
            lock_floor: Round(0),
            high_qc: genesis_qc,
            current_round: Round(0),
            round_timer: None,
            timeouts_in_row: 0,
            timed_out_round: Round(0),
            high_tc: None,
            peer_timeouts: BTreeMap::new(),
            proposed_round: Round(0),
            votes: BTreeMap::new(),
            blocks: BTreeMap::from([(genesis_digest, genesis)]),
            committed: genesis_digest,
            committed_round: Round(0),
            committed_height: 0,
            stored: BTreeSet::new(),
            pending: BTreeMap::new(),
            pending_qc: None,
            fetching: BTreeMap::new(),
            verified_qcs: BTreeMap::new(),
            unannounced_commit: None,
            state: Sessions::new(service),
            executed_slot: 0,
            replaying: false,
            mempool: BTreeMap::new(),
        }
    }

    /// This replica's id (valid once started).
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The round the pacemaker is in.
    pub fn current_round(&self) -> Round {
        self.current_round
    }
    /// The highest round this replica voted in.
    pub fn last_voted_round(&self) -> Round {
        self.last_voted_round
    }
    /// The QC this replica is locked on.
    pub fn locked_qc(&self) -> &Qc {
        &self.locked_qc
    }
    /// The highest QC this replica knows with its whole chain.
    pub fn high_qc(&self) -> &Qc {
        &self.high_qc
    }
    /// The last committed block and its height.
    pub fn committed(&self) -> (Digest, u64) {
        (self.committed, self.committed_height)
    }
    /// Requests executed so far (the last slot).
    pub fn executed_slot(&self) -> u64 {
        self.executed_slot
    }
    /// The replicated service with its session table.
    pub fn state(&self) -> &Sessions<S> {
        &self.state
    }
    /// A block this replica holds (uncommitted ones and the last committed one).
    pub fn block(&self, digest: &Digest) -> Option<&Block<S::Command>> {
        self.blocks.get(digest)
    }
    /// The genesis block's digest.
    pub fn genesis(&self) -> Digest {
        self.genesis
    }

    /// `f`, the most Byzantine replicas tolerated.
    pub(crate) fn faults_max(&self) -> usize {
        (self.nodes.saturating_sub(1) / 3) as usize
    }
    /// Votes (or timeouts) of distinct replicas that make a certificate: `n - f`.
    pub(crate) fn quorum(&self) -> usize {
        self.nodes as usize - self.faults_max()
    }
    /// The leader of `round`.
    pub fn leader(&self, round: Round) -> NodeId {
        let turn = round.0 / self.config.leader_rounds;
        dst_protocols::leaders::rotation_leader(self.config.leader_order, self.nodes, turn)
    }

    /// The round a TC of `round` leads to: the first round of the next leader's tenure (a
    /// leader that timed out once loses the rest of its rounds), or, for a TC of the last
    /// round of a tenure (with `leader_rounds > 1`), the tenure after that one. Votes of a
    /// tenure's last round go to the next tenure's leader, so such a TC mostly means that
    /// leader is silent or cut off: skipping it costs one timeout per silent replica in a
    /// rotation instead of two. Every replica computes this from the TC's round alone, so
    /// they agree; safety does not depend on which round a TC leads to (votes still need
    /// safeNode and a fresh round).
    pub fn round_after_tc(&self, round: Round) -> Round {
        let leader_rounds = self.config.leader_rounds;
        let last_of_tenure = leader_rounds > 1 && round.0 % leader_rounds == leader_rounds - 1;
        let skip = if last_of_tenure { 2 } else { 1 };
        let next_turn = (round.0 / leader_rounds).saturating_add(skip);
        Round(next_turn.saturating_mul(leader_rounds))
    }

    fn boot(&mut self, ctx: &mut Ctx<'_, S>) {
        self.id = ctx.id();
        self.nodes = ctx.cluster_size();
        assert!(self.nodes >= 1, "a cluster has a replica");
    }

    /// Sends to a replica, or handles a vote for itself at once.
    pub(crate) fn send_or_handle(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        to: NodeId,
        msg: Message<S::Command>,
    ) {
        if to == self.id {
            self.on_message(ctx, to, msg);
        } else {
            ctx.send(to, msg);
        }
    }

    // ---- Client requests -------------------------------------------------------------

    /// A signed client request, straight from the client (`direct`) or relayed by a peer.
    pub(crate) fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        request: ClientRequest<S::Command>,
        direct: bool,
    ) {
        let client = request.value.client;
        let sequence = request.value.sequence;
        if request.signer() != Principal::Client(client) || !ctx.verify_signed(&request) {
            ctx.ignore("request not signed by its client");
            return;
        }
        if sequence == 0 {
            ctx.ignore("request sequence 0");
            return;
        }
        if let Some(last) = self.state.last_sequence(client) {
            if sequence < last {
                ctx.ignore("request older than the client's last executed one");
                return;
            }
            if sequence == last {
                self.reply_cached(ctx, &request.value);
                return;
            }
        }
        let newer_known = self
            .mempool
            .get(&client)
            .is_some_and(|held| held.value.sequence >= sequence);
        if !newer_known {
            if self.mempool.len() >= self.config.mempool_max && !self.mempool.contains_key(&client)
            {
                ctx.ignore("mempool full");
                return;
            }
            self.mempool.insert(client, request.clone());
        }
        if direct {
            self.forward_to_leaders(ctx, vec![request]);
        }
        self.try_propose(ctx);
    }

    /// Relays requests to the leaders of the current and the next round.
    pub(crate) fn forward_to_leaders(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        requests: Vec<ClientRequest<S::Command>>,
    ) {
        if requests.is_empty() {
            return;
        }
        let leaders: BTreeSet<NodeId> = [
            self.leader(self.current_round),
            self.leader(self.current_round.next()),
        ]
        .into_iter()
        .filter(|leader| *leader != self.id)
        .collect();
        for leader in leaders {
            ctx.send(
                leader,
                Message::Forward {
                    requests: requests.clone(),
                },
            );
        }
    }

    fn reply_cached(&mut self, ctx: &mut Ctx<'_, S>, request: &Request<S::Command>) {
        // A retry of the last executed request: the session layer answers it from its cache
        // without changing the state.
        let before = self.state.digest();
        let output = self.state.apply(request);
        assert_eq!(
            before,
            self.state.digest(),
            "a cached answer changed the state"
        );
        if let Some(output) = output.into_output() {
            ctx.reply(
                request.client,
                Reply::Done {
                    sequence: request.sequence,
                    output,
                },
            );
        }
    }

    // ---- Execution ----------------------------------------------------------------------

    /// Executes a committed block: one slot per request, in order; every replica replies.
    pub(crate) fn execute(&mut self, ctx: &mut Ctx<'_, S>, block: &Block<S::Command>) {
        for request in &block.requests {
            let request = &request.value;
            self.executed_slot += 1;
            let slot = self.executed_slot;
            let id = Some((request.client, request.sequence));
            ctx.observe(Observation::Commit {
                node: self.id,
                slot,
                request: id,
                command_digest: command_digest(&request.command),
            });
            let output = self.state.apply(request);
            ctx.observe(Observation::Apply {
                node: self.id,
                slot,
                request: id,
                state_digest: self.state.digest(),
            });
            let executed = self
                .mempool
                .get(&request.client)
                .is_some_and(|held| held.value.sequence <= request.sequence);
            if executed {
                self.mempool.remove(&request.client);
            }
            if self.replaying {
                continue;
            }
            if let Some(output) = output.into_output() {
                ctx.reply(
                    request.client,
                    Reply::Done {
                        sequence: request.sequence,
                        output,
                    },
                );
            }
        }
        if !self.replaying {
            // For a restart's replay and for peers that fall behind: committed blocks leave
            // memory, so this record is what every lagging replica fetches.
            self.store_block(ctx, block);
        }
    }

    /// Is there anything the cluster still has to do (so a silent round is a failure)?
    pub(crate) fn has_work(&self) -> bool {
        !self.mempool.is_empty()
            || !self.pending.is_empty()
            || self
                .blocks
                .values()
                .any(|block| block.round > self.committed_round && !block.requests.is_empty())
    }

    /// Approximate bytes held: blocks, certificates, votes, timeouts, mempool.
    fn footprint(&self) -> u64 {
        let blocks: u64 = self.blocks.values().map(size).sum();
        let pending: u64 = self.pending.values().map(|(block, _)| size(block)).sum();
        let mempool: u64 = self.mempool.values().map(size).sum();
        let votes: u64 = self
            .votes
            .values()
            .map(|tally| 48 + 40 * tally.len() as u64)
            .sum();
        let qcs: u64 = self.verified_qcs.values().map(size).sum::<u64>()
            + size(&self.locked_qc)
            + size(&self.high_qc);
        let timeouts = 64 * self.peer_timeouts.len() as u64
            + 48 * self.fetching.len() as u64
            + 32 * self.stored.len() as u64;
        blocks + pending + mempool + votes + qcs + timeouts
    }
}

impl<S: StateMachine> std::fmt::Debug for HotStuff<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HotStuff")
            .field("id", &self.id)
            .field("current_round", &self.current_round)
            .field("last_voted_round", &self.last_voted_round)
            .field("locked_round", &self.locked_qc.round)
            .field("high_qc_round", &self.high_qc.round)
            .field("committed_height", &self.committed_height)
            .field("executed_slot", &self.executed_slot)
            .finish_non_exhaustive()
    }
}

/// Encoded size of a value the footprint counts.
fn size<T: serde::Serialize>(value: &T) -> u64 {
    postcard::to_allocvec(value).map_or(0, |bytes| bytes.len() as u64)
}

impl<S: StateMachine> Node for HotStuff<S> {
    type Msg = Message<S::Command>;
    type Timer = HotStuffTimer;
    type Request = ClientRequest<S::Command>;
    type Reply = Reply<S::Output>;
    type Obs = Observation<S::Command, S::Output>;

    fn on_start(&mut self, ctx: &mut Ctx<'_, S>) {
        self.boot(ctx);
        self.enter_round(ctx, Round(1), false);
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, S>) {
        self.boot(ctx);
        self.recover(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, msg: Message<S::Command>) {
        match msg {
            Message::Propose {
                block,
                tc,
                signature,
            } => self.on_propose(ctx, from, block, tc, signature),
            Message::Vote {
                round,
                block,
                signature,
            } => self.on_vote(ctx, round, block, signature),
            Message::Timeout {
                round,
                high_qc,
                signature,
            } => self.on_timeout(ctx, from, round, high_qc, signature),
            Message::Forward { requests } => {
                if requests.len() > self.config.batch_max.saturating_mul(4) {
                    ctx.ignore("forward with too many requests");
                    return;
                }
                for request in requests {
                    self.handle_request(ctx, request, false);
                }
            }
            Message::Fetch { block, height } => self.on_fetch(ctx, from, block, height),
            Message::Blocks { blocks } => self.on_blocks(ctx, from, blocks),
            Message::Certificate { qc, tc } => self.on_certificate(ctx, qc, tc),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, S>, timer: HotStuffTimer) {
        match timer {
            HotStuffTimer::Round { round } => self.on_round_timer(ctx, round),
        }
    }

    fn on_request(&mut self, ctx: &mut Ctx<'_, S>, _client: ClientId, request: Self::Request) {
        self.handle_request(ctx, request, true);
    }

    fn check_invariants(&self) -> Result<(), String> {
        if self.locked_qc.round > self.high_qc.round {
            return Err(format!(
                "{}: locked QC {} above high QC {}",
                self.id, self.locked_qc.round, self.high_qc.round
            ));
        }
        if !self.blocks.contains_key(&self.committed) {
            return Err(format!("{}: committed anchor not held", self.id));
        }
        if let Some(block) = self
            .blocks
            .values()
            .find(|block| block.round < self.committed_round)
        {
            return Err(format!(
                "{}: holds block of {} below the committed {}",
                self.id, block.round, self.committed_round
            ));
        }
        if self.mempool.len() > self.config.mempool_max {
            return Err(format!("{}: mempool over its bound", self.id));
        }
        if self.blocks.len() > self.config.blocks_max + 1 || self.pending.len() > PENDING_MAX {
            return Err(format!("{}: block store over its bound", self.id));
        }
        Ok(())
    }

    fn footprint_bytes(&self) -> u64 {
        self.footprint()
    }
}
