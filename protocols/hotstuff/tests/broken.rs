//! A deliberately broken HotStuff, to show the oracles fail when the commit rule is wrong:
//! `Hasty` runs the real replica but commits (executes, reports and answers) every block as
//! soon as it votes for it, a 1-chain rule instead of the 3-chain with direct parents. When
//! a voted block is abandoned after a timeout (its QC never formed, or never spread), Hasty
//! replicas have executed different blocks at the same slots. The checkers must say so,
//! while the real replica passes the same seeds (tests/sim.rs).

mod common;

use std::collections::BTreeMap;

use common::{run_hotstuff, run_with, KvHotStuff, KvObs, Run};
use dst_hotstuff::{Block, HotStuff, HotStuffConfig, HotStuffTimer, Message};
use dst_protocols::{KvCommand, KvOutput, KvStore, Observation, Reply, Sessions};
use dst_sim::{ClientId, Digest, Effect, Node, NodeCtx, NodeId, StateMachine};

/// Most proposals remembered.
const SEEN_MAX: usize = 256;

struct Hasty {
    inner: KvHotStuff,
    state: Sessions<KvStore>,
    slot: u64,
    seen: BTreeMap<Digest, Block<KvCommand>>,
}

impl Hasty {
    fn new() -> Self {
        Hasty {
            inner: HotStuff::for_service(HotStuffConfig::default(), KvStore::new()),
            state: Sessions::new(KvStore::new()),
            slot: 0,
            seen: BTreeMap::new(),
        }
    }

    fn remember(&mut self, msg: &Message<KvCommand>) {
        if let Message::Propose { block, .. } = msg {
            self.seen.insert(block.digest(), block.clone());
            while self.seen.len() > SEEN_MAX {
                self.seen.pop_first();
            }
        }
    }

    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        handler: impl FnOnce(&mut KvHotStuff, &mut NodeCtx<'_, KvHotStuff>),
    ) {
        let voted_before = self.inner.last_voted_round();
        let inner = &mut self.inner;
        let effects = ctx.nest::<KvHotStuff>(None, |inner_ctx| handler(inner, inner_ctx));
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => ctx.emit(Effect::Send { to, msg }),
                Effect::Broadcast { msg } => {
                    self.remember(&msg);
                    ctx.emit(Effect::Broadcast { msg })
                }
                Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                } => ctx.emit(Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                }),
                Effect::CancelTimer { id } => ctx.emit(Effect::CancelTimer { id }),
                Effect::Sync { up_to } => ctx.emit(Effect::Sync { up_to }),
                // The real commits and replies are replaced by the hasty ones.
                Effect::Observe(Observation::Commit { .. } | Observation::Apply { .. })
                | Effect::Reply { .. } => {}
                Effect::Observe(observation) => ctx.emit(Effect::Observe(observation)),
            }
        }
        let voted = self.inner.last_voted_round();
        if voted > voted_before {
            let block = self
                .seen
                .values()
                .find(|block| block.round == voted && self.inner.block(&block.digest()).is_some())
                .cloned();
            if let Some(block) = block {
                self.commit_at_once(ctx, &block);
            }
        }
    }

    /// The bug: executing a block on its first vote.
    fn commit_at_once(&mut self, ctx: &mut NodeCtx<'_, Self>, block: &Block<KvCommand>) {
        for request in &block.requests {
            let request = &request.value;
            self.slot += 1;
            let id = Some((request.client, request.sequence));
            ctx.observe(Observation::Commit {
                node: ctx.id(),
                slot: self.slot,
                request: id,
                command_digest: dst_protocols::command_digest(&request.command),
            });
            let output = self.state.apply(request);
            ctx.observe(Observation::Apply {
                node: ctx.id(),
                slot: self.slot,
                request: id,
                state_digest: self.state.digest(),
            });
            if let Some(output) = output.into_output() {
                ctx.reply(
                    request.client,
                    Reply::Done {
                        sequence: request.sequence,
                        output,
                    },
                );
            }
        }
    }
}

impl Node for Hasty {
    type Msg = Message<KvCommand>;
    type Timer = HotStuffTimer;
    type Request = dst_hotstuff::ClientRequest<KvCommand>;
    type Reply = Reply<KvOutput>;
    type Obs = KvObs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, |inner, inner_ctx| inner.on_start(inner_ctx));
    }
    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, |inner, inner_ctx| inner.on_restart(inner_ctx));
    }
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        self.remember(&msg);
        self.drive(ctx, |inner, inner_ctx| {
            inner.on_message(inner_ctx, from, msg)
        });
    }
    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: HotStuffTimer) {
        self.drive(ctx, |inner, inner_ctx| inner.on_timer(inner_ctx, timer));
    }
    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        self.drive(ctx, |inner, inner_ctx| {
            inner.on_request(inner_ctx, client, request)
        });
    }
}

#[test]
fn committing_on_the_first_vote_is_caught_by_the_checkers() {
    let mut caught = Vec::new();
    for seed in 1..=8 {
        let run = Run::new(seed, "heavy");
        let outcome = run_with(&run, |_| Hasty::new());
        let verdict = outcome.verdict(&run);
        if let Some(violation) = verdict.violations.first() {
            caught.push((seed, violation.clone()));
            // The real replica is clean on the same seed: the broken rule is the cause.
            let real = run_hotstuff(&run);
            assert!(
                real.verdict(&run).is_clean(),
                "seed {seed}: the real replica fails too"
            );
        }
    }
    assert!(
        !caught.is_empty(),
        "no seed of 8 caught a 1-chain commit rule"
    );
    eprintln!("1-chain commit caught: {caught:?}");
}
