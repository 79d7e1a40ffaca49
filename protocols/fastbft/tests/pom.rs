//! Clients forward proofs of misbehaviour (brief section 3, case 4d): SPEC-RESPONSEs carry
//! the primary's ORDER-REQ; two of them for one `(view, seq)` with different histories are a
//! POM, which the client sends to every replica, and replicas that verify it change view.

mod common;

use common::keys::{as_node, request, signed_by};
use common::{completions, new_views, run, violations, Behaviour, Run};
use dst_fastbft::client::ClientTimer;
use dst_fastbft::msg::{verify_view_change_proof, ViewChangeProof};
use dst_fastbft::msg::{ClientMsg, FastReply, Msg, OrderBody, SignedRequest, SpecBody};
use dst_fastbft::{FastBft, FastBftClient, FastBftClientConfig, FastBftConfig, Params};
use dst_protocols::{KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig};
use dst_sim::{
    Client, ClientCtx, ClientEffect, ClientId, Digest, Node, NodeId, SeededSource, Signed, SEC,
};

type Replica = FastBft<KvStore>;
type PlainClient = FastBftClient<Replica, KvWorkload>;

/// Runs `handler` as client 0 of a cluster of 4; returns its effects.
fn as_client(
    client: &mut PlainClient,
    handler: impl FnOnce(&mut PlainClient, &mut ClientCtx<'_, PlainClient>),
) -> Vec<ClientEffect<PlainClient>> {
    let mut effects = Vec::new();
    let mut source = SeededSource::new(3);
    let mut next_timer = 0;
    let mut ctx = ClientCtx::new(
        ClientId(0),
        4,
        0,
        &mut effects,
        &mut source,
        &mut next_timer,
    );
    handler(client, &mut ctx);
    effects
}

/// A client with its first request sent; the request.
fn started_client() -> (PlainClient, SignedRequest<KvCommand>) {
    let workload = KvWorkload::new(0, KvWorkloadConfig::contention(3));
    let mut client = PlainClient::new(FastBftClientConfig::default(), workload);
    let mut effects = as_client(&mut client, |client, ctx| client.on_start(ctx));
    if effects.iter().all(|effect| !is_request(effect)) {
        effects = as_client(&mut client, |client, ctx| {
            client.on_timer(ctx, ClientTimer::Think)
        });
    }
    let request = effects
        .into_iter()
        .find_map(|effect| match effect {
            ClientEffect::Send {
                request: ClientMsg::Request(request),
                ..
            } => Some(request),
            _ => None,
        })
        .expect("the client sent its first request");
    (client, request)
}

fn is_request(effect: &ClientEffect<PlainClient>) -> bool {
    matches!(
        effect,
        ClientEffect::Send {
            request: ClientMsg::Request(_),
            ..
        }
    )
}

/// ORDER-REQ body of view 0, slot 2, for `request` after the history `prev`.
fn order_after(prev: &str, request: &SignedRequest<KvCommand>) -> OrderBody {
    let digest = dst_fastbft::msg::entry_digest(Some(request), 2);
    OrderBody {
        view: 0,
        seq: 2,
        hist: Digest::of(&prev).chain(&digest),
        digest,
    }
}

/// The SPEC-RESPONSE of `replica` for `order`, with the ORDER-REQ attached.
fn spec_reply(
    replica: u32,
    order: &Signed<OrderBody>,
    request: &SignedRequest<KvCommand>,
) -> FastReply<KvOutput> {
    let spec = signed_by(
        replica,
        SpecBody {
            view: order.value.view,
            seq: order.value.seq,
            hist: order.value.hist,
            replica: NodeId(replica),
            client: request.value.client,
            sequence: request.value.sequence,
            output: KvOutput::Written,
        },
    );
    FastReply::Spec {
        spec,
        order: order.clone(),
    }
}

/// The client gets SPEC-RESPONSEs from replicas 0 and 1 for `first`, from 2 and 3 for
/// `second`; returns the replicas it sent a POM to.
fn poms_sent(first: Signed<OrderBody>, second: Signed<OrderBody>) -> Vec<NodeId> {
    let (mut client, request) = started_client();
    let effects = as_client(&mut client, |client, ctx| {
        for replica in 0..4 {
            let order = if replica < 2 { &first } else { &second };
            client.on_reply(ctx, NodeId(replica), spec_reply(replica, order, &request));
        }
    });
    effects
        .into_iter()
        .filter_map(|effect| match effect {
            ClientEffect::Send {
                to,
                request: ClientMsg::Pom { .. },
            } => Some(to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_client_seeing_two_histories_for_one_slot_sends_a_pom_to_every_replica() {
    let (_, request) = started_client();
    let first = signed_by(0, order_after("x", &request));
    let second = signed_by(0, order_after("y", &request));
    assert_eq!(
        poms_sent(first.clone(), second),
        (0..4).map(NodeId).collect::<Vec<_>>()
    );
    assert!(
        poms_sent(first.clone(), first).is_empty(),
        "matching histories are no misbehaviour"
    );
}

#[test]
fn a_client_builds_no_pom_from_forged_orders() {
    let (_, request) = started_client();
    let first = signed_by(0, order_after("x", &request));
    let by_backup = signed_by(2, order_after("y", &request));
    assert!(
        poms_sent(first.clone(), by_backup).is_empty(),
        "signed by a backup"
    );
    let mut relabelled = signed_by(2, order_after("y", &request));
    relabelled.value.hist = first.value.hist;
    assert!(
        poms_sent(first.clone(), relabelled).is_empty(),
        "tampered body"
    );
    let other_slot = signed_by(
        0,
        OrderBody {
            seq: 3,
            ..order_after("y", &request)
        },
    );
    assert!(
        poms_sent(first, other_slot).is_empty(),
        "two different slots"
    );
}

/// Replica 1 in view 0 receives a client's POM; its view-change target and VIEW-CHANGEs.
fn on_client_pom(
    first: Signed<OrderBody>,
    second: Signed<OrderBody>,
) -> (Option<u64>, Vec<ViewChangeProof>, Vec<&'static str>) {
    let mut replica = Replica::for_service(FastBftConfig::default(), KvStore::new());
    let (_, effects, ignored) = as_node(1, 4, |ctx| {
        replica.on_start(ctx);
        replica.on_request(ctx, ClientId(0), ClientMsg::Pom { first, second });
    });
    let proofs = effects
        .into_iter()
        .filter_map(|effect| match effect {
            dst_sim::Effect::Broadcast {
                msg: Msg::ViewChange(view_change),
            } => Some(view_change.value.proof.clone()),
            _ => None,
        })
        .collect();
    (replica.view_change_target(), proofs, ignored)
}

#[test]
fn replicas_change_view_on_a_clients_pom_and_ignore_forged_ones() {
    let request = request(0, 1, "k", "v");
    let first = signed_by(0, order_after("x", &request));
    let second = signed_by(0, order_after("y", &request));
    let (target, proofs, ignored) = on_client_pom(first.clone(), second.clone());
    assert_eq!(target, Some(1), "{ignored:?}");
    let [proof] = proofs.as_slice() else {
        panic!("one VIEW-CHANGE: {proofs:?}");
    };
    let params = Params::new(4, 0);
    assert_eq!(
        verify_view_change_proof(&params, proof, 1, &mut |s, d| s.verify(d)),
        Ok(())
    );
    let forged = [
        ("signed by a backup", signed_by(2, second.value.clone())),
        ("the same history", first.clone()),
        (
            "another slot",
            signed_by(
                0,
                OrderBody {
                    seq: 3,
                    ..second.value.clone()
                },
            ),
        ),
        (
            "another view",
            signed_by(
                0,
                OrderBody {
                    view: 4,
                    ..second.value.clone()
                },
            ),
        ),
    ];
    for (why, second) in forged {
        let (target, proofs, ignored) = on_client_pom(first.clone(), second);
        assert_eq!(target, None, "{why}: changed view");
        assert!(proofs.is_empty(), "{why}: sent a VIEW-CHANGE");
        assert!(
            ignored.iter().any(|reason| reason.starts_with("pom")),
            "{why}: {ignored:?}"
        );
    }
}

#[test]
fn a_primary_showing_two_histories_is_replaced_through_the_clients_pom() {
    let mut setup = Run::new(11, "none");
    setup.behaviours.insert(NodeId(0), Behaviour::Diverger);
    // Only a client can see the misbehaviour: no replica complains on its own in this run.
    setup.config.request_timeout_ns = 100 * SEC;
    setup.config.checkpoint_stall_ns = 100 * SEC;
    let outcome = run(&setup);
    let found = violations(&setup, &outcome);
    assert!(found.is_empty(), "{found:#?}");
    assert!(
        new_views(&outcome.observations).contains(&1),
        "view 1 installed"
    );
    assert_eq!(
        completions(&outcome.observations),
        40,
        "every request completed"
    );
}
