//! Slots skipped by a state transfer are still reported final: the STATE-REPLY carries the
//! sender's archived final entries from the asker's checkpoint, which the asker believes only
//! if they chain to the stable proof.

mod common;

use common::keys::{as_node, order, request, signed_by, Replica};
use dst_fastbft::msg::{CheckpointBody, Msg, Order, StableProof};
use dst_fastbft::{FastBftConfig, Params};
use dst_protocols::{KvCommand, KvStore, Observation, Sessions};
use dst_sim::{Adversarial, ClientId, Digest, Effect, Node, NodeId, StateMachine};

/// A Commit report: slot and request.
type Reported = (u64, Option<(ClientId, u64)>);

fn params() -> Params {
    Params::new(4, 0)
}

/// Two requests ordered in view 0, the state after them and the stable proof at slot 2.
fn history() -> (Vec<Order<KvCommand>>, Sessions<KvStore>, StableProof) {
    let first = order(&params(), 0, 1, Digest::ZERO, &request(0, 1, "a", "1"));
    let second = order(
        &params(),
        0,
        2,
        first.order.value.hist,
        &request(1, 1, "b", "2"),
    );
    let mut state = Sessions::new(KvStore::new());
    for order in [&first, &second] {
        state.apply(&order.request.as_ref().expect("a request").value);
    }
    let hist = second.order.value.hist;
    let votes = (0..3)
        .map(|replica| {
            signed_by(
                replica,
                CheckpointBody {
                    commit: true,
                    view: 0,
                    seq: 2,
                    hist,
                    state_digest: state.digest(),
                    replica: NodeId(replica),
                },
            )
        })
        .collect();
    let proof = StableProof {
        seq: 2,
        hist,
        state_digest: state.digest(),
        votes,
    };
    (vec![first, second], state, proof)
}

/// Replica 3 (nothing in its log) takes a STATE-REPLY with `finals`; its Commit reports
/// as (slot, request) and its Apply state digests.
fn transfer(finals: Vec<Order<KvCommand>>) -> (Replica, Vec<Reported>, Vec<u64>) {
    let (_, state, proof) = history();
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(3, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_message(
            ctx,
            NodeId(0),
            Msg::StateReply {
                proof,
                snapshot: state.snapshot(),
                entries: Vec::new(),
                finals,
            },
        );
    });
    assert_eq!(
        replica.stable_seq(),
        2,
        "the state was installed: {ignored:?}"
    );
    let mut commits = Vec::new();
    let mut applied = Vec::new();
    for effect in effects {
        match effect {
            Effect::Observe(Observation::Commit { slot, request, .. }) => {
                commits.push((slot, request))
            }
            Effect::Observe(Observation::Apply { state_digest, .. }) => applied.push(state_digest),
            _ => {}
        }
    }
    (replica, commits, applied)
}

#[test]
fn slots_skipped_by_a_state_transfer_are_reported_from_the_archived_entries() {
    let (orders, state, _) = history();
    let (_, commits, applied) = transfer(orders);
    assert_eq!(
        commits,
        vec![(1, Some((ClientId(0), 1))), (2, Some((ClientId(1), 1)))]
    );
    assert_eq!(applied.len(), 2);
    assert_eq!(
        applied.last(),
        Some(&state.digest()),
        "re-executed to the snapshot"
    );
}

#[test]
fn archived_entries_that_do_not_lead_to_the_proof_are_not_reported() {
    let (orders, _, _) = history();
    let mut swapped = orders.clone();
    swapped.swap(0, 1);
    let mut tampered = orders.clone();
    if let Some(request) = tampered[1].request.as_mut() {
        request.value.sequence = 7;
    }
    let mut other = orders.clone();
    other[1] = order(
        &params(),
        0,
        2,
        orders[0].order.value.hist,
        &request(1, 1, "b", "x"),
    );
    let forged = [
        ("one missing", orders[..1].to_vec()),
        ("reordered", swapped),
        ("tampered body", tampered),
        ("another entry", other),
        ("none", Vec::new()),
    ];
    for (why, finals) in forged {
        let (_, commits, applied) = transfer(finals);
        assert!(
            commits.is_empty() && applied.is_empty(),
            "{why}: reported {commits:?}"
        );
    }
}

#[test]
fn a_replica_sends_the_final_entries_the_asker_lacks() {
    let (orders, _, proof) = history();
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        for order in &orders {
            replica.on_message(ctx, NodeId(0), Msg::Order(order.clone()));
        }
        for vote in &proof.votes {
            replica.on_message(ctx, vote.value.replica, Msg::Checkpoint(vote.clone()));
        }
        assert_eq!(replica.stable_seq(), 2, "stable at 2");
        replica.on_message(ctx, NodeId(3), Msg::StateRequest { seq: 1, have: 0 });
        replica.on_message(ctx, NodeId(2), Msg::StateRequest { seq: 1, have: 1 });
    });
    let sent: Vec<(NodeId, Vec<u64>)> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                to,
                msg: Msg::StateReply { finals, .. },
            } => Some((
                *to,
                finals.iter().map(|order| order.order.value.seq).collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![(NodeId(3), vec![1, 2]), (NodeId(2), vec![2])],
        "{ignored:?}"
    );
}

#[test]
fn forged_archived_entries_are_not_reported() {
    let (orders, state, proof) = history();
    let honest = Msg::StateReply {
        proof,
        snapshot: state.snapshot(),
        entries: Vec::new(),
        finals: orders,
    };
    for variant in 0..2 {
        let mut forged = None;
        as_node(0, 4, |ctx| forged = Replica::forge(ctx, &honest, variant));
        let Some(Msg::StateReply { finals, .. }) = forged else {
            panic!("STATE-REPLY forgeries");
        };
        let (_, commits, _) = transfer(finals);
        assert!(
            commits.is_empty(),
            "variant {variant}: reported {commits:?}"
        );
    }
}
