//! Elections, replication, client requests and reads: the rules of Figure 2.

use std::sync::Arc;

use dst_protocols::{Observation, Reply, Request};
use dst_sim::{NodeId, StateMachine};

use super::{Ctx, LeaderState, Out, PendingRead, Raft, RaftTimer, ReadMode, Role};
use crate::membership::{Configuration, Member};
use dst_protocols::command_digest;

use crate::message::{
    AppendEntries, AppendResponse, Body, Entry, InstallSnapshot, LogIndex, RequestVote, Term,
    VoteResponse,
};

// ---- terms, timers, role changes ----

impl<S: StateMachine> Raft<S> {
    /// Restarts the election timeout. A timer already set stays set (it fires no later than
    /// the new deadline and is then set for the rest): contact with the leader, on every
    /// AppendEntries, costs no timer. The timeout is drawn when the timer is set, once per
    /// period.
    pub(super) fn reset_election_timer(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.election_timer.is_none() {
            let spread = self.config.election_timeout_max_ns - self.config.election_timeout_min_ns;
            self.election_timeout_ns =
                self.config.election_timeout_min_ns + ctx.random_below(spread);
            self.election_timer =
                Some(ctx.set_timer(self.election_timeout_ns, RaftTimer::Election));
        }
        self.election_deadline_ns = ctx.monotonic_ns() + self.election_timeout_ns;
    }

    /// Called when the election timer fires: whether the timeout is due, else the timer is
    /// set again for the rest of it.
    pub(super) fn election_due(&mut self, ctx: &mut Ctx<'_, S>) -> bool {
        match rest_until(ctx, self.election_deadline_ns) {
            None => true,
            Some(rest_ns) => {
                self.election_timer = Some(ctx.set_timer(rest_ns, RaftTimer::Election));
                false
            }
        }
    }

    fn set_heartbeat_timer(&mut self, ctx: &mut Ctx<'_, S>, delay_ns: u64) {
        if let Some(timer) = self.heartbeat_timer.take() {
            ctx.cancel_timer(timer);
        }
        self.heartbeat_timer = Some(ctx.set_timer(delay_ns, RaftTimer::Heartbeat));
    }

    /// "If RPC request or response contains term T > currentTerm: set currentTerm = T,
    /// convert to follower."
    fn adopt_term(&mut self, ctx: &mut Ctx<'_, S>, term: Term) {
        assert!(
            term > self.meta.current_term,
            "adopt_term: term does not grow"
        );
        self.meta.current_term = term;
        self.meta.voted_for = None;
        self.dirty.meta = true;
        self.become_follower(ctx, None);
    }

    pub(super) fn become_follower(&mut self, ctx: &mut Ctx<'_, S>, leader: Option<NodeId>) {
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.leader_id = leader;
        self.leader = None;
        self.votes.clear();
        // Clients retry elsewhere; a new leader answers them from the session table.
        self.pending_writes.clear();
        self.pending_reads.clear();
        if was_leader {
            if let Some(timer) = self.heartbeat_timer.take() {
                ctx.cancel_timer(timer);
            }
            self.cancel_churn_timer(ctx);
            self.reset_election_timer(ctx);
        }
    }

    pub(super) fn on_election_timeout(&mut self, ctx: &mut Ctx<'_, S>) {
        self.reset_election_timer(ctx);
        if self.role == Role::Leader {
            return;
        }
        if self.meta.recovery.is_some() {
            ctx.ignore("election timeout while recovering: not standing");
            return;
        }
        // Thesis 4.2.2: a server removed by a configuration not yet committed may still be
        // needed (it may hold entries no voter can elect without), so it stands, without
        // counting its own vote. Once it knows its removal committed, or while it rejoins
        // after a wipe, it does not.
        let removal_uncommitted = self.members_index > self.commit_index;
        if !self.is_voter() && (self.meta.rejoining || !removal_uncommitted) {
            self.on_non_voter_timeout(ctx);
            return;
        }
        self.leader_id = None;
        if self.config.pre_vote {
            self.become_pre_candidate(ctx);
        } else {
            self.become_candidate(ctx);
        }
    }

    fn vote_request(&self, term: Term) -> RequestVote {
        RequestVote {
            term,
            candidate: self.id,
            last_log_index: self.last_index(),
            last_log_term: self.last_term(),
        }
    }

    /// Grants from a majority of the voters of the current configuration (a grant counts
    /// only for the incarnation that gave it).
    fn has_vote_quorum(&self) -> bool {
        let counted = self
            .votes
            .iter()
            .filter(|member| self.members.contains(**member))
            .count();
        counted >= self.members.majority()
    }

    fn become_pre_candidate(&mut self, ctx: &mut Ctx<'_, S>) {
        tracing::debug!(
            node = %self.id,
            term = self.meta.current_term.0,
            voter = self.is_voter(),
            members = ?self.members.voters(),
            members_index = self.members_index.0,
            commit = self.commit_index.0,
            "pre-candidate"
        );
        self.role = Role::PreCandidate;
        self.votes = [self.member()].into_iter().collect();
        if self.has_vote_quorum() {
            self.become_candidate(ctx);
            return;
        }
        let request = self.vote_request(Term(self.meta.current_term.0 + 1));
        self.outbox.push(Out::Broadcast(Body::PreVote(request)));
    }

    fn become_candidate(&mut self, ctx: &mut Ctx<'_, S>) {
        self.role = Role::Candidate;
        self.meta.current_term = Term(self.meta.current_term.0 + 1);
        self.meta.voted_for = Some(self.id);
        self.dirty.meta = true;
        self.votes = [self.member()].into_iter().collect();
        if self.has_vote_quorum() {
            self.become_leader(ctx);
            return;
        }
        let request = self.vote_request(self.meta.current_term);
        self.outbox.push(Out::Broadcast(Body::RequestVote(request)));
    }

    fn become_leader(&mut self, ctx: &mut Ctx<'_, S>) {
        assert_eq!(
            self.meta.voted_for,
            Some(self.id),
            "a leader voted for itself"
        );
        let size = self.cluster_size as usize;
        let next = self.last_index().next();
        self.role = Role::Leader;
        self.leader_id = Some(self.id);
        // Elections are Raft's view changes, for the comparison metrics.
        ctx.observe(Observation::NewView {
            node: self.id,
            view: self.meta.current_term.0,
        });
        self.leader = Some(LeaderState {
            next_index: vec![next; size],
            match_index: vec![LogIndex(0); size],
            acked_round: vec![0; size],
            active: vec![false; size],
            incarnation: vec![None; size],
            catch_up: None,
            round: 0,
            round_sent_ns: Default::default(),
            term_start: next,
            lease_until_ns: 0,
            last_quorum_check_ns: ctx.now_ns(),
            last_round_ns: None,
        });
        if let Some(timer) = self.election_timer.take() {
            ctx.cancel_timer(timer);
        }
        tracing::debug!(node = %self.id, term = self.meta.current_term.0, "became leader");
        // Thesis 6.4: a no-op commits the leader's term, which makes earlier entries
        // committed and lets reads proceed.
        self.append_local(None);
        self.set_churn_timer(ctx);
        self.on_heartbeat(ctx);
    }

    /// "The candidate's log is at least as up-to-date as the receiver's." A recovering node
    /// compares against the log it may have had: its recovery bound counts as a last entry
    /// of term `recovery.term` (an upper bound on every term it acknowledged) at index
    /// `recovery.last_index`. A candidate at least that up-to-date holds every entry this node
    /// helped commit (its last entry was written by a leader that held them, at a higher
    /// index), so the vote is safe although this node's own log is cut short.
    fn up_to_date(&self, request: &RequestVote) -> bool {
        let mut ours = (self.last_term(), self.last_index());
        if let Some(recovery) = self.meta.recovery {
            ours = ours.max((recovery.term, recovery.last_index));
        }
        (request.last_log_term, request.last_log_index) >= ours
    }

    // ---- PreVote (thesis 9.6) ----

    pub(super) fn on_pre_vote(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, request: RequestVote) {
        if request.candidate != from {
            ctx.ignore("pre-vote: candidate is not the sender");
            return;
        }
        let granted = request.term > self.meta.current_term
            && !self.meta.rejoining
            && !self.in_leader_lease(ctx.now_ns())
            && self.up_to_date(&request);
        if !granted {
            tracing::debug!(
                node = %self.id,
                candidate = %from,
                term = request.term.0,
                our_term = self.meta.current_term.0,
                rejoining = self.meta.rejoining,
                in_lease = self.in_leader_lease(ctx.now_ns()),
                up_to_date = self.up_to_date(&request),
                ours = ?(self.last_term().0, self.last_index().0),
                theirs = ?(request.last_log_term.0, request.last_log_index.0),
                members = ?self.members.voters(),
                "pre-vote refused"
            );
        }
        let term = if granted {
            request.term
        } else {
            self.meta.current_term
        };
        let response = VoteResponse {
            term,
            granted,
            incarnation: self.meta.incarnation,
        };
        self.outbox
            .push(Out::Send(from, Body::PreVoteResponse(response)));
    }

    pub(super) fn on_pre_vote_response(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        response: VoteResponse,
    ) {
        if response.term > self.meta.current_term && !response.granted {
            self.adopt_term(ctx, response.term);
            return;
        }
        let wanted = Term(self.meta.current_term.0 + 1);
        if self.role != Role::PreCandidate || !response.granted || response.term != wanted {
            ctx.ignore("pre-vote response: stale or not granted");
            return;
        }
        self.votes.insert(Member::new(from, response.incarnation));
        if self.has_vote_quorum() {
            self.become_candidate(ctx);
        }
    }

    // ---- RequestVote ----

    /// "If votedFor is null or candidateId, and candidate's log is at least as up-to-date as
    /// receiver's log, grant vote." The vote is persisted before the response leaves.
    pub(super) fn on_request_vote(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        request: RequestVote,
    ) {
        if request.candidate != from {
            ctx.ignore("request-vote: candidate is not the sender");
            return;
        }
        if self.stickiness()
            && request.term > self.meta.current_term
            && self.in_leader_lease(ctx.now_ns())
        {
            ctx.ignore("request-vote: heard from a leader within the election timeout");
            return;
        }
        if request.term > self.meta.current_term {
            self.adopt_term(ctx, request.term);
        }
        let free = self.meta.voted_for.is_none_or(|voted| voted == from);
        // A machine back from a wipe votes only as a member of its configuration: its old
        // member's votes are forgotten, so that member must never count again.
        let granted = request.term == self.meta.current_term
            && free
            && !self.meta.rejoining
            && self.up_to_date(&request);
        if granted {
            self.meta.voted_for = Some(from);
            self.dirty.meta = true;
            self.reset_election_timer(ctx);
        }
        let response = VoteResponse {
            term: self.meta.current_term,
            granted,
            incarnation: self.meta.incarnation,
        };
        self.outbox
            .push(Out::Send(from, Body::RequestVoteResponse(response)));
    }

    pub(super) fn on_vote_response(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        response: VoteResponse,
    ) {
        if response.term > self.meta.current_term {
            self.adopt_term(ctx, response.term);
            return;
        }
        if self.role != Role::Candidate || response.term != self.meta.current_term {
            ctx.ignore("vote response: stale");
            return;
        }
        if !response.granted {
            return;
        }
        self.votes.insert(Member::new(from, response.incarnation));
        if self.has_vote_quorum() {
            self.become_leader(ctx);
        }
    }

    // ---- AppendEntries, receiver side ----

    /// Common to AppendEntries and InstallSnapshot: reject stale terms, adopt newer ones,
    /// recognise the leader. Returns false if the request is from a stale term.
    fn accept_leader(&mut self, ctx: &mut Ctx<'_, S>, term: Term, leader: NodeId) -> bool {
        if term < self.meta.current_term {
            return false;
        }
        if term > self.meta.current_term {
            self.adopt_term(ctx, term);
        }
        if self.role == Role::Leader {
            let what = format!("two leaders in term {}: {} and {leader}", term.0, self.id);
            ctx.observe(Observation::InvariantViolated {
                node: self.id,
                what,
            });
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(ctx, Some(leader));
        }
        self.leader_id = Some(leader);
        self.last_leader_contact_ns = Some(ctx.now_ns());
        self.reset_election_timer(ctx);
        self.request_rejoin(ctx);
        true
    }

    fn reply_append(&mut self, to: NodeId, request: (Term, u64), success: bool, hint: LogIndex) {
        let (request_term, round) = request;
        let response = AppendResponse {
            term: self.meta.current_term,
            request_term,
            success,
            match_or_hint: hint,
            round,
            incarnation: self.meta.incarnation,
        };
        self.outbox
            .push(Out::Send(to, Body::AppendEntriesResponse(response)));
    }

    pub(super) fn on_append_entries(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        append: AppendEntries<S::Command>,
    ) {
        if append.leader != from {
            ctx.ignore("append-entries: leader is not the sender");
            return;
        }
        if !self.accept_leader(ctx, append.term, from) {
            ctx.ignore("append-entries: stale term");
            self.reply_append(from, (append.term, append.round), false, self.last_index());
            return;
        }
        if self.recovery_unconfirmed.is_some() {
            self.note_wanted = true;
            ctx.ignore("append-entries: recovery bound not yet durable");
            return;
        }
        let end = LogIndex(append.prev_log_index.0 + append.entries.len() as u64);
        if !self.entries_well_formed(&append) {
            ctx.ignore("append-entries: malformed entries");
            return;
        }
        // Entries at or below the snapshot are committed: they match any legitimate leader.
        let (prev_index, prev_term, skip) = if append.prev_log_index < self.snapshot.last_index {
            let skip = (self.snapshot.last_index.0 - append.prev_log_index.0) as usize;
            (self.snapshot.last_index, self.snapshot.last_term, skip)
        } else {
            (append.prev_log_index, append.prev_log_term, 0)
        };
        if self.term_at(prev_index) != Some(prev_term) {
            // "Reply false if log doesn't contain an entry at prevLogIndex whose term
            // matches prevLogTerm."
            let hint = self.last_index().min(prev_index.prev());
            self.reply_append(from, (append.term, append.round), false, hint);
            return;
        }
        for entry in append.entries.into_iter().skip(skip) {
            self.store_entry(ctx, entry);
        }
        // "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last
        // new entry)."
        let commit = append.leader_commit.min(end.max(self.snapshot.last_index));
        if commit > self.commit_index {
            self.set_commit(ctx, commit);
        }
        self.note_recovery_progress(end, append.leader_last_index, append.term);
        let matched = end.max(self.snapshot.last_index);
        self.reply_append(from, (append.term, append.round), true, matched);
    }

    fn entries_well_formed(&self, append: &AppendEntries<S::Command>) -> bool {
        let mut expected = append.prev_log_index.next();
        let mut previous_term = append.prev_log_term;
        for entry in &append.entries {
            if entry.index != expected || entry.term < previous_term || entry.term > append.term {
                return false;
            }
            expected = expected.next();
            previous_term = entry.term;
        }
        true
    }

    /// "If an existing entry conflicts with a new one (same index but different terms),
    /// delete the existing entry and all that follow it. Append any new entries not already
    /// in the log." An entry that matches is kept: truncation happens only from the first
    /// conflict, so a delayed AppendEntries never removes entries.
    fn store_entry(&mut self, ctx: &mut Ctx<'_, S>, entry: Arc<Entry<S::Command>>) {
        let index = entry.index;
        match self.term_at(index) {
            Some(term) if term == entry.term => return,
            Some(_) => {
                if index <= self.commit_index {
                    let what = format!("leader overwrites committed index {}", index.0);
                    ctx.observe(Observation::InvariantViolated {
                        node: self.id,
                        what,
                    });
                    return;
                }
                self.truncate_from(index);
            }
            None => {}
        }
        assert_eq!(
            index,
            self.last_index().next(),
            "store_entry: gap in the log"
        );
        self.log.push(entry);
        self.mark_log_dirty(index);
        self.note_appended_config(index);
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.snapshot.last_index,
            "truncate_from: inside the snapshot"
        );
        let keep = (index.0 - self.snapshot.last_index.0 - 1) as usize;
        self.log.truncate(keep);
        self.persisted_index = self.persisted_index.min(index.prev());
        self.mark_log_dirty(index);
        // Removing a configuration entry reverts to the one before it (thesis 4.1).
        if self.members_index >= index {
            self.refresh_members();
        }
    }

    pub(super) fn mark_log_dirty(&mut self, index: LogIndex) {
        let from = self.dirty.log_from.map_or(index, |from| from.min(index));
        self.dirty.log_from = Some(from);
    }

    /// A recovering node may vote again once its log matches a leader's up to everything it
    /// may have acknowledged before the damage, and that log is durable (checked when
    /// `Persisted` arrives). Matching a leader's whole log also suffices if that leader's
    /// term is above the recovery term: every entry this node helped commit was committed in
    /// an earlier term, so that leader held it all along (a delayed message from a leader
    /// of the recovery term itself may predate the acknowledgements, so it does not count).
    fn note_recovery_progress(&mut self, matched: LogIndex, leader_last: LogIndex, term: Term) {
        let Some(recovery) = self.meta.recovery else {
            return;
        };
        let whole_log_of_later_leader = term > recovery.term && matched >= leader_last;
        if matched >= recovery.last_index || whole_log_of_later_leader {
            self.recovery_exit_at = Some(matched);
        }
    }

    // ---- InstallSnapshot, receiver side ----

    pub(super) fn on_install_snapshot(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        install: InstallSnapshot,
    ) {
        if install.leader != from {
            ctx.ignore("install-snapshot: leader is not the sender");
            return;
        }
        if !self.accept_leader(ctx, install.term, from) {
            ctx.ignore("install-snapshot: stale term");
            self.reply_append(
                from,
                (install.term, install.round),
                false,
                self.last_index(),
            );
            return;
        }
        if self.recovery_unconfirmed.is_some() {
            self.note_wanted = true;
            ctx.ignore("install-snapshot: recovery bound not yet durable");
            return;
        }
        let index = install.last_included_index;
        if index > self.commit_index {
            let record = crate::durable::SnapshotRecord {
                last_index: index,
                last_term: install.last_included_term,
                config: install.config,
                data: install.data,
            };
            if self.restore_snapshot(&record).is_err() {
                ctx.ignore("install-snapshot: undecodable snapshot");
                return;
            }
            self.install_snapshot_record(ctx, record);
        }
        // A snapshot says nothing of the leader's log after it: only the bound counts.
        self.note_recovery_progress(index, LogIndex(u64::MAX), install.term);
        self.reply_append(from, (install.term, install.round), true, index);
    }

    /// Replaces the log prefix with a snapshot: keep the suffix if it follows the snapshot's
    /// last entry, else discard the whole log (Figure 13).
    fn install_snapshot_record(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        record: crate::durable::SnapshotRecord,
    ) {
        let index = record.last_index;
        if self.term_at(index) == Some(record.last_term) {
            let drop = (index.0 - self.snapshot.last_index.0) as usize;
            self.log.drain(..drop);
        } else {
            self.log.clear();
            self.persisted_index = self.persisted_index.min(self.snapshot.last_index);
            self.mark_log_dirty(index.next());
        }
        self.snapshot = record;
        self.dirty.snapshot = true;
        self.last_applied = index;
        if index > self.commit_index {
            self.commit_index = index;
        }
        if let Some(from) = self.dirty.log_from {
            self.dirty.log_from = Some(from.max(index.next()));
        }
        self.refresh_members();
        let _ = ctx;
    }

    // ---- AppendEntries / InstallSnapshot, leader side ----

    pub(super) fn on_heartbeat(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.role != Role::Leader {
            return;
        }
        if self.config.check_quorum && !self.check_quorum(ctx) {
            ctx.ignore("check-quorum: no majority heard from; stepping down");
            self.become_follower(ctx, None);
            return;
        }
        if self.persisted_index < self.last_index() {
            self.note_wanted = true;
        }
        self.expire_catch_up(ctx);
        // A round (a read's, say) reaches every peer like a heartbeat: the next heartbeat is
        // due an interval after the latest round, not after the latest heartbeat.
        let interval_ns = self.config.heartbeat_interval_ns;
        let last_round_ns = self.leader.as_ref().and_then(|leader| leader.last_round_ns);
        match last_round_ns.and_then(|last_ns| rest_until(ctx, last_ns + interval_ns)) {
            Some(rest_ns) => self.set_heartbeat_timer(ctx, rest_ns),
            None => {
                self.new_round(ctx);
                self.set_heartbeat_timer(ctx, interval_ns);
            }
        }
    }

    /// Thesis 6.2: a leader that has not heard from a majority within an election timeout
    /// steps down, so clients can find the real leader.
    fn check_quorum(&mut self, ctx: &mut Ctx<'_, S>) -> bool {
        let now_ns = ctx.now_ns();
        let timeout_ns = self.config.election_timeout_max_ns;
        let Some(leader) = self.leader.as_ref() else {
            return false;
        };
        if now_ns < leader.last_quorum_check_ns + timeout_ns {
            return true;
        }
        let active = self
            .per_voter(leader, true, false, |node| leader.active[node])
            .filter(|active| *active)
            .count();
        let majority = self.members.majority();
        let Some(leader) = self.leader.as_mut() else {
            return false;
        };
        leader.active.iter_mut().for_each(|active| *active = false);
        leader.last_quorum_check_ns = now_ns;
        active >= majority
    }

    /// Starts a heartbeat round: AppendEntries (or InstallSnapshot) to every peer.
    fn new_round(&mut self, ctx: &mut Ctx<'_, S>) {
        let now_ns = ctx.now_ns();
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        leader.round += 1;
        let round = leader.round;
        leader.round_sent_ns.insert(round, now_ns);
        leader.last_round_ns = Some(ctx.monotonic_ns());
        while leader.round_sent_ns.len() > ROUNDS_TRACKED_MAX {
            leader.round_sent_ns.pop_first();
        }
        let me = self.id.0 as usize;
        leader.acked_round[me] = round;
        for node in 0..self.cluster_size {
            if node != self.id.0 {
                self.send_append(NodeId(node));
            }
        }
    }

    /// Sends `peer` what follows its `next_index`: entries, or the snapshot if they are
    /// compacted away.
    pub(super) fn send_append(&mut self, peer: NodeId) {
        let Some(leader) = self.leader.as_ref() else {
            return;
        };
        let next = leader.next_index[peer.0 as usize];
        let round = leader.round;
        let term = self.meta.current_term;
        let body = if next <= self.snapshot.last_index {
            Body::InstallSnapshot(InstallSnapshot {
                term,
                leader: self.id,
                last_included_index: self.snapshot.last_index,
                last_included_term: self.snapshot.last_term,
                config: self.snapshot.config.clone(),
                data: self.snapshot.data.clone(),
                round,
            })
        } else {
            let prev = next.prev();
            let Some(prev_term) = self.term_at(prev) else {
                return;
            };
            let start = (next.0 - self.snapshot.last_index.0 - 1) as usize;
            let end = (start + self.config.max_entries_per_message).min(self.log.len());
            let entries = self.log[start.min(end)..end].to_vec();
            if let (Some(leader), Some(last)) = (self.leader.as_mut(), entries.last()) {
                // Pipelining (thesis 10.2.2): these entries are on their way, so the next
                // message carries what follows them instead of sending them again. A loss
                // or reordering shows as a rejection, which moves `next_index` back.
                leader.next_index[peer.0 as usize] = last.index.next();
            }
            Body::AppendEntries(AppendEntries {
                term,
                leader: self.id,
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit: self.commit_index,
                leader_last_index: self.last_index(),
                round,
            })
        };
        self.outbox.push(Out::Send(peer, body));
    }

    pub(super) fn on_append_response(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        response: AppendResponse,
    ) {
        if response.term > self.meta.current_term {
            self.adopt_term(ctx, response.term);
            return;
        }
        if self.role != Role::Leader || response.term != self.meta.current_term {
            ctx.ignore("append response: stale");
            return;
        }
        if response.request_term != self.meta.current_term {
            // This node led an earlier term too: the answer says nothing of this term's
            // rounds or log (counting its round confirmed reads no majority had seen).
            ctx.ignore("append response: answers a request of an earlier term");
            return;
        }
        let last = self.last_index();
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let peer = from.0 as usize;
        if leader.incarnation[peer] != Some(response.incarnation) {
            // Another incarnation of the machine answers: what the previous one
            // acknowledged says nothing of this one's disk.
            leader.incarnation[peer] = Some(response.incarnation);
            leader.match_index[peer] = LogIndex(0);
            leader.acked_round[peer] = 0;
        }
        leader.active[peer] = true;
        leader.acked_round[peer] = leader.acked_round[peer].max(response.round);
        let resend;
        let mut match_raised = false;
        if response.success {
            if response.match_or_hint > last {
                ctx.ignore("append response: matches beyond our log");
                return;
            }
            if response.match_or_hint > leader.match_index[peer] {
                leader.match_index[peer] = response.match_or_hint;
                match_raised = true;
            }
            leader.next_index[peer] = leader.next_index[peer].max(leader.match_index[peer].next());
            resend = leader.next_index[peer] <= last;
        } else {
            let hint = response.match_or_hint;
            if hint < leader.match_index[peer] {
                // The follower lost entries it had acknowledged (it found them damaged and
                // is recovering): stop counting them, and resend from where it now ends.
                leader.match_index[peer] = hint;
            }
            let retry_from = hint
                .next()
                .min(leader.next_index[peer].prev())
                .max(LogIndex(1));
            resend = true;
            leader.next_index[peer] = retry_from;
        }
        self.update_lease();
        // Only a raised match index can commit more: every other input of the count (this
        // leader's durable index, the configuration) is followed by its own count.
        if match_raised {
            self.advance_commit(ctx);
        }
        self.on_learner_progress(ctx, from);
        if resend && self.role == Role::Leader {
            self.send_append(from);
        }
        self.serve_reads(ctx);
    }

    /// "If there exists an N such that N > commitIndex, a majority of matchIndex[i] >= N,
    /// and log[N].term == currentTerm: set commitIndex = N." Entries of earlier terms are
    /// never committed by counting (Figure 8); they commit with the current term's entries.
    pub(super) fn advance_commit(&mut self, ctx: &mut Ctx<'_, S>) {
        let Some(leader) = self.leader.as_ref() else {
            return;
        };
        let own = self.persisted_index;
        let matches = self.per_voter(leader, own, LogIndex(0), |node| leader.match_index[node]);
        let candidate = quorum_value(matches, self.members.majority());
        if candidate > self.commit_index && self.term_at(candidate) == Some(self.meta.current_term)
        {
            self.set_commit(ctx, candidate);
            self.step_down_if_removed(ctx);
        }
    }

    /// One value per voter of the current configuration: this leader's `own` for itself,
    /// `value(node)` for a machine that last answered as that voter's incarnation, and
    /// `absent` otherwise (its progress belongs to another incarnation, or is unknown).
    fn per_voter<'a, T: Copy + 'a>(
        &'a self,
        leader: &'a LeaderState,
        own: T,
        absent: T,
        value: impl Fn(usize) -> T + 'a,
    ) -> impl Iterator<Item = T> + 'a {
        let me = self.member();
        self.members.voters().iter().map(move |voter| {
            let node = voter.node.0 as usize;
            if *voter == me {
                own
            } else if leader.incarnation.get(node) == Some(&Some(voter.incarnation)) {
                value(node)
            } else {
                absent
            }
        })
    }

    /// Raises the commit index, reporting every newly committed slot.
    pub(super) fn set_commit(&mut self, ctx: &mut Ctx<'_, S>, commit: LogIndex) {
        assert!(commit > self.commit_index, "commit index only grows");
        assert!(commit <= self.last_index(), "commit index beyond the log");
        let first = self
            .commit_index
            .next()
            .max(self.snapshot.last_index.next());
        for slot in first.0..=commit.0 {
            let Some(entry) = self.entry(LogIndex(slot)) else {
                continue;
            };
            let (request, digest) = match &entry.request {
                Some(request) => (
                    Some((request.client, request.sequence)),
                    command_digest(&request.command),
                ),
                None => (None, 0),
            };
            ctx.observe(Observation::Commit {
                node: self.id,
                slot,
                request,
                command_digest: digest,
            });
        }
        self.commit_index = commit;
    }

    // ---- client requests ----

    pub(super) fn append_local(&mut self, request: Option<Request<S::Command>>) -> LogIndex {
        self.append_entry(request, None)
    }

    pub(super) fn append_entry(
        &mut self,
        request: Option<Request<S::Command>>,
        config: Option<Configuration>,
    ) -> LogIndex {
        assert_eq!(self.role, Role::Leader, "only leaders append");
        assert!(
            request.is_none() || config.is_none(),
            "an entry is a request or a configuration"
        );
        let index = self.last_index().next();
        let term = self.meta.current_term;
        self.log
            .push(Arc::new(Entry::new(term, index, request, config)));
        self.mark_log_dirty(index);
        self.note_appended_config(index);
        index
    }

    pub(super) fn on_write(&mut self, ctx: &mut Ctx<'_, S>, request: Request<S::Command>) {
        let key = (request.client, request.sequence);
        // A retry of the client's last applied request is appended again: the session table
        // will not apply it twice and answers it from its cache.
        if self.state.last_sequence(request.client) > Some(request.sequence) {
            ctx.ignore("client request older than its session");
            return;
        }
        if self.pending_writes.contains(&key) {
            ctx.ignore("client request already in the log");
            return;
        }
        if self.pending_writes.len() >= self.config.max_pending_requests {
            ctx.ignore("too many pending client requests");
            return;
        }
        self.pending_writes.insert(key);
        self.append_local(Some(request));
        for peer in (0..self.cluster_size).map(NodeId) {
            if peer == self.id {
                continue;
            }
            let in_sync = self
                .leader
                .as_ref()
                .is_some_and(|leader| leader.next_index[peer.0 as usize] == self.last_index());
            if in_sync {
                self.send_append(peer);
            }
        }
    }

    // ---- linearizable reads ----

    pub(super) fn on_read(&mut self, ctx: &mut Ctx<'_, S>, request: Request<S::Command>) {
        if self.pending_reads.len() >= self.config.max_pending_reads {
            ctx.ignore("too many pending reads");
            return;
        }
        let commit = self.commit_index;
        let lease_holds = self.config.read_mode == ReadMode::Lease
            && self
                .leader
                .as_ref()
                .is_some_and(|l| ctx.now_ns() < l.lease_until_ns);
        let round = if lease_holds {
            0
        } else {
            self.new_round(ctx);
            self.leader.as_ref().map_or(0, |leader| leader.round)
        };
        self.pending_reads.push(PendingRead {
            client: request.client,
            sequence: request.sequence,
            command: request.command,
            read_index: commit,
            round,
        });
        self.serve_reads(ctx);
    }

    /// The highest round a majority (counting this leader) has acknowledged in this term.
    fn quorum_round(&self) -> u64 {
        let Some(leader) = self.leader.as_ref() else {
            return 0;
        };
        let rounds = self.per_voter(leader, leader.round, 0, |node| leader.acked_round[node]);
        quorum_value(rounds, self.members.majority())
    }

    /// Whether a majority (counting this leader) acknowledged `round` in this term: the same
    /// as `quorum_round() >= round`, by counting instead of ranking (it runs after every
    /// step of a leader with reads waiting).
    fn round_confirmed(&self, round: u64) -> bool {
        if round == 0 {
            return true;
        }
        let Some(leader) = self.leader.as_ref() else {
            return false;
        };
        let acks = self
            .per_voter(leader, leader.round, 0, |node| leader.acked_round[node])
            .filter(|&acked| acked >= round)
            .count();
        acks >= self.members.majority()
    }

    /// A lease starts when a round is sent; it holds for an election timeout shrunk by the
    /// drift bound, because followers refuse votes for that long after hearing from us.
    fn update_lease(&mut self) {
        if self.config.read_mode != ReadMode::Lease {
            return;
        }
        let round = self.quorum_round();
        let drift_ppm = self.config.clock_drift_bound_ppm.min(400_000);
        let base_ns = self.config.election_timeout_min_ns as u128;
        let lease_ns = (base_ns * (1_000_000 - 2 * drift_ppm as u128) / 1_000_000) as u64;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        if let Some(sent_ns) = leader.round_sent_ns.get(&round) {
            leader.lease_until_ns = leader.lease_until_ns.max(sent_ns + lease_ns);
        }
    }

    /// Serves reads whose leadership round a majority acknowledged (or that arrived under a
    /// lease) once this term's no-op and the read index are applied.
    pub(super) fn serve_reads(&mut self, ctx: &mut Ctx<'_, S>) {
        let Some(term_start) = self.leader.as_ref().map(|leader| leader.term_start) else {
            return;
        };
        if self.pending_reads.is_empty() || self.last_applied < term_start {
            return;
        }
        // Most calls find nothing ready: they leave the queue as it is, and rank the
        // acknowledged rounds only if some read waits for nothing else.
        let applied = self.last_applied;
        let Some(lowest_round) = (self.pending_reads.iter())
            .filter(|read| read.read_index <= applied)
            .map(|read| read.round)
            .min()
        else {
            return;
        };
        let ready = self.round_confirmed(lowest_round);
        debug_assert_eq!(
            ready,
            self.quorum_round() >= lowest_round,
            "two counts disagree"
        );
        if !ready {
            return;
        }
        let confirmed = self.quorum_round();
        let is_ready =
            |read: &PendingRead<S::Command>| read.round <= confirmed && read.read_index <= applied;
        let reads = self.reads;
        // Ready reads leave the queue in order; the others keep theirs.
        for read in self.pending_reads.extract_if(.., |read| is_ready(read)) {
            let Some(reads) = reads else { continue };
            match (reads.query)(self.state.service(), &read.command) {
                Some(output) => {
                    let reply = Reply::Done {
                        sequence: read.sequence,
                        output,
                    };
                    self.outbox.push(Out::Reply(read.client, reply));
                }
                None => ctx.ignore("read classifier accepted a command query cannot answer"),
            }
        }
    }
}

use super::ROUNDS_TRACKED_MAX;

/// A rest this short counts as elapsed (see `rest_until`).
const TIMER_SLACK_NS: u64 = 1_000;

/// Time left until `deadline_ns` on the monotonic clock, or `None` once it is due. Timers
/// run at the monotonic clock's rate but convert through the drift, so one may fire a few
/// nanoseconds short: a rest under `TIMER_SLACK_NS` counts as due (a timer set for it could
/// fire again at the same instant, for ever).
fn rest_until<S: StateMachine>(ctx: &Ctx<'_, S>, deadline_ns: u64) -> Option<u64> {
    let rest_ns = deadline_ns.saturating_sub(ctx.monotonic_ns());
    (rest_ns >= TIMER_SLACK_NS).then_some(rest_ns)
}

/// Configurations up to this many voters rank their values on the stack.
const VOTERS_ON_STACK_MAX: usize = 16;

/// The highest value at least `majority` of `values` reach (the default if too few).
fn quorum_value<T: Ord + Copy + Default>(
    mut values: impl Iterator<Item = T>,
    majority: usize,
) -> T {
    // Runs for every acknowledgement: usual configurations rank their values on the stack,
    // by insertion into a descending run (a handful of comparisons for five voters).
    let mut ranked = [T::default(); VOTERS_ON_STACK_MAX];
    let mut count = 0;
    while let Some(value) = values.next() {
        if count == VOTERS_ON_STACK_MAX {
            let spilled = ranked
                .into_iter()
                .chain(std::iter::once(value))
                .chain(values);
            return quorum_value_sorted(spilled.collect(), majority);
        }
        let mut at = count;
        while at > 0 && ranked[at - 1] < value {
            ranked[at] = ranked[at - 1];
            at -= 1;
        }
        ranked[at] = value;
        count += 1;
    }
    ranked[..count]
        .get(majority.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// [`quorum_value`] for configurations too large for the stack.
fn quorum_value_sorted<T: Ord + Copy + Default>(mut values: Vec<T>, majority: usize) -> T {
    values.sort_unstable_by(|a, b| b.cmp(a));
    values
        .get(majority.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_value_is_the_majority_th_highest_on_stack_and_heap() {
        assert_eq!(quorum_value([5u64, 1, 9, 3, 7].into_iter(), 3), 5);
        assert_eq!(quorum_value([2u64, 2].into_iter(), 2), 2);
        assert_eq!(
            quorum_value(std::iter::empty::<u64>(), 1),
            0,
            "too few values"
        );
        // More voters than the stack holds: the values spill to the heap in order.
        let many = (1..=VOTERS_ON_STACK_MAX as u64 + 5).rev();
        let majority = (VOTERS_ON_STACK_MAX + 5) / 2 + 1;
        let expected = (VOTERS_ON_STACK_MAX + 5 - majority + 1) as u64;
        assert_eq!(quorum_value(many, majority), expected);
    }

    #[test]
    fn quorum_value_agrees_with_sorting_on_ties_and_short_inputs() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            state = dst_sim::decision::splitmix64(state);
            let count = (state % 9) as usize;
            let values: Vec<u64> = (0..count as u64)
                .map(|i| dst_sim::decision::splitmix64(state ^ i) % 4)
                .collect();
            for majority in 0..=count + 1 {
                assert_eq!(
                    quorum_value(values.iter().copied(), majority),
                    quorum_value_sorted(values.clone(), majority),
                    "{values:?}, majority {majority}"
                );
            }
        }
    }
}
