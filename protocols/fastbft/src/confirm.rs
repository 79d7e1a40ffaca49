//! VIEW-CONFIRM (brief sections 2 and 8): after installing a NEW-VIEW a replica announces
//! where the installed history ends, `(view, seq, hist)`, to every replica, and resumes the
//! view (orders, answers clients, checkpoints) only once `Qs` replicas, itself included,
//! announced the same end.
//!
//! Why: replicas recompute every NEW-VIEW, but a Byzantine primary can still sign two valid
//! NEW-VIEWs for one view, built from different sets of `Qvc` VIEW-CHANGEs, and give them to
//! different replicas. Two `Qs` sets share a correct replica, which confirms one end per
//! view, so at most one history of a view is confirmed and only it is ever answered in or
//! extended. A replica that installed the other one and sees `Qs` replicas confirm a
//! different end is sent their NEW-VIEW and installs it; a view that does not confirm in
//! time is complained about (IHTP), like a primary that does not order.
//!
//! VIEW-CONFIRM travels on the authenticated channel (a MAC would do): it is counted, never
//! forwarded as a proof. A replica answers an announcement of its current view with its
//! own (`answer = true`; answers are never answered), so a replica that installs late still
//! hears from those that confirmed before it.

use std::collections::BTreeMap;

use dst_sim::{Digest, NodeId, StateMachine};

use crate::durable::{self, write_record};
use crate::msg::Msg;
use crate::replica::{Ctx, FastBft, Status, Timer};

/// An installed view waiting for confirmation.
#[derive(Clone, Debug)]
pub(crate) struct Confirming {
    pub view: u64,
    /// Where the installed NEW-VIEW history ends.
    pub end: (u64, Digest),
    /// The end each replica announced for this view (this replica's own included).
    pub votes: BTreeMap<NodeId, (u64, Digest)>,
}

/// What `fb/confirm` holds: the view, the end of its NEW-VIEW history, and whether it was
/// confirmed.
pub(crate) type ConfirmRecord = (u64, u64, Digest, bool);

impl<S: StateMachine> FastBft<S> {
    /// After installing the NEW-VIEW of the current view that ends at `end`: wait for `Qs`
    /// matching confirmations (the caller persists and syncs, then calls
    /// [`Self::announce_confirm`]).
    pub(crate) fn start_confirming(&mut self, ctx: &mut Ctx<'_, '_, S>, end: (u64, Digest)) {
        // Replacing another NEW-VIEW of this view keeps the announcements heard so far.
        let mut votes = match self.confirming.take() {
            Some(previous) if previous.view == self.view => previous.votes,
            _ => BTreeMap::new(),
        };
        votes.insert(self.id, end);
        self.confirming = Some(Confirming {
            view: self.view,
            end,
            votes,
        });
        self.new_view_sent.clear();
        let record: ConfirmRecord = (self.view, end.0, end.1, false);
        write_record(ctx, durable::CONFIRM_KEY, &record);
    }

    /// Broadcasts this replica's VIEW-CONFIRM and starts the confirmation timer.
    pub(crate) fn announce_confirm(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if self.confirming.is_none() {
            return;
        }
        self.retransmit_confirm(ctx);
        if let Some(timer) = self.confirm_timer.take() {
            ctx.cancel_timer(timer);
        }
        let timeout_ns = self.view_change_timeout_ns();
        self.confirm_timer = Some(ctx.set_timer(timeout_ns, Timer::Confirm { view: self.view }));
        self.check_confirmed(ctx);
    }

    /// The end this replica installed for its current view, if it installed one.
    fn own_end(&self) -> Option<(u64, Digest)> {
        match &self.confirming {
            Some(confirming) => Some(confirming.end),
            None => self.confirmed_end,
        }
    }

    /// Upon VIEW-CONFIRM from `from`.
    pub(crate) fn on_view_confirm(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        from: NodeId,
        view: u64,
        end: (u64, Digest),
        answer: bool,
    ) {
        if view < self.view {
            self.help_laggard(ctx, from, view);
            ctx.ignore("view confirm: old view");
            return;
        }
        let Some(own) = self.own_end().filter(|_| view == self.view) else {
            ctx.ignore("view confirm: not the installed view");
            return;
        };
        if self.status != Status::Normal {
            ctx.ignore("view confirm: view change under way");
            return;
        }
        if !answer {
            let (seq, hist) = own;
            ctx.send(
                from,
                Msg::ViewConfirm {
                    view,
                    seq,
                    hist,
                    answer: true,
                },
            );
        }
        if let Some(confirming) = self.confirming.as_mut() {
            confirming.votes.insert(from, end);
            self.check_confirmed(ctx);
        } else if end != own && self.new_view_sent.insert(from) {
            // It installed another NEW-VIEW of this view: send the confirmed one (once).
            if let Some(new_view) = &self.last_new_view {
                ctx.send(from, Msg::NewView(new_view.clone()));
            }
        }
    }

    /// True if `Qs` replicas announced `end` for the current view.
    pub(crate) fn confirmed_by_quorum(&self, end: (u64, Digest)) -> bool {
        self.confirming.as_ref().is_some_and(|confirming| {
            let matching = confirming
                .votes
                .values()
                .filter(|vote| **vote == end)
                .count();
            matching >= self.params.slow_quorum()
        })
    }

    fn check_confirmed(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let Some(confirming) = &self.confirming else {
            return;
        };
        if self.confirmed_by_quorum(confirming.end) {
            self.on_confirmed(ctx);
        }
    }

    /// The view is confirmed: resume it. Answer the carried entries' clients, vote for
    /// their checkpoints and take the ORDER-REQs that arrived meanwhile.
    fn on_confirmed(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let Some(confirming) = self.confirming.take() else {
            return;
        };
        self.confirmed_end = Some(confirming.end);
        self.failed_view_changes = 0;
        if let Some(timer) = self.confirm_timer.take() {
            ctx.cancel_timer(timer);
        }
        let record: ConfirmRecord = (self.view, confirming.end.0, confirming.end.1, true);
        write_record(ctx, durable::CONFIRM_KEY, &record);
        self.announce_installed(ctx, self.view);
        let seqs: Vec<u64> = self.log.keys().copied().collect();
        let interval = self.config.checkpoint_interval;
        for seq in seqs {
            self.resend_spec(ctx, seq);
            if seq % interval == 0 && self.snapshots.contains_key(&seq) {
                self.send_checkpoint(ctx, seq);
            }
        }
        self.resume_buffer(ctx);
    }

    /// The view did not confirm in time: complain about it, and keep complaining.
    pub(crate) fn on_confirm_timeout(&mut self, ctx: &mut Ctx<'_, '_, S>, view: u64) {
        self.confirm_timer = None;
        if view != self.view || self.confirming.is_none() || self.status != Status::Normal {
            return;
        }
        self.failed_view_changes += 1;
        self.send_ihtp(ctx);
        if self.status == Status::Normal && self.confirming.is_some() {
            let timeout_ns = self.view_change_timeout_ns();
            self.confirm_timer = Some(ctx.set_timer(timeout_ns, Timer::Confirm { view }));
        }
    }

    /// Sends (or, on ticks while it waits, resends) this replica's VIEW-CONFIRM.
    pub(crate) fn retransmit_confirm(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        if let Some(confirming) = &self.confirming {
            let (seq, hist) = confirming.end;
            ctx.broadcast(Msg::ViewConfirm {
                view: self.view,
                seq,
                hist,
                answer: false,
            });
        }
    }

    /// After a restart: an installed view that was not confirmed waits again.
    pub(crate) fn recover_confirm(&mut self, record: Option<ConfirmRecord>) {
        let Some((view, seq, hist, confirmed)) = record else {
            return;
        };
        if view != self.view || self.status != Status::Normal {
            return;
        }
        if confirmed {
            self.confirmed_end = Some((seq, hist));
        } else {
            let mut votes = BTreeMap::new();
            votes.insert(self.id, (seq, hist));
            self.confirming = Some(Confirming {
                view,
                end: (seq, hist),
                votes,
            });
        }
    }
}
