//! Checkpoints in two rounds (CHECKPOINT, then CHECKPOINT-COMMIT, `Qs` each), garbage
//! collection, state transfer and the periodic tick.

use dst_protocols::{Observation, Sessions};
use dst_sim::{NodeId, Principal, Signed, StateMachine};

use crate::durable::{self, write_record};
use crate::msg::{verify_stable, Cc, CheckpointBody, Msg, Order, StableProof, Vote};
use crate::replica::{verifier, Ctx, FastBft, Status, VOTE_SLOTS_PER_REPLICA};

impl<S: StateMachine> FastBft<S> {
    /// Broadcasts CHECKPOINT for `seq` (the service snapshot there is held).
    pub(crate) fn send_checkpoint(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: u64) {
        let (Some(hist), Some(snapshot)) = (self.hist_at(seq), self.snapshots.get(&seq)) else {
            return;
        };
        let body = CheckpointBody {
            commit: false,
            view: self.view,
            seq,
            hist,
            state_digest: snapshot.digest(),
            replica: self.id,
        };
        self.send_vote(ctx, body);
    }

    fn send_vote(&mut self, ctx: &mut Ctx<'_, '_, S>, body: CheckpointBody) {
        let key = (body.seq, body.commit);
        if self.checkpoint_waiting_since_ns.is_none() {
            self.checkpoint_waiting_since_ns = Some(ctx.now_ns());
        }
        let vote = ctx.sign_value(body);
        self.own_votes.insert(key, vote.clone());
        ctx.broadcast(Msg::Checkpoint(vote.clone()));
        self.count_vote(ctx, vote);
    }

    /// Upon CHECKPOINT or CHECKPOINT-COMMIT.
    pub(crate) fn on_checkpoint(&mut self, ctx: &mut Ctx<'_, '_, S>, vote: Signed<CheckpointBody>) {
        let body = &vote.value;
        if body.seq <= self.stable.seq {
            ctx.ignore("checkpoint: at or below the stable checkpoint");
            return;
        }
        if self.confirming.is_some() {
            ctx.ignore("checkpoint: view not confirmed yet");
            return;
        }
        if !self.params.is_replica(body.replica)
            || vote.signer() != Principal::Node(body.replica)
            || !ctx.verify_signed(&vote)
        {
            ctx.ignore("checkpoint: bad signature");
            return;
        }
        self.count_vote(ctx, vote);
    }

    fn count_vote(&mut self, ctx: &mut Ctx<'_, '_, S>, vote: Signed<CheckpointBody>) {
        let body = vote.value.clone();
        let replica = body.replica;
        self.checkpoint_votes
            .entry((body.seq, body.commit))
            .or_default()
            .insert(replica, vote);
        self.bound_votes(replica, body.commit);
        if body.commit {
            self.count_commits(ctx, &body);
        } else {
            self.count_checkpoints(ctx, &body);
        }
    }

    /// Keeps at most a few slots per replica and kind (a Byzantine flood stays bounded).
    fn bound_votes(&mut self, replica: NodeId, commit: bool) {
        let slots: Vec<(u64, bool)> = self
            .checkpoint_votes
            .iter()
            .filter(|((_, kind), votes)| *kind == commit && votes.contains_key(&replica))
            .map(|(key, _)| *key)
            .collect();
        if slots.len() > VOTE_SLOTS_PER_REPLICA {
            let lowest = slots[0];
            if let Some(votes) = self.checkpoint_votes.get_mut(&lowest) {
                votes.remove(&replica);
                if votes.is_empty() {
                    self.checkpoint_votes.remove(&lowest);
                }
            }
        }
    }

    /// Qs matching CHECKPOINTs form a checkpoint CC: keep it and send CHECKPOINT-COMMIT.
    fn count_checkpoints(&mut self, ctx: &mut Ctx<'_, '_, S>, body: &CheckpointBody) {
        if self.own_votes.contains_key(&(body.seq, true)) {
            return;
        }
        let Some(votes) = self.checkpoint_votes.get(&(body.seq, false)) else {
            return;
        };
        let matching: Vec<Vote<S::Output>> = votes
            .values()
            .filter(|vote| {
                (vote.value.view, vote.value.hist, vote.value.state_digest)
                    == (body.view, body.hist, body.state_digest)
            })
            .map(|vote| Vote::Checkpoint(vote.clone()))
            .collect();
        if matching.len() < self.params.slow_quorum() {
            return;
        }
        let digest_here = self.snapshots.get(&body.seq).map(Sessions::digest);
        if self.hist_at(body.seq) != Some(body.hist) || digest_here != Some(body.state_digest) {
            return;
        }
        let cc = Cc {
            view: body.view,
            seq: body.seq,
            hist: body.hist,
            votes: matching,
        };
        self.store_cc(ctx, cc);
        let commit = CheckpointBody {
            commit: true,
            replica: self.id,
            ..body.clone()
        };
        self.send_vote(ctx, commit);
    }

    /// Qs matching CHECKPOINT-COMMITs make the checkpoint stable.
    fn count_commits(&mut self, ctx: &mut Ctx<'_, '_, S>, body: &CheckpointBody) {
        let Some(votes) = self.checkpoint_votes.get(&(body.seq, true)) else {
            return;
        };
        let matching: Vec<Signed<CheckpointBody>> = votes
            .values()
            .filter(|vote| {
                (vote.value.hist, vote.value.state_digest) == (body.hist, body.state_digest)
            })
            .cloned()
            .collect();
        if matching.len() < self.params.slow_quorum() {
            return;
        }
        let proof = StableProof {
            seq: body.seq,
            hist: body.hist,
            state_digest: body.state_digest,
            votes: matching,
        };
        self.make_stable(ctx, proof);
    }

    /// The service state right after slot `seq` of the log (snapshot or re-execution).
    fn state_at(&self, seq: u64) -> Option<Sessions<S>> {
        if let Some(snapshot) = self.snapshots.get(&seq) {
            return Some(snapshot.clone());
        }
        if seq > self.tip() {
            return None;
        }
        let mut state = self.stable_state.clone();
        for (_, entry) in self.log.range(..=seq) {
            crate::replica::execute(&mut state, entry.request.as_ref());
        }
        Some(state)
    }

    /// Adopts a verified stable checkpoint: finalise, garbage-collect, persist; or fetch the
    /// state if the log does not reach it.
    pub(crate) fn make_stable(&mut self, ctx: &mut Ctx<'_, '_, S>, proof: StableProof) {
        if proof.seq <= self.stable.seq {
            return;
        }
        let state = match self.hist_at(proof.seq) {
            Some(hist) if hist == proof.hist => self.state_at(proof.seq),
            _ => None,
        };
        let Some(state) = state.filter(|state| state.digest() == proof.state_digest) else {
            self.request_state(ctx, proof);
            return;
        };
        self.report_final(ctx, proof.seq);
        self.log = self.log.split_off(&(proof.seq + 1));
        self.stable_state = state;
        self.set_stable(ctx, proof);
    }

    /// Installs `proof` as the stable checkpoint (the stable state is already set).
    fn set_stable(&mut self, ctx: &mut Ctx<'_, '_, S>, proof: StableProof) {
        let seq = proof.seq;
        ctx.observe(Observation::SpecInstall {
            node: self.id,
            view: None,
            slot: seq,
            hist: proof.hist.short(),
            state_digest: Some(proof.state_digest),
        });
        self.stable = proof;
        self.snapshots = self.snapshots.split_off(&(seq + 1));
        self.buffer = self.buffer.split_off(&(seq + 1));
        self.checkpoint_votes.retain(|(slot, _), _| *slot > seq);
        self.own_votes.retain(|(slot, _), _| *slot > seq);
        self.checkpoint_waiting_since_ns = (!self.own_votes.is_empty()).then(|| ctx.now_ns());
        self.signed_orders.retain(|(_, slot), _| *slot > seq);
        self.signed_specs.retain(|(_, slot), _| *slot > seq);
        self.ccs.retain(|held| held.cc.seq > seq);
        for held in &mut self.ccs {
            held.chain.retain(|link| link.seq > seq);
        }
        if self
            .state_target
            .as_ref()
            .is_some_and(|target| target.seq <= seq)
        {
            self.state_target = None;
        }
        if self
            .unreported
            .as_ref()
            .is_some_and(|gap| gap.to_seq() < seq)
        {
            self.unreported = None;
        }
        let snapshot = self.stable_state.snapshot();
        self.stable_snapshot_bytes.set(snapshot.len() as u64);
        write_record(ctx, durable::STABLE_KEY, &(self.stable.clone(), snapshot));
        self.persist_ccs(ctx);
        // Final entries stay on disk for a window below the checkpoint (the archive that
        // lets a replica catching up by state transfer report the slots it skipped).
        let archived_from = seq.saturating_sub(self.archive_slots());
        for key in ctx.keys_with_prefix(durable::LOG_PREFIX) {
            let below = key
                .strip_prefix(durable::LOG_PREFIX)
                .and_then(|slot| slot.parse::<u64>().ok())
                .is_some_and(|slot| slot <= archived_from);
            if below {
                let _ = ctx.delete(&key);
            }
        }
        ctx.sync();
    }

    /// Asks f+1 of the proof's signers for their state at or after `proof.seq`.
    pub(crate) fn request_state(&mut self, ctx: &mut Ctx<'_, '_, S>, proof: StableProof) {
        let signers: Vec<NodeId> = proof
            .votes
            .iter()
            .map(|vote| vote.value.replica)
            .filter(|replica| *replica != self.id)
            .collect();
        if signers.is_empty() {
            return;
        }
        let first = ctx.random_below(signers.len() as u64) as usize;
        for offset in 0..self.params.one_correct().min(signers.len()) {
            let to = signers[(first + offset) % signers.len()];
            let have = self.stable.seq;
            ctx.send(
                to,
                Msg::StateRequest {
                    seq: proof.seq,
                    have,
                },
            );
        }
        let newer = self
            .state_target
            .as_ref()
            .is_none_or(|target| target.seq < proof.seq);
        if newer {
            self.state_target = Some(proof);
        }
    }

    /// Asks `to` for any stable checkpoint above this replica's (at most once per fill-hole
    /// timeout).
    pub(crate) fn ask_state(&mut self, ctx: &mut Ctx<'_, '_, S>, to: NodeId) {
        let now_ns = ctx.now_ns();
        if now_ns
            < self
                .state_asked_ns
                .saturating_add(self.config.fill_hole_timeout_ns)
        {
            return;
        }
        self.state_asked_ns = now_ns;
        ctx.send(
            to,
            Msg::StateRequest {
                seq: self.stable.seq + 1,
                have: self.stable.seq,
            },
        );
    }

    /// Upon STATE-REQ: send the stable checkpoint, its snapshot, the entries above it and
    /// the archived final entries the asker lacks.
    pub(crate) fn on_state_request(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        from: NodeId,
        seq: u64,
        have: u64,
    ) {
        if self.stable.seq < seq || self.stable.seq == 0 {
            ctx.ignore("state request: not that far");
            return;
        }
        let reply = Msg::StateReply {
            proof: self.stable.clone(),
            snapshot: self.stable_state.snapshot(),
            entries: self.carried_orders(),
            finals: self.archived_finals(ctx, have),
        };
        ctx.send(from, reply);
    }

    /// Upon STATE-REPLY: check the proof and the snapshot's digest, install, then take the
    /// entries above as ordinary ORDER-REQs.
    pub(crate) fn on_state_reply(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        proof: StableProof,
        snapshot: Vec<u8>,
        entries: Vec<Order<S::Command>>,
        finals: Vec<Order<S::Command>>,
    ) {
        if proof.seq <= self.stable.seq {
            if proof.seq == self.stable.seq && proof.hist == self.stable.hist {
                // The checkpoint is already verified and installed: its entries may still
                // report the slots skipped to it.
                self.fill_unreported(ctx, &proof, &finals);
            }
            ctx.ignore("state reply: not newer");
            return;
        }
        let verified = verify_stable(
            &self.params,
            &proof,
            &mut verifier(ctx),
            self.genesis_digest,
        );
        if let Err(reason) = verified {
            ctx.ignore(reason);
            return;
        }
        let Ok(state) = Sessions::<S>::restore(&snapshot) else {
            ctx.ignore("state reply: malformed snapshot");
            return;
        };
        if state.digest() != proof.state_digest {
            ctx.ignore("state reply: snapshot does not match the proof");
            return;
        }
        let keep = self.hist_at(proof.seq) == Some(proof.hist);
        if keep {
            self.report_final(ctx, proof.seq);
            self.log = self.log.split_off(&(proof.seq + 1));
        } else {
            // The log does not reach or conflicts with a final checkpoint: nothing in it
            // above can be part of a completed history. The skipped slots are reported from
            // the sender's archived entries if they chain to the proof.
            self.log.clear();
            self.forget_log_records(ctx);
            self.skip_to(ctx, &proof, &finals);
        }
        let later_view = proof.votes.iter().any(|vote| vote.value.view > self.view);
        self.stable_state = state;
        self.set_stable(ctx, proof);
        self.replay();
        if later_view && self.status == Status::Normal {
            // The others checkpointed in a later view: complaining about this one makes
            // them send the NEW-VIEW this replica missed.
            self.send_ihtp(ctx);
        }
        for order in entries {
            self.on_order(ctx, order);
        }
        if let Some(new_view) = self.pending_new_view.take() {
            self.on_new_view(ctx, new_view);
        }
    }

    /// A checkpoint vote that has waited too long: this view does not make progress.
    fn check_checkpoint_stall(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let Some(since_ns) = self.checkpoint_waiting_since_ns else {
            return;
        };
        if ctx.now_ns().saturating_sub(since_ns) >= self.config.checkpoint_stall_ns {
            self.checkpoint_waiting_since_ns = Some(ctx.now_ns());
            self.send_ihtp(ctx);
        }
    }

    /// Periodic: idle checkpoint at the tip, vote and view-change retransmission, state
    /// transfer retries.
    pub(crate) fn on_tick(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let tip = self.tip();
        match self.status {
            Status::Normal if self.confirming.is_some() => self.retransmit_confirm(ctx),
            Status::Normal => {
                self.check_checkpoint_stall(ctx);
                let idle = tip == self.tick_tip && tip > self.stable.seq;
                if idle && !self.own_votes.contains_key(&(tip, false)) {
                    self.snapshots.insert(tip, self.state.clone());
                    while self.snapshots.len() > crate::replica::SNAPSHOTS_MAX {
                        self.snapshots.pop_first();
                    }
                    self.send_checkpoint(ctx, tip);
                } else if let Some(((latest, _), _)) = self.own_votes.iter().next_back() {
                    // Both rounds of the latest checkpoint again: votes may have been lost.
                    let latest = *latest;
                    let votes: Vec<Signed<CheckpointBody>> = self
                        .own_votes
                        .range((latest, false)..=(latest, true))
                        .map(|(_, vote)| vote.clone())
                        .collect();
                    for vote in votes {
                        ctx.broadcast(Msg::Checkpoint(vote));
                    }
                }
            }
            Status::ViewChange { .. } => {
                if let Some(view_change) = self.view_changes.get(&self.id) {
                    ctx.broadcast(Msg::ViewChange(Box::new(view_change.clone())));
                }
                if let Some(ihtp) = &self.own_ihtp {
                    ctx.broadcast(Msg::Ihtp(ihtp.clone()));
                }
            }
        }
        self.tick_tip = tip;
        if let Some(target) = self.state_target.clone() {
            self.request_state(ctx, target);
        }
    }
}
