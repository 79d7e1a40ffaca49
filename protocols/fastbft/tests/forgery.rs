//! Forged certificates are rejected (brief section 7, injected fault 4), whoever sends them.

mod common;

use common::keys::{as_node, order, replies, request, signed_by, spec, Replica};
use dst_fastbft::msg::{verify_cc, Cc, CheckpointBody, ClientMsg, FastReply, Msg, Vote};
use dst_fastbft::select::check_view_change;
use dst_fastbft::{FastBftConfig, Params};
use dst_protocols::{KvCommand, KvOutput, KvStore};
use dst_sim::{Adversarial, ClientId, Digest, Node, NodeId};

fn params() -> Params {
    Params::new(4, 0)
}

fn cc_of(votes: Vec<Vote<KvOutput>>, order: &dst_fastbft::msg::Order<KvCommand>) -> Cc<KvOutput> {
    Cc {
        view: order.order.value.view,
        seq: order.order.value.seq,
        hist: order.order.value.hist,
        votes,
    }
}

/// The forged variants of a valid CC for `order`, each with why it must fail.
fn forged_ccs(order: &dst_fastbft::msg::Order<KvCommand>) -> Vec<(&'static str, Cc<KvOutput>)> {
    let vote = |replica| Vote::Spec(spec(replica, order));
    let mut other = order.clone();
    other.order.value.hist = Digest::of(&"another history");
    let mut relabelled = spec(3, order);
    relabelled.value.replica = NodeId(2);
    vec![
        (
            "duplicated signer",
            cc_of(vec![vote(0), vote(0), vote(1)], order),
        ),
        ("too few signers", cc_of(vec![vote(0), vote(1)], order)),
        (
            "mixed payloads",
            cc_of(vec![vote(0), vote(1), Vote::Spec(spec(3, &other))], order),
        ),
        (
            "relabelled signer",
            cc_of(vec![vote(0), vote(1), Vote::Spec(relabelled)], order),
        ),
        (
            "commit vote in a cc",
            cc_of(
                vec![
                    vote(0),
                    vote(1),
                    Vote::Checkpoint(signed_by(
                        3,
                        CheckpointBody {
                            commit: true,
                            view: 0,
                            seq: 1,
                            hist: order.order.value.hist,
                            state_digest: 0,
                            replica: NodeId(3),
                        },
                    )),
                ],
                order,
            ),
        ),
    ]
}

#[test]
fn a_valid_cc_verifies_and_every_forgery_fails() {
    let request = request(0, 1, "k0", "a");
    let order = order(&params(), 0, 1, Digest::ZERO, &request);
    let valid = cc_of(
        (0..3)
            .map(|replica| Vote::Spec(spec(replica, &order)))
            .collect(),
        &order,
    );
    assert_eq!(
        verify_cc(&params(), &valid, &mut |sig, digest| sig.verify(digest)),
        Ok(())
    );
    for (why, cc) in forged_ccs(&order) {
        assert!(
            verify_cc(&params(), &cc, &mut |sig, digest| sig.verify(digest)).is_err(),
            "{why}: accepted"
        );
    }
}

/// A backup that accepted `order`, then got `commit` from client 0: its replies.
fn commit_replies(
    cc: Cc<KvOutput>,
    order: &dst_fastbft::msg::Order<KvCommand>,
) -> (usize, Vec<&'static str>) {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(ctx, NodeId(0), Msg::Order(order.clone()));
        let before = ctx.cpu_used_ns();
        replica.on_request(
            ctx,
            ClientId(0),
            ClientMsg::Commit {
                client: ClientId(0),
                cc,
            },
        );
        before
    });
    let local_commits = replies(&effects)
        .into_iter()
        .filter(|reply| matches!(reply, FastReply::LocalCommit { .. }))
        .count();
    (local_commits, ignored)
}

#[test]
fn replicas_answer_local_commit_only_to_a_valid_cc() {
    let request = request(0, 1, "k0", "a");
    let order = order(&params(), 0, 1, Digest::ZERO, &request);
    let valid = cc_of(
        (0..3)
            .map(|replica| Vote::Spec(spec(replica, &order)))
            .collect(),
        &order,
    );
    let (local_commits, ignored) = commit_replies(valid, &order);
    assert_eq!(local_commits, 1, "valid CC answered: ignored {ignored:?}");
    for (why, cc) in forged_ccs(&order) {
        let (local_commits, ignored) = commit_replies(cc, &order);
        assert_eq!(local_commits, 0, "{why}: LOCAL-COMMIT sent for a forged CC");
        assert!(
            ignored.iter().any(|reason| reason.starts_with("cc:")),
            "{why}: {ignored:?}"
        );
    }
}

#[test]
fn an_order_not_signed_by_the_primary_is_ignored() {
    let request = request(0, 1, "k0", "a");
    let mut forged = order(&params(), 0, 1, Digest::ZERO, &request);
    forged.order = signed_by(2, forged.order.value.clone());
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(ctx, NodeId(2), Msg::Order(forged));
    });
    assert!(
        replies(&effects).is_empty(),
        "no SPEC-RESPONSE for a forged order"
    );
    assert_eq!(replica.tip(), 0);
    assert!(
        ignored.contains(&"order: not signed by the view's primary"),
        "{ignored:?}"
    );
}

#[test]
fn a_view_change_with_a_fabricated_cc_is_discarded() {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let genesis = replica.service_state().clone();
    let genesis_digest = dst_sim::StateMachine::digest(&genesis);
    let (honest, _, _) = as_node(2, 4, |ctx| {
        replica.on_start(ctx);
        let body = dst_fastbft::msg::ViewChangeBody::<KvCommand, KvOutput> {
            new_view: 1,
            replica: NodeId(2),
            proof: common::keys::ihtp_proof(1),
            checkpoint: dst_fastbft::msg::StableProof {
                seq: 0,
                hist: Digest::ZERO,
                state_digest: genesis_digest,
                votes: Vec::new(),
            },
            ccs: Vec::new(),
            log: Vec::new(),
        };
        ctx.sign_value(body)
    });
    let check = |body: &dst_fastbft::msg::ViewChangeBody<KvCommand, KvOutput>| {
        check_view_change(&params(), body, 256, genesis_digest, &mut |sig, digest| {
            sig.verify(digest)
        })
        .map(|_| ())
    };
    assert_eq!(check(&honest.value), Ok(()));
    for variant in 0..4 {
        let message = Msg::ViewChange(Box::new(honest.clone()));
        let (forged, _, _) = as_node(2, 4, |ctx| Replica::forge(ctx, &message, variant));
        let Some(Msg::ViewChange(forged)) = forged else {
            panic!("the adversary forges view changes");
        };
        assert!(
            check(&forged.value).is_err(),
            "variant {variant}: fabricated CC or proof accepted"
        );
    }
}
