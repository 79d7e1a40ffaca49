//! Signing as any replica or client, for hand-built scenarios (a test plays every role, so
//! it holds every key; protocol code never can).

use dst_fastbft::msg::{
    entry_digest, IhtpBody, Order, OrderBody, SignedRequest, SpecBody, ViewChangeProof,
};
use dst_fastbft::{FastBft, Params};
use dst_protocols::{KvCommand, KvOutput, KvStore, Request};
use dst_sim::{
    ClientCtx, ClientId, Digest, Effect, Node, NodeCtx, NodeId, SeededSource, Signed, Storage,
    StorageFaults,
};
use serde::Serialize;

use super::TestClient;

pub type Replica = FastBft<KvStore>;

/// Runs `handler` in a context of replica `node` of a cluster of `n`; returns its effects.
pub fn as_node<R>(
    node: u32,
    n: u32,
    handler: impl FnOnce(&mut NodeCtx<'_, Replica>) -> R,
) -> (R, Vec<Effect<Replica>>, Vec<&'static str>) {
    let mut effects = Vec::new();
    let mut storage = Storage::new(StorageFaults::default());
    let mut source = SeededSource::new(u64::from(node));
    let mut next_timer = 0;
    let mut ignored = Vec::new();
    let mut ctx = NodeCtx::new(
        NodeId(node),
        n,
        0,
        &mut effects,
        &mut storage,
        &mut source,
        &mut next_timer,
        &mut ignored,
    );
    let result = handler(&mut ctx);
    (result, effects, ignored)
}

/// `value` signed by replica `node`.
pub fn signed_by<T: Serialize>(node: u32, value: T) -> Signed<T> {
    as_node(node, 4, |ctx| ctx.sign_value(value)).0
}

/// A request signed by its client.
pub fn request(client: u32, sequence: u64, key: &str, value: &str) -> SignedRequest<KvCommand> {
    let mut effects = Vec::new();
    let mut source = SeededSource::new(7);
    let mut next_timer = 0;
    let mut ctx: ClientCtx<'_, TestClient> = ClientCtx::new(
        ClientId(client),
        4,
        0,
        &mut effects,
        &mut source,
        &mut next_timer,
    );
    ctx.sign_value(Request {
        client: ClientId(client),
        sequence,
        command: KvCommand::Put {
            key: key.to_string(),
            value: value.to_string(),
        },
    })
}

/// ORDER-REQ of `view` at `seq` after history `prev`, signed by the view's primary.
pub fn order(
    params: &Params,
    view: u64,
    seq: u64,
    prev: Digest,
    request: &SignedRequest<KvCommand>,
) -> Order<KvCommand> {
    let digest = entry_digest(Some(request), seq);
    let body = OrderBody {
        view,
        seq,
        hist: prev.chain(&digest),
        digest,
    };
    Order {
        order: signed_by(params.primary(view).0, body),
        request: Some(request.clone()),
    }
}

/// SPEC-RESPONSE of `replica` for an ORDER-REQ.
pub fn spec(replica: u32, order: &Order<KvCommand>) -> Signed<SpecBody<KvOutput>> {
    let request = order.request.as_ref().expect("a request");
    signed_by(
        replica,
        SpecBody {
            view: order.order.value.view,
            seq: order.order.value.seq,
            hist: order.order.value.hist,
            replica: NodeId(replica),
            client: request.value.client,
            sequence: request.value.sequence,
            output: KvOutput::Written,
        },
    )
}

/// Replies a node asked for.
pub fn replies(effects: &[Effect<Replica>]) -> Vec<&<Replica as Node>::Reply> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Reply { reply, .. } => Some(reply),
            _ => None,
        })
        .collect()
}

/// IHTP of `replica` about `view`.
pub fn ihtp(replica: u32, view: u64) -> Signed<IhtpBody> {
    signed_by(
        replica,
        IhtpBody {
            view,
            replica: NodeId(replica),
        },
    )
}

/// A valid proof for a VIEW-CHANGE to `new_view` (n = 4): IHTPs of replicas 0 and 1.
pub fn ihtp_proof(new_view: u64) -> ViewChangeProof {
    ViewChangeProof::Ihtp(vec![ihtp(0, new_view - 1), ihtp(1, new_view - 1)])
}
