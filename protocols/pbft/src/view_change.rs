//! The view change: VIEW-CHANGE, the new-view computation and NEW-VIEW.

use std::collections::BTreeSet;

use dst_protocols::Observation;
use dst_sim::{Signed, StateMachine, MS};

use crate::durable::{self, Meta, PrePrepareRecord};
use crate::message::{
    check_new_view, check_view_change, node_signer, plan_new_view, Message, NewView, NewViewPlan,
    Phase, Seq, View, ViewChange,
};
use crate::replica::{verifier, Ctx, Pbft, VIEW_CHANGE_VIEWS_PER_SIGNER};

impl<S: StateMachine> Pbft<S> {
    /// The view-change timer fired: move on to the next view.
    pub(crate) fn on_view_change_timer(&mut self, ctx: &mut Ctx<'_, '_, S>, epoch: u64) {
        match self.view_change_timer {
            Some((armed, _, _)) if armed == epoch => self.view_change_timer = None,
            _ => return,
        }
        if self.view_changing {
            self.view_change_attempt = self.view_change_attempt.saturating_add(1);
        }
        let next = View(self.view.0.saturating_add(1));
        self.start_view_change(ctx, next);
    }

    pub(crate) fn persist_meta(&mut self, ctx: &mut Ctx<'_, '_, S>) -> bool {
        let meta = Meta {
            version: self.meta_version + 1,
            view: self.view,
            view_changing: self.view_changing,
        };
        if !Self::persist_copies(ctx, &durable::META_KEYS, &meta) {
            return false;
        }
        self.meta_version = meta.version;
        true
    }

    /// Stops accepting messages of the current view and asks for `target`.
    pub(crate) fn start_view_change(&mut self, ctx: &mut Ctx<'_, '_, S>, target: View) {
        if self.mute || target < self.view || (target == self.view && self.view_changing) {
            return;
        }
        if target == self.view {
            return;
        }
        self.cancel_timer(ctx);
        self.view = target;
        self.view_changing = true;
        self.own_view_change = None;
        // Earlier view changes since the last installed view stay (and this replica keeps
        // retransmitting its previous one): replicas still waiting for a quorum in that
        // view may need it, or they could wait forever for each other.
        let installed = self.new_view.as_ref().map_or(View(0), |nv| nv.value.view);
        self.view_changes.retain(|view, _| *view > installed);
        let own: Vec<View> = self
            .view_changes
            .iter()
            .filter(|(_, changes)| changes.contains_key(&self.id))
            .map(|(view, _)| *view)
            .collect();
        for view in own.iter().rev().skip(1) {
            if let Some(changes) = self.view_changes.get_mut(view) {
                changes.remove(&self.id);
            }
        }
        self.view_changes.retain(|_, changes| !changes.is_empty());
        self.send_view_change(ctx);
    }

    /// Persists the view (the promise not to act in lower views) and sends VIEW-CHANGE.
    pub(crate) fn send_view_change(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if !self.persist_meta(ctx) {
            return;
        }
        ctx.sync();
        let Some(signed) = self.build_view_change(ctx, self.view) else {
            return;
        };
        self.own_view_change = Some(signed.clone());
        ctx.broadcast(Message::ViewChange(signed));
        self.after_view_change_vote(ctx, self.view);
    }

    /// Signs (and holds) this replica's VIEW-CHANGE for `view` from its current P set.
    fn build_view_change(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        view: View,
    ) -> Option<Signed<ViewChange<S::Command>>> {
        // A slot whose record was damaged may hide a prepared certificate this replica
        // promised to report; only a committed certificate for it can stand in.
        let mut committed = Vec::new();
        for seq in self.damaged.range(Seq(self.stable.seq.0 + 1)..) {
            match self.log.get(seq).and_then(|slot| slot.committed.clone()) {
                Some(proof) => committed.push(proof),
                None => {
                    ctx.ignore("view change: withheld while a damaged slot is open");
                    return None;
                }
            }
        }
        let change = ViewChange {
            view,
            stable_seq: self.stable.seq,
            stable_digest: self.stable.digest,
            checkpoint_proof: self.stable.proof.clone(),
            prepared: self
                .prepared
                .range(Seq(self.stable.seq.0 + 1)..)
                .map(|(_, (cert, _))| cert.clone())
                .collect(),
            committed,
        };
        let signed = ctx.sign_value(change);
        self.view_changes
            .entry(view)
            .or_default()
            .insert(self.id, signed.clone());
        Some(signed)
    }

    /// Supporting the view just below the target too: replicas still gathering a quorum
    /// there (this one may have jumped past it by the f + 1 rule, or lost its earlier
    /// VIEW-CHANGE in a crash) would otherwise wait for each other forever. Safe: it carries
    /// this replica's current P set, and this replica never enters that lower view.
    fn support_previous_view(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let installed = self.new_view.as_ref().map_or(View(0), |nv| nv.value.view);
        let previous = View(self.view.0.saturating_sub(1));
        let held = self
            .view_changes
            .get(&previous)
            .is_some_and(|changes| changes.contains_key(&self.id));
        if previous > installed && !held {
            self.build_view_change(ctx, previous);
        }
    }

    pub(crate) fn retransmit_view_change(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if self.own_view_change.is_none() {
            self.send_view_change(ctx);
        }
        if self.own_view_change.is_some() {
            self.support_previous_view(ctx);
        }
        let own: Vec<Signed<ViewChange<S::Command>>> = self
            .view_changes
            .values()
            .filter_map(|changes| changes.get(&self.id).cloned())
            .collect();
        for signed in own {
            ctx.broadcast(Message::ViewChange(signed));
        }
        if self.primary() == self.id {
            self.try_send_new_view(ctx);
        }
    }

    pub(crate) fn on_view_change(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        from: dst_sim::NodeId,
        signed: Signed<ViewChange<S::Command>>,
    ) {
        let view = signed.value.view;
        if view < self.view || (view == self.view && !self.view_changing) {
            if view == self.view {
                if let Some(new_view) = &self.new_view {
                    // The sender missed the NEW-VIEW of the view it asks for.
                    ctx.send(from, Message::NewView(new_view.clone()));
                }
            }
            return ctx.ignore("view change: for an installed or older view");
        }
        let Some(signer) = node_signer(&signed.signature, self.quorums.n) else {
            return ctx.ignore("view change: foreign signer");
        };
        if self
            .view_changes
            .get(&view)
            .is_some_and(|changes| changes.get(&signer) == Some(&signed))
        {
            return ctx.ignore("view change: duplicate");
        }
        let (window, quorums) = (self.config.window, self.quorums);
        let checked = check_view_change(&mut verifier(ctx), &signed, view, window, quorums);
        if let Err(reason) = checked {
            return ctx.ignore(reason);
        }
        self.view_changes
            .entry(view)
            .or_default()
            .insert(signer, signed);
        let held: Vec<View> = self
            .view_changes
            .iter()
            .filter(|(_, changes)| changes.contains_key(&signer))
            .map(|(view, _)| *view)
            .collect();
        if held.len() > VIEW_CHANGE_VIEWS_PER_SIGNER {
            if let Some(changes) = self.view_changes.get_mut(&held[0]) {
                changes.remove(&signer);
            }
            self.view_changes.retain(|_, changes| !changes.is_empty());
        }
        self.maybe_join(ctx);
        if self.view_changing && view == self.view {
            self.after_view_change_vote(ctx, view);
        }
    }

    /// f + 1 replicas ask for views above ours: at least one correct replica timed out, so
    /// join the smallest of those views.
    fn maybe_join(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let mut lowest_per_signer = std::collections::BTreeMap::new();
        for (view, changes) in self
            .view_changes
            .range(View(self.view.0.saturating_add(1))..)
        {
            for signer in changes.keys() {
                lowest_per_signer.entry(*signer).or_insert(*view);
            }
        }
        if lowest_per_signer.len() >= self.quorums.weak() {
            if let Some(target) = lowest_per_signer.values().min().copied() {
                self.start_view_change(ctx, target);
            }
        }
    }

    /// With 2f + 1 view changes for our target, wait for the NEW-VIEW with an exponentially
    /// growing timeout; the new primary sends it.
    fn after_view_change_vote(&mut self, ctx: &mut Ctx<'_, '_, S>, view: View) {
        let count = self
            .view_changes
            .get(&view)
            .map_or(0, |changes| changes.len());
        if count >= self.quorums.quorum() && self.view_change_timer.is_none() {
            let exponent = self
                .view_change_attempt
                .min(self.config.view_change_backoff_max);
            let timeout_ns = (self.config.view_change_timeout_ms.max(1) * MS) << exponent;
            self.arm_timer(ctx, timeout_ns, None);
        }
        if self.quorums.primary(view) == self.id {
            self.try_send_new_view(ctx);
        }
    }

    fn try_send_new_view(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if !self.view_changing || self.primary() != self.id || self.own_view_change.is_none() {
            return;
        }
        let Some(changes) = self.view_changes.get(&self.view) else {
            return;
        };
        if changes.len() < self.quorums.quorum() {
            return;
        }
        let mut chosen: Vec<Signed<ViewChange<S::Command>>> =
            self.own_view_change.iter().cloned().collect();
        chosen.extend(
            changes
                .iter()
                .filter(|(signer, _)| **signer != self.id)
                .map(|(_, change)| change.clone())
                .take(self.quorums.quorum() - 1),
        );
        let values: Vec<&ViewChange<S::Command>> = chosen.iter().map(|c| &c.value).collect();
        let plan = plan_new_view(self.view, &values);
        let pre_prepares = plan
            .pre_prepares
            .iter()
            .map(|statement| ctx.sign_value(*statement))
            .collect();
        let new_view = ctx.sign_value(NewView {
            view: self.view,
            view_changes: chosen,
            pre_prepares,
        });
        if self.enter_view(ctx, new_view.clone(), plan) {
            ctx.broadcast(Message::NewView(new_view));
        }
    }

    pub(crate) fn on_new_view(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        signed: Signed<NewView<S::Command>>,
    ) {
        let view = signed.value.view;
        if view < self.view || (view == self.view && !self.view_changing) {
            return ctx.ignore("new view: for an installed or older view");
        }
        let (window, quorums) = (self.config.window, self.quorums);
        let checked = check_new_view(&mut verifier(ctx), &signed, window, quorums);
        let plan = match checked {
            Ok(plan) => plan,
            Err(reason) => return ctx.ignore(reason),
        };
        self.enter_view(ctx, signed, plan);
    }

    /// Installs a checked NEW-VIEW: adopt its checkpoint, accept its pre-prepares, prepare
    /// them (backups), and resume normal operation. False if storage failed.
    fn enter_view(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        signed: Signed<NewView<S::Command>>,
        plan: NewViewPlan<S::Command>,
    ) -> bool {
        let view = signed.value.view;
        if plan.min_s > self.stable.seq {
            self.make_stable(
                ctx,
                plan.min_s,
                plan.stable_digest,
                plan.checkpoint_proof.clone(),
            );
        }
        let previous = (self.view, self.view_changing);
        self.view = view;
        self.view_changing = false;
        if !self.persist_meta(ctx) {
            (self.view, self.view_changing) = previous;
            return false;
        }
        let accepted = self.accept_new_view_pre_prepares(ctx, &signed, &plan);
        ctx.sync();
        self.cancel_timer(ctx);
        self.view_change_attempt = 0;
        self.own_view_change = None;
        self.view_changes = self.view_changes.split_off(&View(view.0 + 1));
        self.new_view = Some(signed);
        let last = accepted.last().copied().unwrap_or(self.stable.seq);
        self.next_seq = Seq(last.max(self.last_executed).max(self.stable.seq).0 + 1);
        if !self.is_primary() {
            for seq in accepted {
                self.send_prepare_for(ctx, seq);
            }
        }
        ctx.observe(Observation::NewView {
            node: self.id,
            view: view.0,
        });
        self.prune_pending();
        self.order_pending(ctx);
        self.arm_request_timer(ctx);
        true
    }

    fn accept_new_view_pre_prepares(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        signed: &Signed<NewView<S::Command>>,
        plan: &NewViewPlan<S::Command>,
    ) -> Vec<Seq> {
        let now_ns = ctx.now_ns();
        let mut accepted = Vec::new();
        for statement in &signed.value.pre_prepares {
            let seq = statement.value.seq;
            if !self.in_window(seq) || self.damaged.contains(&seq) {
                continue;
            }
            let request = plan.bodies.get(&statement.value.digest).cloned();
            let record = PrePrepareRecord {
                statement: statement.clone(),
                request: request.clone(),
            };
            if !Self::persist_copies(ctx, &durable::pre_prepare_keys(seq), &record) {
                continue;
            }
            let node = self.id;
            let slot = self.slot_in_view(seq);
            if let Some(proof) = &slot.committed {
                let committed_digest = proof.commits.first().map(|vote| vote.value.digest);
                if committed_digest != Some(statement.value.digest) {
                    ctx.observe(Observation::InvariantViolated {
                        node,
                        what: format!("new view re-proposes committed slot {} differently", seq.0),
                    });
                }
            }
            slot.pre_prepare = Some(statement.clone());
            slot.request = request;
            slot.accepted_ns = now_ns;
            accepted.push(seq);
        }
        accepted
    }

    fn send_prepare_for(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: Seq) {
        let Some(statement) = self.log.get(&seq).and_then(|slot| slot.pre_prepare.clone()) else {
            return;
        };
        let value = statement.value;
        let prepare = Self::sign_statement(ctx, Phase::Prepare, value.view, seq, value.digest);
        let own = self.id;
        self.slot_in_view(seq).prepares.insert(own, prepare.clone());
        ctx.broadcast(Message::Prepare(prepare));
        self.try_prepared(ctx, seq);
    }

    /// Re-signs this replica's own votes for slots recovered from disk in the current view.
    pub(crate) fn resign_recovered_votes(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let seqs: BTreeSet<Seq> = self.log.keys().copied().collect();
        for seq in seqs {
            let Some(statement) = self.log.get(&seq).and_then(|slot| slot.pre_prepare.clone())
            else {
                continue;
            };
            let value = statement.value;
            if value.view != self.view {
                continue;
            }
            let own = self.id;
            let is_primary = self.is_primary();
            let prepared_here = self
                .prepared
                .get(&seq)
                .is_some_and(|(cert, _)| cert.pre_prepare.value == value);
            let prepare = (!is_primary)
                .then(|| Self::sign_statement(ctx, Phase::Prepare, value.view, seq, value.digest));
            let commit = prepared_here
                .then(|| Self::sign_statement(ctx, Phase::Commit, value.view, seq, value.digest));
            let slot = self.slot_in_view(seq);
            if let Some(prepare) = prepare {
                slot.prepares.insert(own, prepare);
            }
            if let Some(commit) = commit {
                slot.prepared_here = true;
                slot.commits.insert(own, commit);
            }
        }
    }
}
