//! VIEW-CONFIRM: a replica resumes a view (answers clients, accepts ORDER-REQs) only once
//! `Qs` replicas announced the same end of the installed NEW-VIEW history; a primary that
//! signs two valid NEW-VIEWs for one view gets at most one of them confirmed.

mod common;

use common::keys::{as_node, ihtp_proof, order, request, signed_by, Replica};
use dst_fastbft::msg::{
    FastReply, Msg, NewViewBody, Order, OrderBody, StableProof, ViewChangeBody,
};
use dst_fastbft::{FastBftConfig, Params};
use dst_protocols::{KvCommand, KvOutput, KvStore, Sessions};
use dst_sim::{Adversarial, Digest, Effect, Node, NodeCtx, NodeId, Signed, StateMachine};

type NewView = Box<Signed<NewViewBody<KvCommand, KvOutput>>>;

fn params() -> Params {
    Params::new(4, 0)
}

/// The request `r` ordered at slot 1 of view 0.
fn ordered() -> Order<KvCommand> {
    order(&params(), 0, 1, Digest::ZERO, &request(0, 1, "k", "r"))
}

fn view_change(
    replica: u32,
    log: Vec<Order<KvCommand>>,
) -> Signed<ViewChangeBody<KvCommand, KvOutput>> {
    signed_by(
        replica,
        ViewChangeBody {
            new_view: 1,
            replica: NodeId(replica),
            proof: ihtp_proof(1),
            checkpoint: StableProof {
                seq: 0,
                hist: Digest::ZERO,
                state_digest: Sessions::new(KvStore::new()).digest(),
                votes: Vec::new(),
            },
            ccs: Vec::new(),
            log,
        },
    )
}

/// NEW-VIEW A (view changes of 0, 2 and 3: two hold `r`, so it carries `r` at slot 1) and
/// NEW-VIEW B (view changes of 0, 1 and 3: one holds `r`, so it carries nothing). Both are
/// valid; primary n1 signing both is the equivocation VIEW-CONFIRM guards against.
fn new_views() -> (NewView, NewView) {
    let with_r = || vec![ordered()];
    let reissued = signed_by(
        1,
        OrderBody {
            view: 1,
            ..ordered().order.value
        },
    );
    let a = NewViewBody {
        view: 1,
        view_changes: vec![
            view_change(0, with_r()),
            view_change(2, with_r()),
            view_change(3, vec![]),
        ],
        orders: vec![reissued],
    };
    let b = NewViewBody {
        view: 1,
        view_changes: vec![
            view_change(0, with_r()),
            view_change(1, vec![]),
            view_change(3, vec![]),
        ],
        orders: Vec::new(),
    };
    (Box::new(signed_by(1, a)), Box::new(signed_by(1, b)))
}

fn end_of_a() -> (u64, Digest) {
    (1, ordered().order.value.hist)
}

fn confirm(view: u64, (seq, hist): (u64, Digest)) -> Msg<KvCommand, KvOutput> {
    Msg::ViewConfirm {
        view,
        seq,
        hist,
        answer: true,
    }
}

/// SPEC-RESPONSEs of view 1 the replica sent.
fn view_1_answers(effects: &[Effect<Replica>]) -> usize {
    effects
        .iter()
        .filter(|effect| {
            matches!(effect, Effect::Reply { reply: FastReply::Spec { spec, .. }, .. } if spec.value.view == 1)
        })
        .count()
}

fn confirms_sent(effects: &[Effect<Replica>]) -> Vec<(u64, Digest)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Broadcast {
                msg: Msg::ViewConfirm { seq, hist, .. },
            } => Some((*seq, *hist)),
            _ => None,
        })
        .collect()
}

/// Replica 2, which accepted `r` in view 0, runs `script`.
fn replica_2(
    script: impl FnOnce(&mut Replica, &mut NodeCtx<'_, Replica>),
) -> (Replica, Vec<Effect<Replica>>, Vec<&'static str>) {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let ((), effects, ignored) = as_node(2, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(ctx, NodeId(0), Msg::Order(ordered()));
        script(&mut replica, ctx);
    });
    (replica, effects, ignored)
}

#[test]
fn an_installed_view_answers_and_orders_only_once_qs_replicas_confirm_it() {
    let (a, _) = new_views();
    let next = order(&params(), 1, 2, end_of_a().1, &request(1, 1, "k", "s"));
    let (replica, effects, ignored) = replica_2(|replica, ctx| {
        replica.on_message(ctx, NodeId(1), Msg::NewView(a));
        replica.on_message(ctx, NodeId(1), Msg::Order(next.clone()));
    });
    assert_eq!(replica.view(), 1, "installed: {ignored:?}");
    assert_eq!(
        confirms_sent(&effects),
        vec![end_of_a()],
        "announced its end"
    );
    assert_eq!(
        view_1_answers(&effects),
        0,
        "no answer in an unconfirmed view"
    );
    assert_eq!(replica.tip(), 1, "the view's new ORDER-REQ waits");

    let (replica, effects, ignored) = replica_2(|replica, ctx| {
        replica.on_message(ctx, NodeId(1), Msg::NewView(new_views().0));
        replica.on_message(ctx, NodeId(1), Msg::Order(next.clone()));
        replica.on_message(ctx, NodeId(1), confirm(1, end_of_a()));
        assert_eq!(replica.tip(), 1, "two of Qs = 3 is not enough");
        replica.on_message(ctx, NodeId(3), confirm(1, end_of_a()));
    });
    assert_eq!(view_1_answers(&effects), 2, "r and s answered: {ignored:?}");
    assert_eq!(replica.tip(), 2, "the buffered ORDER-REQ was accepted");
}

#[test]
fn the_confirmed_new_view_replaces_another_one_of_the_same_view() {
    let (a, b) = new_views();
    let (replica, effects, ignored) = replica_2(|replica, ctx| {
        replica.on_message(ctx, NodeId(1), Msg::NewView(b.clone()));
        assert_eq!((replica.view(), replica.tip()), (1, 0), "B installed");
        for from in [0, 1, 3] {
            replica.on_message(ctx, NodeId(from), confirm(1, end_of_a()));
        }
        assert_eq!(replica.tip(), 0, "its own end is not confirmed: it waits");
        replica.on_message(ctx, NodeId(3), Msg::NewView(a.clone()));
    });
    assert_eq!(replica.tip(), 1, "A installed: {ignored:?}");
    assert_eq!(replica.tip_hist(), end_of_a().1);
    assert_eq!(
        view_1_answers(&effects),
        1,
        "r answered in view 1 once A confirmed"
    );
}

#[test]
fn a_lying_replica_cannot_confirm_or_replace_a_view() {
    let (a, b) = new_views();
    let honest = confirm(1, end_of_a());
    let mut forged = None;
    as_node(1, 4, |ctx| forged = Replica::forge(ctx, &honest, 0));
    let forged = forged.expect("VIEW-CONFIRM forgeries");
    let Msg::ViewConfirm { seq, hist, .. } = forged else {
        panic!("a VIEW-CONFIRM");
    };
    assert_ne!((seq, hist), end_of_a());
    let (replica, effects, ignored) = replica_2(|replica, ctx| {
        replica.on_message(ctx, NodeId(1), Msg::NewView(a));
        replica.on_message(ctx, NodeId(1), forged.clone());
        replica.on_message(ctx, NodeId(1), Msg::NewView(b));
    });
    assert_eq!(replica.tip(), 1, "A kept");
    assert_eq!(view_1_answers(&effects), 0, "nothing confirmed by one liar");
    assert!(
        ignored.contains(&"new view: not the confirmed one"),
        "{ignored:?}"
    );
}

#[test]
fn a_confirmed_replica_sends_its_new_view_to_one_that_installed_another_once() {
    let (a, _) = new_views();
    let b_end = (0, Digest::ZERO);
    let (_, effects, _) = replica_2(|replica, ctx| {
        replica.on_message(ctx, NodeId(1), Msg::NewView(a));
        replica.on_message(ctx, NodeId(1), confirm(1, end_of_a()));
        replica.on_message(ctx, NodeId(0), confirm(1, end_of_a()));
        for _ in 0..3 {
            replica.on_message(ctx, NodeId(3), confirm(1, b_end));
        }
    });
    let sent = effects
        .iter()
        .filter(|effect| {
            matches!(
                effect,
                Effect::Send {
                    to: NodeId(3),
                    msg: Msg::NewView(_)
                }
            )
        })
        .count();
    assert_eq!(sent, 1, "one NEW-VIEW to the replica that installed B");
}

#[test]
fn a_primary_signing_two_new_views_gets_one_confirmed_and_breaks_nothing() {
    use common::{completions, new_views, run, violations, Behaviour, Run};
    let mut equivocated = 0;
    for seed in 1..=6 {
        let mut setup = Run::new(seed, "none");
        setup.nodes = 7;
        // View 0's primary reaches only n1-n3 for a while, then crashes: the logs differ at
        // the tail, so different sets of VIEW-CHANGEs select different histories. n1 leads
        // view 1 and equivocates.
        setup.plan = "at 100ms cut 0-4 0-5 0-6\nat 200ms crash 0";
        setup
            .behaviours
            .insert(NodeId(1), Behaviour::NewViewEquivocator);
        let outcome = run(&setup);
        let found = violations(&setup, &outcome);
        assert!(found.is_empty(), "seed {seed}: {found:#?}");
        assert!(
            new_views(&outcome.observations).contains(&1),
            "seed {seed}: view 1"
        );
        assert_eq!(
            completions(&outcome.observations),
            40,
            "seed {seed}: all complete"
        );
        let node = outcome.sim.node(NodeId(1)).expect("node 1");
        equivocated += node.equivocated.len();
    }
    assert!(
        equivocated > 0,
        "some run saw two NEW-VIEWs with different histories"
    );
}
