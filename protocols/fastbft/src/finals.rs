//! Reports for slots skipped by a state transfer.
//!
//! A replica reports `Commit` and `Apply` for a slot when the slot becomes final at it. A
//! replica whose log does not reach a stable checkpoint installs the checkpoint's snapshot
//! and skips the slots between its old checkpoint and the new one; the snapshot alone does
//! not say which entry each slot held. So every replica keeps its final entries on disk
//! (the log records) for [`FastBft::archive_slots`] slots below its stable checkpoint, and
//! a STATE-REPLY carries those above the asker's checkpoint (as of its request). The asker
//! believes them only if they chain from its own checkpoint's history digest to the proof's
//! (collision resistance: the `Qs`-signed proof pins every entry), re-executes them from its
//! old stable state for the per-slot state digests, and reports each slot once. If the
//! first reply's entries do not do, the gap is kept (in memory) and filled from another
//! STATE-REPLY for the same checkpoint (the asker asks `f + 1` replicas).
//!
//! Still unreported, and why: a sender that no longer holds every skipped slot (the asker
//! fell more than the archive behind, or a record was lost to a storage fault) sends none;
//! a replica that crashes before the gap is filled forgets it; every reply may be lost.
//! That is sound for the oracles: agreement compares the slots a node reports, and
//! `committers_required` stays at one node. The crate's seeded runs assert that no honest
//! replica leaves a slot unreported under the `none`, `light`, `heavy` and `corruption`
//! profiles (200 seeds each checked).

use dst_protocols::{command_digest, Observation, Sessions};
use dst_sim::{Digest, StateMachine};

use crate::durable::{self, read_record, write_record};
use crate::msg::{entry_digest, Order, StableProof};
use crate::replica::{execute, Ctx, FastBft};

impl<S: StateMachine> FastBft<S> {
    /// How many final slots below the stable checkpoint stay on disk: two windows, since a
    /// replica asks for state when ORDER-REQs arrive a window beyond its checkpoint, so it
    /// typically lacks a little more than one window.
    pub(crate) fn archive_slots(&self) -> u64 {
        2 * self.config.window()
    }

    /// The archived final entries of slots `have + 1 ..= stable`, or none if any is missing.
    pub(crate) fn archived_finals(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        have: u64,
    ) -> Vec<Order<S::Command>> {
        let stable = self.stable.seq;
        if have >= stable || stable - have > self.archive_slots() {
            return Vec::new();
        }
        let mut finals = Vec::new();
        for seq in have + 1..=stable {
            match read_record::<Self, Order<S::Command>>(ctx, &durable::log_key(seq)) {
                Some(order) if order.order.value.seq == seq => finals.push(order),
                _ => return Vec::new(),
            }
        }
        finals
    }

    /// Drops every log record above the stable checkpoint (the log was found not to lead
    /// to a final checkpoint).
    pub(crate) fn forget_log_records(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let stable = self.stable.seq;
        for key in ctx.keys_with_prefix(durable::LOG_PREFIX) {
            let above = key
                .strip_prefix(durable::LOG_PREFIX)
                .and_then(|slot| slot.parse::<u64>().ok())
                .is_none_or(|slot| slot > stable);
            if above {
                let _ = ctx.delete(&key);
            }
        }
    }

    /// Before adopting `proof` by state transfer: report the skipped slots from `finals`,
    /// or remember the gap and fill it from another STATE-REPLY for the same checkpoint
    /// (the asker asks `f + 1` replicas; one may have lost an archived record).
    pub(crate) fn skip_to(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        proof: &StableProof,
        finals: &[Order<S::Command>],
    ) {
        let gap = Unreported {
            from: (self.stable.seq, self.stable.hist),
            state: self.stable_state.clone(),
            to: (proof.seq, proof.hist),
        };
        self.unreported = (!self.report_transferred(ctx, &gap, finals)).then_some(gap);
    }

    /// A STATE-REPLY for the checkpoint already installed: its entries may fill the gap.
    pub(crate) fn fill_unreported(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        proof: &StableProof,
        finals: &[Order<S::Command>],
    ) {
        let Some(gap) = self.unreported.take() else {
            return;
        };
        if gap.to != (proof.seq, proof.hist) || !self.report_transferred(ctx, &gap, finals) {
            self.unreported = Some(gap);
        }
    }

    /// If `finals` are exactly the entries of `gap`, reports them final (and archives them).
    fn report_transferred(
        &mut self,
        ctx: &mut Ctx<'_, '_, S>,
        gap: &Unreported<S>,
        finals: &[Order<S::Command>],
    ) -> bool {
        let Some(finals) = gap_entries(gap, finals) else {
            return false;
        };
        let mut state = gap.state.clone();
        for order in finals {
            let seq = order.order.value.seq;
            let request = order.request.as_ref();
            let output = execute(&mut state, request);
            let id = request.map(|request| (request.value.client, request.value.sequence));
            ctx.observe(Observation::Commit {
                node: self.id,
                slot: seq,
                request: id,
                command_digest: request.map_or(0, |request| command_digest(&request.value.command)),
            });
            ctx.observe(Observation::Apply {
                node: self.id,
                slot: seq,
                request: id,
                state_digest: state.digest(),
            });
            if let (Some((client, sequence)), Some(output)) = (id, output) {
                self.final_replies.insert(client, (sequence, output));
            }
            write_record(ctx, &durable::log_key(seq), order);
        }
        true
    }
}

/// Slots a state transfer skipped that are not reported yet: from the old checkpoint (and
/// the service state there) to the installed one.
pub(crate) struct Unreported<S: StateMachine> {
    from: (u64, Digest),
    state: Sessions<S>,
    to: (u64, Digest),
}

impl<S: StateMachine> Unreported<S> {
    /// The checkpoint the gap ends at.
    pub(crate) fn to_seq(&self) -> u64 {
        self.to.0
    }
}

/// The entries of `gap` in `finals` (which may start lower: the asker's checkpoint moved
/// after it asked), if they are consecutive slots from `gap.from` to `gap.to` whose bodies
/// match their digests and chain to the history digest there.
fn gap_entries<'f, S: StateMachine>(
    gap: &Unreported<S>,
    finals: &'f [Order<S::Command>],
) -> Option<&'f [Order<S::Command>]> {
    let ((from_seq, from_hist), (to_seq, to_hist)) = (gap.from, gap.to);
    let start = finals
        .iter()
        .position(|order| order.order.value.seq == from_seq + 1)?;
    let entries = &finals[start..];
    if to_seq.checked_sub(from_seq) != Some(entries.len() as u64) {
        return None;
    }
    let mut hist = from_hist;
    for (seq, order) in (from_seq + 1..).zip(entries) {
        let body = &order.order.value;
        if body.seq != seq || entry_digest(order.request.as_ref(), seq) != body.digest {
            return None;
        }
        hist = hist.chain(&body.digest);
    }
    (hist == to_hist).then_some(entries)
}
