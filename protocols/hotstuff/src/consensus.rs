//! Proposals, votes, certificates, the locking and the 3-chain commit rules.

use std::collections::BTreeSet;

use dst_sim::{Digest, NodeId, Principal, Signature, StateMachine};

use crate::durable::{self, SafetyRecord};
use crate::replica::{
    Ctx, HotStuff, PENDING_MAX, VERIFIED_QCS_MAX, VOTE_ROUNDS_AHEAD_MAX, VOTE_TALLIES_MAX,
};
use crate::sync::write_verified;
use crate::types::{
    proposal_digest, signer_node, timeout_digest, vote_digest, Block, Message, Qc, Round, Tc,
};

/// Where a chain of parents from some block leads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Every ancestor down to the committed anchor is held.
    Complete,
    /// This ancestor (with its height hint) is missing.
    Missing(Digest, u64),
    /// The chain passes the committed round without meeting the committed block.
    Conflicts,
}

impl<S: StateMachine> HotStuff<S> {
    /// Follows parents from `digest` (a block of height `height`) to the committed anchor.
    pub(crate) fn chain_from(&self, digest: Digest, height: u64) -> Chain {
        let (mut digest, mut height) = (digest, height);
        for _ in 0..=self.blocks.len() {
            if digest == self.committed {
                return Chain::Complete;
            }
            let Some(block) = self.blocks.get(&digest) else {
                return Chain::Missing(digest, height);
            };
            if block.round <= self.committed_round {
                return Chain::Conflicts;
            }
            digest = block.parent;
            height = block.height.saturating_sub(1);
        }
        Chain::Conflicts
    }

    /// Checks a QC: genesis, or `n - f` valid votes of distinct replicas. Returns the
    /// canonical copy (the first one verified for this `(round, block)`).
    pub(crate) fn verify_qc(&mut self, ctx: &mut Ctx<'_, S>, qc: &Qc) -> Option<Qc> {
        if qc.round == Round(0) {
            return (qc.block == self.genesis && qc.votes.is_empty()).then(|| qc.clone());
        }
        if let Some(known) = self.verified_qcs.get(&qc.key()) {
            return Some(known.clone());
        }
        if qc.votes.len() < self.quorum() || qc.votes.len() > self.nodes as usize {
            return None;
        }
        let digest = vote_digest(qc.round, &qc.block);
        let mut signers = BTreeSet::new();
        for signature in &qc.votes {
            let node = signer_node(signature, self.nodes)?;
            if !signers.insert(node) || !ctx.verify(signature, &digest) {
                return None;
            }
        }
        self.remember_qc(qc.clone());
        Some(qc.clone())
    }

    pub(crate) fn remember_qc(&mut self, qc: Qc) {
        if qc.round == Round(0) {
            return;
        }
        self.verified_qcs.insert(qc.key(), qc);
        while self.verified_qcs.len() > VERIFIED_QCS_MAX {
            self.verified_qcs.pop_first();
        }
    }

    /// Checks a TC: `n - f` valid timeouts of distinct replicas for its round. A round this
    /// replica already knows a TC for needs no second check.
    pub(crate) fn verify_tc(&mut self, ctx: &mut Ctx<'_, S>, tc: &Tc) -> bool {
        if tc.round == Round(0) {
            return false;
        }
        if self
            .high_tc
            .as_ref()
            .is_some_and(|known| known.round >= tc.round)
        {
            return true;
        }
        if tc.timeouts.len() < self.quorum() || tc.timeouts.len() > self.nodes as usize {
            return false;
        }
        let mut signers = BTreeSet::new();
        for timeout in &tc.timeouts {
            let Some(node) = signer_node(&timeout.signature, self.nodes) else {
                return false;
            };
            let digest = timeout_digest(tc.round, timeout.high_qc_round);
            if !signers.insert(node) || !ctx.verify(&timeout.signature, &digest) {
                return false;
            }
        }
        true
    }

    // ---- Proposals ----------------------------------------------------------------------

    /// Upon a proposal: check it completely, then process it once its chain is here.
    pub(crate) fn on_propose(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        block: Block<S::Command>,
        tc: Option<Tc>,
        signature: Signature,
    ) {
        if let Err(reason) = self.check_proposal_shape(&block) {
            ctx.ignore(reason);
            return;
        }
        let digest = block.digest();
        if self.blocks.contains_key(&digest) || self.pending.contains_key(&digest) {
            ctx.ignore("proposal already held");
            return;
        }
        let leader = Principal::Node(block.proposer);
        if signature.signer() != leader || !ctx.verify(&signature, &proposal_digest(&digest)) {
            ctx.ignore("proposal not signed by the round's leader");
            return;
        }
        let Some(justify) = self.verify_qc(ctx, &block.justify) else {
            ctx.ignore("proposal with an invalid justify QC");
            return;
        };
        if !self.round_justified(ctx, &block, &justify, tc.as_ref()) {
            ctx.ignore("proposal round justified by neither its QC nor a valid TC");
            return;
        }
        if !self.requests_signed(ctx, &block) {
            ctx.ignore("proposal carries a request its client did not sign");
            return;
        }
        if let Some(tc) = &tc {
            self.note_tc(ctx, tc.clone());
        }
        self.advance_by_qc(ctx, &justify);
        if self.pending.len() >= PENDING_MAX {
            self.pending.pop_first();
        }
        let height = block.height;
        let parent = block.parent;
        self.pending.insert(digest, (block, tc));
        if let Chain::Missing(missing, hint) = self.chain_from(parent, height.saturating_sub(1)) {
            self.fetch(ctx, missing, hint, Some(from));
        }
        self.process_pending(ctx);
    }

    fn check_proposal_shape(&self, block: &Block<S::Command>) -> Result<(), &'static str> {
        if block.round <= block.justify.round {
            return Err("proposal round not above its justify QC");
        }
        if block.parent != block.justify.block {
            return Err("proposal does not extend the block its QC certifies");
        }
        if block.requests.len() > self.config.batch_max {
            return Err("proposal over the batch bound");
        }
        if block.proposer != self.leader(block.round) {
            return Err("proposal from a replica that does not lead its round");
        }
        if block.round <= self.committed_round {
            return Err("proposal at or below the committed round");
        }
        if block.height == 0 {
            return Err("proposal at height 0");
        }
        Ok(())
    }

    /// A block of round `r` follows a QC of round `r - 1`, or a TC of round `r - 1` whose
    /// signers' highest QC is not above the block's QC.
    fn round_justified(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        block: &Block<S::Command>,
        justify: &Qc,
        tc: Option<&Tc>,
    ) -> bool {
        if justify.round.next() == block.round {
            return true;
        }
        match tc {
            Some(tc) => {
                self.round_after_tc(tc.round) == block.round
                    && justify.round >= tc.high_qc_round()
                    && self.verify_tc(ctx, tc)
            }
            None => false,
        }
    }

    fn requests_signed(&mut self, ctx: &mut Ctx<'_, S>, block: &Block<S::Command>) -> bool {
        block.requests.iter().all(|request| {
            let client = request.value.client;
            if self.mempool.get(&client) == Some(request) {
                return true; // verified when it entered the mempool
            }
            request.signer() == Principal::Client(client) && ctx.verify_signed(request)
        })
    }

    /// Processes every pending proposal whose chain became complete, oldest round first.
    pub(crate) fn process_pending(&mut self, ctx: &mut Ctx<'_, S>) {
        loop {
            let mut ready = None;
            let mut stale = Vec::new();
            let mut order: Vec<(Round, Digest)> = self
                .pending
                .iter()
                .map(|(digest, (block, _))| (block.round, *digest))
                .collect();
            order.sort();
            for (round, digest) in order {
                let Some((block, _)) = self.pending.get(&digest) else {
                    continue;
                };
                if round <= self.committed_round {
                    stale.push(digest);
                    continue;
                }
                match self.chain_from(block.parent, block.height.saturating_sub(1)) {
                    Chain::Complete => {
                        ready = Some(digest);
                        break;
                    }
                    Chain::Conflicts => stale.push(digest),
                    Chain::Missing(..) => {}
                }
            }
            for digest in stale {
                self.pending.remove(&digest);
                ctx.ignore("proposal conflicts with the committed chain");
            }
            let Some(digest) = ready else { break };
            if let Some((block, tc)) = self.pending.remove(&digest) {
                self.accept_block(ctx, block, tc);
            }
        }
        if let Some(qc) = self.pending_qc.take() {
            self.process_qc(ctx, qc);
        }
        self.try_propose(ctx);
    }

    /// A verified proposal whose whole chain is here: store it, process its QC, maybe vote.
    fn accept_block(&mut self, ctx: &mut Ctx<'_, S>, block: Block<S::Command>, tc: Option<Tc>) {
        let parent_height = self.blocks.get(&block.parent).map(|parent| parent.height);
        if parent_height.and_then(|height| height.checked_add(1)) != Some(block.height) {
            ctx.ignore("proposal with a wrong height");
            return;
        }
        if self.blocks.len() > self.config.blocks_max {
            ctx.ignore("block store full");
            return;
        }
        let digest = block.digest();
        let round = block.round;
        self.blocks.insert(digest, block.clone());
        if let Some(tc) = tc {
            self.note_tc(ctx, tc);
        }
        self.process_qc(ctx, block.justify.clone());
        if round != self.current_round {
            ctx.ignore("proposal for a round this replica left");
            return;
        }
        if round <= self.last_voted_round {
            ctx.ignore("already voted in this round");
            return;
        }
        if !self.safe_node(&block) {
            ctx.ignore("proposal fails safeNode (conflicts with the lock)");
            return;
        }
        self.vote(ctx, round, digest);
    }

    /// safeNode: the block extends the locked block, or its QC is newer than the lock.
    pub(crate) fn safe_node(&self, block: &Block<S::Command>) -> bool {
        if block.justify.round < self.lock_floor {
            return false;
        }
        block.justify.round > self.locked_qc.round || self.extends(block.parent, &self.locked_qc)
    }

    /// Is the block certified by `ancestor` on the chain of parents from `digest`?
    fn extends(&self, digest: Digest, ancestor: &Qc) -> bool {
        let mut digest = digest;
        for _ in 0..=self.blocks.len() {
            if digest == ancestor.block {
                return true;
            }
            match self.blocks.get(&digest) {
                Some(block) if block.round > ancestor.round => digest = block.parent,
                _ => return false,
            }
        }
        false
    }

    /// Persists the safety data (the vote's round with it), then signs and sends the vote.
    fn vote(&mut self, ctx: &mut Ctx<'_, S>, round: Round, block: Digest) {
        assert!(round > self.last_voted_round, "voting twice in {round}");
        self.last_voted_round = round;
        // The block and its unstored ancestors first: the safety record's sync covers them.
        if !self.store_chain(ctx, block) {
            ctx.ignore("vote withheld: block write failed");
            return;
        }
        if !self.persist_safety(ctx) {
            // The promise is not durable, so the vote must not leave; the round stays used.
            ctx.ignore("vote withheld: safety record write failed");
            return;
        }
        let signature = ctx.sign(&vote_digest(round, &block));
        let next_leader = self.leader(round.next());
        self.send_or_handle(
            ctx,
            next_leader,
            Message::Vote {
                round,
                block,
                signature,
            },
        );
    }

    /// Writes a new safety record version and syncs; later sends wait for the sync.
    pub(crate) fn persist_safety(&mut self, ctx: &mut Ctx<'_, S>) -> bool {
        self.safety_version += 1;
        let record = SafetyRecord {
            version: self.safety_version,
            last_voted_round: self.last_voted_round,
            locked_qc: self.locked_qc.clone(),
            high_qc: self.high_qc.clone(),
        };
        let key = durable::safety_key(&record);
        let bytes = durable::encode(&key, &record);
        // Read back: a misdirected write lands under another key and leaves this one absent,
        // which recovery could not tell from never written.
        if !write_verified(ctx, &key, &bytes) {
            return false;
        }
        let kept = durable::SAFETY_VERSIONS_KEPT as usize;
        for old in &ctx.keys_with_prefix_but_last(durable::SAFETY_PREFIX, kept) {
            // A failed delete only leaves an old version behind; recovery ignores it.
            let _ = ctx.delete(old);
        }
        ctx.sync();
        true
    }

    // ---- Certificates -----------------------------------------------------------------

    /// Enters the round after a verified QC.
    pub(crate) fn advance_by_qc(&mut self, ctx: &mut Ctx<'_, S>, qc: &Qc) {
        if qc.round.next() > self.current_round {
            self.timeouts_in_row = 0;
            self.enter_round(ctx, qc.round.next(), false);
        }
    }

    /// Upon a verified QC: advance the round; with the chain here, update the high QC,
    /// the lock (2-chain) and commit (3-chain of consecutive rounds).
    pub(crate) fn process_qc(&mut self, ctx: &mut Ctx<'_, S>, qc: Qc) {
        self.advance_by_qc(ctx, &qc);
        if qc.round <= self.committed_round && qc.block != self.committed {
            return;
        }
        let height_hint = self.committed_height.saturating_add(1);
        match self.chain_from(qc.block, height_hint) {
            Chain::Complete => {}
            Chain::Missing(missing, hint) => {
                if self
                    .pending_qc
                    .as_ref()
                    .is_none_or(|held| held.round < qc.round)
                {
                    self.pending_qc = Some(qc);
                }
                self.fetch(ctx, missing, hint, None);
                return;
            }
            Chain::Conflicts => {
                ctx.ignore("certificate conflicts with the committed chain");
                return;
            }
        }
        if qc.round > self.high_qc.round {
            self.high_qc = qc.clone();
        }
        let Some(certified) = self.blocks.get(&qc.block).cloned() else {
            return;
        };
        let parent_qc = certified.justify.clone();
        if parent_qc.round > self.locked_qc.round {
            self.locked_qc = parent_qc.clone();
        }
        let Some(parent) = self.blocks.get(&parent_qc.block) else {
            return;
        };
        let grandparent = parent.justify.block;
        let consecutive = certified.round == parent.round.next()
            && self
                .blocks
                .get(&grandparent)
                .is_some_and(|block| parent.round == block.round.next());
        if consecutive && grandparent != self.committed && self.commit(ctx, grandparent) {
            self.unannounced_commit = Some(qc.round);
        }
    }

    /// Commits `target` and its uncommitted ancestors, oldest first, then prunes. True if
    /// they carried requests.
    fn commit(&mut self, ctx: &mut Ctx<'_, S>, target: Digest) -> bool {
        let mut chain = Vec::new();
        let mut digest = target;
        while digest != self.committed {
            let Some(block) = self.blocks.get(&digest) else {
                return false; // cannot happen with a complete chain; commit nothing partially
            };
            chain.push(digest);
            digest = block.parent;
        }
        let mut requests = false;
        for digest in chain.into_iter().rev() {
            let Some(block) = self.blocks.get(&digest).cloned() else {
                return requests;
            };
            requests |= !block.requests.is_empty();
            self.execute(ctx, &block);
            self.committed = digest;
            self.committed_round = block.round;
            self.committed_height = block.height;
        }
        let (anchor, round) = (self.committed, self.committed_round);
        self.blocks
            .retain(|digest, block| *digest == anchor || block.round > round);
        self.pending.retain(|_, (block, _)| block.round > round);
        self.fetching
            .retain(|digest, _| !self.blocks.contains_key(digest));
        self.prune_chain_records(ctx);
        requests
    }

    // ---- Votes and proposing ------------------------------------------------------------

    /// Upon a vote (as the leader of the next round): tally it; `n - f` make a QC.
    pub(crate) fn on_vote(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        round: Round,
        block: Digest,
        signature: Signature,
    ) {
        let Some(voter) = signer_node(&signature, self.nodes) else {
            ctx.ignore("vote not signed by a replica");
            return;
        };
        if self.leader(round.next()) != self.id {
            ctx.ignore("vote sent to a replica that does not lead the next round");
            return;
        }
        if round <= self.high_qc.round || round.next() < self.current_round {
            ctx.ignore("vote after its round's QC formed (or for a round left)");
            return;
        }
        if round.0 > self.current_round.0.saturating_add(VOTE_ROUNDS_AHEAD_MAX) {
            ctx.ignore("vote for a round too far ahead");
            return;
        }
        if self
            .votes
            .get(&(round, block))
            .is_some_and(|tally| tally.contains_key(&voter))
        {
            ctx.ignore("duplicate vote");
            return;
        }
        if !ctx.verify(&signature, &vote_digest(round, &block)) {
            ctx.ignore("vote with a bad signature");
            return;
        }
        let quorum = self.quorum();
        let tally = self.votes.entry((round, block)).or_default();
        tally.insert(voter, signature);
        if tally.len() < quorum {
            while self.votes.len() > VOTE_TALLIES_MAX {
                self.votes.pop_first();
            }
            return;
        }
        let qc = Qc {
            round,
            block,
            votes: tally.values().copied().collect(),
        };
        self.votes
            .retain(|(tally_round, _), _| *tally_round > round);
        self.remember_qc(qc.clone());
        self.process_qc(ctx, qc);
        self.try_propose(ctx);
    }

    /// As the leader of the current round, proposes if the round is justified (QC or TC of
    /// the previous round) and there is something to order or to finish committing.
    pub(crate) fn try_propose(&mut self, ctx: &mut Ctx<'_, S>) {
        let round = self.current_round;
        if self.leader(round) != self.id
            || self.proposed_round >= round
            || self.last_voted_round >= round
        {
            return;
        }
        // With a TC, the QC must be at least as high as any its signers reported (this
        // replica verified those QCs; one still being fetched is not usable yet).
        let high_qc_round = self.high_qc.round;
        let tc = if high_qc_round.next() == round {
            None
        } else if self.high_tc.as_ref().is_some_and(|tc| {
            self.round_after_tc(tc.round) == round && tc.high_qc_round() <= high_qc_round
        }) {
            self.high_tc.clone()
        } else {
            return;
        };
        let Some(parent) = self.blocks.get(&self.high_qc.block) else {
            return;
        };
        let height = parent.height.saturating_add(1);
        let requests = self.batch_for(self.high_qc.block);
        if requests.is_empty() && tc.is_none() && !self.chain_unfinished(self.high_qc.block) {
            return;
        }
        let block = Block {
            round,
            height,
            parent: self.high_qc.block,
            justify: self.high_qc.clone(),
            proposer: self.id,
            requests,
        };
        let signature = ctx.sign(&proposal_digest(&block.digest()));
        self.proposed_round = round;
        ctx.broadcast(Message::Propose {
            block: block.clone(),
            tc: tc.clone(),
            signature,
        });
        self.accept_block(ctx, block, tc);
    }

    /// Requests for a block extending `parent`: from the mempool, not executed and not in
    /// an uncommitted ancestor; at most `batch_max`, starting at a round-dependent client.
    fn batch_for(&self, parent: Digest) -> Vec<crate::types::ClientRequest<S::Command>> {
        let mut in_chain = BTreeSet::new();
        let mut digest = parent;
        while digest != self.committed {
            let Some(block) = self.blocks.get(&digest) else {
                break;
            };
            for request in &block.requests {
                in_chain.insert((request.value.client, request.value.sequence));
            }
            digest = block.parent;
        }
        let fresh: Vec<_> = self
            .mempool
            .values()
            .filter(|request| {
                let id = (request.value.client, request.value.sequence);
                let executed = self
                    .state
                    .last_sequence(id.0)
                    .is_some_and(|last| last >= id.1);
                !executed && !in_chain.contains(&id)
            })
            .collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        let start = (self.current_round.0 % fresh.len() as u64) as usize;
        fresh
            .iter()
            .cycle()
            .skip(start)
            .take(fresh.len().min(self.config.batch_max))
            .map(|request| (*request).clone())
            .collect()
    }

    /// Does the chain ending at `tip` still need blocks on top: a request in an uncommitted
    /// block, or a commit of requests this replica made from its high QC, which the others
    /// learn only from the next proposal carrying that QC?
    fn chain_unfinished(&self, tip: Digest) -> bool {
        if self.unannounced_commit == Some(self.high_qc.round) {
            return true;
        }
        let mut digest = tip;
        for _ in 0..=self.blocks.len() {
            let Some(block) = self.blocks.get(&digest) else {
                return false;
            };
            if block.round <= self.committed_round {
                return false;
            }
            if !block.requests.is_empty() {
                return true;
            }
            digest = block.parent;
        }
        false
    }
}
