//! The FastBFT client (brief section 3): it signs each request, completes on `Qf` matching
//! SPEC-RESPONSEs (fast path), or after `Tfast` with `Qs` matching ones builds a commit
//! certificate, sends COMMIT to every replica and completes on `Qs` LOCAL-COMMITs (slow
//! path). `f + 1` matching `Final` answers (the request is below a stable checkpoint) also
//! complete it. Unanswered, it retransmits REQUEST (and COMMIT) to every replica with
//! exponential back-off and abandons after `give_up_ns`.
//!
//! Each SPEC-RESPONSE carries the primary's signed ORDER-REQ; two for one `(view, seq)`
//! with different histories are a POM (brief case 4d), which the client sends to every
//! replica at once and again with each retransmission.
//!
//! One request outstanding at a time, numbered 1, 2, ... per client (the `ts` of the brief).
//! After its workload, a client waits (at most `drain_ns`) until its last request is final at
//! `f + 1` replicas, so a run's tail becomes final before the run stops.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use dst_protocols::workload::Workload;
use dst_protocols::{Observation, Request};
use dst_sim::node::Payload;
use dst_sim::{Client, ClientCtx, Digest, Node, NodeId, Principal, Signed, MS, SEC};

use crate::config::Params;
use crate::msg::{Cc, ClientMsg, FastReply, OrderBody, SpecBody, Vote};

/// Any node a FastBFT client can talk to: the replica itself or a wrapper around it.
pub trait FastNode<C, O>:
    Node<Request = ClientMsg<C, O>, Reply = FastReply<O>, Obs = Observation<C, O>>
{
}
impl<N, C, O> FastNode<C, O> for N where
    N: Node<Request = ClientMsg<C, O>, Reply = FastReply<O>, Obs = Observation<C, O>>
{
}

/// Client timing and the cluster's `c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastBftClientConfig {
    /// Must match the replicas' `c`.
    pub c: u32,
    /// Must match the replicas' `leader_order` (who is primary of which view).
    pub leader_order: u64,
    /// `Tfast`: how long to wait for `Qf` matching responses before taking the slow path.
    pub fast_timeout_ns: u64,
    /// First retransmission delay; doubles per attempt up to the max.
    pub retry_timeout_ns: u64,
    pub retry_timeout_ns_max: u64,
    /// Abandon a request this long after its first send.
    pub give_up_ns: u64,
    /// After the workload, wait at most this long for the last request to become final.
    pub drain_ns: u64,
}

impl Default for FastBftClientConfig {
    fn default() -> Self {
        FastBftClientConfig {
            c: 0,
            leader_order: 0,
            fast_timeout_ns: 50 * MS,
            retry_timeout_ns: 150 * MS,
            retry_timeout_ns_max: SEC,
            give_up_ns: 10 * SEC,
            drain_ns: 3 * SEC,
        }
    }
}

/// Timer payload of [`FastBftClient`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientTimer {
    Think,
    Fast { sequence: u64 },
    Retry { sequence: u64, attempt: u32 },
    Drain { attempt: u32 },
}

/// Matching SPEC-RESPONSEs are grouped by this: view, slot, history and output digest.
type GroupKey = (u64, u64, Digest, Digest);
/// A group of matching SPEC-RESPONSEs.
type Group<O> = (GroupKey, Vec<Signed<SpecBody<O>>>);

struct Outstanding<C, O> {
    request: Signed<Request<C>>,
    first_sent_ns: u64,
    attempts: u32,
    fast_expired: bool,
    responses: BTreeMap<NodeId, Signed<SpecBody<O>>>,
    /// The CC sent in COMMIT and the replicas that answered LOCAL-COMMIT for it.
    commit: Option<(GroupKey, Cc<O>)>,
    local_commits: BTreeSet<NodeId>,
    finals: BTreeMap<NodeId, O>,
    /// The primary-signed ORDER-REQs the SPEC-RESPONSEs carried, one per (view, seq).
    orders: BTreeMap<(u64, u64), Signed<OrderBody>>,
    /// A POM found in them (sent to every replica, and again with each retry).
    pom: Option<(Signed<OrderBody>, Signed<OrderBody>)>,
}

/// Most ORDER-REQs a client keeps per request (a Byzantine replica may send many).
const ORDERS_MAX: usize = 64;

/// How a request completed.
struct Completion<O> {
    output: O,
    fast: bool,
    /// `(view, slot, hist)` of the speculative history it completed in.
    at: Option<(u64, u64, Digest)>,
}

/// Counters for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastBftClientStats {
    pub invoked: u64,
    pub fast: u64,
    pub slow: u64,
    pub abandoned: u64,
    pub retries: u64,
    pub bad_replies: u64,
    /// Proofs of misbehaviour found in SPEC-RESPONSEs and sent to the replicas.
    pub poms: u64,
}

/// A FastBFT client driving workload `W` against replicas of type `N` (normally
/// [`crate::FastBft`], or a Byzantine wrapper around it).
pub struct FastBftClient<N, W: Workload> {
    config: FastBftClientConfig,
    workload: W,
    next_sequence: u64,
    outstanding: Option<Outstanding<W::Command, W::Output>>,
    queued: Option<W::Command>,
    primary_hint: NodeId,
    workload_finished: bool,
    /// The last completed request, until `f + 1` replicas report it final.
    draining: Option<(Signed<Request<W::Command>>, u64)>,
    finals_seen: BTreeMap<NodeId, W::Output>,
    stats: FastBftClientStats,
    _node: PhantomData<fn() -> N>,
}

impl<N, W> FastBftClient<N, W>
where
    N: FastNode<W::Command, W::Output>,
    W: Workload,
    W::Command: Payload,
    W::Output: Payload + PartialEq,
{
    /// A client running `workload`.
    pub fn new(config: FastBftClientConfig, workload: W) -> Self {
        assert!(config.fast_timeout_ns > 0, "Tfast must be positive");
        assert!(
            config.retry_timeout_ns > 0,
            "retry timeout must be positive"
        );
        FastBftClient {
            config,
            workload,
            next_sequence: 1,
            outstanding: None,
            queued: None,
            primary_hint: NodeId(0),
            workload_finished: false,
            draining: None,
            finals_seen: BTreeMap::new(),
            stats: FastBftClientStats::default(),
            _node: PhantomData,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &FastBftClientStats {
        &self.stats
    }

    fn params(&self, ctx: &ClientCtx<'_, Self>) -> Params {
        Params::new(ctx.cluster_size(), self.config.c).with_leader_order(self.config.leader_order)
    }

    fn advance(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        match self.workload.next_step(ctx) {
            None => {
                self.workload_finished = true;
                if let Some((request, _)) = &mut self.draining {
                    let request = request.clone();
                    self.draining = Some((request, ctx.now_ns()));
                    self.drain(ctx, 0);
                }
            }
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
        let request = ctx.sign_value(Request {
            client: ctx.id(),
            sequence,
            command,
        });
        ctx.send(self.primary_hint, ClientMsg::Request(request.clone()));
        ctx.set_timer(self.config.fast_timeout_ns, ClientTimer::Fast { sequence });
        ctx.set_timer(
            self.config.retry_timeout_ns,
            ClientTimer::Retry {
                sequence,
                attempt: 1,
            },
        );
        self.outstanding = Some(Outstanding {
            request,
            first_sent_ns: ctx.now_ns(),
            attempts: 1,
            fast_expired: false,
            responses: BTreeMap::new(),
            commit: None,
            local_commits: BTreeSet::new(),
            finals: BTreeMap::new(),
            orders: BTreeMap::new(),
            pom: None,
        });
    }

    fn sequence(&self) -> Option<u64> {
        self.outstanding
            .as_ref()
            .map(|outstanding| outstanding.request.value.sequence)
    }

    fn on_spec(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        from: NodeId,
        spec: Signed<SpecBody<W::Output>>,
        order: Signed<OrderBody>,
    ) {
        let body = &spec.value;
        let authentic = body.replica == from
            && body.client == ctx.id()
            && spec.signer() == Principal::Node(from)
            && spec.verify();
        if !authentic {
            self.stats.bad_replies += 1;
            return;
        }
        if Some(body.sequence) != self.sequence() {
            return;
        }
        self.note_order(ctx, &spec.value, order);
        if let Some(outstanding) = self.outstanding.as_mut() {
            outstanding.responses.insert(from, spec);
        }
        self.evaluate(ctx);
    }

    /// Keeps the ORDER-REQ a SPEC-RESPONSE executed; a second one of the same primary for
    /// the same `(view, seq)` with another history is a POM (brief case 4d): send it to
    /// every replica, which change view.
    fn note_order(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        spec: &SpecBody<W::Output>,
        order: Signed<OrderBody>,
    ) {
        let params = self.params(ctx);
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        let body = &order.value;
        let key = (body.view, body.seq);
        let held = outstanding.orders.get(&key);
        if (body.view, body.seq, body.hist) != (spec.view, spec.seq, spec.hist)
            || held.is_some_and(|held| held.value.hist == body.hist)
        {
            return;
        }
        let authentic =
            order.signer() == Principal::Node(params.primary(body.view)) && order.verify();
        if !authentic {
            self.stats.bad_replies += 1;
            return;
        }
        match held {
            None if outstanding.orders.len() < ORDERS_MAX => {
                outstanding.orders.insert(key, order);
            }
            None => {}
            Some(held) if outstanding.pom.is_none() => {
                let pom = (held.clone(), order);
                for node in ctx_nodes(ctx.cluster_size()) {
                    ctx.send(
                        node,
                        ClientMsg::Pom {
                            first: pom.0.clone(),
                            second: pom.1.clone(),
                        },
                    );
                }
                outstanding.pom = Some(pom);
                self.stats.poms += 1;
            }
            Some(_) => {}
        }
    }

    /// The largest group of matching responses: its key and members' responses.
    fn best_group(&self) -> Option<Group<W::Output>> {
        let outstanding = self.outstanding.as_ref()?;
        let mut groups: BTreeMap<GroupKey, Vec<Signed<SpecBody<W::Output>>>> = BTreeMap::new();
        for spec in outstanding.responses.values() {
            let body = &spec.value;
            let key = (body.view, body.seq, body.hist, Digest::of(&body.output));
            groups.entry(key).or_default().push(spec.clone());
        }
        groups
            .into_iter()
            .max_by_key(|(key, members)| (members.len(), key.0))
    }

    fn evaluate(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        let params = self.params(ctx);
        let Some((key, members)) = self.best_group() else {
            return;
        };
        let body = members[0].value.clone();
        if members.len() >= params.fast_quorum() {
            let at = Some((body.view, body.seq, body.hist));
            self.complete(
                ctx,
                Completion {
                    output: body.output,
                    fast: true,
                    at,
                },
            );
            return;
        }
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        let committed_here = outstanding
            .commit
            .as_ref()
            .is_some_and(|(held, _)| *held == key);
        if outstanding.fast_expired && members.len() >= params.slow_quorum() && !committed_here {
            let cc = Cc {
                view: body.view,
                seq: body.seq,
                hist: body.hist,
                votes: members.into_iter().map(Vote::Spec).collect(),
            };
            outstanding.commit = Some((key, cc.clone()));
            outstanding.local_commits.clear();
            for node in ctx_nodes(ctx.cluster_size()) {
                ctx.send(
                    node,
                    ClientMsg::Commit {
                        client: ctx.id(),
                        cc: cc.clone(),
                    },
                );
            }
        }
    }

    fn on_local_commit(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        from: NodeId,
        at: (u64, u64, Digest),
        sequence: u64,
    ) {
        let params = self.params(ctx);
        if Some(sequence) != self.sequence() {
            return;
        }
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        let Some(((view, seq, hist, _), cc)) = &outstanding.commit else {
            return;
        };
        if (*view, *seq, *hist) != at {
            return;
        }
        let output = match cc.votes.first() {
            Some(Vote::Spec(spec)) => spec.value.output.clone(),
            _ => return,
        };
        outstanding.local_commits.insert(from);
        if outstanding.local_commits.len() >= params.slow_quorum() {
            self.complete(
                ctx,
                Completion {
                    output,
                    fast: false,
                    at: Some(at),
                },
            );
        }
    }

    fn on_final(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        from: NodeId,
        sequence: u64,
        output: W::Output,
    ) {
        let needed = self.params(ctx).one_correct();
        if let Some((request, _)) = &self.draining {
            if self.outstanding.is_none() && request.value.sequence == sequence {
                self.finals_seen.insert(from, output);
                if count_matching(&self.finals_seen) >= needed {
                    self.draining = None;
                }
                return;
            }
        }
        if Some(sequence) != self.sequence() {
            return;
        }
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        outstanding.finals.insert(from, output.clone());
        let agreeing = outstanding
            .finals
            .values()
            .filter(|held| **held == output)
            .count();
        if agreeing >= needed {
            self.complete(
                ctx,
                Completion {
                    output,
                    fast: false,
                    at: None,
                },
            );
        }
    }

    fn complete(&mut self, ctx: &mut ClientCtx<'_, Self>, completion: Completion<W::Output>) {
        let Some(outstanding) = self.outstanding.take() else {
            return;
        };
        let sequence = outstanding.request.value.sequence;
        let client = ctx.id();
        if completion.fast {
            self.stats.fast += 1;
        } else {
            self.stats.slow += 1;
        }
        ctx.observe(Observation::Path {
            client,
            sequence,
            fast: completion.fast,
        });
        if let Some((view, slot, hist)) = completion.at {
            self.primary_hint = self.params(ctx).primary(view);
            ctx.observe(Observation::SpecComplete {
                client,
                sequence,
                view,
                slot,
                hist: hist.short(),
            });
        }
        ctx.observe(Observation::Complete {
            client,
            sequence,
            output: completion.output.clone(),
        });
        self.workload
            .observe(&outstanding.request.value.command, &completion.output);
        self.draining = Some((outstanding.request, ctx.now_ns()));
        self.finals_seen.clear();
        self.advance(ctx);
    }

    fn retry(&mut self, ctx: &mut ClientCtx<'_, Self>, attempt: u32) {
        let give_up_ns = self.config.give_up_ns;
        let Some(outstanding) = self.outstanding.as_mut() else {
            return;
        };
        if ctx.now_ns().saturating_sub(outstanding.first_sent_ns) >= give_up_ns {
            let sequence = outstanding.request.value.sequence;
            self.outstanding = None;
            self.stats.abandoned += 1;
            ctx.observe(Observation::Abandon {
                client: ctx.id(),
                sequence,
            });
            self.advance(ctx);
            return;
        }
        outstanding.attempts = attempt + 1;
        self.stats.retries += 1;
        for node in ctx_nodes(ctx.cluster_size()) {
            ctx.send(node, ClientMsg::Request(outstanding.request.clone()));
            if let Some((_, cc)) = &outstanding.commit {
                ctx.send(
                    node,
                    ClientMsg::Commit {
                        client: ctx.id(),
                        cc: cc.clone(),
                    },
                );
            }
            if let Some((first, second)) = &outstanding.pom {
                ctx.send(
                    node,
                    ClientMsg::Pom {
                        first: first.clone(),
                        second: second.clone(),
                    },
                );
            }
        }
        let delay_ns = self
            .config
            .retry_timeout_ns
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.retry_timeout_ns_max);
        let sequence = outstanding.request.value.sequence;
        ctx.set_timer(
            delay_ns,
            ClientTimer::Retry {
                sequence,
                attempt: attempt + 1,
            },
        );
    }

    /// Asks every replica whether the last request is final yet.
    fn drain(&mut self, ctx: &mut ClientCtx<'_, Self>, attempt: u32) {
        let Some((request, started_ns)) = &self.draining else {
            return;
        };
        if ctx.now_ns().saturating_sub(*started_ns) >= self.config.drain_ns {
            self.draining = None;
            return;
        }
        for node in ctx_nodes(ctx.cluster_size()) {
            ctx.send(node, ClientMsg::Request(request.clone()));
        }
        ctx.set_timer(
            self.config.retry_timeout_ns,
            ClientTimer::Drain {
                attempt: attempt + 1,
            },
        );
    }
}

fn ctx_nodes(cluster_size: u32) -> impl Iterator<Item = NodeId> {
    (0..cluster_size).map(NodeId)
}

fn count_matching<O: PartialEq>(answers: &BTreeMap<NodeId, O>) -> usize {
    answers
        .values()
        .map(|output| answers.values().filter(|other| *other == output).count())
        .max()
        .unwrap_or(0)
}

impl<N, W> Client for FastBftClient<N, W>
where
    N: FastNode<W::Command, W::Output>,
    W: Workload,
    W::Command: Payload,
    W::Output: Payload + PartialEq,
{
    type Node = N;
    type Timer = ClientTimer;

    fn on_start(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        self.advance(ctx);
    }

    fn on_reply(
        &mut self,
        ctx: &mut ClientCtx<'_, Self>,
        from: NodeId,
        reply: FastReply<W::Output>,
    ) {
        match reply {
            FastReply::Spec { spec, order } => self.on_spec(ctx, from, spec, order),
            FastReply::LocalCommit {
                view,
                seq,
                hist,
                sequence,
            } => self.on_local_commit(ctx, from, (view, seq, hist), sequence),
            FastReply::Final { sequence, output } => self.on_final(ctx, from, sequence, output),
        }
    }

    fn on_timer(&mut self, ctx: &mut ClientCtx<'_, Self>, timer: ClientTimer) {
        match timer {
            ClientTimer::Think => {
                if let Some(command) = self.queued.take() {
                    self.send_new(ctx, command);
                }
            }
            ClientTimer::Fast { sequence } => {
                if Some(sequence) == self.sequence() {
                    if let Some(outstanding) = self.outstanding.as_mut() {
                        outstanding.fast_expired = true;
                    }
                    self.evaluate(ctx);
                }
            }
            ClientTimer::Retry { sequence, attempt } => {
                let live = self.outstanding.as_ref().is_some_and(|held| {
                    held.request.value.sequence == sequence && held.attempts == attempt
                });
                if live {
                    self.retry(ctx, attempt);
                }
            }
            ClientTimer::Drain { attempt } => {
                if self.outstanding.is_none() && self.workload_finished {
                    self.drain(ctx, attempt);
                }
            }
        }
    }

    fn pending(&self) -> usize {
        usize::from(self.outstanding.is_some())
    }

    fn is_done(&self) -> bool {
        self.workload_finished
            && self.outstanding.is_none()
            && self.queued.is_none()
            && self.draining.is_none()
    }
}
