//! Small nodes for the simulator's own tests and benchmarks.

use serde::{Deserialize, Serialize};

use crate::node::{ClientId, Node, NodeCtx, NodeId};

/// A ball bounced between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ball {
    pub hops: u64,
}

/// The ping-pong benchmark node: starts `in_flight` balls, and answers every ball it receives
/// by sending it on to a uniformly random other node.
#[derive(Debug)]
pub struct PingPong {
    pub in_flight: u32,
    pub received: u64,
}

impl PingPong {
    /// A node that starts `in_flight` balls.
    pub fn new(in_flight: u32) -> Self {
        PingPong {
            in_flight,
            received: 0,
        }
    }

    fn random_other(ctx: &mut NodeCtx<'_, Self>) -> NodeId {
        let others = ctx.cluster_size() as u64 - 1;
        let pick = ctx.random_below(others) as u32;
        NodeId(if pick >= ctx.id().0 { pick + 1 } else { pick })
    }
}

impl Node for PingPong {
    type Msg = Ball;
    type Timer = ();
    type Request = ();
    type Reply = ();
    type Obs = ();

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        assert!(ctx.cluster_size() >= 2, "ping-pong needs two nodes");
        for _ in 0..self.in_flight {
            let to = Self::random_other(ctx);
            ctx.send(to, Ball { hops: 0 });
        }
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, _from: NodeId, msg: Ball) {
        self.received += 1;
        let to = Self::random_other(ctx);
        ctx.send(to, Ball { hops: msg.hops + 1 });
    }

    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}

    fn on_request(&mut self, ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {
        ctx.ignore("ping-pong serves no clients");
    }
}

/// The seeds a seeded test runs: `DST_SEED=s` runs just `s` (to reproduce a failure);
/// otherwise `DST_SEEDS=n` (default `default_count`) seeds starting at `DST_FIRST_SEED`
/// (default 1). Malformed values are reported, not silently replaced.
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    let read = |name: &str| -> Option<u64> {
        let text = std::env::var(name).ok()?;
        match text.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => panic!("{name}={text:?} is not a non-negative integer"),
        }
    };
    if let Some(seed) = read("DST_SEED") {
        return vec![seed];
    }
    let first = read("DST_FIRST_SEED").unwrap_or(1);
    let count = read("DST_SEEDS").unwrap_or(default_count);
    (first..first.saturating_add(count)).collect()
}
