//! A deliberately broken Raft, to show the oracles can fail: `Amnesiac` runs the real Raft on
//! a private in-memory disk that a crash wipes (it forgets its term, vote and log, as if it
//! never synced). Under a whole-cluster restart the agreement oracle must catch it, while
//! the correct Raft passes the same schedule.

mod common;

use std::collections::BTreeMap;

use common::{check_agreement, completed, run_raft, run_with, KvRaft, Run};
use dst_protocols::KvStore;
use dst_raft::{Raft, RaftConfig, RaftTimer};
use dst_sim::{
    ClientId, Effect, Node, NodeCtx, NodeId, SeededSource, Storage, StorageFaults, TimerId,
};

struct Amnesiac {
    inner: KvRaft,
    disk: Storage,
    decisions: SeededSource,
    next_timer_id: u64,
    /// Inner timer id -> outer timer id.
    timers: BTreeMap<TimerId, TimerId>,
    ignored: Vec<&'static str>,
}

impl Amnesiac {
    fn new(id: NodeId) -> Self {
        Amnesiac {
            inner: Raft::for_service(RaftConfig::default(), KvStore::new()),
            disk: Storage::new(StorageFaults::default()),
            decisions: SeededSource::new(u64::from(id.0) + 100),
            next_timer_id: 0,
            timers: BTreeMap::new(),
            ignored: Vec::new(),
        }
    }

    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        handler: impl FnOnce(&mut KvRaft, &mut NodeCtx<'_, KvRaft>),
    ) {
        let mut effects = Vec::new();
        {
            let mut inner_ctx = NodeCtx::new(
                ctx.id(),
                ctx.cluster_size(),
                ctx.now_ns(),
                &mut effects,
                &mut self.disk,
                &mut self.decisions,
                &mut self.next_timer_id,
                &mut self.ignored,
            );
            handler(&mut self.inner, &mut inner_ctx);
        }
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => ctx.send(to, msg),
                Effect::Broadcast { msg } => ctx.broadcast(msg),
                Effect::Reply { client, reply } => ctx.reply(client, reply),
                Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                } => {
                    let outer = ctx.set_timer(delay_ns, (id, timer));
                    self.timers.insert(id, outer);
                }
                Effect::CancelTimer { id } => {
                    if let Some(outer) = self.timers.remove(&id) {
                        ctx.cancel_timer(outer);
                    }
                }
                // The bug: the "disk" is memory, so a sync makes nothing survive a crash.
                Effect::Sync { up_to } => self.disk.complete_sync(up_to),
                Effect::Observe(observation) => ctx.observe(observation),
            }
        }
        for reason in self.ignored.drain(..) {
            ctx.ignore(reason);
        }
    }
}

impl Node for Amnesiac {
    type Msg = <KvRaft as Node>::Msg;
    type Timer = (TimerId, RaftTimer);
    type Request = <KvRaft as Node>::Request;
    type Reply = <KvRaft as Node>::Reply;
    type Obs = <KvRaft as Node>::Obs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, |node, inner| node.on_start(inner));
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        self.drive(ctx, |node, inner| node.on_message(inner, from, msg));
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, (id, timer): Self::Timer) {
        self.timers.remove(&id);
        self.drive(ctx, |node, inner| node.on_timer(inner, timer));
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        self.drive(ctx, |node, inner| node.on_request(inner, client, request));
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.inner.check_invariants()
    }
}

/// Every node crashes at once and comes back: what was committed must still be committed.
const WHOLE_CLUSTER_RESTART: &str = "at 500ms crash 0; at 500ms crash 1; at 500ms crash 2; \
     at 600ms restart 0; at 600ms restart 1; at 600ms restart 2";

fn run(seed: u64) -> Run {
    let mut run = Run::new(seed, "none");
    run.plan = WHOLE_CLUSTER_RESTART;
    run.requests_per_client = 60;
    run.reads_per_mille = 0;
    run
}

#[test]
fn correct_raft_survives_a_whole_cluster_restart() {
    for seed in 0..3 {
        let outcome = run_raft(&run(seed));
        check_agreement(&outcome.observations)
            .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        assert_eq!(
            completed(&outcome.observations),
            120,
            "seed {seed}: clients finished"
        );
    }
}

#[test]
fn deliberately_broken_amnesiac_raft_is_caught_by_the_agreement_oracle() {
    let mut caught = 0;
    for seed in 0..3 {
        let outcome = run_with(&run(seed), Amnesiac::new);
        if let Err(error) = check_agreement(&outcome.observations) {
            caught += 1;
            assert!(error.contains("slot"), "unexpected report: {error}");
        }
    }
    assert_eq!(caught, 3, "the oracle missed an amnesiac cluster");
}
