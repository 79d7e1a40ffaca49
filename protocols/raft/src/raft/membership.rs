//! Single-server membership changes (thesis chapter 4): the configuration in the log,
//! AddServer with learner catch-up, RemoveServer, rejoining after a wipe, and random churn.

use dst_sim::{NodeId, StateMachine};

use super::{CatchUp, Ctx, Out, Raft, RaftTimer, Role, CATCH_UP_ROUNDS_MAX};
use crate::membership::{ChangeRefused, Configuration, Member, MembershipChange};
use crate::message::{Body, LogIndex};

/// A learner that made no progress for this many election timeouts is given up.
const CATCH_UP_STALL_TIMEOUTS: u64 = 10;

impl<S: StateMachine> Raft<S> {
    /// Recomputes the latest configuration after the log changed (truncation, snapshot).
    /// A rejoining node that finds itself a voter again may vote from now on.
    pub(super) fn refresh_members(&mut self) {
        let found = self.log.iter().rev().find_map(|entry| {
            let config = entry.config.as_ref()?;
            Some((entry.index, config.clone()))
        });
        let (index, members) =
            found.unwrap_or((self.snapshot.last_index, self.snapshot.config.clone()));
        self.members = members;
        self.members_index = index;
        if self.meta.rejoining && self.is_voter() {
            tracing::info!(node = %self.id, "rejoined as {}", self.member());
            self.meta.rejoining = false;
            self.dirty.meta = true;
        }
    }

    /// Called for every entry appended to the log: a configuration takes effect at once.
    pub(super) fn note_appended_config(&mut self, index: LogIndex) {
        let Some(config) = self.entry(index).and_then(|entry| entry.config.clone()) else {
            return;
        };
        self.members = config;
        self.members_index = index;
        if self.meta.rejoining && self.is_voter() {
            self.meta.rejoining = false;
            self.dirty.meta = true;
        }
    }

    /// A leader's verdict on a change: the checks of thesis 4.1 and the 2015 fix.
    fn change_allowed(&self, change: MembershipChange) -> Result<Configuration, ChangeRefused> {
        if self.status != super::Status::Running {
            return Err(ChangeRefused::NotRunning);
        }
        let Some(leader) = self.leader.as_ref() else {
            return Err(ChangeRefused::NotLeader);
        };
        if self.members_index > self.commit_index {
            return Err(ChangeRefused::ChangeInProgress);
        }
        if self.commit_index < leader.term_start {
            return Err(ChangeRefused::TermNotCommitted);
        }
        if leader.catch_up.is_some() {
            return Err(ChangeRefused::CatchUpInProgress);
        }
        self.members.apply(change).ok_or(ChangeRefused::Invalid)
    }

    /// Proposes a membership change to this node (the administrator's path). A removal is
    /// appended at once; an addition first catches the server up as a learner. Errors say
    /// why a change was refused; nothing changes then.
    pub fn propose_change(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        change: MembershipChange,
    ) -> Result<(), ChangeRefused> {
        let result = self.start_change(ctx, change);
        if self.status == super::Status::Running {
            self.finish(ctx);
        }
        result
    }

    fn start_change(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        change: MembershipChange,
    ) -> Result<(), ChangeRefused> {
        let change = self.resolve_rejoin(change);
        let next = self.change_allowed(change)?;
        match change {
            MembershipChange::Remove(member) => {
                tracing::debug!(node = %self.id, %member, "removing server");
                self.append_config(ctx, next);
            }
            MembershipChange::Add(member) | MembershipChange::Rejoin(member) => {
                tracing::debug!(node = %self.id, %member, "catching up a new server");
                let now_ns = ctx.now_ns();
                let target = self.last_index();
                if let Some(leader) = self.leader.as_mut() {
                    leader.catch_up = Some(CatchUp {
                        member,
                        round: 1,
                        round_target: target,
                        round_start_ns: now_ns,
                    });
                }
                self.send_append(member.node);
            }
        }
        Ok(())
    }

    /// A rejoining machine replaces its old member: first remove the old one (if it still
    /// votes), then, when the machine asks again, add the new one.
    fn resolve_rejoin(&self, change: MembershipChange) -> MembershipChange {
        let MembershipChange::Rejoin(member) = change else {
            return change;
        };
        match self.members.member_on(member.node) {
            Some(old) if old != member => MembershipChange::Remove(old),
            _ => change,
        }
    }

    /// Appends a configuration entry and replicates it.
    fn append_config(&mut self, ctx: &mut Ctx<'_, S>, config: Configuration) {
        let index = self.append_entry(None, Some(config));
        assert_eq!(self.members_index, index, "a new configuration is in force");
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send_append(peer);
        }
        // A single voter commits alone.
        self.advance_commit(ctx);
    }

    /// `ChangeMembership` from a peer (an administrator, or a machine rejoining after a
    /// wipe). Only the leader acts; the requester retries.
    pub(super) fn on_change_request(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        change: MembershipChange,
    ) {
        if let MembershipChange::Rejoin(member) = change {
            if member.node != from {
                ctx.ignore("change-membership: rejoin for another machine");
                return;
            }
            // A delayed request of an earlier incarnation must not remove the current one.
            let heard = self
                .leader
                .as_ref()
                .and_then(|leader| leader.incarnation[from.0 as usize]);
            if heard != Some(member.incarnation) {
                ctx.ignore("change-membership: rejoin from an incarnation not heard from");
                return;
            }
        }
        if let Err(refused) = self.start_change(ctx, change) {
            tracing::debug!(node = %self.id, ?change, ?refused, "membership change refused");
            ctx.ignore("change-membership: refused");
        }
    }

    /// Learner progress after an acknowledgement from `peer` (thesis 4.2.1): a round ends
    /// when the learner holds the round's target; a round shorter than an election timeout
    /// means it is close enough to add without stalling commits.
    pub(super) fn on_learner_progress(&mut self, ctx: &mut Ctx<'_, S>, peer: NodeId) {
        let now_ns = ctx.now_ns();
        let last = self.last_index();
        let quick_ns = self.config.election_timeout_min_ns;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let Some(catch_up) = leader.catch_up.as_mut() else {
            return;
        };
        let node = peer.0 as usize;
        let member = catch_up.member;
        if member.node != peer
            || leader.incarnation[node] != Some(member.incarnation)
            || leader.match_index[node] < catch_up.round_target
        {
            return;
        }
        if now_ns.saturating_sub(catch_up.round_start_ns) >= quick_ns {
            if catch_up.round >= CATCH_UP_ROUNDS_MAX {
                leader.catch_up = None;
                ctx.ignore("add-server: learner too slow after the last round; giving up");
                return;
            }
            catch_up.round += 1;
            catch_up.round_target = last;
            catch_up.round_start_ns = now_ns;
            return;
        }
        leader.catch_up = None;
        match self.change_allowed(MembershipChange::Add(member)) {
            Ok(next) => self.append_config(ctx, next),
            Err(refused) => {
                tracing::debug!(node = %self.id, ?refused, "add-server after catch-up refused");
                ctx.ignore("add-server: refused after catch-up");
            }
        }
    }

    /// Gives up a catch-up whose learner stopped answering, so later changes are not
    /// blocked forever.
    pub(super) fn expire_catch_up(&mut self, ctx: &mut Ctx<'_, S>) {
        let now_ns = ctx.now_ns();
        let stall_ns = CATCH_UP_STALL_TIMEOUTS * self.config.election_timeout_max_ns;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        if leader
            .catch_up
            .as_ref()
            .is_some_and(|catch_up| now_ns >= catch_up.round_start_ns + stall_ns)
        {
            leader.catch_up = None;
            ctx.ignore("add-server: learner stalled; giving up");
        }
    }

    /// A leader removed by a committed configuration steps down (thesis 4.2.2); until then
    /// it manages the cluster without counting itself.
    pub(super) fn step_down_if_removed(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.role == Role::Leader && !self.is_voter() && self.members_index <= self.commit_index
        {
            tracing::debug!(node = %self.id, "removed from the configuration: stepping down");
            self.become_follower(ctx, None);
        }
    }

    /// Election timeout of a node that does not stand (not a voter of a configuration it
    /// knows committed, or rejoining); a machine back from a wipe asks to be taken in again.
    pub(super) fn on_non_voter_timeout(&mut self, ctx: &mut Ctx<'_, S>) {
        self.request_rejoin(ctx);
        ctx.ignore("election timeout: not a voter of the configuration; not standing");
    }

    /// A machine back from a wipe (or a new incarnation removed since) asks the leader, at
    /// most once per minimum election timeout, to make its incarnation a voter. The leader
    /// replaces the old member in two single-server changes; the request repeats until the
    /// node finds itself among the voters.
    pub(super) fn request_rejoin(&mut self, ctx: &mut Ctx<'_, S>) {
        let wanted = self.meta.rejoining || self.meta.incarnation != 0;
        if !wanted || self.is_voter() {
            return;
        }
        let now_ns = ctx.now_ns();
        let gap_ns = self.config.election_timeout_min_ns;
        if self
            .last_rejoin_request_ns
            .is_some_and(|sent_ns| now_ns < sent_ns + gap_ns)
        {
            return;
        }
        self.last_rejoin_request_ns = Some(now_ns);
        let body = Body::ChangeMembership(MembershipChange::Rejoin(self.member()));
        match self.leader_id {
            Some(leader) if leader != self.id => self.outbox.push(Out::Send(leader, body)),
            _ => self.outbox.push(Out::Broadcast(body)),
        }
    }

    // ---- random churn (simulation) ----

    pub(super) fn set_churn_timer(&mut self, ctx: &mut Ctx<'_, S>) {
        let delay_ns = self.config.membership_churn_ns;
        self.set_churn_timer_in(ctx, delay_ns);
    }

    fn set_churn_timer_in(&mut self, ctx: &mut Ctx<'_, S>, delay_ns: u64) {
        if let Some(timer) = self.churn_timer.take() {
            ctx.cancel_timer(timer);
        }
        if self.config.membership_churn_ns > 0 && self.role == Role::Leader {
            self.churn_timer = Some(ctx.set_timer(delay_ns, RaftTimer::Churn));
        }
    }

    pub(super) fn cancel_churn_timer(&mut self, ctx: &mut Ctx<'_, S>) {
        if let Some(timer) = self.churn_timer.take() {
            ctx.cancel_timer(timer);
        }
    }

    /// One change per tick: re-add a machine that does not vote (in the incarnation it last
    /// answered with; retried every heartbeat until it is back), or else, if every machine
    /// is caught up, remove a random voter (this leader included) while more than
    /// `churn_voters_min` vote.
    pub(super) fn on_churn(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.role != Role::Leader {
            return;
        }
        self.set_churn_timer(ctx);
        let voters_min = churn_voters_min(self.cluster_size);
        let outside: Vec<Member> = self
            .peers()
            .filter(|node| self.members.member_on(*node).is_none())
            .filter_map(|node| {
                let incarnation = self.leader.as_ref()?.incarnation[node.0 as usize]?;
                Some(Member::new(node, incarnation))
            })
            .collect();
        // Re-adding first, and soon (every heartbeat until done), keeps at most one machine
        // out, briefly: every voter missing costs fault tolerance the fault profiles do not
        // account for.
        let remove = self.members.len() > voters_min && outside.is_empty() && self.all_caught_up();
        if remove || !outside.is_empty() {
            let soon_ns = self.config.heartbeat_interval_ns;
            self.set_churn_timer_in(ctx, soon_ns);
        }
        let change = if remove {
            let voters = self.members.voters();
            MembershipChange::Remove(voters[ctx.random_below(voters.len() as u64) as usize])
        } else if !outside.is_empty() {
            MembershipChange::Add(outside[ctx.random_below(outside.len() as u64) as usize])
        } else {
            return;
        };
        if let Err(refused) = self.start_change(ctx, change) {
            tracing::debug!(node = %self.id, ?change, ?refused, "churn: change refused");
            ctx.ignore("churn: change refused");
        }
    }
}

impl<S: StateMachine> Raft<S> {
    /// Every other machine answered as a member it is known by and holds every committed
    /// entry: churn removes a voter only from a healthy cluster.
    fn all_caught_up(&self) -> bool {
        let Some(leader) = self.leader.as_ref() else {
            return false;
        };
        self.peers().all(|node| {
            let node = node.0 as usize;
            leader.incarnation[node].is_some() && leader.match_index[node] >= self.commit_index
        })
    }
}

/// Churn keeps at least three voters (and a majority of the original cluster), so one
/// failure stays tolerable: with two voters a single fault stops progress, and a node
/// recovering a damaged log, which votes only for candidates holding everything it may
/// have acknowledged, could then wait forever for a leader. Three-node clusters therefore
/// never shrink; churn only re-adds machines there.
pub(super) fn churn_voters_min(cluster_size: u32) -> usize {
    let majority = cluster_size as usize / 2 + 1;
    majority.max(3).min(cluster_size as usize)
}
