//! # PBFT (Castro and Liskov, OSDI 1999 / TOCS 2002) as a sans-IO [`dst_sim::Node`]
//!
//! [`Pbft<S>`] replicates any [`dst_sim::StateMachine`] `S` (wrapped in
//! [`dst_protocols::Sessions`] for exactly-once) among `n = 3f + 1` replicas of which at most
//! `f` are Byzantine. Clients send requests signed by themselves
//! ([`ClientRequest`]) and accept a result once `f + 1` replicas replied `Done` with the same
//! output (`dst_protocols::bft_client`). Every protocol message is signed by its author
//! ([`Statement`]s, certificates of them); every certificate received is verified, never
//! trusted.
//!
//! ## Rules ("upon receiving ...")
//!
//! Notation: view `v` has primary `v mod n` (in the rotation order drawn from `leader_order`); `h` is the stable checkpoint's sequence number
//! (low water mark), `H = h + window` the high water mark.
//!
//! - Upon a client request signed by its client: if the session table executed it, reply the
//!   cached output; otherwise hold it as pending (one per client, the latest). The primary
//!   assigns the next sequence number `n <= H` to each pending request not already in its
//!   log, persists the pre-prepare, and broadcasts PRE-PREPARE(v, n, d) with the request.
//!   A backup forwards the request to the primary and arms its view-change timer.
//! - Upon PRE-PREPARE(v, n, d) signed by the primary of the current view `v` with `h < n <=
//!   H`, a body whose digest is `d` and whose client signature verifies (or no body and the
//!   null digest), and no other pre-prepare accepted for `(v, n)`: persist it and sync, then
//!   broadcast PREPARE(v, n, d).
//! - Upon PREPARE / COMMIT of the current view within the water marks: keep the first vote
//!   per signer. A prepare from the primary is ignored.
//! - prepared(n): the pre-prepare and `2f` matching prepares from distinct backups. Then
//!   persist the prepared certificate and sync, then broadcast COMMIT(v, n, d).
//! - committed-local(n): prepared and `2f + 1` matching commits from distinct replicas.
//!   Committed slots execute in sequence order; each execution reports `Commit` then `Apply`
//!   and replies `Done` to the client (every replica replies).
//! - After executing `n` with `n mod K == 0`: persist the service snapshot, sync, broadcast
//!   CHECKPOINT(n, digest of the snapshot). Upon `2f + 1` matching checkpoints for `n > h`:
//!   the checkpoint is stable (`h = n`), persisted with its proof; the log, certificates,
//!   checkpoint votes and older snapshots below `h` are discarded.
//! - Every status interval: broadcast STATUS(view, last executed, h) and retransmit own
//!   votes of uncommitted slots (or the VIEW-CHANGE). Upon STATUS of a replica behind: send
//!   the stable checkpoint proof if its `h` is lower, the stable snapshot with its proof if
//!   it executed less than `h`, committed certificates
//!   (`2f + 1` commits and the body) for the next slots it lacks, and the NEW-VIEW of the
//!   current view if it lags a view.
//! - Upon a state transfer: verify the checkpoint proof, the snapshot's digest against it,
//!   and that it decodes; adopt it as the executed state and the stable checkpoint.
//! - Upon a committed certificate for the next slots: verify it and execute.
//!
//! View change:
//! - The view-change timer runs while a request this replica holds is not executed (the
//!   oldest waiting one; executing it re-arms for the next). On expiry in view `v`, or on
//!   `f + 1` valid VIEW-CHANGEs for views above the current one (join the smallest), move to
//!   `v' > v`: persist the view and sync, then broadcast VIEW-CHANGE(v', h, checkpoint proof,
//!   P) where P holds per slot above `h` the prepared certificate of the highest view. Stop
//!   accepting messages of lower views.
//! - With `2f + 1` VIEW-CHANGEs for `v'`, arm the timer with `timeout * 2^attempt` (capped);
//!   if it expires before a NEW-VIEW, move to `v' + 1`.
//! - While changing to `v'`, retransmit the VIEW-CHANGE every status interval, and also send
//!   one for `v' - 1` (if above the last installed view): replicas still gathering a quorum
//!   there could otherwise wait forever for one that jumped ahead (f + 1 rule) or lost its
//!   earlier VIEW-CHANGE in a crash. It carries the current P set, and the sender never
//!   enters that lower view, so it is as safe as any VIEW-CHANGE.
//! - The primary of `v'`, upon `2f + 1` valid VIEW-CHANGEs (its own included): compute
//!   `min_s` (latest stable checkpoint among them) and `max_s` (highest prepared slot); for
//!   every `n` in `(min_s, max_s]` issue PRE-PREPARE(v', n, d) for the certificate of the
//!   highest view, or a null request if none; persist, enter `v'`, broadcast NEW-VIEW.
//! - Upon NEW-VIEW for `v' >=` the current view from its primary: verify every VIEW-CHANGE
//!   (signatures, checkpoint proof, every certificate), recompute the O set and require it to
//!   match exactly; adopt the checkpoint, persist the pre-prepares and the view, enter `v'`
//!   (report `NewView`), broadcast PREPAREs for the O set.
//!
//! Durable safety data (see [`durable`]): the view (before VIEW-CHANGE), accepted
//! pre-prepares (before PREPARE), prepared certificates (before COMMIT), own checkpoint
//! snapshots (before CHECKPOINT) and the stable checkpoint. A replica that finds a promise
//! corrupt on disk withholds what depends on it (votes for a damaged slot, view changes
//! until the stable checkpoint passes the slot) or, if its view or checkpoint is lost, stays
//! silent. A VIEW-CHANGE may carry a committed certificate in place of a prepared
//! certificate lost to damage; the new-view computation gives a committed slot its
//! committed request (a committed value is the only one any later view may order there).
//!
//! ## Invariants (checked after every step)
//! - every log slot lies within `(h, H]`; own snapshots kept are at or above `h`;
//! - every committed slot carries `2f + 1` commits for that slot;
//! - pending requests stay within their bound.
//!
//! Across replicas, the oracles check agreement (one entry per slot), validity,
//! exactly-once, linearizability and liveness.

mod adversary;
pub mod durable;
pub mod message;
mod recovery;
mod replica;
mod view_change;

use dst_protocols::{Observation, Reply};
use dst_sim::{ClientId, Node, NodeCtx, NodeId, StateMachine};

pub use adversary::other_output;
pub use message::{
    ClientRequest, CommitProof, Message, NewView, Phase, PreparedCert, Quorums, Seq, StateTransfer,
    Statement, Status, View, ViewChange,
};
pub use replica::{Pbft, PbftTimer};

/// Design options of PBFT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbftConfig {
    /// Take a checkpoint every this many sequence numbers (K).
    pub checkpoint_interval: u64,
    /// Sequence numbers accepted above the stable checkpoint (`H - h`).
    pub window: u64,
    /// Base view-change timeout.
    pub view_change_timeout_ms: u64,
    /// Cap of the exponent of the view-change backoff (`timeout * 2^min(attempt, cap)`).
    pub view_change_backoff_max: u32,
    /// Period of status broadcasts and retransmissions.
    pub status_interval_ms: u64,
    /// Committed certificates sent per status to a replica behind.
    pub catch_up_max: u64,
    /// Pending client requests held (one per client).
    pub pending_max: usize,
    /// Seed of the primary rotation order (`dst_protocols::leaders`); 0: the primary of view
    /// `v` is `v mod n`. Twins runs draw it, so twinned replicas lead early or late.
    pub leader_order: u64,
}

impl Default for PbftConfig {
    fn default() -> Self {
        PbftConfig {
            checkpoint_interval: 32,
            window: 64,
            view_change_timeout_ms: 300,
            view_change_backoff_max: 4,
            status_interval_ms: 100,
            catch_up_max: 16,
            pending_max: 1_024,
            leader_order: 0,
        }
    }
}

/// The design options, for `--option` and `dst compare --variant`.
impl dst_protocols::Configurable for PbftConfig {
    fn options(&self) -> dst_protocols::OptionList {
        PbftConfig::options(self)
    }
    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        PbftConfig::set_option(self, name, value)
    }
}

impl PbftConfig {
    /// Every named design option with its value.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("checkpoint_interval", self.checkpoint_interval.to_string()),
            ("window", self.window.to_string()),
            (
                "view_change_timeout_ms",
                self.view_change_timeout_ms.to_string(),
            ),
            (
                "view_change_backoff_max",
                self.view_change_backoff_max.to_string(),
            ),
            ("status_interval_ms", self.status_interval_ms.to_string()),
            ("catch_up_max", self.catch_up_max.to_string()),
            ("pending_max", self.pending_max.to_string()),
            ("leader_order", self.leader_order.to_string()),
        ]
    }

    /// Sets one option by name; an unknown name or a bad value is an error.
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        let number = |low: u64, high: u64| -> Result<u64, String> {
            let parsed: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: {value:?} is not a non-negative integer"))?;
            if parsed < low || parsed > high {
                return Err(format!("{name}: {parsed} is outside {low}..={high}"));
            }
            Ok(parsed)
        };
        let mut next = self.clone();
        match name {
            "checkpoint_interval" => next.checkpoint_interval = number(1, 4_096)?,
            "window" => next.window = number(1, 16_384)?,
            "view_change_timeout_ms" => next.view_change_timeout_ms = number(1, 600_000)?,
            "view_change_backoff_max" => next.view_change_backoff_max = number(0, 16)? as u32,
            "status_interval_ms" => next.status_interval_ms = number(1, 600_000)?,
            "catch_up_max" => next.catch_up_max = number(1, 4_096)?,
            "pending_max" => next.pending_max = number(1, 1 << 20)? as usize,
            "leader_order" => next.leader_order = number(0, u64::MAX)?,
            other => {
                let known: Vec<&str> = self.options().iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown PBFT option '{other}' (expected one of: {})",
                    known.join(", ")
                ));
            }
        }
        if next.window < next.checkpoint_interval {
            return Err(format!(
                "window ({}) must be at least checkpoint_interval ({})",
                next.window, next.checkpoint_interval
            ));
        }
        *self = next;
        Ok(())
    }
}

impl<S: StateMachine> Node for Pbft<S> {
    type Msg = Message<S::Command>;
    type Timer = PbftTimer;
    type Request = ClientRequest<S::Command>;
    type Reply = Reply<S::Output>;
    type Obs = Observation<S::Command, S::Output>;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.init(ctx);
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.init(ctx);
        self.recover(ctx);
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        if self.mute {
            return ctx.ignore("mute: storage lost a promise");
        }
        match msg {
            Message::Request(request) => self.on_forwarded_request(ctx, request),
            Message::PrePrepare { statement, request } => {
                self.on_pre_prepare(ctx, statement, request)
            }
            Message::Prepare(vote) => self.on_vote(ctx, vote, Phase::Prepare),
            Message::Commit(vote) => self.on_vote(ctx, vote, Phase::Commit),
            Message::Checkpoint(vote) => self.on_checkpoint(ctx, vote),
            Message::ViewChange(change) => self.on_view_change(ctx, from, change),
            Message::NewView(new_view) => self.on_new_view(ctx, new_view),
            Message::Status(status) => self.on_status(ctx, from, status),
            Message::CommitProof(proof) => self.on_commit_proof(ctx, proof),
            Message::State(transfer) => self.on_state_transfer(ctx, transfer),
        }
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Self::Timer) {
        match timer {
            PbftTimer::Status => self.on_status_timer(ctx),
            PbftTimer::ViewChange { epoch } if !self.mute => self.on_view_change_timer(ctx, epoch),
            PbftTimer::ViewChange { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        if self.mute {
            return ctx.ignore("mute: storage lost a promise");
        }
        self.on_client_request(ctx, client, request);
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.invariants()
    }

    fn footprint_bytes(&self) -> u64 {
        self.footprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_reject_bad_input() {
        let mut config = PbftConfig::default();
        for (name, value) in PbftConfig::default().options() {
            config.set_option(name, &value).expect("own value accepted");
        }
        assert_eq!(config, PbftConfig::default());
        config
            .set_option("checkpoint_interval", "8")
            .expect("valid");
        assert_eq!(config.checkpoint_interval, 8);
        assert!(config.set_option("nonsense", "1").is_err());
        assert!(config.set_option("window", "-1").is_err());
        assert!(config.set_option("window", "4").is_err(), "window below K");
        assert!(config.set_option("checkpoint_interval", "0").is_err());
        assert_eq!(
            config.checkpoint_interval, 8,
            "a rejected value changed nothing"
        );
    }
}
