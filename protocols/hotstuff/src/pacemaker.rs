//! The pacemaker: round timers with exponential backoff, timeouts and timeout certificates.

use dst_protocols::Observation;
use dst_sim::{NodeId, Signature, StateMachine};

use crate::replica::{Ctx, HotStuff};
use crate::types::{
    signer_node, timeout_digest, HotStuffTimer, Message, Qc, Round, Tc, TimeoutVote,
};

/// Most doublings of the round timeout.
const BACKOFF_EXPONENT_MAX: u32 = 16;

impl<S: StateMachine> HotStuff<S> {
    /// Enters `round` (never backwards) and restarts the round timer. `after_timeout`: the
    /// round was entered through timeouts (a view change), reported as `NewView`.
    pub(crate) fn enter_round(&mut self, ctx: &mut Ctx<'_, S>, round: Round, after_timeout: bool) {
        if round <= self.current_round {
            return;
        }
        self.current_round = round;
        if after_timeout {
            ctx.observe(Observation::NewView {
                node: self.id,
                view: round.0,
            });
        }
        self.arm_round_timer(ctx);
        self.try_propose(ctx);
    }

    /// The current round's timeout: the base, doubled per timeout in a row after the first,
    /// capped. The first repeat is not doubled: a crashed leader costs one or two timeouts
    /// (the round whose votes it should collect, then its own tenure unless that TC skips
    /// it), not a growing pause.
    pub(crate) fn round_timeout_ns(&self) -> u64 {
        let exponent = self
            .timeouts_in_row
            .saturating_sub(1)
            .min(BACKOFF_EXPONENT_MAX);
        self.config
            .round_timeout_ns
            .saturating_mul(1u64 << exponent)
            .min(self.config.round_timeout_max_ns)
    }

    pub(crate) fn arm_round_timer(&mut self, ctx: &mut Ctx<'_, S>) {
        if let Some(timer) = self.round_timer.take() {
            ctx.cancel_timer(timer);
        }
        let round = self.current_round;
        let delay_ns = self.round_timeout_ns();
        self.round_timer = Some(ctx.set_timer(delay_ns, HotStuffTimer::Round { round }));
    }

    /// Upon the round timer: retry fetches; with work outstanding, give up on the round.
    pub(crate) fn on_round_timer(&mut self, ctx: &mut Ctx<'_, S>, round: Round) {
        if round != self.current_round {
            return;
        }
        self.round_timer = None;
        self.refetch(ctx);
        if self.has_work() {
            self.timeouts_in_row = self.timeouts_in_row.saturating_add(1);
            self.local_timeout(ctx);
        }
        if self.round_timer.is_none() {
            self.arm_round_timer(ctx);
        }
    }

    /// Gives up on the current round: broadcast a signed timeout with the high QC, and hand
    /// the mempool to the next leader.
    pub(crate) fn local_timeout(&mut self, ctx: &mut Ctx<'_, S>) {
        let round = self.current_round;
        self.timed_out_round = self.timed_out_round.max(round);
        let high_qc = self.high_qc.clone();
        let signature = ctx.sign(&timeout_digest(round, high_qc.round));
        ctx.broadcast(Message::Timeout {
            round,
            high_qc: high_qc.clone(),
            signature,
        });
        let next_leader = self.leader(round.next());
        if next_leader != self.id && !self.mempool.is_empty() {
            let requests = self
                .mempool
                .values()
                .take(self.config.batch_max)
                .cloned()
                .collect();
            ctx.send(next_leader, Message::Forward { requests });
        }
        let vote = TimeoutVote {
            high_qc_round: high_qc.round,
            signature,
        };
        self.record_timeout(ctx, self.id, round, vote);
    }

    /// Upon a timeout from a peer: verify it (and its QC if it is news), help a lagging
    /// sender, and count it.
    pub(crate) fn on_timeout(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        round: Round,
        high_qc: Qc,
        signature: Signature,
    ) {
        let Some(signer) = signer_node(&signature, self.nodes) else {
            ctx.ignore("timeout not signed by a replica");
            return;
        };
        if round == Round(0) || high_qc.round >= round {
            ctx.ignore("timeout with an impossible round");
            return;
        }
        if !ctx.verify(&signature, &timeout_digest(round, high_qc.round)) {
            ctx.ignore("timeout with a bad signature");
            return;
        }
        if high_qc.round > self.high_qc.round {
            let Some(qc) = self.verify_qc(ctx, &high_qc) else {
                ctx.ignore("timeout carries an invalid QC");
                return;
            };
            self.process_qc(ctx, qc);
        }
        self.help_lagging(ctx, from, round, &high_qc);
        let vote = TimeoutVote {
            high_qc_round: high_qc.round,
            signature,
        };
        self.record_timeout(ctx, signer, round, vote);
    }

    /// A sender behind this replica gets the certificates that move it forward.
    fn help_lagging(&mut self, ctx: &mut Ctx<'_, S>, to: NodeId, round: Round, high_qc: &Qc) {
        if to == self.id {
            return;
        }
        let qc_behind = high_qc.round < self.high_qc.round;
        // A TC helps if it leads past the sender's round (and past our QC's).
        let tc = self.high_tc.clone().filter(|tc| {
            let after = self.round_after_tc(tc.round);
            after > round && after > self.high_qc.round.next()
        });
        if qc_behind || tc.is_some() {
            ctx.send(
                to,
                Message::Certificate {
                    qc: self.high_qc.clone(),
                    tc,
                },
            );
        }
    }

    /// Counts a replica's latest timeout: `n - f` for one round form a TC and end the round;
    /// `f + 1` at or above the current round mean a correct replica gave up there, so this
    /// one joins (Bracha-style amplification).
    fn record_timeout(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        node: NodeId,
        round: Round,
        vote: TimeoutVote,
    ) {
        if self
            .peer_timeouts
            .get(&node)
            .is_some_and(|(held, _)| *held >= round)
        {
            return;
        }
        self.peer_timeouts.insert(node, (round, vote));
        let same: Vec<TimeoutVote> = self
            .peer_timeouts
            .values()
            .filter(|(held, _)| *held == round)
            .map(|(_, vote)| vote.clone())
            .collect();
        if same.len() >= self.quorum() {
            self.note_tc(
                ctx,
                Tc {
                    round,
                    timeouts: same,
                },
            );
        }
        let mut rounds: Vec<Round> = self.peer_timeouts.values().map(|(held, _)| *held).collect();
        rounds.sort_unstable_by(|left, right| right.cmp(left));
        let Some(&joined) = rounds.get(self.faults_max()) else {
            return;
        };
        if joined >= self.current_round && self.timed_out_round < joined {
            self.enter_round(ctx, joined, true);
            if self.current_round == joined {
                self.local_timeout(ctx);
            }
        }
    }

    /// Upon a verified TC: remember the highest and enter the round after it.
    pub(crate) fn note_tc(&mut self, ctx: &mut Ctx<'_, S>, tc: Tc) {
        let round = tc.round;
        if self.high_tc.as_ref().is_none_or(|held| held.round < round) {
            self.high_tc = Some(tc);
        }
        self.enter_round(ctx, self.round_after_tc(round), true);
    }

    /// Upon certificates from a peer that saw this replica behind.
    pub(crate) fn on_certificate(&mut self, ctx: &mut Ctx<'_, S>, qc: Qc, tc: Option<Tc>) {
        if let Some(tc) = tc {
            if self.verify_tc(ctx, &tc) {
                self.note_tc(ctx, tc);
            } else {
                ctx.ignore("certificate with an invalid TC");
            }
        }
        // Even a QC below the high one can complete a 3-chain on a branch this replica
        // moved away from (it commits what the sender committed): process any new one.
        if qc.round <= self.committed_round || self.verified_qcs.contains_key(&qc.key()) {
            return;
        }
        match self.verify_qc(ctx, &qc) {
            Some(qc) => self.process_qc(ctx, qc),
            None => ctx.ignore("certificate with an invalid QC"),
        }
    }
}
