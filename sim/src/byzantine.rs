//! The Byzantine fault model, generic over protocols.
//!
//! Byzantine behaviours wrap honest nodes; they are never flags inside them. A wrapper hosts
//! the honest node through [`crate::NodeCtx::nest`], sees every effect it asks for, and
//! rewrites them: drops, redirects, duplicates, or replaces messages. A Byzantine node signs
//! as itself only (see [`crate::auth`]): whatever it forges carries its own signature or a
//! replayed one, so honest nodes that verify certificates reject it.
//!
//! Protocols teach the generic wrappers their message semantics through [`Adversarial`]:
//! how to build a plausible but invalid variant of a message (a certificate with too few or
//! duplicated signers, a vote for another value, a wrong digest) and how to lie to a client.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::node::{ClientId, Effect, Node, NodeCtx, NodeId};
use crate::storage::Storage;

/// What a protocol tells the Byzantine wrappers about its messages. Every method has a
/// default that forges nothing, so a protocol can opt in piece by piece.
pub trait Adversarial: Node {
    /// A plausible but invalid or conflicting variant of `msg`, about to be sent by this
    /// (Byzantine) node: for example a proposal for another value signed as itself, or a
    /// certificate with too few, duplicated or mismatched signatures. `variant` picks among
    /// the forgeries the protocol knows (taken modulo their number). None: nothing to forge.
    fn forge(ctx: &mut NodeCtx<'_, Self>, msg: &Self::Msg, variant: u64) -> Option<Self::Msg> {
        let _ = (ctx, msg, variant);
        None
    }

    /// A wrong answer to a client in place of `reply` (a different output for the same
    /// request). None: the protocol's replies have nothing to lie about.
    fn lie(ctx: &mut NodeCtx<'_, Self>, reply: &Self::Reply, variant: u64) -> Option<Self::Reply> {
        let _ = (ctx, reply, variant);
        None
    }
}

/// How a Byzantine node misbehaves. Each wraps the honest protocol code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behaviour {
    /// Not Byzantine at all: the wrapper passes everything through (so a cluster with some
    /// Byzantine members can have one node type).
    Honest,
    /// Runs the honest code but sends nothing, to replicas or clients.
    Silent,
    /// Sends only to the replicas listed (and answers clients).
    Withhold { to: Vec<NodeId> },
    /// Two honest instances with this node's identity and keys, fed client requests in
    /// different orders; the first one's messages go to even-numbered replicas, the second
    /// one's to odd-numbered ones. As a primary it proposes different things to each half.
    Equivocate,
    /// Honest, plus re-sends old messages it saw or sent to random replicas.
    Replay { per_mille: u32 },
    /// Replaces outgoing messages by the protocol's forgeries ([`Adversarial::forge`]).
    Forge { per_mille: u32 },
    /// Answers clients with wrong results ([`Adversarial::lie`]).
    Lie,
}

impl Behaviour {
    /// Every behaviour's name, as `--behaviour` accepts it.
    pub const NAMES: [&'static str; 6] =
        ["silent", "withhold", "equivocate", "replay", "forge", "lie"];

    /// The behaviour called `name` in a cluster of `nodes`, for node `id`.
    pub fn named(name: &str, id: NodeId, nodes: u32) -> Result<Behaviour, String> {
        Ok(match name {
            "silent" => Behaviour::Silent,
            // Starve all but f other replicas: too few to form quorums with this node alone.
            "withhold" => Behaviour::Withhold {
                to: (0..nodes)
                    .map(NodeId)
                    .filter(|other| *other != id)
                    .take((nodes.saturating_sub(1) / 3) as usize)
                    .collect(),
            },
            "equivocate" => Behaviour::Equivocate,
            "replay" => Behaviour::Replay { per_mille: 200 },
            "forge" => Behaviour::Forge { per_mille: 300 },
            "lie" => Behaviour::Lie,
            other => {
                return Err(format!(
                    "unknown Byzantine behaviour '{other}' (expected one of: {})",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

/// Timer of an instance hosted by a wrapper.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tagged<T> {
    pub instance: u8,
    pub timer: T,
}

/// Bound on the messages a replaying node remembers.
const SEEN_MAX: usize = 64;

/// A second honest instance with its own disk (equivocation, Twins).
struct Twin<N: Node> {
    node: N,
    storage: Storage,
    /// A request held back so this instance sees requests in another order.
    held: Option<(ClientId, N::Request)>,
}

/// A Byzantine node: honest protocol code inside, misbehaviour outside.
pub struct Byzantine<N: Adversarial> {
    behaviour: Behaviour,
    honest: N,
    twin: Option<Twin<N>>,
    // invariant: at most SEEN_MAX messages.
    seen: VecDeque<N::Msg>,
    forged: u64,
}

impl<N: Adversarial> Byzantine<N> {
    /// Wraps `honest`; `twin` is the second instance, required for [`Behaviour::Equivocate`]
    /// and dropped for every other behaviour.
    pub fn new(behaviour: Behaviour, honest: N, twin: Option<N>) -> Self {
        assert!(
            behaviour != Behaviour::Equivocate || twin.is_some(),
            "an equivocating node needs a second instance"
        );
        // Only an equivocator runs its second instance.
        let twin = twin.filter(|_| behaviour == Behaviour::Equivocate);
        let twin = twin.map(|node| Twin {
            node,
            storage: Storage::default(),
            held: None,
        });
        Byzantine {
            behaviour,
            honest,
            twin,
            seen: VecDeque::new(),
            forged: 0,
        }
    }

    /// The honest code inside.
    pub fn inner(&self) -> &N {
        &self.honest
    }

    /// Runs `handler` on instance `instance` and rewrites what it asked for.
    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        instance: u8,
        handler: impl FnOnce(&mut N, &mut NodeCtx<'_, N>),
    ) {
        let effects = match (instance, self.twin.as_mut()) {
            (1, Some(twin)) => {
                let node = &mut twin.node;
                let effects = ctx.nest::<N>(Some(&mut twin.storage), |inner| handler(node, inner));
                // The twin's disk is private and never crashes: its syncs complete at once.
                let up_to = twin.storage.last_sequence();
                twin.storage.complete_sync(up_to);
                effects
            }
            _ => {
                let node = &mut self.honest;
                ctx.nest::<N>(None, |inner| handler(node, inner))
            }
        };
        for effect in effects {
            self.rewrite(ctx, instance, effect);
        }
    }

    fn rewrite(&mut self, ctx: &mut NodeCtx<'_, Self>, instance: u8, effect: Effect<N>) {
        match effect {
            Effect::Send { to, msg } => self.send(ctx, instance, to, msg),
            Effect::Broadcast { msg } => {
                for to in ctx.nodes().filter(|to| *to != ctx.id()).collect::<Vec<_>>() {
                    self.send(ctx, instance, to, msg.clone());
                }
            }
            Effect::Reply { client, reply } => self.reply(ctx, instance, client, reply),
            Effect::SetTimer {
                id,
                delay_ns,
                timer,
            } => ctx.emit(Effect::SetTimer {
                id,
                delay_ns,
                timer: Tagged { instance, timer },
            }),
            Effect::CancelTimer { id } => ctx.emit(Effect::CancelTimer { id }),
            Effect::Sync { up_to } if instance == 0 => ctx.emit(Effect::Sync { up_to }),
            Effect::Sync { .. } => {}
            Effect::Observe(obs) if instance == 0 => ctx.emit(Effect::Observe(obs)),
            Effect::Observe(_) => {}
        }
    }

    fn send(&mut self, ctx: &mut NodeCtx<'_, Self>, instance: u8, to: NodeId, msg: N::Msg) {
        match &self.behaviour {
            Behaviour::Silent => {}
            Behaviour::Withhold { to: allowed } => {
                if allowed.contains(&to) {
                    ctx.emit(Effect::Send { to, msg });
                }
            }
            Behaviour::Equivocate => {
                if to.0 % 2 == u32::from(instance) {
                    ctx.emit(Effect::Send { to, msg });
                }
            }
            Behaviour::Replay { per_mille } => {
                let per_mille = u64::from(*per_mille);
                self.remember(msg.clone());
                ctx.emit(Effect::Send { to, msg });
                if ctx.random_below(1000) < per_mille && !self.seen.is_empty() {
                    let old = ctx.random_below(self.seen.len() as u64) as usize;
                    let target = NodeId(ctx.random_below(u64::from(ctx.cluster_size())) as u32);
                    let msg = self.seen[old].clone();
                    ctx.emit(Effect::Send { to: target, msg });
                }
            }
            Behaviour::Forge { per_mille } => {
                let msg = if ctx.random_below(1000) < u64::from(*per_mille) {
                    self.forge(ctx, msg)
                } else {
                    msg
                };
                ctx.emit(Effect::Send { to, msg });
            }
            Behaviour::Honest | Behaviour::Lie => ctx.emit(Effect::Send { to, msg }),
        }
    }

    fn forge(&mut self, ctx: &mut NodeCtx<'_, Self>, msg: N::Msg) -> N::Msg {
        let variant = ctx.random_below(1 << 16);
        let mut forged = None;
        ctx.nest::<N>(None, |inner| forged = N::forge(inner, &msg, variant));
        match forged {
            Some(forged) => {
                self.forged += 1;
                forged
            }
            None => msg,
        }
    }

    fn reply(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        instance: u8,
        client: ClientId,
        reply: N::Reply,
    ) {
        match self.behaviour {
            Behaviour::Silent => {}
            Behaviour::Lie => {
                // The same variant from every liar: colluding liars tell the same lie.
                let mut lie = None;
                ctx.nest::<N>(None, |inner| lie = N::lie(inner, &reply, 0));
                ctx.emit(Effect::Reply {
                    client,
                    reply: lie.unwrap_or(reply),
                });
            }
            Behaviour::Equivocate if instance == 1 => {}
            _ => ctx.emit(Effect::Reply { client, reply }),
        }
    }

    fn remember(&mut self, msg: N::Msg) {
        if self.seen.len() == SEEN_MAX {
            self.seen.pop_front();
        }
        self.seen.push_back(msg);
    }
}

impl<N: Adversarial> Node for Byzantine<N> {
    type Msg = N::Msg;
    type Timer = Tagged<N::Timer>;
    type Request = N::Request;
    type Reply = N::Reply;
    type Obs = N::Obs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, 0, |node, inner| node.on_start(inner));
        if self.twin.is_some() {
            self.drive(ctx, 1, |node, inner| node.on_start(inner));
        }
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, 0, |node, inner| node.on_restart(inner));
        if self.twin.is_some() {
            self.drive(ctx, 1, |node, inner| node.on_start(inner));
        }
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        if matches!(self.behaviour, Behaviour::Replay { .. }) {
            self.remember(msg.clone());
        }
        if self.twin.is_some() {
            let copy = msg.clone();
            self.drive(ctx, 1, |node, inner| node.on_message(inner, from, copy));
        }
        self.drive(ctx, 0, |node, inner| node.on_message(inner, from, msg));
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Self::Timer) {
        let Tagged { instance, timer } = timer;
        self.drive(ctx, instance, |node, inner| node.on_timer(inner, timer));
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        if let Some(twin) = self.twin.as_mut() {
            // The twin sees each pair of requests in reverse order.
            let release = match twin.held.take() {
                None => {
                    twin.held = Some((client, request.clone()));
                    None
                }
                Some(held) => Some(held),
            };
            if let Some((held_client, held)) = release {
                let copy = request.clone();
                self.drive(ctx, 1, |node, inner| node.on_request(inner, client, copy));
                self.drive(ctx, 1, |node, inner| {
                    node.on_request(inner, held_client, held)
                });
            }
        }
        self.drive(ctx, 0, |node, inner| {
            node.on_request(inner, client, request)
        });
    }

    // A Byzantine node's own invariants are not the protocol's problem.
    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }

    fn footprint_bytes(&self) -> u64 {
        self.honest.footprint_bytes()
    }
}
