//! Normal case: ordering, speculative execution, SPEC-RESPONSE, fill-hole, COMMIT.

use dst_protocols::Observation;
use dst_sim::{ClientId, Digest, NodeId, Principal, StateMachine};

use crate::msg::{
    entry_digest, verify_cc, verify_request, Cc, CcEvidence, FastReply, IhtpBody, Link, Msg, Order,
    OrderBody, SignedRequest, SpecBody,
};
use crate::replica::{
    execute, verifier, Ctx, Entry, FastBft, Out, Status, Timer, BUFFER_MAX, CCS_MAX, FORWARDED_MAX,
    SNAPSHOTS_MAX,
};

/// Where a request stands at this replica.
enum Located<O> {
    New,
    Logged(u64),
    Final(O),
    Stale,
}

impl<S: dst_sim::StateMachine> FastBft<S> {
    fn locate(&self, request: &SignedRequest<S::Command>) -> Located<Out<S>> {
        let (client, sequence) = (request.value.client, request.value.sequence);
        match self.state.last_sequence(client) {
            Some(last) if last >= sequence => {}
            _ => return Located::New,
        }
        let logged = self
            .log
            .iter()
            .rev()
            .find(|(_, entry)| entry.request_id() == Some((client, sequence)));
        if let Some((seq, _)) = logged {
            return Located::Logged(*seq);
        }
        match self.final_replies.get(&client) {
            Some((last, output)) if *last == sequence => Located::Final(output.clone()),
            _ => Located::Stale,
        }
    }

    /// Upon REQUEST (from its client, or forwarded by backup `via`).
    pub(crate) fn on_client_request(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        request: SignedRequest<S::Command>,
        via: Option<NodeId>,
    ) {
        if !verify_request(&request, &mut verifier(ctx)) {
            ctx.ignore("request: bad client signature");
            return;
        }
        if self.status != Status::Normal || self.confirming.is_some() {
            ctx.ignore("request: view change under way");
            return;
        }
        let client = request.value.client;
        match (self.locate(&request), via) {
            (Located::New, _) if self.is_primary() => self.order_request(ctx, request),
            (Located::New, None) => self.forward(ctx, request),
            (Located::New, Some(backup)) => {
                // A backup forwarding to a former primary has missed a view change.
                self.help_laggard(ctx, backup, self.view.saturating_sub(1));
                ctx.ignore("forwarded request: not the primary")
            }
            (Located::Logged(seq), None) => {
                self.resend_spec(ctx, seq);
                // A client retrying an ordered request is short of a quorum: if the entry
                // does not settle soon, this view is not making progress.
                if !self.is_primary() {
                    self.watch(ctx, client, request.value.sequence);
                }
            }
            (Located::Logged(seq), Some(backup)) => {
                if let Some(entry) = self.log.get(&seq) {
                    ctx.send(backup, Msg::Order(entry.as_order()));
                }
            }
            (Located::Final(output), None) => ctx.reply(
                client,
                FastReply::Final {
                    sequence: request.value.sequence,
                    output,
                },
            ),
            (Located::Final(_), Some(_)) | (Located::Stale, _) => {
                ctx.ignore("request: already answered")
            }
        }
    }

    fn forward(&mut self, ctx: &mut Ctx<'_, '_, S>, request: SignedRequest<S::Command>) {
        let (client, sequence) = (request.value.client, request.value.sequence);
        ctx.send(self.primary(), Msg::Forward(request));
        self.watch(ctx, client, sequence);
    }

    /// Starts the request timer for `(client, sequence)` unless it is running.
    fn watch(&mut self, ctx: &mut Ctx<'_, '_, S>, client: ClientId, sequence: u64) {
        let waiting = self.forwarded.get(&client) == Some(&sequence);
        if !waiting && self.forwarded.len() < FORWARDED_MAX {
            self.forwarded.insert(client, sequence);
            ctx.set_timer(
                self.config.request_timeout_ns,
                Timer::Forwarded { client, sequence },
            );
        }
    }

    /// Upon a forwarded request's timeout: complain unless it was ordered meanwhile.
    pub(crate) fn on_forward_timeout(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        client: ClientId,
        sequence: u64,
    ) {
        if self.forwarded.get(&client) != Some(&sequence) {
            return;
        }
        self.forwarded.remove(&client);
        if !self.settled(client, sequence) && self.status == Status::Normal {
            self.send_ihtp(ctx);
        }
    }

    /// True if the request is final here, or logged and covered by a CC this replica holds.
    fn settled(&self, client: ClientId, sequence: u64) -> bool {
        let ordered = self
            .state
            .last_sequence(client)
            .is_some_and(|last| last >= sequence);
        if !ordered {
            return false;
        }
        let logged = self
            .log
            .iter()
            .rev()
            .find(|(_, entry)| entry.request_id() == Some((client, sequence)))
            .map(|(seq, _)| *seq);
        match logged {
            None => true,
            Some(seq) => self.ccs.iter().any(|held| held.cc.seq >= seq),
        }
    }

    /// The primary assigns the next slot to a new request.
    fn order_request(&mut self, ctx: &mut Ctx<'_, '_, S>, request: SignedRequest<S::Command>) {
        let seq = self.tip() + 1;
        if seq > self.stable.seq + self.config.window() {
            ctx.ignore("request: primary's window is full");
            return;
        }
        if self.signed_orders.contains_key(&(self.view, seq)) {
            // A state transfer rolled this primary back below what it already signed in
            // this view (the others moved on without it): never sign a slot twice (S5).
            ctx.ignore("request: slot already signed in this view");
            return;
        }
        let digest = entry_digest(Some(&request), seq);
        let body = OrderBody {
            view: self.view,
            seq,
            hist: self.tip_hist().chain(&digest),
            digest,
        };
        self.note_signed(false, body.view, seq, body.hist);
        let order = Order {
            order: ctx.sign_value(body),
            request: Some(request),
        };
        self.accept(ctx, order.clone());
        ctx.broadcast(Msg::Order(order));
    }

    /// Upon ORDER-REQ(v, s, h, d): accept it at the tip, buffer it ahead, or detect a POM.
    pub(crate) fn on_order(&mut self, ctx: &mut Ctx<'_, '_, S>, order: Order<S::Command>) {
        let body = order.order.value.clone();
        if body.view != self.view || self.status != Status::Normal {
            let sender = self.params.primary(body.view);
            self.help_laggard(ctx, sender, body.view);
            ctx.ignore("order: not the current view");
            return;
        }
        if body.seq <= self.stable.seq {
            ctx.ignore("order: below the window");
            return;
        }
        if body.seq > self.stable.seq + self.config.window() {
            // The others checkpointed past this replica's window: fetch their state.
            let sender = self.params.primary(body.view);
            self.ask_state(ctx, sender);
            ctx.ignore("order: beyond the window");
            return;
        }
        if let Some(entry) = self.log.get(&body.seq) {
            if entry.order.value.view == body.view && entry.hist() != body.hist {
                self.check_pom(ctx, entry.order.clone(), order);
            } else {
                ctx.ignore("order: already accepted");
            }
            return;
        }
        if !self.order_is_authentic(ctx, &order) {
            return;
        }
        if self.confirming.is_some() {
            // The view resumes once confirmed; keep what its primary already ordered.
            if self.buffer.len() < BUFFER_MAX {
                self.buffer.insert(body.seq, order);
            }
            return;
        }
        if body.seq > self.tip() + 1 {
            self.buffer_order(ctx, order);
            return;
        }
        self.try_accept(ctx, order);
        self.drain_buffer(ctx);
    }

    fn order_is_authentic(&mut self, ctx: &mut Ctx<'_, '_, S>, order: &Order<S::Command>) -> bool {
        let body = &order.order.value;
        let primary = Principal::Node(self.params.primary(body.view));
        if order.order.signer() != primary || !ctx.verify_signed(&order.order) {
            ctx.ignore("order: not signed by the view's primary");
            return false;
        }
        if entry_digest(order.request.as_ref(), body.seq) != body.digest {
            ctx.ignore("order: body does not match its digest");
            return false;
        }
        if let Some(request) = &order.request {
            if !verify_request(request, &mut verifier(ctx)) {
                ctx.ignore("order: bad client signature");
                return false;
            }
        }
        true
    }

    /// A conflicting ORDER-REQ for a slot already accepted in this view: verify, then POM.
    fn check_pom(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        held: dst_sim::Signed<OrderBody>,
        order: Order<S::Command>,
    ) {
        let primary = Principal::Node(self.primary());
        if order.order.signer() != primary || !ctx.verify_signed(&order.order) {
            ctx.ignore("order: forged conflicting order");
            return;
        }
        ctx.broadcast(Msg::Pom {
            first: held.clone(),
            second: order.order.clone(),
        });
        let proof = crate::msg::ViewChangeProof::Pom {
            first: held,
            second: order.order,
        };
        self.start_view_change(ctx, self.view + 1, proof);
    }

    fn buffer_order(&mut self, ctx: &mut Ctx<'_, '_, S>, order: Order<S::Command>) {
        if self.buffer.len() >= BUFFER_MAX {
            ctx.ignore("order: buffer full");
            return;
        }
        let seq = order.order.value.seq;
        self.buffer.insert(seq, order);
        if self.fill_timer.is_none() {
            let tip = self.tip();
            ctx.send(
                self.primary(),
                Msg::FillHole {
                    view: self.view,
                    from_seq: tip + 1,
                    to_seq: seq - 1,
                },
            );
            self.fill_timer = Some(ctx.set_timer(
                self.config.fill_hole_timeout_ns,
                Timer::FillHole {
                    view: self.view,
                    stage: 0,
                },
            ));
        }
    }

    /// After VIEW-CONFIRM: accept the buffered ORDER-REQs that follow the tip, and ask to fill
    /// any hole before the rest.
    pub(crate) fn resume_buffer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        self.drain_buffer(ctx);
        if let Some((_, order)) = self.buffer.pop_first() {
            self.buffer_order(ctx, order);
        }
    }

    /// Accepts buffered ORDER-REQs that now follow the tip.
    fn drain_buffer(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let stable = self.stable.seq;
        self.buffer.retain(|seq, _| *seq > stable);
        loop {
            let next = self.tip() + 1;
            // Anything at or below the tip is stale (it lost to what was accepted there).
            self.buffer.retain(|seq, _| *seq >= next);
            let Some(order) = self.buffer.remove(&next) else {
                break;
            };
            if !self.try_accept(ctx, order) {
                break;
            }
        }
        if self.buffer.is_empty() {
            if let Some(timer) = self.fill_timer.take() {
                ctx.cancel_timer(timer);
            }
        }
    }

    /// Accepts an authentic ORDER-REQ for the slot after the tip if it chains and is valid.
    fn try_accept(&mut self, ctx: &mut Ctx<'_, '_, S>, order: Order<S::Command>) -> bool {
        let body = &order.order.value;
        if body.seq != self.tip() + 1 || self.tip_hist().chain(&body.digest) != body.hist {
            ctx.ignore("order: does not chain from the tip");
            return false;
        }
        if let Some(request) = &order.request {
            let last = self.state.last_sequence(request.value.client);
            if last.is_some_and(|last| last >= request.value.sequence) {
                ctx.ignore("order: request already executed");
                return false;
            }
        }
        self.accept(ctx, order);
        true
    }

    /// Appends, executes, persists and answers the client (SPEC-RESPONSE).
    pub(crate) fn accept(&mut self, ctx: &mut Ctx<'_, '_, S>, order: Order<S::Command>) {
        let seq = order.order.value.seq;
        let prev = self.tip_hist();
        let output = execute(&mut self.state, order.request.as_ref());
        let entry = Entry {
            order: order.order,
            request: order.request,
            output,
            state_digest: self.state.digest(),
            spec: None,
        };
        if let Some((client, _)) = entry.request_id() {
            self.forwarded.remove(&client);
        }
        let body = entry.order.value.clone();
        self.log.insert(seq, entry);
        ctx.observe(Observation::SpecAccept {
            node: self.id,
            view: body.view,
            slot: seq,
            prev: prev.short(),
            entry: body.digest.short(),
            hist: body.hist.short(),
        });
        let durable = self.persist_entry(ctx, seq);
        ctx.sync();
        if durable {
            self.resend_spec(ctx, seq);
        }
        if seq % self.config.checkpoint_interval == 0 && self.snapshots.len() < SNAPSHOTS_MAX {
            self.snapshots.insert(seq, self.state.clone());
            self.send_checkpoint(ctx, seq);
        }
    }

    /// Sends (signing once) the SPEC-RESPONSE of the entry at `seq` to its client.
    pub(crate) fn resend_spec(&mut self, ctx: &mut Ctx<'_, '_, S>, seq: u64) {
        let id = self.id;
        let Some(entry) = self.log.get(&seq) else {
            return;
        };
        let (Some((client, sequence)), Some(output)) = (entry.request_id(), entry.output.clone())
        else {
            return;
        };
        let order = entry.order.clone();
        let spec = match &entry.spec {
            Some(spec) => spec.clone(),
            None => {
                let body = SpecBody {
                    view: entry.order.value.view,
                    seq,
                    hist: entry.hist(),
                    replica: id,
                    client,
                    sequence,
                    output,
                };
                self.note_signed(true, body.view, seq, body.hist);
                let spec = ctx.sign_value(body);
                if let Some(entry) = self.log.get_mut(&seq) {
                    entry.spec = Some(spec.clone());
                }
                spec
            }
        };
        ctx.reply(client, FastReply::Spec { spec, order });
    }

    /// Upon FILL-HOLE: relay the signed ORDER-REQs of that view held here.
    pub(crate) fn on_fill_hole(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        from: NodeId,
        view: u64,
        from_seq: u64,
        to_seq: u64,
    ) {
        if view != self.view || to_seq < from_seq {
            self.help_laggard(ctx, from, view);
            ctx.ignore("fill-hole: other view or empty range");
            return;
        }
        let last = to_seq.min(from_seq.saturating_add(self.config.window()));
        let orders: Vec<Order<S::Command>> = self
            .log
            .range(from_seq..=last)
            .filter(|(_, entry)| entry.order.value.view == view)
            .map(|(_, entry)| entry.as_order())
            .collect();
        for order in orders {
            ctx.send(from, Msg::Order(order));
        }
    }

    /// The hole is still open: ask everyone, then complain about the primary.
    pub(crate) fn on_fill_timeout(&mut self, ctx: &mut Ctx<'_, '_, S>, view: u64, stage: u32) {
        self.fill_timer = None;
        if view != self.view || self.status != Status::Normal || self.buffer.is_empty() {
            return;
        }
        let to_seq = self
            .buffer
            .keys()
            .next()
            .copied()
            .unwrap_or(0)
            .saturating_sub(1);
        let from_seq = self.tip() + 1;
        if stage == 0 {
            if to_seq >= from_seq {
                ctx.broadcast(Msg::FillHole {
                    view,
                    from_seq,
                    to_seq,
                });
            }
            self.fill_timer = Some(ctx.set_timer(
                self.config.fill_hole_timeout_ns,
                Timer::FillHole { view, stage: 1 },
            ));
        } else {
            // The hole may lie below the others' stable checkpoint: ask for state too.
            let primary = self.primary();
            self.ask_state(ctx, primary);
            self.send_ihtp(ctx);
        }
    }

    /// I-HATE-THE-PRIMARY for the judged view (the current one, or the awaited target).
    pub(crate) fn send_ihtp(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let body = IhtpBody {
            view: self.judged_view(),
            replica: self.id,
        };
        let ihtp = ctx.sign_value(body);
        ctx.broadcast(Msg::Ihtp(ihtp.clone()));
        if self.status != Status::Normal {
            self.own_ihtp = Some(ihtp.clone());
        }
        self.on_ihtp(ctx, ihtp);
    }

    /// Upon COMMIT(CC) from a client: verify the CC, then LOCAL-COMMIT if the log matches.
    pub(crate) fn on_commit(&mut self, ctx: &mut Ctx<'_, '_, S>, client: ClientId, cc: Cc<Out<S>>) {
        if self.status != Status::Normal || cc.view != self.view || self.confirming.is_some() {
            ctx.ignore("commit: not the current view");
            return;
        }
        if cc.seq <= self.stable.seq {
            ctx.ignore("commit: already final");
            return;
        }
        let verified = verify_cc(&self.params, &cc, &mut verifier(ctx));
        if let Err(reason) = verified {
            ctx.ignore(reason);
            return;
        }
        if cc.seq > self.tip() {
            let tip = self.tip();
            ctx.send(
                self.primary(),
                Msg::FillHole {
                    view: self.view,
                    from_seq: tip + 1,
                    to_seq: cc.seq,
                },
            );
            ctx.ignore("commit: log too short (asked to fill the hole)");
            return;
        }
        if self.hist_at(cc.seq) != Some(cc.hist) {
            ctx.ignore("commit: conflicts with the log");
            self.send_ihtp(ctx);
            return;
        }
        let Some(sequence) = self
            .log
            .get(&cc.seq)
            .and_then(|entry| entry.request_id())
            .filter(|(owner, _)| *owner == client)
            .map(|(_, sequence)| sequence)
        else {
            ctx.ignore("commit: not this client's request");
            return;
        };
        let (view, seq, hist) = (cc.view, cc.seq, cc.hist);
        self.store_cc(ctx, cc);
        ctx.reply(
            client,
            FastReply::LocalCommit {
                view,
                seq,
                hist,
                sequence,
            },
        );
    }

    /// Keeps a verified CC that matches the log (with its chain), Pareto-maximal by
    /// (view, seq), durably.
    pub(crate) fn store_cc(&mut self, ctx: &mut Ctx<'_, '_, S>, cc: Cc<Out<S>>) {
        let dominated = self
            .ccs
            .iter()
            .any(|held| held.cc.view >= cc.view && held.cc.seq >= cc.seq);
        if dominated {
            return;
        }
        let chain: Vec<Link<S::Command>> = self
            .log
            .range(..=cc.seq)
            .map(|(seq, entry)| Link {
                seq: *seq,
                digest: entry.order.value.digest,
                request: entry.request.clone(),
            })
            .collect();
        self.ccs
            .retain(|held| !(held.cc.view <= cc.view && held.cc.seq <= cc.seq));
        self.ccs.push(CcEvidence { cc, chain });
        if self.ccs.len() > CCS_MAX {
            self.ccs.sort_by_key(|held| (held.cc.view, held.cc.seq));
            self.ccs.remove(0);
        }
        self.persist_ccs(ctx);
        ctx.sync();
    }

    /// History digest of the entry at `seq`, for tests and the adversary.
    pub fn hist_of(&self, seq: u64) -> Option<Digest> {
        self.hist_at(seq)
    }
}
