//! Message, timer and client handlers (the "upon receiving ..." rules of the crate doc).

use std::collections::BTreeSet;

use dst_protocols::{Reply, Request};
use dst_sim::{NodeId, StateMachine};

use super::{Ctx, MultiPaxos, Out, PaxosTimer, Proposal, Role};
use crate::durable::AcceptRecord;
use crate::message::{Ballot, Body, Report, Slot, Value};

impl<S: StateMachine> MultiPaxos<S> {
    pub(crate) fn dispatch(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, body: Body<S::Command>) {
        match body {
            Body::Prepare { ballot, from: slot } => self.on_prepare(ctx, from, ballot, slot),
            Body::Promise {
                ballot,
                from: slot,
                accepted,
                damaged,
            } => self.on_promise(ctx, from, ballot, slot, (accepted, damaged)),
            Body::Accept {
                ballot,
                slot,
                value,
            } => self.on_accept(ctx, from, ballot, slot, value),
            Body::Accepted { ballot, slot } => self.on_accepted(ctx, from, ballot, slot),
            Body::Nack { ballot, promised } => self.on_nack(ctx, ballot, promised),
            Body::Chosen { slot, value } => self.on_chosen(ctx, slot, value),
            Body::Heartbeat { ballot, round, .. } => self.on_heartbeat(ctx, from, ballot, round),
            Body::HeartbeatAck {
                ballot,
                chosen_below,
                round,
            } => self.on_heartbeat_ack(ctx, from, ballot, chosen_below, round),
        }
    }

    // ---- acceptor ----

    /// Raises the promise to `ballot` if higher (written before anything leaves), stepping
    /// down if this node was proposing with a lower ballot. False if `ballot` is below the
    /// promise (a Nack has been queued).
    fn honour(&mut self, from: NodeId, ballot: Ballot) -> bool {
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        if ballot < self.meta.promised {
            let promised = self.meta.promised;
            self.outbox
                .push(Out::Send(from, Body::Nack { ballot, promised }));
            return false;
        }
        if ballot > self.meta.promised {
            self.meta.promised = ballot;
            self.dirty.meta = true;
        }
        if self.role != Role::Follower && ballot > self.ballot {
            self.step_down();
        }
        true
    }

    fn on_prepare(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, ballot: Ballot, first: Slot) {
        if from != ballot.node {
            ctx.ignore("prepare from a node other than the ballot's owner");
            return;
        }
        if from != self.id && ballot > self.meta.promised && self.in_leader_lease(ctx.now_ns()) {
            ctx.ignore("leader lease holds: no promise to a new ballot");
            return;
        }
        if !self.honour(from, ballot) {
            return;
        }
        if from != self.id {
            // Give the candidate time to finish phase 1 before standing ourselves.
            self.reset_election_timer(ctx);
        }
        let accepted = self.reports_from(first);
        let damaged = self.damaged.range(first..).copied().collect();
        self.outbox.push(Out::Send(
            from,
            Body::Promise {
                ballot,
                from: first,
                accepted,
                damaged,
            },
        ));
    }

    /// What this acceptor knows about slots at or after `first`: values known chosen, and
    /// the latest accepted value elsewhere.
    fn reports_from(&self, first: Slot) -> Vec<Report<S::Command>> {
        let chosen = self.chosen.range(first..).map(|(slot, value)| Report {
            slot: *slot,
            ballot: Ballot::ZERO,
            value: value.clone(),
            chosen: true,
        });
        let accepted = self
            .accepted
            .range(first..)
            .filter(|(slot, _)| !self.chosen.contains_key(slot))
            .map(|(slot, record)| Report {
                slot: *slot,
                ballot: record.ballot,
                value: record.value.clone(),
                chosen: record.chosen,
            });
        chosen.chain(accepted).collect()
    }

    fn on_accept(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        value: Value<S::Command>,
    ) {
        if from != ballot.node {
            ctx.ignore("accept from a node other than the ballot's owner");
            return;
        }
        if slot > self.slot_bound(self.chosen_below) {
            ctx.ignore("accept for a slot too far beyond the chosen prefix");
            return;
        }
        if !self.honour(from, ballot) {
            return;
        }
        self.heard_from_leader(ctx, ballot);
        if let Some(known) = self.chosen.get(&slot) {
            if *known != value {
                ctx.ignore("accept contradicts a value known chosen");
                return;
            }
        }
        let keep = self.accepted.get(&slot).is_some_and(|record| {
            record.ballot == ballot && record.value == value || record.chosen
        });
        if !keep {
            let record = AcceptRecord {
                slot,
                ballot,
                value,
                chosen: false,
            };
            self.accepted.insert(slot, record);
            self.dirty.slots.insert(slot);
            // A fresh record replaces whatever damage was there.
            self.damaged.remove(&slot);
        }
        self.outbox
            .push(Out::Send(from, Body::Accepted { ballot, slot }));
    }

    fn heard_from_leader(&mut self, ctx: &mut Ctx<'_, S>, ballot: Ballot) {
        self.leader_hint = Some(ballot.node);
        if ballot.node != self.id {
            self.last_leader_contact_ns = Some(ctx.now_ns());
            self.reset_election_timer(ctx);
        }
    }

    /// With leases, a node that heard from a leader within the minimum election timeout
    /// (or leads) promises no new ballot, so no other leader arises while a lease holds.
    fn in_leader_lease(&self, now_ns: u64) -> bool {
        if !self.config.leader_lease {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        self.last_leader_contact_ns
            .is_some_and(|heard_ns| now_ns < heard_ns + self.config.election_timeout_min_ns)
    }

    fn on_heartbeat(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, ballot: Ballot, round: u64) {
        if from != ballot.node {
            ctx.ignore("heartbeat from a node other than the ballot's owner");
            return;
        }
        if !self.honour(from, ballot) {
            return;
        }
        self.heard_from_leader(ctx, ballot);
        let chosen_below = self.chosen_below;
        self.outbox.push(Out::Send(
            from,
            Body::HeartbeatAck {
                ballot,
                chosen_below,
                round,
            },
        ));
    }

    // ---- learner ----

    fn on_chosen(&mut self, ctx: &mut Ctx<'_, S>, slot: Slot, value: Value<S::Command>) {
        if slot < Slot::FIRST {
            ctx.ignore("chosen slot 0");
            return;
        }
        if slot > self.slot_bound(self.chosen_below) {
            ctx.ignore("chosen slot too far beyond the chosen prefix");
            return;
        }
        self.learn_chosen(ctx, slot, value);
    }

    // ---- proposer ----

    pub(crate) fn on_election_timeout(&mut self, ctx: &mut Ctx<'_, S>) {
        self.reset_election_timer(ctx);
        if self.role == Role::Leader {
            return;
        }
        // Saturating: a corrupted ballot (checksums off) can carry a round near u64::MAX.
        let round = self
            .max_round_seen
            .max(self.meta.promised.round)
            .saturating_add(1);
        self.ballot = Ballot {
            round,
            node: self.id,
        };
        self.max_round_seen = round;
        // The candidate promises itself its ballot, written and synced before the Prepares
        // leave: a ballot carries one candidacy, so a restart must never stand with it again
        // (its own Prepare, which would also record it, may be lost in a crash).
        if self.ballot > self.meta.promised {
            self.meta.promised = self.ballot;
            self.dirty.meta = true;
        }
        self.role = Role::Candidate;
        self.leader_hint = None;
        self.promises.clear();
        self.prepare_from = self.chosen_below;
        tracing::debug!(node = %self.id, ballot = %self.ballot, "standing");
        self.send_prepares();
        self.set_tick(ctx);
    }

    fn send_prepares(&mut self) {
        let (ballot, from) = (self.ballot, self.prepare_from);
        let waiting: Vec<NodeId> = self
            .all_nodes()
            .filter(|node| !self.promises.contains_key(node))
            .collect();
        for node in waiting {
            self.outbox
                .push(Out::Send(node, Body::Prepare { ballot, from }));
        }
    }

    fn on_promise(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        promise: super::PromiseContent<S::Command>,
    ) {
        if self.role != Role::Candidate || ballot != self.ballot || first != self.prepare_from {
            ctx.ignore("promise for a ballot this node is not standing with");
            return;
        }
        if !self.promise_within_bound(first, &promise) {
            ctx.ignore("promise names a slot too far beyond its reports");
            return;
        }
        self.promises.insert(from, promise);
        if self.phase1_complete() {
            self.become_leader(ctx);
        }
    }

    /// Every slot a promise names lies within `WINDOWS_AHEAD_MAX` windows of the slots it
    /// reports: an honest acceptor holds every chosen slot from `first` to its own prefix
    /// and accepts no further than the bound beyond that prefix. Phase 2 walks every slot
    /// from `first` to the highest one named, so this bounds the no-ops a new leader fills.
    fn promise_within_bound(
        &self,
        first: Slot,
        promise: &super::PromiseContent<S::Command>,
    ) -> bool {
        let (reports, damaged) = promise;
        let bound = self.slot_bound(Slot(first.0.saturating_add(reports.len() as u64)));
        reports
            .iter()
            .map(|report| report.slot)
            .chain(damaged.iter().copied())
            .all(|slot| slot <= bound)
    }

    /// A majority promised, and for every slot some promiser found damaged, a majority of
    /// promisers is intact there (or someone knows the slot chosen): otherwise a value
    /// chosen there might be invisible, so wait for more promises.
    fn phase1_complete(&self) -> bool {
        let majority = self.majority();
        if self.promises.len() < majority {
            return false;
        }
        let known_chosen: BTreeSet<Slot> = self
            .promises
            .values()
            .flat_map(|(reports, _)| reports.iter().filter(|r| r.chosen).map(|r| r.slot))
            .collect();
        let damaged: BTreeSet<Slot> = self
            .promises
            .values()
            .flat_map(|(_, damaged)| damaged.iter().copied())
            .filter(|slot| *slot >= self.prepare_from && !known_chosen.contains(slot))
            .filter(|slot| !self.chosen.contains_key(slot))
            .collect();
        damaged.iter().all(|slot| {
            let intact = self
                .promises
                .values()
                .filter(|(_, damaged)| !damaged.contains(slot))
                .count();
            intact >= majority
        })
    }

    /// Phase 1 done: adopt in every open slot the chosen value if anyone knew it, else the
    /// value accepted with the highest ballot, else a no-op; propose them all in phase 2.
    fn become_leader(&mut self, ctx: &mut Ctx<'_, S>) {
        let promises = std::mem::take(&mut self.promises);
        let mut best: std::collections::BTreeMap<Slot, Report<S::Command>> = Default::default();
        for report in promises.into_values().flat_map(|(reports, _)| reports) {
            if report.slot < self.prepare_from {
                continue;
            }
            let better = best.get(&report.slot).is_none_or(|current| {
                !current.chosen && (report.chosen || report.ballot > current.ballot)
            });
            if better {
                best.insert(report.slot, report);
            }
        }
        let last = best.keys().next_back().copied().unwrap_or(Slot(0));
        self.role = Role::Leader;
        self.leader_hint = Some(self.id);
        // A new leader's ballot is Multi-Paxos's view change, for the comparison metrics.
        ctx.observe(dst_protocols::Observation::NewView {
            node: self.id,
            view: self.ballot.round,
        });
        self.lease = Default::default();
        self.proposals.clear();
        let last_known = self.chosen.keys().next_back().copied().unwrap_or(Slot(0));
        self.next_slot = self
            .prepare_from
            .max(last.next())
            .max(last_known.next())
            .max(self.chosen_below);
        self.lease.leading_from = self.next_slot;
        tracing::debug!(node = %self.id, ballot = %self.ballot, next = self.next_slot.0, "leading");
        let mut slot = self.prepare_from;
        while slot < self.next_slot {
            match best.remove(&slot) {
                Some(report) if report.chosen => self.learn_chosen(ctx, slot, report.value),
                Some(report) => self.propose(slot, report.value),
                None if !self.chosen.contains_key(&slot) => self.propose(slot, None),
                None => {}
            }
            slot = slot.next();
        }
        self.send_heartbeats(ctx.now_ns());
        self.set_tick(ctx);
    }

    fn propose(&mut self, slot: Slot, value: Value<S::Command>) {
        let proposal = Proposal {
            value,
            accepted_by: BTreeSet::new(),
        };
        self.proposals.insert(slot, proposal);
        self.send_accepts(slot);
    }

    /// (Re)sends the accept for `slot` to every acceptor that has not acknowledged it.
    fn send_accepts(&mut self, slot: Slot) {
        let Some(proposal) = self.proposals.get(&slot) else {
            return;
        };
        let waiting: Vec<NodeId> = self
            .all_nodes()
            .filter(|node| !proposal.accepted_by.contains(node))
            .collect();
        let ballot = self.ballot;
        for node in waiting {
            let value = proposal.value.clone();
            let body = Body::Accept {
                ballot,
                slot,
                value,
            };
            self.outbox.push(Out::Send(node, body));
        }
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, ballot: Ballot, slot: Slot) {
        if self.role != Role::Leader || ballot != self.ballot {
            ctx.ignore("accepted for a ballot this node is not leading with");
            return;
        }
        let majority = self.majority();
        let Some(proposal) = self.proposals.get_mut(&slot) else {
            ctx.ignore("accepted for a slot already chosen");
            return;
        };
        proposal.accepted_by.insert(from);
        if proposal.accepted_by.len() < majority {
            return;
        }
        let value = proposal.value.clone();
        self.learn_chosen(ctx, slot, value.clone());
        for node in self.other_nodes() {
            let body = Body::Chosen {
                slot,
                value: value.clone(),
            };
            self.outbox.push(Out::Send(node, body));
        }
    }

    fn on_nack(&mut self, ctx: &mut Ctx<'_, S>, ballot: Ballot, promised: Ballot) {
        self.max_round_seen = self.max_round_seen.max(promised.round);
        if self.role == Role::Follower || ballot != self.ballot || promised <= self.ballot {
            ctx.ignore("stale nack");
            return;
        }
        self.step_down();
        self.reset_election_timer(ctx);
    }

    pub(crate) fn step_down(&mut self) {
        tracing::debug!(node = %self.id, ballot = %self.ballot, "stepping down");
        self.role = Role::Follower;
        self.leader_hint = None;
        self.promises.clear();
        self.proposals.clear();
        // A retry will reach whoever leads next; we would otherwise refuse it as proposed.
        self.pending.clear();
        self.lease = Default::default();
    }

    fn send_heartbeats(&mut self, now_ns: u64) {
        self.lease.round += 1;
        let round = self.lease.round;
        self.lease.round_sent_ns.insert(round, now_ns);
        while self.lease.round_sent_ns.len() > super::ROUNDS_TRACKED_MAX {
            self.lease.round_sent_ns.pop_first();
        }
        self.lease.acked_round.insert(self.id, round);
        let (ballot, chosen_below) = (self.ballot, self.chosen_below);
        for node in self.other_nodes() {
            let body = Body::Heartbeat {
                ballot,
                chosen_below,
                round,
            };
            self.outbox.push(Out::Send(node, body));
        }
    }

    /// Leader: heartbeat and retransmit open accepts. Candidate: retransmit prepares.
    pub(crate) fn on_tick(&mut self, ctx: &mut Ctx<'_, S>) {
        match self.role {
            Role::Follower => return,
            Role::Candidate => self.send_prepares(),
            Role::Leader => {
                self.send_heartbeats(ctx.now_ns());
                let open: Vec<Slot> = self.proposals.keys().copied().collect();
                for slot in open {
                    self.send_accepts(slot);
                }
            }
        }
        self.set_tick(ctx);
    }

    fn on_heartbeat_ack(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        ballot: Ballot,
        below: Slot,
        round: u64,
    ) {
        if self.role != Role::Leader || ballot != self.ballot {
            ctx.ignore("heartbeat ack for a ballot this node is not leading with");
            return;
        }
        self.update_lease(from, round);
        let end = Slot(below.0.saturating_add(self.config.max_catchup_per_message))
            .min(self.chosen_below);
        if below >= end {
            return;
        }
        let missing: Vec<(Slot, Value<S::Command>)> = self
            .chosen
            .range(below..end)
            .map(|(slot, value)| (*slot, value.clone()))
            .collect();
        for (slot, value) in missing {
            self.outbox
                .push(Out::Send(from, Body::Chosen { slot, value }));
        }
    }

    /// A lease starts when a round is sent; it holds for the minimum election timeout
    /// shrunk by twice the drift bound, because followers refuse promises that long after
    /// hearing from us.
    fn update_lease(&mut self, from: NodeId, round: u64) {
        if !self.config.leader_lease || round > self.lease.round {
            return;
        }
        let acked = self.lease.acked_round.entry(from).or_default();
        *acked = (*acked).max(round);
        let mut rounds: Vec<u64> = self.lease.acked_round.values().copied().collect();
        if rounds.len() < self.majority() {
            return;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_round = rounds[self.majority() - 1];
        let drift_ppm = self.config.clock_drift_bound_ppm.min(400_000) as u128;
        let base_ns = self.config.election_timeout_min_ns as u128;
        let lease_ns = (base_ns * (1_000_000 - 2 * drift_ppm) / 1_000_000) as u64;
        if let Some(sent_ns) = self.lease.round_sent_ns.get(&quorum_round) {
            self.lease.lease_until_ns = self.lease.lease_until_ns.max(sent_ns + lease_ns);
        }
    }

    /// Answers a read-only command locally if a lease holds and every value chosen before
    /// this leadership is applied (so every acknowledged write is visible).
    fn try_lease_read(&mut self, ctx: &mut Ctx<'_, S>, request: &Request<S::Command>) -> bool {
        let Some(reads) = self.reads.filter(|_| self.config.leader_lease) else {
            return false;
        };
        if !(reads.is_read)(&request.command)
            || ctx.now_ns() >= self.lease.lease_until_ns
            || self.applied_below < self.lease.leading_from
        {
            return false;
        }
        let Some(output) = (reads.query)(self.state.service(), &request.command) else {
            return false;
        };
        let reply = Reply::Done {
            sequence: request.sequence,
            output,
        };
        self.outbox.push(Out::Reply(request.client, reply));
        true
    }

    // ---- clients ----

    pub(crate) fn on_client_request(&mut self, ctx: &mut Ctx<'_, S>, request: Request<S::Command>) {
        if self.role != Role::Leader {
            let reply = Reply::Redirect {
                sequence: request.sequence,
                leader: self.leader_hint.filter(|leader| *leader != self.id),
            };
            self.outbox.push(Out::Reply(request.client, reply));
            return;
        }
        if self.try_lease_read(ctx, &request) {
            return;
        }
        let key = (request.client, request.sequence);
        if self.pending.contains(&key) {
            ctx.ignore("client request already proposed");
            return;
        }
        if self
            .state
            .last_sequence(request.client)
            .is_some_and(|last| request.sequence < last)
        {
            ctx.ignore("client request older than its session");
            return;
        }
        if self.proposals.len() >= self.config.max_open_slots
            || self.pending.len() >= self.config.max_open_slots
        {
            ctx.ignore("leader pipeline full");
            return;
        }
        // A retry of an applied request goes through the log too: applying it again
        // answers from the session cache without changing the state.
        self.pending.insert(key);
        let slot = self.next_slot;
        self.next_slot = slot.next();
        self.propose(slot, Some(std::sync::Arc::new(request)));
    }

    // ---- timers ----

    pub(crate) fn reset_election_timer(&mut self, ctx: &mut Ctx<'_, S>) {
        if let Some(timer) = self.election_timer.take() {
            ctx.cancel_timer(timer);
        }
        let span = self.config.election_timeout_max_ns - self.config.election_timeout_min_ns;
        let delay_ns = self.config.election_timeout_min_ns + ctx.random_below(span);
        self.election_timer = Some(ctx.set_timer(delay_ns, PaxosTimer::Election));
    }

    fn set_tick(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.tick_timer.is_none() {
            self.tick_timer =
                Some(ctx.set_timer(self.config.heartbeat_interval_ns, PaxosTimer::Tick));
        }
    }
}
