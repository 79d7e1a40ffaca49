//! Deliberately broken Multi-Paxos variants in the real simulator, to show the oracles can
//! fail. `Broken` runs the real replica on a disk of its own with one bug:
//! - [`Bug::ForgetReports`] strips every report from the promises it sends, so a new leader
//!   never learns what earlier ballots accepted (or what was chosen) and may put another
//!   value in a chosen slot;
//! - [`Bug::SkipSync`] never syncs, so promises and accepts leave before they are durable
//!   and a crash forgets them.
//!
//! The correct replica passes the same schedules.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::{judge, run_paxos, run_with, KvPaxos, Run};
use dst_multipaxos::{Body, MultiPaxos, PaxosConfig, PaxosMsg, PaxosTimer};
use dst_protocols::KvStore;
use dst_sim::{
    ClientId, Effect, Node, NodeCtx, NodeId, SeededSource, Storage, StorageFaults, TimerId,
};

/// Disks that outlive node instances (the simulator builds a fresh instance on restart).
type Disks = Rc<RefCell<BTreeMap<NodeId, Storage>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    ForgetReports,
    SkipSync,
}

struct Broken {
    bug: Bug,
    inner: KvPaxos,
    disks: Disks,
    decisions: SeededSource,
    next_timer_id: u64,
    /// Inner timer id -> outer timer id.
    timers: BTreeMap<TimerId, TimerId>,
    ignored: Vec<&'static str>,
}

impl Broken {
    fn new(bug: Bug, id: NodeId, disks: Disks) -> Self {
        disks
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| Storage::new(StorageFaults::default()));
        Broken {
            bug,
            inner: MultiPaxos::for_service(PaxosConfig::default(), KvStore::new()),
            disks,
            decisions: SeededSource::new(u64::from(id.0) + 100),
            next_timer_id: 0,
            timers: BTreeMap::new(),
            ignored: Vec::new(),
        }
    }

    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        handler: impl FnOnce(&mut KvPaxos, &mut NodeCtx<'_, KvPaxos>),
    ) {
        let mut effects = Vec::new();
        let disks = Rc::clone(&self.disks);
        let mut disks = disks.borrow_mut();
        let disk = disks.get_mut(&ctx.id()).expect("disk made with the node");
        {
            let mut inner_ctx = NodeCtx::new(
                ctx.id(),
                ctx.cluster_size(),
                ctx.now_ns(),
                &mut effects,
                disk,
                &mut self.decisions,
                &mut self.next_timer_id,
                &mut self.ignored,
            );
            handler(&mut self.inner, &mut inner_ctx);
        }
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => ctx.send(to, self.mangle(msg)),
                Effect::Broadcast { msg } => ctx.broadcast(self.mangle(msg)),
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
                Effect::Sync { up_to } => {
                    if self.bug != Bug::SkipSync {
                        disk.complete_sync(up_to)
                    }
                }
                Effect::Observe(observation) => ctx.observe(observation),
            }
        }
        for reason in self.ignored.drain(..) {
            ctx.ignore(reason);
        }
    }
}

impl Broken {
    fn mangle(
        &self,
        msg: PaxosMsg<dst_protocols::KvCommand>,
    ) -> PaxosMsg<dst_protocols::KvCommand> {
        if self.bug == Bug::ForgetReports {
            forget(msg)
        } else {
            msg
        }
    }
}

/// Promises report nothing.
fn forget(msg: PaxosMsg<dst_protocols::KvCommand>) -> PaxosMsg<dst_protocols::KvCommand> {
    match msg.body {
        Body::Promise { ballot, from, .. } => PaxosMsg::seal(
            Body::Promise {
                ballot,
                from,
                accepted: Vec::new(),
                damaged: Vec::new(),
            },
            true,
        ),
        body => PaxosMsg { body, ..msg },
    }
}

impl Node for Broken {
    type Msg = <KvPaxos as Node>::Msg;
    type Timer = (TimerId, PaxosTimer);
    type Request = <KvPaxos as Node>::Request;
    type Reply = <KvPaxos as Node>::Reply;
    type Obs = <KvPaxos as Node>::Obs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, |node, inner| node.on_start(inner));
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        if let Some(disk) = self.disks.borrow_mut().get_mut(&ctx.id()) {
            disk.crash(&mut self.decisions);
        }
        self.drive(ctx, |node, inner| node.on_restart(inner));
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

/// Two nodes restart with nothing in memory and the third goes down before they catch up:
/// the next leader learns the log only from its phase 1 (and its own disk).
const AMNESIA_MAJORITY: &str = "at 400ms crash 0; at 420ms restart 0; at 425ms crash 1; \
     at 425ms crash 2; at 430ms restart 2; at 1500ms restart 1";

fn run(seed: u64) -> Run {
    let mut run = Run::new(seed, "none");
    run.plan = AMNESIA_MAJORITY;
    run.requests_per_client = 80;
    run
}

#[test]
fn correct_paxos_passes_the_crash_schedule() {
    for seed in 0..3 {
        let run = run(seed);
        let violations = judge(&run, &run_paxos(&run));
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
    }
}

fn caught(bug: Bug) -> usize {
    let mut caught = 0;
    for seed in 0..3 {
        let run = run(seed);
        let disks: Disks = Rc::default();
        let outcome = run_with(&run, move |id| Broken::new(bug, id, Rc::clone(&disks)));
        let violations = judge(&run, &outcome);
        if violations
            .iter()
            .any(|violation| violation.starts_with("agreement"))
        {
            caught += 1;
        }
    }
    caught
}

#[test]
fn deliberately_broken_phase_1_that_ignores_accepted_values_is_caught() {
    assert_eq!(
        caught(Bug::ForgetReports),
        3,
        "an oracle missed promises that report nothing"
    );
}

#[test]
fn deliberately_broken_replica_that_never_syncs_is_caught() {
    assert_eq!(
        caught(Bug::SkipSync),
        3,
        "an oracle missed promises that were never durable"
    );
}
