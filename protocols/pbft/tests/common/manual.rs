//! A hand-driven cluster: the test delivers each message itself, so it can play a Byzantine
//! primary (signing as that replica, which only a test harness can do), crash replicas at
//! exact points and inspect what every replica reported and ignored.

use dst_pbft::{Message, Pbft, PbftConfig};
use dst_protocols::{KvCommand, KvStore, Request};
use dst_sim::{ClientCtx, ClientId, Effect, Node, NodeCtx, NodeId, SeededSource, Signed, Storage};
use serde::Serialize;

use super::{KvClient, KvObs, KvPbft};

pub type Msg = Message<KvCommand>;

/// What one step asked to send: to one replica, or to all others (`None`).
pub type Sends = Vec<(Option<NodeId>, Msg)>;

pub struct Manual {
    pub n: u32,
    pub nodes: Vec<KvPbft>,
    pub storages: Vec<Storage>,
    decisions: SeededSource,
    next_timer_ids: Vec<u64>,
    pub observations: Vec<(u64, KvObs)>,
    pub ignored: Vec<(NodeId, &'static str)>,
    clock_ns: u64,
}

impl Manual {
    /// `n` started replicas with default options.
    pub fn new(n: u32) -> Self {
        let mut manual = Manual {
            n,
            nodes: (0..n).map(|_| Self::fresh()).collect(),
            storages: (0..n).map(|_| Storage::default()).collect(),
            decisions: SeededSource::new(17),
            next_timer_ids: vec![0; n as usize],
            observations: Vec::new(),
            ignored: Vec::new(),
            clock_ns: 0,
        };
        for id in 0..n {
            manual.with(id, |node, ctx| node.on_start(ctx));
        }
        manual
    }

    fn fresh() -> KvPbft {
        Pbft::for_service(PbftConfig::default(), KvStore::new())
    }

    /// Runs `handler` on replica `id`; syncs complete at once; returns its sends.
    pub fn with(
        &mut self,
        id: u32,
        handler: impl FnOnce(&mut KvPbft, &mut NodeCtx<'_, KvPbft>),
    ) -> Sends {
        self.clock_ns += 1_000;
        let index = id as usize;
        let mut effects = Vec::new();
        let mut ignored = Vec::new();
        {
            let mut ctx = NodeCtx::new(
                NodeId(id),
                self.n,
                self.clock_ns,
                &mut effects,
                &mut self.storages[index],
                &mut self.decisions,
                &mut self.next_timer_ids[index],
                &mut ignored,
            );
            handler(&mut self.nodes[index], &mut ctx);
        }
        let mut sends = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => sends.push((Some(to), msg)),
                Effect::Broadcast { msg } => sends.push((None, msg)),
                Effect::Sync { up_to } => self.storages[index].complete_sync(up_to),
                Effect::Observe(obs) => self.observations.push((self.clock_ns, obs)),
                Effect::Reply { .. } | Effect::SetTimer { .. } | Effect::CancelTimer { .. } => {}
            }
        }
        self.ignored
            .extend(ignored.into_iter().map(|reason| (NodeId(id), reason)));
        sends
    }

    /// Delivers `msg` from `from` to `to`.
    pub fn deliver(&mut self, from: u32, to: u32, msg: Msg) -> Sends {
        self.with(to, |node, ctx| node.on_message(ctx, NodeId(from), msg))
    }

    /// Delivers everything in `sends` (made by `from`) to the replicas in `to`.
    pub fn deliver_all(&mut self, from: u32, sends: &Sends, to: &[u32]) -> Vec<(u32, Sends)> {
        let mut produced = Vec::new();
        for (target, msg) in sends {
            for &receiver in to {
                let addressed = target.is_none_or(|target| target == NodeId(receiver));
                if addressed && receiver != from {
                    produced.push((receiver, self.deliver(from, receiver, msg.clone())));
                }
            }
        }
        produced
    }

    /// A value signed as replica `id` (only a test harness can do this for a replica).
    pub fn sign_as<T: Serialize>(&mut self, id: u32, value: T) -> Signed<T> {
        let mut signed = None;
        self.with(id, |_, ctx| signed = Some(ctx.sign_value(value)));
        signed.expect("signed")
    }

    /// Crashes replica `id` and restarts it from what survived on its disk, or (amnesia)
    /// from an empty disk as if it had never synced.
    pub fn crash_restart(&mut self, id: u32, amnesia: bool) {
        let index = id as usize;
        if amnesia {
            self.storages[index] = Storage::default();
        } else {
            self.storages[index].crash(&mut self.decisions);
        }
        self.nodes[index] = Self::fresh();
        self.with(id, |node, ctx| node.on_restart(ctx));
    }

    /// A request signed by its client.
    pub fn request(
        &mut self,
        client: u32,
        sequence: u64,
        value: &str,
    ) -> Signed<Request<KvCommand>> {
        let mut effects = Vec::new();
        let mut timer_id = 0;
        let mut ctx = ClientCtx::<KvClient<KvPbft>>::new(
            ClientId(client),
            self.n,
            self.clock_ns,
            &mut effects,
            &mut self.decisions,
            &mut timer_id,
        );
        ctx.sign_value(Request {
            client: ClientId(client),
            sequence,
            command: KvCommand::Put {
                key: "k".to_string(),
                value: value.to_string(),
            },
        })
    }

    /// Reasons replica `id` ignored messages for.
    pub fn ignored_by(&self, id: u32) -> Vec<&'static str> {
        self.ignored
            .iter()
            .filter(|(node, _)| *node == NodeId(id))
            .map(|(_, reason)| *reason)
            .collect()
    }

    /// Slots replica `id` reported committed, with the request there.
    pub fn commits_of(&self, id: u32) -> Vec<(u64, Option<(ClientId, u64)>)> {
        self.observations
            .iter()
            .filter_map(|(_, obs)| match obs {
                dst_protocols::Observation::Commit {
                    node,
                    slot,
                    request,
                    ..
                } if *node == NodeId(id) => Some((*slot, *request)),
                _ => None,
            })
            .collect()
    }
}
