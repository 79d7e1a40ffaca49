//! View change: IHTP, POM, VIEW-CHANGE, NEW-VIEW (recomputed and checked), rollback.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::Observation;
use dst_sim::{NodeId, Principal, Signed};

use crate::msg::{
    verify_pom, verify_view_change_proof, IhtpBody, Msg, NewViewBody, Order, OrderBody,
    ViewChangeBody, ViewChangeProof,
};
use crate::replica::{verifier, Ctx, Entry, FastBft, SignedViewChange, Status, Timer};
use crate::select::{check_view_change, select, CheckedViewChange, Selection};

impl<S: dst_sim::StateMachine> FastBft<S> {
    /// The view complaints are about: the current one, or the target of a view change
    /// (whose NEW-VIEW is late).
    pub(crate) fn judged_view(&self) -> u64 {
        match self.status {
            Status::Normal => self.view,
            Status::ViewChange { target } => target,
        }
    }

    /// Upon IHTP(v) about the judged view: at f+1 distinct complaints, change view.
    pub(crate) fn on_ihtp(&mut self, ctx: &mut Ctx<'_, '_, S>, ihtp: Signed<IhtpBody>) {
        let body = &ihtp.value;
        if body.view != self.judged_view() {
            if self.params.is_replica(body.replica) {
                self.help_laggard(ctx, body.replica, body.view);
            }
            ctx.ignore("ihtp: not the judged view");
            return;
        }
        if !self.params.is_replica(body.replica)
            || ihtp.signer() != Principal::Node(body.replica)
            || !ctx.verify_signed(&ihtp)
        {
            ctx.ignore("ihtp: bad signature");
            return;
        }
        self.ihtp.insert(body.replica, ihtp);
        match self.status {
            Status::Normal => self.count_complaints(ctx),
            Status::ViewChange { target } => {
                // f+1 replicas (one correct) gave up waiting for `target`'s NEW-VIEW.
                if self.ihtp.len() >= self.params.one_correct() {
                    let proof = ViewChangeProof::Ihtp(self.ihtp.values().cloned().collect());
                    self.start_view_change(ctx, target + 1, proof);
                }
            }
        }
    }

    /// f+1 replicas complained about the current view (by IHTP, or by asking for a later
    /// view with a valid proof): change view, proving it with the IHTPs or, short of them,
    /// with the proof of a VIEW-CHANGE held for a later view.
    fn count_complaints(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if self.status != Status::Normal {
            return;
        }
        let view = self.view;
        let target = view + 1;
        let mut complaining: BTreeSet<NodeId> = self.ihtp.keys().copied().collect();
        complaining.extend(
            self.view_changes
                .iter()
                .filter(|(_, held)| held.value.new_view > view)
                .map(|(replica, _)| *replica),
        );
        if complaining.len() < self.params.one_correct() {
            return;
        }
        let proof = if self.ihtp.len() >= self.params.one_correct() {
            Some(ViewChangeProof::Ihtp(self.ihtp.values().cloned().collect()))
        } else {
            self.borrowed_proof(target)
        };
        if let Some(proof) = proof {
            self.start_view_change(ctx, target, proof);
        }
    }

    /// The proof of a held (verified) VIEW-CHANGE that also justifies `target`.
    fn borrowed_proof(&self, target: u64) -> Option<ViewChangeProof> {
        self.view_changes
            .values()
            .filter(|held| held.value.new_view >= target)
            .map(|held| &held.value.proof)
            .find(|proof| proof.covers(target))
            .cloned()
    }

    /// Upon POM: two ORDER-REQs of the current primary for one slot with different histories.
    pub(crate) fn on_pom(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        first: Signed<OrderBody>,
        second: Signed<OrderBody>,
    ) {
        if first.value.view != self.view || self.status != Status::Normal {
            ctx.ignore("pom: not about the current view");
            return;
        }
        let verified = verify_pom(&self.params, &first, &second, &mut verifier(ctx));
        if let Err(reason) = verified {
            ctx.ignore(reason);
            return;
        }
        let proof = ViewChangeProof::Pom { first, second };
        self.start_view_change(ctx, self.view + 1, proof);
    }

    /// Stops accepting the current view and broadcasts VIEW-CHANGE(target), justified by
    /// `proof` (persisted with the view, so a restarted replica can send it again).
    pub(crate) fn start_view_change(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        target: u64,
        proof: ViewChangeProof,
    ) {
        if target <= self.judged_view() {
            return;
        }
        assert!(
            proof.covers(target),
            "a view change carries a proof for its view"
        );
        self.status = Status::ViewChange { target };
        self.confirming = None;
        if let Some(timer) = self.confirm_timer.take() {
            ctx.cancel_timer(timer);
        }
        self.ihtp.clear();
        self.own_ihtp = None;
        self.buffer.clear();
        self.forwarded.clear();
        if let Some(timer) = self.fill_timer.take() {
            ctx.cancel_timer(timer);
        }
        self.persist_view(ctx);
        crate::durable::write_record(ctx, crate::durable::PROOF_KEY, &(target, &proof));
        ctx.sync();
        let view_change = ctx.sign_value(self.view_change_body(target, proof));
        ctx.broadcast(Msg::ViewChange(Box::new(view_change.clone())));
        self.view_changes.insert(self.id, view_change);
        if let Some(timer) = self.view_change_timer.take() {
            ctx.cancel_timer(timer);
        }
        self.arm_view_change_timer(ctx);
        self.try_new_view(ctx);
    }

    /// Starts the NEW-VIEW timer only once `Qvc` replicas want the target view (PBFT's
    /// liveness rule): a lone replica never races ahead to views nobody else will join.
    fn arm_view_change_timer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let Status::ViewChange { target } = self.status else {
            return;
        };
        let wanting = self
            .view_changes
            .values()
            .filter(|view_change| view_change.value.new_view >= target)
            .count();
        if self.view_change_timer.is_some() || wanting < self.params.view_change_quorum() {
            return;
        }
        let timeout_ns = self.view_change_timeout_ns();
        self.view_change_timer =
            Some(ctx.set_timer(timeout_ns, Timer::ViewChange { view: target }));
    }

    /// The NEW-VIEW (and VIEW-CONFIRM) timeout: doubles per failed view change, capped.
    pub(crate) fn view_change_timeout_ns(&self) -> u64 {
        let exponent = self.failed_view_changes.min(16);
        self.config
            .view_change_timeout_ns
            .saturating_mul(1 << exponent)
            .min(self.config.view_change_timeout_ns_max)
    }

    /// A replica still in an older view: send it the NEW-VIEW this replica installed.
    pub(crate) fn help_laggard(&mut self, ctx: &mut Ctx<'_, '_, S>, to: NodeId, their_view: u64) {
        if their_view < self.view && to != self.id {
            if let Some(new_view) = &self.last_new_view {
                ctx.send(to, Msg::NewView(new_view.clone()));
            }
        }
    }

    fn view_change_body(
        &self,
        target: u64,
        proof: ViewChangeProof,
    ) -> ViewChangeBody<S::Command, S::Output> {
        ViewChangeBody {
            new_view: target,
            replica: self.id,
            proof,
            checkpoint: self.stable.clone(),
            ccs: self.ccs.clone(),
            log: self.log.values().map(Entry::as_order).collect(),
        }
    }

    /// No NEW-VIEW in time: complain about the awaited view (IHTP); f+1 complaints about it
    /// are the proof for the next view.
    pub(crate) fn on_view_change_timeout(&mut self, ctx: &mut Ctx<'_, '_, S>, view: u64) {
        if self.status == (Status::ViewChange { target: view }) {
            self.view_change_timer = None;
            self.failed_view_changes += 1;
            self.send_ihtp(ctx);
        }
    }

    /// Upon VIEW-CHANGE: keep the latest per sender; join at f+1 for higher views; the new
    /// primary builds NEW-VIEW at Qvc.
    pub(crate) fn on_view_change(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        from: NodeId,
        view_change: SignedViewChange<S>,
    ) {
        let body = &view_change.value;
        if body.replica != from || view_change.signer() != Principal::Node(from) {
            ctx.ignore("view change: sender mismatch");
            return;
        }
        if body.new_view <= self.view {
            // The sender missed a NEW-VIEW this replica installed: resend it.
            if body.new_view == self.view {
                if let Some(new_view) = &self.last_new_view {
                    ctx.send(from, Msg::NewView(new_view.clone()));
                }
            }
            self.help_laggard(ctx, from, body.new_view);
            ctx.ignore("view change: old view");
            return;
        }
        let newer = self
            .view_changes
            .get(&from)
            .is_none_or(|held| held.value.new_view < body.new_view);
        if !newer || !ctx.verify_signed(&view_change) {
            ctx.ignore("view change: stale or bad signature");
            return;
        }
        let justified =
            verify_view_change_proof(&self.params, &body.proof, body.new_view, &mut verifier(ctx));
        if let Err(reason) = justified {
            ctx.ignore(reason);
            return;
        }
        self.view_changes.insert(from, view_change);
        self.join_higher_view(ctx);
        self.count_complaints(ctx);
        self.arm_view_change_timer(ctx);
        self.try_new_view(ctx);
    }

    /// f+1 replicas ask for views above ours: join the lowest view they all want.
    fn join_higher_view(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let current = match self.status {
            Status::Normal => self.view,
            Status::ViewChange { target } => target,
        };
        let mut wanted: Vec<u64> = self
            .view_changes
            .values()
            .map(|view_change| view_change.value.new_view)
            .filter(|view| *view > current)
            .collect();
        if wanted.len() < self.params.one_correct() {
            return;
        }
        wanted.sort_unstable_by(|a, b| b.cmp(a));
        let target = wanted[self.params.one_correct() - 1];
        // The VIEW-CHANGE asking for exactly `target` carries a proof for it.
        if let Some(proof) = self.borrowed_proof(target) {
            self.start_view_change(ctx, target, proof);
        }
    }

    /// Validated VIEW-CHANGEs for `view` (at most `Qvc`, in replica order).
    fn checked_for(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        view_changes: &[SignedViewChange<S>],
        view: u64,
    ) -> Vec<(SignedViewChange<S>, CheckedViewChange<S::Command>)> {
        let entries_max = self.config.window() * 2;
        let mut checked = Vec::new();
        let mut senders = BTreeSet::new();
        for view_change in view_changes {
            let body = &view_change.value;
            if body.new_view != view || !senders.insert(body.replica) {
                continue;
            }
            if !self.params.is_replica(body.replica)
                || view_change.signer() != Principal::Node(body.replica)
            {
                continue;
            }
            let result = check_view_change(
                &self.params,
                body,
                entries_max,
                self.genesis_digest,
                &mut verifier(ctx),
            );
            match result {
                Ok(checked_view_change) => checked.push((view_change.clone(), checked_view_change)),
                Err(reason) => ctx.ignore(reason),
            }
            if checked.len() == self.params.view_change_quorum() {
                break;
            }
        }
        checked
    }

    /// The new primary: at Qvc valid VIEW-CHANGEs, compute, sign and send NEW-VIEW.
    fn try_new_view(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let Status::ViewChange { target } = self.status else {
            return;
        };
        if self.params.primary(target) != self.id || self.built_new_view == Some(target) {
            return;
        }
        let candidates: Vec<SignedViewChange<S>> = self
            .view_changes
            .values()
            .filter(|view_change| view_change.value.new_view == target)
            .cloned()
            .collect();
        if candidates.len() < self.params.view_change_quorum() {
            return;
        }
        let (used, checked): (Vec<_>, Vec<_>) = self
            .checked_for(ctx, &candidates, target)
            .into_iter()
            .unzip();
        if checked.len() < self.params.view_change_quorum() {
            return;
        }
        let Some(selection) = select(&self.params, &checked, self.config.window() * 2) else {
            return;
        };
        let orders: Vec<Signed<OrderBody>> = selection
            .entries
            .iter()
            .map(|(seq, entry)| {
                let body = OrderBody {
                    view: target,
                    seq: *seq,
                    hist: entry.hist,
                    digest: entry.digest,
                };
                self.note_signed(false, target, *seq, entry.hist);
                ctx.sign_value(body)
            })
            .collect();
        let body = NewViewBody {
            view: target,
            view_changes: used,
            orders,
        };
        let new_view = Box::new(ctx.sign_value(body));
        self.built_new_view = Some(target);
        crate::durable::write_record(ctx, crate::durable::BUILT_KEY, &target);
        ctx.sync();
        ctx.broadcast(Msg::NewView(new_view.clone()));
        self.install(ctx, new_view, selection);
    }

    /// Upon NEW-VIEW: recompute the history from the enclosed VIEW-CHANGEs; install if the
    /// re-issued ORDER-REQs match exactly.
    pub(crate) fn on_new_view(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        new_view: Box<Signed<NewViewBody<S::Command, S::Output>>>,
    ) {
        let view = new_view.value.view;
        let floor = match self.status {
            Status::Normal => self.view + 1,
            Status::ViewChange { target } => target.max(self.view + 1),
        };
        // An unconfirmed view may still give way to the NEW-VIEW Qs replicas confirmed.
        let reinstall = view == self.view && self.confirming.is_some();
        if view < floor && !reinstall {
            ctx.ignore("new view: old view");
            return;
        }
        let primary = Principal::Node(self.params.primary(view));
        if new_view.signer() != primary || !ctx.verify_signed(&new_view) {
            ctx.ignore("new view: not signed by the view's primary");
            return;
        }
        let checked: Vec<CheckedViewChange<S::Command>> = self
            .checked_for(ctx, &new_view.value.view_changes, view)
            .into_iter()
            .map(|(_, checked)| checked)
            .collect();
        if checked.len() < self.params.view_change_quorum() {
            ctx.ignore("new view: too few valid view changes");
            return;
        }
        let Some(selection) = select(&self.params, &checked, self.config.window() * 2) else {
            return;
        };
        if !self.orders_match(&new_view.value.orders, &selection, view) {
            ctx.ignore("new view: does not match the recomputed history");
            return;
        }
        if reinstall && !self.confirmed_by_quorum(selection.end()) {
            ctx.ignore("new view: not the confirmed one");
            return;
        }
        self.install(ctx, new_view, selection);
    }

    fn orders_match(
        &self,
        orders: &[Signed<OrderBody>],
        selection: &Selection<S::Command>,
        view: u64,
    ) -> bool {
        let primary = Principal::Node(self.params.primary(view));
        orders.len() == selection.entries.len()
            && orders
                .iter()
                .zip(&selection.entries)
                .all(|(order, (seq, entry))| {
                    order.value
                        == OrderBody {
                            view,
                            seq: *seq,
                            hist: entry.hist,
                            digest: entry.digest,
                        }
                        && order.signer() == primary
                        && order.verify()
                })
    }

    /// Installs a NEW-VIEW: adopt its base (state transfer if needed), roll the log back to
    /// the common prefix, take the carried entries, re-execute and answer their clients.
    pub(crate) fn install(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        new_view: Box<Signed<NewViewBody<S::Command, S::Output>>>,
        selection: Selection<S::Command>,
    ) {
        let view = new_view.value.view;
        if selection.base.seq > self.stable.seq && !self.adopt_base(ctx, &selection) {
            self.pending_new_view = Some(new_view);
            return;
        }
        let orders: BTreeMap<u64, Signed<OrderBody>> = new_view
            .value
            .orders
            .iter()
            .map(|order| (order.value.seq, order.clone()))
            .collect();
        self.log.clear();
        for (seq, entry) in &selection.entries {
            if *seq <= self.stable.seq {
                continue;
            }
            let Some(order) = orders.get(seq) else {
                break;
            };
            self.log.insert(
                *seq,
                Entry {
                    order: order.clone(),
                    request: entry.request.clone(),
                    output: None,
                    state_digest: 0,
                    spec: None,
                },
            );
        }
        self.replay();
        self.enter_view(ctx, view);
        self.last_new_view = Some(new_view);
        self.start_confirming(ctx, selection.end());
        self.persist_installed(ctx);
        self.announce_confirm(ctx);
    }

    /// Moves the stable checkpoint up to the NEW-VIEW's base if the log reaches it there.
    fn adopt_base(&mut self, ctx: &mut Ctx<'_, '_, S>, selection: &Selection<S::Command>) -> bool {
        let base = selection.base.clone();
        if self.hist_at(base.seq) == Some(base.hist) {
            self.make_stable(ctx, base);
            return self.stable.seq == selection.base.seq;
        }
        self.request_state(ctx, base);
        false
    }

    fn enter_view(&mut self, ctx: &mut Ctx<'_, '_, S>, view: u64) {
        let entered = view != self.view || self.status != Status::Normal;
        self.view = view;
        self.status = Status::Normal;
        // The back-off is reset only once the view is confirmed.
        self.confirmed_end = None;
        self.ihtp.clear();
        self.own_ihtp = None;
        self.buffer.clear();
        // Checkpoint votes are per view: vote again for this view's history.
        self.own_votes.clear();
        self.checkpoint_waiting_since_ns = None;
        self.pending_new_view = None;
        self.view_changes
            .retain(|_, held| held.value.new_view > view);
        if let Some(timer) = self.view_change_timer.take() {
            ctx.cancel_timer(timer);
        }
        if let Some(timer) = self.fill_timer.take() {
            ctx.cancel_timer(timer);
        }
        if entered {
            ctx.observe(Observation::NewView {
                node: self.id,
                view,
            });
        }
    }

    fn persist_installed(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        self.persist_view(ctx);
        let tip = self.tip();
        for key in ctx.keys_with_prefix(crate::durable::LOG_PREFIX) {
            let beyond = key
                .strip_prefix(crate::durable::LOG_PREFIX)
                .and_then(|seq| seq.parse::<u64>().ok())
                .is_none_or(|seq| seq > tip);
            if beyond {
                let _ = ctx.delete(&key);
            }
        }
        let seqs: Vec<u64> = self.log.keys().copied().collect();
        for seq in seqs {
            self.persist_entry(ctx, seq);
        }
        ctx.sync();
    }

    /// Reports the installed history to the speculative oracle once the view is confirmed:
    /// only then is it this replica's history of the view (before, it answers nothing,
    /// extends nothing, and gives way to the NEW-VIEW `Qs` replicas confirm).
    pub(crate) fn announce_installed(&mut self, ctx: &mut Ctx<'_, '_, S>, view: u64) {
        let mut prev = self.stable.hist;
        let accepted: Vec<(u64, u64, u64, u64)> = self
            .log
            .iter()
            .map(|(seq, entry)| {
                let item = (
                    *seq,
                    prev.short(),
                    entry.order.value.digest.short(),
                    entry.hist().short(),
                );
                prev = entry.hist();
                item
            })
            .collect();
        for (slot, prev, entry, hist) in accepted {
            ctx.observe(Observation::SpecAccept {
                node: self.id,
                view,
                slot,
                prev,
                entry,
                hist,
            });
        }
        ctx.observe(Observation::SpecInstall {
            node: self.id,
            view: Some(view),
            slot: self.tip(),
            hist: self.tip_hist().short(),
            state_digest: None,
        });
        // Clients are answered, and checkpoints voted, once the view is confirmed.
    }

    /// Relays a NEW-VIEW's re-issued entries as ordinary ORDER-REQs (state transfer helper).
    pub(crate) fn carried_orders(&self) -> Vec<Order<S::Command>> {
        self.log.values().map(Entry::as_order).collect()
    }
}
