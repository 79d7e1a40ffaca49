//! Shared helpers: FastBFT over the KV store in the real simulator, a test-only Byzantine
//! wrapper, and the speculative oracle.

#![allow(dead_code)]

pub mod keys;
pub mod speculative;

use std::collections::{BTreeMap, BTreeSet};

use dst_checkers::linearizability::CheckConfig;
use dst_fastbft::msg::{entry_digest, NewViewBody, Order, OrderBody, ViewChangeBody};
use dst_fastbft::select::{check_view_change, select, Selection};
use dst_fastbft::Params;
use dst_fastbft::{FastBft, FastBftClient, FastBftClientConfig, FastBftConfig, Msg};
use dst_protocols::harness::{check_kv_run, RunFacts};
use dst_protocols::{KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig, Observation};
use dst_sim::{
    parse_plan, Adversarial, ClientId, CpuCosts, Digest, Effect, FaultProfile, Latency, Node,
    NodeCtx, NodeId, RunSummary, SeededSource, Signed, Sim, SimConfig, SEC,
};

pub type Replica = FastBft<KvStore>;
pub type KvObs = Observation<KvCommand, KvOutput>;

/// What a test replica does besides running the honest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Runs the protocol but never sends or replies.
    Silent,
    /// Lies in every reply to clients.
    Liar,
    /// Forges every outgoing replica message it knows a forgery of.
    Forger,
    /// As primary, sends each ORDER-REQ to the lowest-numbered other replica and a
    /// conflicting one (a no-op that chains correctly, signed as itself) to the rest.
    Equivocator,
    /// As primary of view 0, sends the others two histories: the lowest-numbered other
    /// replica gets the real one, the rest a no-op at slot 1 followed by the same requests
    /// (so one request gets one slot with two histories: only its client can see that); it
    /// never relays a real view-0 ORDER-REQ to the second group.
    Diverger,
    /// As a new primary, sends its NEW-VIEW to the lower half of the others only; once
    /// another VIEW-CHANGE arrives, signs a second valid NEW-VIEW from another set of `Qvc`
    /// VIEW-CHANGEs (with another history, if any set gives one) for the upper half.
    NewViewEquivocator,
}

/// An honest replica inside a behaviour (test-only; the project's wrappers live in sim/).
pub struct TestNode {
    pub inner: Replica,
    pub behaviour: Behaviour,
    /// The Diverger's second history digest per slot.
    pub shadow: BTreeMap<u64, Digest>,
    /// VIEW-CHANGEs seen (latest per sender), for the NEW-VIEW equivocator.
    pub view_changes: BTreeMap<NodeId, Signed<ViewChangeBody<KvCommand, KvOutput>>>,
    /// Second NEW-VIEWs with another history sent (by view).
    pub equivocated: BTreeSet<u64>,
    /// The real NEW-VIEW, until the upper half is sent its NEW-VIEW.
    pub held_new_view: Option<Signed<NewViewBody<KvCommand, KvOutput>>>,
}

impl TestNode {
    fn relay(&mut self, ctx: &mut NodeCtx<'_, Self>, effects: Vec<Effect<Replica>>) {
        for effect in effects {
            let effect = match effect {
                Effect::Send { .. } | Effect::Broadcast { .. } | Effect::Reply { .. }
                    if self.behaviour == Behaviour::Silent =>
                {
                    continue
                }
                Effect::Reply { client, reply } if self.behaviour == Behaviour::Liar => {
                    let mut forged = None;
                    ctx.nest::<Replica>(None, |nested| forged = Replica::lie(nested, &reply, 0));
                    Effect::Reply {
                        client,
                        reply: forged.unwrap_or(reply),
                    }
                }
                Effect::Broadcast {
                    msg: Msg::Order(order),
                } if self.behaviour == Behaviour::Equivocator => {
                    self.equivocate(ctx, order);
                    continue;
                }
                Effect::Broadcast {
                    msg: Msg::Order(order),
                } if self.behaviour == Behaviour::Diverger && order.order.value.view == 0 => {
                    self.diverge(ctx, order);
                    continue;
                }
                Effect::Broadcast {
                    msg: Msg::ViewChange(view_change),
                } if self.behaviour == Behaviour::NewViewEquivocator => {
                    self.keep_view_change((*view_change).clone());
                    Effect::Broadcast {
                        msg: Msg::ViewChange(view_change),
                    }
                }
                Effect::Broadcast {
                    msg: Msg::NewView(new_view),
                } if self.behaviour == Behaviour::NewViewEquivocator => {
                    self.equivocate_new_view(ctx, *new_view);
                    continue;
                }
                // Relayed real orders would show the second group the conflict: withhold.
                Effect::Send {
                    to,
                    msg: Msg::Order(order),
                } if self.behaviour == Behaviour::Diverger
                    && order.order.value.view == 0
                    && to.0 > 1 =>
                {
                    continue
                }
                Effect::Broadcast { msg } if self.behaviour == Behaviour::Forger => {
                    let mut forged = None;
                    ctx.nest::<Replica>(None, |nested| forged = Replica::forge(nested, &msg, 0));
                    Effect::Broadcast {
                        msg: forged.unwrap_or(msg),
                    }
                }
                Effect::Send { to, msg } => Effect::Send { to, msg },
                Effect::Broadcast { msg } => Effect::Broadcast { msg },
                Effect::Reply { client, reply } => Effect::Reply { client, reply },
                Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                } => Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                },
                Effect::CancelTimer { id } => Effect::CancelTimer { id },
                Effect::Sync { up_to } => Effect::Sync { up_to },
                Effect::Observe(observation) => Effect::Observe(observation),
            };
            ctx.emit(effect);
        }
    }
}

impl TestNode {
    fn equivocate(&mut self, ctx: &mut NodeCtx<'_, Self>, order: Order<KvCommand>) {
        let body = &order.order.value;
        let prev = self.inner.hist_of(body.seq - 1).unwrap_or(Digest::ZERO);
        let digest = entry_digest::<KvCommand>(None, body.seq);
        let conflicting = OrderBody {
            hist: prev.chain(&digest),
            digest,
            ..body.clone()
        };
        let mut forged = None;
        ctx.nest::<Replica>(None, |nested| forged = Some(nested.sign_value(conflicting)));
        let me = ctx.id();
        let others: Vec<NodeId> = ctx.nodes().filter(|node| *node != me).collect();
        for (index, node) in others.into_iter().enumerate() {
            let msg = match (&forged, index) {
                (Some(forged), 1..) => Msg::Order(Order {
                    order: forged.clone(),
                    request: None,
                }),
                _ => Msg::Order(order.clone()),
            };
            ctx.send(node, msg);
        }
    }
}

impl TestNode {
    fn diverge(&mut self, ctx: &mut NodeCtx<'_, Self>, order: Order<KvCommand>) {
        let body = order.order.value.clone();
        let prev = match body.seq {
            1 => Some(Digest::ZERO),
            seq => self.shadow.get(&(seq - 1)).copied(),
        };
        let me = ctx.id();
        let others: Vec<NodeId> = ctx.nodes().filter(|node| *node != me).collect();
        let Some(prev) = prev else {
            for node in others {
                ctx.send(node, Msg::Order(order.clone()));
            }
            return;
        };
        let (digest, request) = match body.seq {
            1 => (entry_digest::<KvCommand>(None, 1), None),
            _ => (body.digest, order.request.clone()),
        };
        let hist = prev.chain(&digest);
        self.shadow.insert(body.seq, hist);
        let shadow = OrderBody {
            hist,
            digest,
            ..body
        };
        let mut signed = None;
        ctx.nest::<Replica>(None, |nested| signed = Some(nested.sign_value(shadow)));
        let Some(signed) = signed else {
            return;
        };
        for (index, node) in others.into_iter().enumerate() {
            let msg = match index {
                0 => Msg::Order(order.clone()),
                _ => Msg::Order(Order {
                    order: signed.clone(),
                    request: request.clone(),
                }),
            };
            ctx.send(node, msg);
        }
    }
}

type SignedNewView = Signed<NewViewBody<KvCommand, KvOutput>>;

impl TestNode {
    fn keep_view_change(&mut self, view_change: Signed<ViewChangeBody<KvCommand, KvOutput>>) {
        if view_change.verify() {
            self.view_changes
                .insert(view_change.value.replica, view_change);
        }
    }

    /// The history (end) a set of VIEW-CHANGEs selects, if they all verify.
    fn selection_of(
        &self,
        params: &Params,
        set: &[Signed<ViewChangeBody<KvCommand, KvOutput>>],
    ) -> Option<Selection<KvCommand>> {
        let window = self.inner.config().window();
        let genesis = dst_sim::StateMachine::digest(&dst_protocols::Sessions::new(KvStore::new()));
        let checked: Option<Vec<_>> = set
            .iter()
            .map(|view_change| {
                check_view_change(
                    params,
                    &view_change.value,
                    window * 2,
                    genesis,
                    &mut |s, d| s.verify(d),
                )
                .ok()
            })
            .collect();
        select(params, &checked?, window * 2)
    }

    /// Sends the real NEW-VIEW to the lower half of the others now; the upper half gets a
    /// second one once another VIEW-CHANGE arrives (the real one used the first `Qvc`).
    fn equivocate_new_view(&mut self, ctx: &mut NodeCtx<'_, Self>, real: SignedNewView) {
        let (lower, _) = self.halves(ctx);
        for node in lower {
            ctx.send(node, Msg::NewView(Box::new(real.clone())));
        }
        self.held_new_view = Some(real);
    }

    fn halves(&self, ctx: &NodeCtx<'_, Self>) -> (Vec<NodeId>, Vec<NodeId>) {
        let me = ctx.id();
        let mut others: Vec<NodeId> = ctx.nodes().filter(|node| *node != me).collect();
        let upper = others.split_off(others.len() / 2);
        (others, upper)
    }

    /// A second valid NEW-VIEW with another history, if some set of held VIEW-CHANGEs
    /// gives one, to the upper half (else the real one).
    fn send_second_new_view(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        let Some(real) = self.held_new_view.take() else {
            return;
        };
        let view = real.value.view;
        let params = Params::new(ctx.cluster_size(), self.inner.config().c);
        let real_end = self
            .selection_of(&params, &real.value.view_changes)
            .map(|selection| selection.end());
        let candidates: Vec<_> = self
            .view_changes
            .values()
            .filter(|view_change| view_change.value.new_view == view)
            .cloned()
            .collect();
        let quorum = params.view_change_quorum();
        let mut second = None;
        for skip in 0..candidates.len() {
            let set: Vec<_> = (0..candidates.len())
                .filter(|index| *index != skip)
                .map(|index| candidates[index].clone())
                .take(quorum)
                .collect();
            let selection = (set.len() == quorum)
                .then(|| self.selection_of(&params, &set))
                .flatten();
            if let Some(selection) = selection.filter(|s| Some(s.end()) != real_end) {
                second = Some((set, selection));
                break;
            }
        }
        let mut new_view = real;
        if let Some((set, selection)) = second {
            ctx.nest::<Replica>(None, |nested| {
                let orders = selection
                    .entries
                    .iter()
                    .map(|(seq, entry)| {
                        nested.sign_value(OrderBody {
                            view,
                            seq: *seq,
                            hist: entry.hist,
                            digest: entry.digest,
                        })
                    })
                    .collect();
                new_view = nested.sign_value(NewViewBody {
                    view,
                    view_changes: set,
                    orders,
                });
            });
            self.equivocated.insert(view);
        }
        let (_, upper) = self.halves(ctx);
        for node in upper {
            ctx.send(node, Msg::NewView(Box::new(new_view.clone())));
        }
    }
}

impl Node for TestNode {
    type Msg = <Replica as Node>::Msg;
    type Timer = <Replica as Node>::Timer;
    type Request = <Replica as Node>::Request;
    type Reply = <Replica as Node>::Reply;
    type Obs = KvObs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        let effects = ctx.nest(None, |nested| self.inner.on_start(nested));
        self.relay(ctx, effects);
    }
    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        let effects = ctx.nest(None, |nested| self.inner.on_restart(nested));
        self.relay(ctx, effects);
    }
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        if let (Behaviour::NewViewEquivocator, Msg::ViewChange(view_change)) =
            (self.behaviour, &msg)
        {
            self.keep_view_change((**view_change).clone());
            let for_held = self
                .held_new_view
                .as_ref()
                .is_some_and(|held| held.value.view == view_change.value.new_view);
            if for_held {
                self.send_second_new_view(ctx);
            }
        }
        let effects = ctx.nest(None, |nested| self.inner.on_message(nested, from, msg));
        self.relay(ctx, effects);
    }
    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Self::Timer) {
        let effects = ctx.nest(None, |nested| self.inner.on_timer(nested, timer));
        self.relay(ctx, effects);
    }
    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        let effects = ctx.nest(None, |nested| {
            self.inner.on_request(nested, client, request)
        });
        self.relay(ctx, effects);
    }
    fn check_invariants(&self) -> Result<(), String> {
        match self.behaviour {
            Behaviour::Honest => self.inner.check_invariants(),
            _ => Ok(()),
        }
    }
    fn footprint_bytes(&self) -> u64 {
        self.inner.footprint_bytes()
    }
}

/// One run's knobs.
pub struct Run {
    pub seed: u64,
    pub profile: &'static str,
    pub nodes: u32,
    pub clients: u32,
    pub requests_per_client: u64,
    pub config: FastBftConfig,
    pub client: FastBftClientConfig,
    pub plan: &'static str,
    pub behaviours: BTreeMap<NodeId, Behaviour>,
    /// Constant one-way latency and free CPU, for counting message delays exactly.
    pub constant_latency_ns: Option<u64>,
    pub quiet_at_ns: u64,
    pub end_ns: u64,
}

impl Run {
    pub fn new(seed: u64, profile: &'static str) -> Self {
        Run {
            seed,
            profile,
            nodes: 4,
            clients: 2,
            requests_per_client: 20,
            config: FastBftConfig {
                checkpoint_interval: 8,
                ..FastBftConfig::default()
            },
            client: FastBftClientConfig::default(),
            plan: "",
            behaviours: BTreeMap::new(),
            constant_latency_ns: None,
            quiet_at_ns: 4 * SEC,
            end_ns: 30 * SEC,
        }
    }

    pub fn byzantine(&self) -> BTreeSet<NodeId> {
        self.behaviours
            .iter()
            .filter(|(_, behaviour)| **behaviour != Behaviour::Honest)
            .map(|(node, _)| *node)
            .collect()
    }
}

pub type TestClient = FastBftClient<TestNode, KvWorkload>;

/// What a run left behind.
pub struct Outcome {
    pub summary: RunSummary,
    pub observations: Vec<(u64, KvObs)>,
    pub sim: Sim<TestNode, TestClient>,
}

/// Runs a FastBFT cluster over the KV store.
pub fn run(run: &Run) -> Outcome {
    let mut knobs = SeededSource::new(run.seed ^ 0x5eed);
    let mut profile = FaultProfile::named(run.profile, &mut knobs).expect("known profile");
    let mut config = SimConfig::new(run.nodes, run.clients, profile.clone());
    if let Some(latency_ns) = run.constant_latency_ns {
        profile.link.latency = Latency::Constant { latency_ns };
        config.profile = profile;
        config.cpu = CpuCosts::FREE;
        config.fsync_min_ns = 0;
        config.fsync_max_ns = 0;
    }
    config.plan = parse_plan(run.plan).expect("valid plan");
    config.quiet_at_ns = run.quiet_at_ns;
    config.end_ns = run.end_ns;
    config.down_max = (run.nodes - 1 - 2 * run.config.c) / 3;
    let clients = (0..run.clients)
        .map(|client| {
            let workload = KvWorkloadConfig::contention(run.requests_per_client);
            FastBftClient::new(run.client.clone(), KvWorkload::new(client, workload))
        })
        .collect();
    let replica = run.config.clone();
    let behaviours = run.behaviours.clone();
    let make = move |id: NodeId| TestNode {
        inner: FastBft::for_service(replica.clone(), KvStore::new()),
        behaviour: behaviours.get(&id).copied().unwrap_or(Behaviour::Honest),
        shadow: BTreeMap::new(),
        view_changes: BTreeMap::new(),
        equivocated: BTreeSet::new(),
        held_new_view: None,
    };
    let mut sim = Sim::new(
        config,
        Box::new(make),
        clients,
        SeededSource::new(run.seed),
        false,
    );
    let summary = sim.run();
    let observations = sim.take_observations();
    Outcome {
        summary,
        observations,
        sim,
    }
}

/// Every oracle: the harness's (agreement, validity, exactly-once, durability, liveness,
/// linearizability) and the speculative S1-S3. Completions precede finality by design
/// (speculative acknowledgements), but every completed write must still be committed.
pub fn violations(run: &Run, outcome: &Outcome) -> Vec<String> {
    let mut facts = RunFacts::byzantine_fault_tolerant(
        run.nodes,
        run.byzantine(),
        outcome.summary.quiet_at_ns,
        outcome.summary.virtual_ns,
    );
    facts.nodes_required = run.nodes - (run.nodes - 1 - 2 * run.config.c) / 3;
    facts.engine_invariant_failures = outcome.summary.invariant_failures.clone();
    facts.safety.speculative_acknowledgements = true;
    let verdict = check_kv_run(&outcome.observations, &facts, &CheckConfig::default());
    let mut found: Vec<String> = verdict
        .violations
        .iter()
        .map(|violation| format!("{violation:?}"))
        .collect();
    found.extend(speculative::check_speculative(
        &outcome.observations,
        &run.byzantine(),
    ));
    found
}

/// (fast, slow) completions.
pub fn paths(observations: &[(u64, KvObs)]) -> (u64, u64) {
    let mut counts = (0, 0);
    for (_, observation) in observations {
        if let Observation::Path { fast, .. } = observation {
            if *fast {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    counts
}

/// Completion latencies in ns.
pub fn latencies(observations: &[(u64, KvObs)]) -> Vec<u64> {
    let mut invoked = BTreeMap::new();
    let mut latencies = Vec::new();
    for (time_ns, observation) in observations {
        match observation {
            Observation::Invoke {
                client, sequence, ..
            } => {
                invoked.insert((*client, *sequence), *time_ns);
            }
            Observation::Complete {
                client, sequence, ..
            } => {
                if let Some(start) = invoked.remove(&(*client, *sequence)) {
                    latencies.push(time_ns - start);
                }
            }
            _ => {}
        }
    }
    latencies
}

pub fn completions(observations: &[(u64, KvObs)]) -> usize {
    observations
        .iter()
        .filter(|(_, observation)| matches!(observation, Observation::Complete { .. }))
        .count()
}

pub fn new_views(observations: &[(u64, KvObs)]) -> BTreeSet<u64> {
    observations
        .iter()
        .filter_map(|(_, observation)| match observation {
            Observation::NewView { view, .. } => Some(*view),
            _ => None,
        })
        .collect()
}

/// Slots below an honest node's highest reported commit that it never reported committed.
pub fn unreported_slots(run: &Run, observations: &[(u64, KvObs)]) -> Vec<(NodeId, u64)> {
    let byzantine = run.byzantine();
    let mut reported: BTreeMap<NodeId, BTreeSet<u64>> = BTreeMap::new();
    for (_, observation) in observations {
        if let Observation::Commit { node, slot, .. } = observation {
            if !byzantine.contains(node) {
                reported.entry(*node).or_default().insert(*slot);
            }
        }
    }
    let mut missing = Vec::new();
    for (node, slots) in reported {
        let highest = slots.last().copied().unwrap_or(0);
        missing.extend(
            (1..=highest)
                .filter(|slot| !slots.contains(slot))
                .map(|slot| (node, slot)),
        );
    }
    missing
}
