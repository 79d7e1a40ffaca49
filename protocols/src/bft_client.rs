//! A simulated client for Byzantine-fault-tolerant protocols that answer with the
//! [`crate::api`] reply types (PBFT, HotStuff; FastBFT has its own client).
//!
//! A Byzantine replica may answer anything, so one reply proves nothing. Rules:
//! - One request outstanding at a time, numbered 1, 2, ...; every retry carries the same
//!   `(client, sequence)`. Each request is signed by the client (replicas relay requests, and
//!   a Byzantine primary must not be able to invent or alter one).
//! - Upon a new request: record `Invoke` and send it to the primary hint (replica 0 at first).
//! - Upon `Done { sequence, output }` for the outstanding request from replica `r`: remember
//!   `output` as `r`'s answer (a later different answer from `r` replaces it). Once
//!   `reply_quorum` distinct replicas gave the same output, record `Complete` with it: at
//!   least one of them is correct when `reply_quorum >= f + 1`.
//! - Upon `Redirect { leader: Some(l) }` with `l` in the cluster: take `l` as the primary hint
//!   for later requests (a hint only: retries go to everyone anyway).
//! - Upon the attempt's timeout: send the request to every replica (they forward it to the
//!   primary and start their view-change timers), and wait twice as long next time, up to
//!   `attempt_timeout_max_ns`.
//! - After `give_up_ns` since the first send: record `Abandon` and move on.
//!
//! The engine authenticates the sender of every reply (`from`), so replies need no
//! signature: a Byzantine replica can lie, but only as itself.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use dst_sim::{Client, ClientCtx, Node, NodeId, Signed, TimerId, MS, SEC};

use crate::api::{Observation, Reply, Request};
use crate::workload::Workload;

/// Retry and acceptance policy of a [`BftClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BftClientConfig {
    /// Matching `Done` replies from distinct replicas needed to accept a result (f + 1).
    pub reply_quorum: usize,
    /// How long the first attempt waits before the request goes to every replica.
    pub attempt_timeout_ns: u64,
    /// Cap of the doubling attempt timeout.
    pub attempt_timeout_max_ns: u64,
    /// Time since the first send after which the request is abandoned.
    pub give_up_ns: u64,
}

impl BftClientConfig {
    /// The policy for a cluster of `nodes = 3f + 1` (or more) replicas.
    pub fn for_cluster(nodes: u32) -> Self {
        let faults_max = nodes.saturating_sub(1) / 3;
        BftClientConfig {
            reply_quorum: faults_max as usize + 1,
            attempt_timeout_ns: 200 * MS,
            attempt_timeout_max_ns: 2 * SEC,
            give_up_ns: 10 * SEC,
        }
    }
}

/// Timer payload of [`BftClient`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BftClientTimer {
    /// Think time is over: send the queued command.
    Think,
    /// Attempt `attempt` of request `sequence` timed out.
    Retry { sequence: u64, attempt: u32 },
}

/// What a client counted, for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BftClientStats {
    pub invoked: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub retries: u64,
    /// Replies for requests no longer outstanding.
    pub stale_replies: u64,
    /// Replies whose output disagreed with another replica's for the same request.
    pub conflicting_replies: u64,
}

struct Outstanding<C, O> {
    sequence: u64,
    request: Signed<Request<C>>,
    first_sent_ns: u64,
    attempts: u32,
    timeout_ns: u64,
    timer: TimerId,
    // invariant: at most one answer per replica, so at most `cluster_size` entries.
    answers: BTreeMap<NodeId, O>,
}

/// A client driving workload `W` against BFT replicas of type `N`.
pub struct BftClient<N, W: Workload> {
    config: BftClientConfig,
    workload: W,
    next_sequence: u64,
    outstanding: Option<Outstanding<W::Command, W::Output>>,
    queued: Option<W::Command>,
    primary_hint: NodeId,
    workload_finished: bool,
    stats: BftClientStats,
    _node: PhantomData<fn() -> N>,
}

impl<N, W: Workload> BftClient<N, W> {
    /// A client running `workload` with policy `config`.
    pub fn new(config: BftClientConfig, workload: W) -> Self {
        assert!(
            config.reply_quorum >= 1,
            "a result needs at least one reply"
        );
        assert!(
            config.attempt_timeout_ns > 0,
            "attempt timeout must be positive"
        );
        BftClient {
            config,
            workload,
            next_sequence: 1,
            outstanding: None,
            queued: None,
            primary_hint: NodeId(0),
            workload_finished: false,
            stats: BftClientStats::default(),
            _node: PhantomData,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &BftClientStats {
        &self.stats
    }
}

impl<N, W> BftClient<N, W>
where
    N: Node<
        Request = Signed<Request<W::Command>>,
        Reply = Reply<W::Output>,
        Obs = Observation<W::Command, W::Output>,
    >,
    W: Workload,
    W::Command: Clone + serde::Serialize,
    W::Output: Clone + PartialEq,
{
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
                ctx.set_timer(step.think_ns, BftClientTimer::Think);
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
        let request = ctx.sign_value(Request {
            client: ctx.id(),
            sequence,
            command,
        });
        ctx.send(self.primary_hint, request.clone());
        let timeout_ns = self.config.attempt_timeout_ns;
        let timer = ctx.set_timer(
            timeout_ns,
            BftClientTimer::Retry {
                sequence,
                attempt: 1,
            },
        );
        self.outstanding = Some(Outstanding {
            sequence,
            request,
            first_sent_ns: ctx.now_ns(),
            attempts: 1,
            timeout_ns,
            timer,
            answers: BTreeMap::new(),
        });
    }

    fn retry(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        let Some(mut outstanding) = self.outstanding.take() else {
            return;
        };
        let elapsed_ns = ctx.now_ns().saturating_sub(outstanding.first_sent_ns);
        if elapsed_ns >= self.config.give_up_ns {
            self.stats.abandoned += 1;
            ctx.observe(Observation::Abandon {
                client: ctx.id(),
                sequence: outstanding.sequence,
            });
            self.advance(ctx);
            return;
        }
        self.stats.retries += 1;
        for replica in 0..ctx.cluster_size() {
            ctx.send(NodeId(replica), outstanding.request.clone());
        }
        outstanding.attempts += 1;
        outstanding.timeout_ns =
            (outstanding.timeout_ns * 2).min(self.config.attempt_timeout_max_ns);
        outstanding.timer = ctx.set_timer(
            outstanding.timeout_ns,
            BftClientTimer::Retry {
                sequence: outstanding.sequence,
                attempt: outstanding.attempts,
            },
        );
        self.outstanding = Some(outstanding);
    }

    fn on_done(&mut self, ctx: &mut ClientCtx<'_, Self>, from: NodeId, output: W::Output) {
        let quorum = self.config.reply_quorum;
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        if outstanding.answers.values().any(|answer| *answer != output) {
            self.stats.conflicting_replies += 1;
        }
        outstanding.answers.insert(from, output.clone());
        let matching = outstanding
            .answers
            .values()
            .filter(|answer| **answer == output)
            .count();
        if matching < quorum {
            return;
        }
        let Some(outstanding) = self.outstanding.take() else {
            return;
        };
        ctx.cancel_timer(outstanding.timer);
        self.stats.completed += 1;
        ctx.observe(Observation::Complete {
            client: ctx.id(),
            sequence: outstanding.sequence,
            output: output.clone(),
        });
        self.workload
            .observe(&outstanding.request.value.command, &output);
        self.advance(ctx);
    }
}

impl<N, W> Client for BftClient<N, W>
where
    N: Node<
        Request = Signed<Request<W::Command>>,
        Reply = Reply<W::Output>,
        Obs = Observation<W::Command, W::Output>,
    >,
    W: Workload,
    W::Command: Clone + serde::Serialize,
    W::Output: Clone + PartialEq,
{
    type Node = N;
    type Timer = BftClientTimer;

    fn on_start(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        self.advance(ctx);
    }

    fn on_reply(&mut self, ctx: &mut ClientCtx<'_, Self>, from: NodeId, reply: Reply<W::Output>) {
        let current = self.outstanding.as_ref().map(|o| o.sequence);
        match reply {
            Reply::Done { sequence, output } if Some(sequence) == current => {
                self.on_done(ctx, from, output)
            }
            Reply::Redirect {
                leader: Some(leader),
                ..
            } if leader.0 < ctx.cluster_size() => self.primary_hint = leader,
            _ => self.stats.stale_replies += 1,
        }
    }

    fn on_timer(&mut self, ctx: &mut ClientCtx<'_, Self>, timer: BftClientTimer) {
        match timer {
            BftClientTimer::Think => {
                if let Some(command) = self.queued.take() {
                    self.send_new(ctx, command);
                }
            }
            BftClientTimer::Retry { sequence, attempt } => {
                let live = self
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| o.sequence == sequence && o.attempts == attempt);
                if live {
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
