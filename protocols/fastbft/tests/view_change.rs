//! The IHTP quorum proof inside VIEW-CHANGE (brief section 2): a VIEW-CHANGE to view `w`
//! carries `f + 1` IHTPs about view `w - 1` (or later) or a POM of the primary of `w - 1`;
//! receivers verify it and ignore a VIEW-CHANGE without a valid one.

mod common;

use common::keys::{as_node, ihtp, ihtp_proof, signed_by};
use dst_fastbft::msg::{
    verify_view_change_proof, Msg, OrderBody, StableProof, ViewChangeBody, ViewChangeProof,
};
use dst_fastbft::select::check_view_change;
use dst_fastbft::{FastBft, FastBftConfig, Params, Timer};
use dst_protocols::{KvCommand, KvOutput, KvStore, Sessions};
use dst_sim::{Digest, Effect, Node, NodeId, Signed, StateMachine};

type Replica = FastBft<KvStore>;
type Body = ViewChangeBody<KvCommand, KvOutput>;

fn params() -> Params {
    Params::new(4, 0)
}

fn genesis_digest() -> u64 {
    Sessions::new(KvStore::new()).digest()
}

fn body(replica: u32, new_view: u64, proof: ViewChangeProof) -> Body {
    ViewChangeBody {
        new_view,
        replica: NodeId(replica),
        proof,
        checkpoint: StableProof {
            seq: 0,
            hist: Digest::ZERO,
            state_digest: genesis_digest(),
            votes: Vec::new(),
        },
        ccs: Vec::new(),
        log: Vec::new(),
    }
}

fn order_body(view: u64, seq: u64, tag: &str) -> OrderBody {
    OrderBody {
        view,
        seq,
        hist: Digest::of(&tag),
        digest: Digest::of(&(tag, "entry")),
    }
}

/// A POM of the primary of `view` (n = 4: node `view % 4`).
fn pom(view: u64) -> ViewChangeProof {
    let primary = (view % 4) as u32;
    ViewChangeProof::Pom {
        first: signed_by(primary, order_body(view, 1, "a")),
        second: signed_by(primary, order_body(view, 1, "b")),
    }
}

/// Proofs for a VIEW-CHANGE to view 1 that must all fail, each with why.
fn forged_proofs() -> Vec<(&'static str, ViewChangeProof)> {
    let mut relabelled = ihtp(2, 0);
    relabelled.value.replica = NodeId(1);
    vec![
        ("missing", ViewChangeProof::Ihtp(Vec::new())),
        ("too few IHTPs", ViewChangeProof::Ihtp(vec![ihtp(0, 0)])),
        (
            "duplicated signer",
            ViewChangeProof::Ihtp(vec![ihtp(3, 0), ihtp(3, 0)]),
        ),
        (
            "relabelled signer",
            ViewChangeProof::Ihtp(vec![ihtp(0, 0), relabelled]),
        ),
        (
            "unknown signer",
            ViewChangeProof::Ihtp(vec![ihtp(0, 0), ihtp(9, 0)]),
        ),
        (
            "POM signed by a backup",
            ViewChangeProof::Pom {
                first: signed_by(1, order_body(0, 1, "a")),
                second: signed_by(1, order_body(0, 1, "b")),
            },
        ),
        (
            "POM of orders that agree",
            ViewChangeProof::Pom {
                first: signed_by(0, order_body(0, 1, "a")),
                second: signed_by(0, order_body(0, 1, "a")),
            },
        ),
        (
            "POM of two slots",
            ViewChangeProof::Pom {
                first: signed_by(0, order_body(0, 1, "a")),
                second: signed_by(0, order_body(0, 2, "b")),
            },
        ),
        ("POM of another view", pom(4)),
    ]
}

fn check(body: &Body) -> Result<(), &'static str> {
    check_view_change(
        &params(),
        body,
        256,
        genesis_digest(),
        &mut |sig, digest| sig.verify(digest),
    )
    .map(|_| ())
}

#[test]
fn a_view_change_is_valid_only_with_a_proof_for_its_view() {
    assert_eq!(check(&body(2, 1, ihtp_proof(1))), Ok(()));
    assert_eq!(check(&body(2, 1, pom(0))), Ok(()), "a POM of view 0");
    // IHTPs about a later view prove every earlier target too (one is correct).
    assert_eq!(check(&body(2, 1, ihtp_proof(3))), Ok(()));
    assert!(
        check(&body(2, 3, ihtp_proof(1))).is_err(),
        "IHTPs about view 0 do not justify view 3"
    );
    assert!(
        check(&body(2, 0, ihtp_proof(1))).is_err(),
        "nothing justifies view 0"
    );
    for (why, proof) in forged_proofs() {
        assert!(check(&body(2, 1, proof)).is_err(), "{why}: accepted");
    }
}

fn view_change_from(replica: u32, proof: ViewChangeProof) -> Msg<KvCommand, KvOutput> {
    Msg::ViewChange(Box::new(signed_by(replica, body(replica, 1, proof))))
}

fn broadcast_view_changes(effects: &[Effect<Replica>]) -> Vec<Signed<Body>> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Broadcast {
                msg: Msg::ViewChange(view_change),
            } => Some((**view_change).clone()),
            _ => None,
        })
        .collect()
}

/// Replica 1 (view 0) hears one IHTP about view 0 (replica 2), then VIEW-CHANGE(1) from
/// replica 3 with `proof`. Returns whether it started a view change, its VIEW-CHANGEs and
/// the reasons it ignored messages.
fn complaint_then_view_change(
    proof: ViewChangeProof,
) -> (Option<u64>, Vec<Signed<Body>>, Vec<&'static str>) {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(ctx, NodeId(2), Msg::Ihtp(ihtp(2, 0)));
        replica.on_message(ctx, NodeId(3), view_change_from(3, proof));
    });
    (
        replica.view_change_target(),
        broadcast_view_changes(&effects),
        ignored,
    )
}

#[test]
fn a_view_change_without_a_valid_proof_is_ignored_and_is_no_complaint() {
    for (why, proof) in forged_proofs() {
        let (target, sent, ignored) = complaint_then_view_change(proof);
        assert_eq!(target, None, "{why}: joined a view change");
        assert!(sent.is_empty(), "{why}: sent a VIEW-CHANGE");
        assert!(
            ignored
                .iter()
                .any(|reason| reason.starts_with("view change proof") || reason.starts_with("pom")),
            "{why}: {ignored:?}"
        );
    }
}

#[test]
fn a_replica_moved_by_a_proven_view_change_proves_its_own() {
    for proof in [ihtp_proof(1), pom(0)] {
        let (target, sent, ignored) = complaint_then_view_change(proof);
        assert_eq!(
            target,
            Some(1),
            "two complaints move to view 1: {ignored:?}"
        );
        let [own] = sent.as_slice() else {
            panic!("one VIEW-CHANGE sent: {sent:?}");
        };
        assert_eq!(own.value.new_view, 1);
        let verified =
            verify_view_change_proof(&params(), &own.value.proof, 1, &mut |s, d| s.verify(d));
        assert_eq!(verified, Ok(()), "the borrowed proof verifies");
    }
}

#[test]
fn a_late_new_view_leads_to_complaints_about_it_and_then_the_next_view() {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(ctx, NodeId(2), Msg::Ihtp(ihtp(2, 0)));
        replica.on_message(ctx, NodeId(3), Msg::Ihtp(ihtp(3, 0)));
        assert_eq!(replica.view_change_target(), Some(1));
        replica.on_timer(ctx, Timer::ViewChange { view: 1 });
        assert_eq!(
            replica.view_change_target(),
            Some(1),
            "one complaint is not enough"
        );
        replica.on_message(ctx, NodeId(3), Msg::Ihtp(ihtp(3, 1)));
    });
    assert_eq!(replica.view_change_target(), Some(2), "{ignored:?}");
    let own_ihtps = effects
        .iter()
        .filter(|effect| {
            matches!(effect, Effect::Broadcast { msg: Msg::Ihtp(ihtp) } if ihtp.value.view == 1)
        })
        .count();
    assert_eq!(own_ihtps, 1, "the timeout sent IHTP(1)");
    let sent = broadcast_view_changes(&effects);
    let last = sent.last().expect("a VIEW-CHANGE(2)");
    assert_eq!(last.value.new_view, 2);
    let verified =
        verify_view_change_proof(&params(), &last.value.proof, 2, &mut |s, d| s.verify(d));
    assert_eq!(verified, Ok(()));
}
