//! A simulated crash-fault-tolerant client, for any protocol speaking the [`crate::api`]
//! types.
//!
//! Rules:
//! - One request outstanding at a time. A new request gets the next sequence number
//!   (1, 2, ...); every retry of it carries the same `(client, sequence)`, so client sessions
//!   apply it at most once.
//! - Upon sending a new request: record `Invoke` (only at the first send) and send it to the
//!   believed leader, or to a random replica when none is known.
//! - Upon `Done` for the outstanding sequence: record `Complete`, remember the sender as the
//!   leader, ask the workload for the next command.
//! - Upon `Redirect { leader: Some(l) }`: resend to `l` (at once the first time in a row,
//!   after a back-off when redirects keep coming, so two confused replicas cannot make the
//!   client spin). Upon `Redirect { leader: None }`: back off, then try the next replica.
//! - Upon the attempt's timeout: resend to the believed leader if it was not the silent one,
//!   else to the next replica in id order.
//! - After `timeouts_max` unanswered attempts, or `give_up_ns` since the first send: record
//!   `Abandon` (the request may or may not take effect) and move on. Redirects do not count
//!   as timeouts: a cluster electing a leader answers quickly, and giving up then would only
//!   blur the history.
//!
//! Patience, `min(give_up_ns, timeouts_max * attempt_timeout_ns)` (10 s by default), should be
//! at least the liveness oracle's bound: a request abandoned before its liveness deadline is
//! left unjudged.
//! - Replies for other sequences and timers of earlier attempts are ignored.

use std::marker::PhantomData;

use dst_sim::{Client, ClientCtx, Node, NodeId, TimerId, MS, SEC};

use crate::api::{Observation, Reply, Request};
use crate::workload::Workload;

/// Retry policy of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one attempt waits for a reply.
    pub attempt_timeout_ns: u64,
    /// Unanswered attempts of one request before abandoning it.
    pub timeouts_max: u32,
    /// Time since the first send after which the request is abandoned.
    pub give_up_ns: u64,
    /// Wait before retrying after a redirect that does not help.
    pub redirect_backoff_ns: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempt_timeout_ns: 100 * MS,
            timeouts_max: 100,
            give_up_ns: 10 * SEC,
            redirect_backoff_ns: 10 * MS,
        }
    }
}

/// What a client counted, for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub invoked: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub retries: u64,
    pub redirects: u64,
    /// Replies for requests no longer outstanding.
    pub stale_replies: u64,
    /// Leader hints naming no replica of the cluster (ignored).
    pub bad_hints: u64,
}

/// Timer payload of [`SimClient`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientTimer {
    /// Think time is over: send the queued command.
    Think,
    /// Attempt `attempt` of request `sequence` timed out.
    Retry { sequence: u64, attempt: u32 },
    /// The back-off after a redirect of attempt `attempt` of request `sequence` ended.
    Backoff { sequence: u64, attempt: u32 },
}

/// The request in flight.
#[derive(Clone, Debug)]
struct Outstanding<C> {
    sequence: u64,
    command: C,
    first_sent_ns: u64,
    /// Sends so far (first send included); names the live timer.
    attempts: u32,
    /// Attempts that timed out.
    // invariant: timeouts <= timeouts_max
    timeouts: u32,
    target: NodeId,
    timer: TimerId,
    redirects_in_a_row: u32,
}

/// A simulated client driving workload `W` against replicas of type `N`.
pub struct SimClient<N, W: Workload> {
    config: ClientConfig,
    workload: W,
    next_sequence: u64,
    outstanding: Option<Outstanding<W::Command>>,
    /// A command drawn from the workload, waiting for its think time.
    queued: Option<W::Command>,
    leader_hint: Option<NodeId>,
    workload_finished: bool,
    stats: ClientStats,
    _node: PhantomData<fn() -> N>,
}

impl<N, W: Workload> SimClient<N, W> {
    /// A client running `workload` with retry policy `config`.
    pub fn new(config: ClientConfig, workload: W) -> Self {
        assert!(
            config.timeouts_max >= 1,
            "a client must wait for at least one attempt"
        );
        assert!(
            config.attempt_timeout_ns > 0,
            "attempt timeout must be positive"
        );
        SimClient {
            config,
            workload,
            next_sequence: 1,
            outstanding: None,
            queued: None,
            leader_hint: None,
            workload_finished: false,
            stats: ClientStats::default(),
            _node: PhantomData,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The workload (to inspect what it saw).
    pub fn workload(&self) -> &W {
        &self.workload
    }
}

impl<N, W> SimClient<N, W>
where
    N: Node<
        Request = Request<W::Command>,
        Reply = Reply<W::Output>,
        Obs = Observation<W::Command, W::Output>,
    >,
    W: Workload,
    W::Command: Clone,
    W::Output: Clone,
{
    /// Draws the next command and sends it now or after its think time.
    fn advance(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        debug_assert!(
            self.outstanding.is_none(),
            "advance with a request in flight"
        );
        match self.workload.next_step(ctx) {
            None => self.workload_finished = true,
            Some(step) if step.think_ns == 0 => self.send_new(ctx, step.command),
            Some(step) => {
                self.queued = Some(step.command);
                ctx.set_timer(step.think_ns, ClientTimer::Think);
            }
        }
    }

    fn send_new(&mut self, ctx: &mut ClientCtx<'_, Self>, command: W::Command) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.stats.invoked += 1;
        ctx.observe(Observation::Invoke {
            client: ctx.id(),
            sequence,
            command: command.clone(),
        });
        let target = match self.leader_hint {
            Some(leader) => leader,
            None => NodeId(ctx.random_below(u64::from(ctx.cluster_size())) as u32),
        };
        let request = Request {
            client: ctx.id(),
            sequence,
            command: command.clone(),
        };
        ctx.send(target, request);
        let timer = ctx.set_timer(
            self.config.attempt_timeout_ns,
            ClientTimer::Retry {
                sequence,
                attempt: 1,
            },
        );
        self.outstanding = Some(Outstanding {
            sequence,
            command,
            first_sent_ns: ctx.now_ns(),
            attempts: 1,
            timeouts: 0,
            target,
            timer,
            redirects_in_a_row: 0,
        });
    }

    /// Sends the outstanding request again, to `target`, or abandons it past the limits.
    fn resend(&mut self, ctx: &mut ClientCtx<'_, Self>, target: NodeId) {
        let Some(mut outstanding) = self.outstanding.take() else {
            return;
        };
        ctx.cancel_timer(outstanding.timer);
        let elapsed_ns = ctx.now_ns().saturating_sub(outstanding.first_sent_ns);
        if outstanding.timeouts >= self.config.timeouts_max || elapsed_ns >= self.config.give_up_ns
        {
            self.stats.abandoned += 1;
            ctx.observe(Observation::Abandon {
                client: ctx.id(),
                sequence: outstanding.sequence,
            });
            self.advance(ctx);
            return;
        }
        outstanding.attempts += 1;
        outstanding.target = target;
        self.stats.retries += 1;
        ctx.send(
            target,
            Request {
                client: ctx.id(),
                sequence: outstanding.sequence,
                command: outstanding.command.clone(),
            },
        );
        outstanding.timer = ctx.set_timer(
            self.config.attempt_timeout_ns,
            ClientTimer::Retry {
                sequence: outstanding.sequence,
                attempt: outstanding.attempts,
            },
        );
        self.outstanding = Some(outstanding);
    }

    /// Arms a back-off: the retry fires after `redirect_backoff_ns` instead of the timeout.
    fn back_off(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        let backoff_ns = self.config.redirect_backoff_ns;
        if let Some(outstanding) = self.outstanding.as_mut() {
            ctx.cancel_timer(outstanding.timer);
            outstanding.timer = ctx.set_timer(
                backoff_ns,
                ClientTimer::Backoff {
                    sequence: outstanding.sequence,
                    attempt: outstanding.attempts,
                },
            );
        }
    }

    fn on_done(&mut self, ctx: &mut ClientCtx<'_, Self>, from: NodeId, output: W::Output) {
        let Some(outstanding) = self.outstanding.take() else {
            return;
        };
        ctx.cancel_timer(outstanding.timer);
        self.leader_hint = Some(from);
        self.stats.completed += 1;
        ctx.observe(Observation::Complete {
            client: ctx.id(),
            sequence: outstanding.sequence,
            output: output.clone(),
        });
        self.workload.observe(&outstanding.command, &output);
        self.advance(ctx);
    }

    fn on_redirect(&mut self, ctx: &mut ClientCtx<'_, Self>, from: NodeId, leader: Option<NodeId>) {
        self.stats.redirects += 1;
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        outstanding.redirects_in_a_row += 1;
        let first_in_a_row = outstanding.redirects_in_a_row == 1;
        // A hint is only a replica's belief, possibly garbled: never follow it off the cluster.
        let leader = match leader {
            Some(hint) if hint.0 >= ctx.cluster_size() => {
                self.stats.bad_hints += 1;
                None
            }
            other => other,
        };
        match leader {
            Some(leader) if leader != from => {
                self.leader_hint = Some(leader);
                if first_in_a_row {
                    self.resend(ctx, leader);
                } else {
                    self.back_off(ctx);
                }
            }
            _ => {
                self.leader_hint = None;
                self.back_off(ctx);
            }
        }
    }

    /// True when a timer names the attempt in flight (older timers are ignored).
    fn is_live(&self, sequence: u64, attempt: u32) -> bool {
        self.outstanding.as_ref().is_some_and(|outstanding| {
            outstanding.sequence == sequence && outstanding.attempts == attempt
        })
    }

    /// Sends the outstanding request again, where [`Self::retry_target`] says.
    fn retry(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        let Some(failed) = self
            .outstanding
            .as_ref()
            .map(|outstanding| outstanding.target)
        else {
            return;
        };
        let target = self.retry_target(ctx, failed);
        self.resend(ctx, target);
    }

    /// Where a retry goes: the believed leader unless it is the one that just failed us,
    /// else the next replica in id order.
    fn retry_target(&mut self, ctx: &ClientCtx<'_, Self>, failed: NodeId) -> NodeId {
        match self.leader_hint {
            Some(leader) if leader != failed => leader,
            _ => {
                self.leader_hint = None;
                NodeId((failed.0 + 1) % ctx.cluster_size().max(1))
            }
        }
    }
}

impl<N, W> Client for SimClient<N, W>
where
    N: Node<
        Request = Request<W::Command>,
        Reply = Reply<W::Output>,
        Obs = Observation<W::Command, W::Output>,
    >,
    W: Workload,
    W::Command: Clone,
    W::Output: Clone,
{
    type Node = N;
    type Timer = ClientTimer;

    fn on_start(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        self.advance(ctx);
    }

    fn on_reply(&mut self, ctx: &mut ClientCtx<'_, Self>, from: NodeId, reply: Reply<W::Output>) {
        let current = self
            .outstanding
            .as_ref()
            .map(|outstanding| outstanding.sequence);
        match reply {
            Reply::Done { sequence, output } if Some(sequence) == current => {
                self.on_done(ctx, from, output)
            }
            Reply::Redirect { sequence, leader } if Some(sequence) == current => {
                self.on_redirect(ctx, from, leader)
            }
            Reply::Done { .. } | Reply::Redirect { .. } => self.stats.stale_replies += 1,
        }
    }

    fn on_timer(&mut self, ctx: &mut ClientCtx<'_, Self>, timer: ClientTimer) {
        match timer {
            ClientTimer::Think => {
                if let Some(command) = self.queued.take() {
                    self.send_new(ctx, command);
                }
            }
            ClientTimer::Retry { sequence, attempt } => {
                if self.is_live(sequence, attempt) {
                    if let Some(outstanding) = self.outstanding.as_mut() {
                        outstanding.timeouts += 1;
                        outstanding.redirects_in_a_row = 0;
                    }
                    self.retry(ctx);
                }
            }
            ClientTimer::Backoff { sequence, attempt } => {
                if self.is_live(sequence, attempt) {
                    self.retry(ctx);
                }
            }
        }
    }

    fn pending(&self) -> usize {
        usize::from(self.outstanding.is_some())
    }

    fn is_done(&self) -> bool {
        self.workload_finished && self.outstanding.is_none() && self.queued.is_none()
    }
}
