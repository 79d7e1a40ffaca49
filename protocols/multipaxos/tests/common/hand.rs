//! A cluster of Multi-Paxos replicas driven by hand: the test chooses every delivery, sends
//! wait on a wire it can inspect and edit, and syncs complete at once.

use dst_multipaxos::{MultiPaxos, PaxosConfig, PaxosMsg};
use dst_protocols::{KvCommand, KvStore};
use dst_sim::{Effect, Node, NodeCtx, NodeId, SeededSource, Storage, StorageFaults};

pub type KvPaxos = MultiPaxos<KvStore>;
pub type Msg = PaxosMsg<KvCommand>;

pub struct HandCluster {
    pub config: PaxosConfig,
    pub nodes: Vec<KvPaxos>,
    pub disks: Vec<Storage>,
    pub decisions: SeededSource,
    pub next_timer_id: u64,
    /// Messages in flight: (from, to, message).
    pub wire: Vec<(NodeId, NodeId, Msg)>,
    /// The reasons handlers gave for ignoring messages, in order.
    pub ignored: Vec<&'static str>,
}

impl HandCluster {
    /// `size` started replicas running `config`, their decisions drawn from `seed`.
    pub fn new(size: u32, config: PaxosConfig, seed: u64) -> Self {
        let mut cluster = HandCluster {
            nodes: Vec::new(),
            disks: (0..size)
                .map(|_| Storage::new(StorageFaults::default()))
                .collect(),
            decisions: SeededSource::new(seed),
            next_timer_id: 0,
            wire: Vec::new(),
            ignored: Vec::new(),
            config,
        };
        cluster.nodes = (0..size).map(|_| cluster.fresh()).collect();
        for id in 0..size {
            cluster.step(NodeId(id), |node, ctx| node.on_start(ctx));
        }
        cluster
    }

    /// A replica as built at boot, with the cluster's configuration.
    pub fn fresh(&self) -> KvPaxos {
        MultiPaxos::for_service(self.config.clone(), KvStore::new())
    }

    /// Runs one handler; its sends go on the wire, its syncs complete at once.
    pub fn step(
        &mut self,
        id: NodeId,
        handler: impl FnOnce(&mut KvPaxos, &mut NodeCtx<'_, KvPaxos>),
    ) {
        let size = self.nodes.len() as u32;
        let mut effects = Vec::new();
        {
            let mut ctx = NodeCtx::new(
                id,
                size,
                0,
                &mut effects,
                &mut self.disks[id.0 as usize],
                &mut self.decisions,
                &mut self.next_timer_id,
                &mut self.ignored,
            );
            handler(&mut self.nodes[id.0 as usize], &mut ctx);
        }
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => self.wire.push((id, to, msg)),
                Effect::Sync { up_to } => self.disks[id.0 as usize].complete_sync(up_to),
                _ => {}
            }
        }
    }

    pub fn node(&self, id: u32) -> &KvPaxos {
        &self.nodes[id as usize]
    }
}
