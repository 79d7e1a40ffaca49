//! Certificates are verified, never trusted: forged, duplicated, mis-signed or mismatched
//! certificates are rejected by the pure checks and by honest replicas.

mod common;

use common::manual::{Manual, Msg};
use dst_pbft::message::{
    check_new_view, check_prepared, check_view_change, request_digest, NULL_DIGEST,
};
use dst_pbft::{
    CommitProof, NewView, Phase, PreparedCert, Quorums, Seq, StateTransfer, Statement, View,
    ViewChange,
};
use dst_protocols::{KvCommand, Observation, Reply};
use dst_sim::{Adversarial, Digest, NodeId, Signature, Signed};

type KvPbft = common::KvPbft;

fn verify(signature: &Signature, digest: &Digest) -> bool {
    signature.verify(digest)
}

fn statement(phase: Phase, view: u64, seq: u64, digest: Digest) -> Statement {
    Statement {
        phase,
        view: View(view),
        seq: Seq(seq),
        digest,
    }
}

/// A valid prepared certificate of `view` for slot `seq` holding a request of client 1.
fn prepared_cert(manual: &mut Manual, view: u64, seq: u64) -> PreparedCert<KvCommand> {
    let request = manual.request(1, 1, "a");
    let digest = request_digest(&request);
    let primary = (view % 4) as u32;
    let pre_prepare = manual.sign_as(primary, statement(Phase::PrePrepare, view, seq, digest));
    let prepares = (0..4)
        .filter(|id| *id != primary)
        .take(2)
        .map(|id| manual.sign_as(id, statement(Phase::Prepare, view, seq, digest)))
        .collect();
    PreparedCert {
        pre_prepare,
        prepares,
        request: Some(request),
    }
}

fn view_change(
    manual: &mut Manual,
    signer: u32,
    view: u64,
    prepared: Vec<PreparedCert<KvCommand>>,
) -> Signed<ViewChange<KvCommand>> {
    manual.sign_as(
        signer,
        ViewChange {
            view: View(view),
            stable_seq: Seq(0),
            stable_digest: Digest::ZERO,
            checkpoint_proof: Vec::new(),
            prepared,
            committed: Vec::new(),
        },
    )
}

fn forge_as(manual: &mut Manual, id: u32, msg: &Msg, variant: u64) -> Msg {
    let mut forged = None;
    manual.with(id, |_, ctx| forged = KvPbft::forge(ctx, msg, variant));
    forged.expect("PBFT forges this message")
}

#[test]
fn a_prepared_certificate_needs_2f_distinct_backups_with_valid_signatures() {
    let mut manual = Manual::new(4);
    let quorums = Quorums::new(4);
    let cert = prepared_cert(&mut manual, 0, 1);
    assert!(check_prepared(&mut verify, &cert, View(1), quorums).is_ok());

    let mut duplicated = cert.clone();
    duplicated.prepares[1] = duplicated.prepares[0].clone();
    let mut with_primary = cert.clone();
    with_primary.prepares[1] = manual.sign_as(0, with_primary.prepares[1].value);
    let mut moved_signature = cert.clone();
    moved_signature.prepares[1].value.digest = Digest::of(&"another request");
    let mut wrong_primary = cert.clone();
    wrong_primary.pre_prepare = manual.sign_as(1, wrong_primary.pre_prepare.value);
    let mut other_body = cert.clone();
    other_body.request = Some(manual.request(2, 1, "b"));
    let mut no_body = cert.clone();
    no_body.request = None;
    let mut too_few = cert.clone();
    too_few.prepares.truncate(1);
    for (name, forged) in [
        ("duplicated signer", duplicated),
        ("primary's prepare", with_primary),
        ("moved signature", moved_signature),
        ("pre-prepare not by the primary", wrong_primary),
        ("body of another request", other_body),
        ("missing body", no_body),
        ("too few prepares", too_few),
    ] {
        assert!(
            check_prepared(&mut verify, &forged, View(1), quorums).is_err(),
            "accepted a certificate with a {name}"
        );
    }
    assert!(
        check_prepared(&mut verify, &cert, View(0), quorums).is_err(),
        "a certificate of the target view itself is not evidence"
    );
}

#[test]
fn a_view_change_with_a_fabricated_prepared_certificate_is_rejected() {
    let mut manual = Manual::new(4);
    let quorums = Quorums::new(4);
    let cert = prepared_cert(&mut manual, 0, 1);
    let honest = view_change(&mut manual, 2, 1, vec![cert]);
    assert_eq!(
        check_view_change(&mut verify, &honest, View(1), 64, quorums),
        Ok(NodeId(2))
    );
    for variant in 0..3 {
        let Msg::ViewChange(forged) =
            forge_as(&mut manual, 2, &Msg::ViewChange(honest.clone()), variant)
        else {
            panic!("a view change forges into a view change");
        };
        assert!(
            check_view_change(&mut verify, &forged, View(1), 64, quorums).is_err(),
            "variant {variant} accepted"
        );
        let before = manual.ignored_by(3).len();
        manual.deliver(2, 3, Msg::ViewChange(forged));
        let reasons = manual.ignored_by(3);
        assert_eq!(reasons.len(), before + 1, "variant {variant} not rejected");
        assert!(reasons[before].contains("certificate") || reasons[before].contains("prepared"));
    }
    let mut relabelled = honest.clone();
    relabelled.signature = manual.sign_as(3, Digest::ZERO).signature;
    assert!(check_view_change(&mut verify, &relabelled, View(1), 64, quorums).is_err());
}

/// View changes for view 1 from replicas 0, 2 and 3, replica 2 reporting slot 1 prepared.
fn view_changes_for_view_one(manual: &mut Manual) -> Vec<Signed<ViewChange<KvCommand>>> {
    let cert = prepared_cert(manual, 0, 1);
    vec![
        view_change(manual, 0, 1, Vec::new()),
        view_change(manual, 2, 1, vec![cert]),
        view_change(manual, 3, 1, Vec::new()),
    ]
}

#[test]
fn a_new_view_must_carry_exactly_the_recomputed_o_set() {
    let mut manual = Manual::new(4);
    let quorums = Quorums::new(4);
    let changes = view_changes_for_view_one(&mut manual);
    let digest = request_digest(&manual.request(1, 1, "a"));
    let pre_prepare = manual.sign_as(1, statement(Phase::PrePrepare, 1, 1, digest));
    let new_view = manual.sign_as(
        1,
        NewView {
            view: View(1),
            view_changes: changes.clone(),
            pre_prepares: vec![pre_prepare.clone()],
        },
    );
    let plan = check_new_view(&mut verify, &new_view, 64, quorums).expect("valid new view");
    assert_eq!(plan.pre_prepares, vec![pre_prepare.value]);

    let null_instead = manual.sign_as(1, statement(Phase::PrePrepare, 1, 1, NULL_DIGEST));
    let mut wrong_o = new_view.value.clone();
    wrong_o.pre_prepares = vec![null_instead];
    let mut too_few = new_view.value.clone();
    too_few.view_changes.truncate(2);
    let mut duplicated = new_view.value.clone();
    duplicated.view_changes[2] = duplicated.view_changes[0].clone();
    let mut forgeries: Vec<Signed<NewView<KvCommand>>> = [wrong_o, too_few, duplicated]
        .into_iter()
        .map(|value| manual.sign_as(1, value))
        .collect();
    forgeries.push(manual.sign_as(2, new_view.value.clone()));
    for variant in 0..2 {
        let Msg::NewView(forged) =
            forge_as(&mut manual, 1, &Msg::NewView(new_view.clone()), variant)
        else {
            panic!("a new view forges into a new view");
        };
        forgeries.push(forged);
    }
    for (index, forged) in forgeries.into_iter().enumerate() {
        assert!(
            check_new_view(&mut verify, &forged, 64, quorums).is_err(),
            "forgery {index} accepted"
        );
        manual.deliver(1, 3, Msg::NewView(forged));
    }
    let entered = |manual: &Manual, id: u32| {
        manual.observations.iter().any(
            |(_, obs)| matches!(obs, Observation::NewView { node, view: 1 } if *node == NodeId(id)),
        )
    };
    assert!(!entered(&manual, 3), "a forged new view was installed");
    let sends = manual.deliver(1, 2, Msg::NewView(new_view));
    assert!(entered(&manual, 2), "the valid new view was not installed");
    assert!(
        sends.iter().any(|(_, msg)| matches!(msg, Msg::Prepare(vote) if vote.value.seq == Seq(1) && vote.value.digest == digest)),
        "the backup did not prepare the re-issued request"
    );
}

#[test]
fn honest_replicas_reject_forged_normal_case_messages() {
    let mut manual = Manual::new(4);
    let request = manual.request(1, 1, "a");
    let digest = request_digest(&request);
    let statement_signed = manual.sign_as(0, statement(Phase::PrePrepare, 0, 1, digest));
    let pre_prepare = Msg::PrePrepare {
        statement: statement_signed.clone(),
        request: Some(request.clone()),
    };
    let mismatched = forge_as(&mut manual, 0, &pre_prepare, 1);
    assert!(manual.deliver(0, 1, mismatched).is_empty());
    assert!(manual.ignored_by(1).contains(&"body: digest mismatch"));
    let not_primary = Msg::PrePrepare {
        statement: manual.sign_as(2, statement_signed.value),
        request: Some(request.clone()),
    };
    assert!(manual.deliver(2, 1, not_primary).is_empty());

    let sends = manual.deliver(0, 1, pre_prepare.clone());
    assert!(
        matches!(sends.as_slice(), [(None, Msg::Prepare(_))]),
        "the valid pre-prepare was not prepared: {sends:?}"
    );
    let equivocation = forge_as(&mut manual, 0, &pre_prepare, 0);
    assert!(manual.deliver(0, 1, equivocation).is_empty());
    assert!(manual
        .ignored_by(1)
        .contains(&"pre-prepare: conflicts with the accepted one"));

    // A committed certificate with one signer counted three times commits nothing.
    let commit = manual.sign_as(2, statement(Phase::Commit, 0, 1, digest));
    let proof = CommitProof {
        commits: vec![commit.clone(), commit.clone(), commit],
        request: Some(request),
    };
    manual.deliver(2, 1, Msg::CommitProof(proof));
    assert!(
        manual.commits_of(1).is_empty(),
        "a forged commit proof committed"
    );

    // A snapshot that does not match its checkpoint proof is not installed.
    let snapshot = b"not the state".to_vec();
    let checkpoint = statement(Phase::Checkpoint, 0, 32, Digest::of(&"real state"));
    let proof = (0..3).map(|id| manual.sign_as(id, checkpoint)).collect();
    manual.deliver(2, 1, Msg::State(StateTransfer { proof, snapshot }));
    assert_eq!(manual.nodes[1].last_executed(), Seq(0));
    assert!(manual
        .ignored_by(1)
        .contains(&"state: snapshot does not match the checkpoint digest"));

    // Prepares and commits for another digest never count.
    let honest_commit = Msg::Commit(manual_commit(&mut manual, digest));
    let wrong = forge_as(&mut manual, 2, &honest_commit, 3);
    manual.deliver(2, 1, wrong);
    assert!(manual.commits_of(1).is_empty());
}

fn manual_commit(manual: &mut Manual, digest: Digest) -> Signed<Statement> {
    manual.sign_as(2, statement(Phase::Commit, 0, 1, digest))
}

#[test]
fn a_lying_reply_differs_from_the_truth() {
    let mut manual = Manual::new(4);
    let truth: Reply<dst_protocols::KvOutput> = Reply::Done {
        sequence: 3,
        output: dst_protocols::KvOutput::Written,
    };
    for variant in 0..5 {
        let mut lie = None;
        manual.with(0, |_, ctx| lie = KvPbft::lie(ctx, &truth, variant));
        let lie = lie.expect("a lie");
        assert_ne!(lie, truth);
        assert!(matches!(lie, Reply::Done { sequence: 3, .. }));
    }
}
