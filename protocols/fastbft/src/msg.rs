//! Messages, certificates and their verification.
//!
//! Every certificate is checked on receipt, never trusted: signatures, distinct signers that
//! are replicas of the cluster, one payload per certificate, and hash chains that really lead
//! to the certified history digest.

use std::collections::BTreeSet;

use dst_protocols::Request;
use dst_sim::{ClientId, Digest, NodeId, Principal, Signature, Signed};
use serde::{Deserialize, Serialize};

use crate::config::Params;

/// A client's signed REQUEST.
pub type SignedRequest<C> = Signed<Request<C>>;

/// The digest `d` of a request (what the history chains), or of a no-op at `seq`.
pub fn entry_digest<C: Serialize>(request: Option<&SignedRequest<C>>, seq: u64) -> Digest {
    match request {
        Some(request) => Digest::of(&request.value),
        None => Digest::of(&("noop", seq)),
    }
}

/// ORDER-REQ, signed by the primary of `view`: slot `seq` holds the entry with digest
/// `digest`, and the history up to it is `hist = H(hist_{seq-1} || digest)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderBody {
    pub view: u64,
    pub seq: u64,
    pub hist: Digest,
    pub digest: Digest,
}

/// A signed ORDER-REQ with the request body (`None`: a no-op).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Order<C> {
    pub order: Signed<OrderBody>,
    pub request: Option<SignedRequest<C>>,
}

/// SPEC-RESPONSE, signed by `replica`: it executed `(client, sequence)` at `(view, seq)`
/// with history `hist` and got `output`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpecBody<O> {
    pub view: u64,
    pub seq: u64,
    pub hist: Digest,
    pub replica: NodeId,
    pub client: ClientId,
    pub sequence: u64,
    pub output: O,
}

/// CHECKPOINT (`commit = false`) or CHECKPOINT-COMMIT (`commit = true`), signed by `replica`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub commit: bool,
    pub view: u64,
    pub seq: u64,
    pub hist: Digest,
    pub state_digest: u64,
    pub replica: NodeId,
}

/// One signature of a commit certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Vote<O> {
    Spec(Signed<SpecBody<O>>),
    Checkpoint(Signed<CheckpointBody>),
}

impl<O: Serialize> Vote<O> {
    /// `(view, seq, hist)` the vote is for, and who claims it.
    fn claim(&self) -> (u64, u64, Digest, NodeId, &Signature) {
        match self {
            Vote::Spec(spec) => (
                spec.value.view,
                spec.value.seq,
                spec.value.hist,
                spec.value.replica,
                &spec.signature,
            ),
            Vote::Checkpoint(checkpoint) => (
                checkpoint.value.view,
                checkpoint.value.seq,
                checkpoint.value.hist,
                checkpoint.value.replica,
                &checkpoint.signature,
            ),
        }
    }

    fn digest(&self) -> Digest {
        match self {
            Vote::Spec(spec) => spec.digest(),
            Vote::Checkpoint(checkpoint) => checkpoint.digest(),
        }
    }

    fn is_checkpoint_vote(&self) -> bool {
        match self {
            Vote::Spec(_) => true,
            Vote::Checkpoint(checkpoint) => !checkpoint.value.commit,
        }
    }
}

/// A commit certificate: at least `Qs` replicas signed the same `(view, seq, hist)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cc<O> {
    pub view: u64,
    pub seq: u64,
    pub hist: Digest,
    pub votes: Vec<Vote<O>>,
}

/// One link of a hash chain: slot `seq` holds the entry with digest `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link<C> {
    pub seq: u64,
    pub digest: Digest,
    pub request: Option<SignedRequest<C>>,
}

/// A CC with the chain that leads from the reporter's checkpoint to `cc.hist`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CcEvidence<C, O> {
    pub cc: Cc<O>,
    pub chain: Vec<Link<C>>,
}

/// A stable checkpoint: `Qs` CHECKPOINT-COMMITs for `(seq, hist, state_digest)`; the
/// genesis (`seq = 0`) needs none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StableProof {
    pub seq: u64,
    pub hist: Digest,
    pub state_digest: u64,
    pub votes: Vec<Signed<CheckpointBody>>,
}

/// I-HATE-THE-PRIMARY of `view`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IhtpBody {
    pub view: u64,
    pub replica: NodeId,
}

/// Why a replica may ask for view `w`: evidence that a correct replica gave up on view
/// `w - 1` (or a later one), or that the primary of `w - 1` equivocated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ViewChangeProof {
    /// IHTPs of `f + 1` distinct replicas, each for a view `>= w - 1` (one of them is
    /// correct, and a correct replica complains only about the view it is in or waits for).
    Ihtp(Vec<Signed<IhtpBody>>),
    /// A POM: two ORDER-REQs signed by the primary of `w - 1` for one slot of view `w - 1`
    /// with different histories.
    Pom {
        first: Signed<OrderBody>,
        second: Signed<OrderBody>,
    },
}

impl ViewChangeProof {
    /// Whether this (already verified) proof also justifies asking for `target`: IHTPs for
    /// views `>= w - 1` justify every lower target too; a POM only its own view's successor.
    pub fn covers(&self, target: u64) -> bool {
        let Some(previous) = target.checked_sub(1) else {
            return false;
        };
        match self {
            ViewChangeProof::Ihtp(ihtps) => {
                !ihtps.is_empty() && ihtps.iter().all(|ihtp| ihtp.value.view >= previous)
            }
            ViewChangeProof::Pom { first, .. } => first.value.view == previous,
        }
    }
}

/// VIEW-CHANGE to `new_view`: why (`proof`), the sender's stable checkpoint, its
/// Pareto-maximal CCs and, per slot above the checkpoint, the latest-view ORDER-REQ it
/// accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ViewChangeBody<C, O> {
    pub new_view: u64,
    pub replica: NodeId,
    pub proof: ViewChangeProof,
    pub checkpoint: StableProof,
    pub ccs: Vec<CcEvidence<C, O>>,
    pub log: Vec<Order<C>>,
}

/// NEW-VIEW: the view changes it was computed from and the re-issued ORDER-REQs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewViewBody<C, O> {
    pub view: u64,
    pub view_changes: Vec<Signed<ViewChangeBody<C, O>>>,
    pub orders: Vec<Signed<OrderBody>>,
}

/// Replica-to-replica messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Msg<C, O> {
    /// An ORDER-REQ from the primary, or relayed by anyone (it is signed).
    Order(Order<C>),
    /// A client request a backup passes to the primary.
    Forward(SignedRequest<C>),
    /// FILL-HOLE: please send the ORDER-REQs of `view` for `from_seq..=to_seq`.
    FillHole {
        view: u64,
        from_seq: u64,
        to_seq: u64,
    },
    /// Proof of misbehaviour: two ORDER-REQs of one primary for one `(view, seq)`.
    Pom {
        first: Signed<OrderBody>,
        second: Signed<OrderBody>,
    },
    Ihtp(Signed<IhtpBody>),
    ViewChange(Box<Signed<ViewChangeBody<C, O>>>),
    NewView(Box<Signed<NewViewBody<C, O>>>),
    Checkpoint(Signed<CheckpointBody>),
    /// STATE-REQ: send your stable checkpoint if it is at `seq` or later; the asker's own
    /// stable checkpoint is at `have`.
    StateRequest {
        seq: u64,
        have: u64,
    },
    /// STATE-REPLY: a stable checkpoint, the service snapshot at it and the entries above;
    /// `finals`: the final entries from the asker's checkpoint (`have`) up to this one, if the
    /// sender still holds them all (else empty), so the asker can report those slots.
    StateReply {
        proof: StableProof,
        snapshot: Vec<u8>,
        entries: Vec<Order<C>>,
        finals: Vec<Order<C>>,
    },
    /// VIEW-CONFIRM: the NEW-VIEW this replica installed for `view` ends at `(seq, hist)`
    /// (`answer`: a reply to an announcement, not to be answered).
    ViewConfirm {
        view: u64,
        seq: u64,
        hist: Digest,
        answer: bool,
    },
}

/// What a client sends to a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientMsg<C, O> {
    Request(SignedRequest<C>),
    /// COMMIT: the client's commit certificate for its request.
    Commit {
        client: ClientId,
        cc: Cc<O>,
    },
    /// A POM the client built from SPEC-RESPONSEs (brief case 4d): two ORDER-REQs of one
    /// primary for one `(view, seq)` with different histories.
    Pom {
        first: Signed<OrderBody>,
        second: Signed<OrderBody>,
    },
}

/// What a replica answers a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FastReply<O> {
    /// SPEC-RESPONSE with the primary's ORDER-REQ it executed (for the client's POM).
    Spec {
        spec: Signed<SpecBody<O>>,
        order: Signed<OrderBody>,
    },
    /// LOCAL-COMMIT: the replica holds the client's CC and its log matches it (sent over the
    /// authenticated channel, so the sender is the replica).
    LocalCommit {
        view: u64,
        seq: u64,
        hist: Digest,
        sequence: u64,
    },
    /// The request is at or below the replica's stable checkpoint with this output.
    Final { sequence: u64, output: O },
}

/// Checks that `signature` is by replica `replica` over `digest`.
pub fn signed_by(
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
    signature: &Signature,
    replica: NodeId,
    digest: &Digest,
) -> bool {
    signature.signer() == Principal::Node(replica) && verify(signature, digest)
}

/// Verifies a commit certificate: at least `Qs` distinct replicas signed `(view, seq, hist)`.
pub fn verify_cc<O: Serialize>(
    params: &Params,
    cc: &Cc<O>,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> Result<(), &'static str> {
    if cc.votes.len() > params.n as usize {
        return Err("cc: more votes than replicas");
    }
    let mut signers = BTreeSet::new();
    for vote in &cc.votes {
        let (view, seq, hist, replica, signature) = vote.claim();
        if (view, seq, hist) != (cc.view, cc.seq, cc.hist) || !vote.is_checkpoint_vote() {
            return Err("cc: mixed payloads");
        }
        if !params.is_replica(replica) || !signers.insert(replica) {
            return Err("cc: duplicated or unknown signer");
        }
        if !signed_by(verify, signature, replica, &vote.digest()) {
            return Err("cc: bad signature");
        }
    }
    if signers.len() < params.slow_quorum() {
        return Err("cc: too few signers");
    }
    Ok(())
}

/// Verifies a stable checkpoint proof (the genesis proof is empty and fixed).
pub fn verify_stable(
    params: &Params,
    proof: &StableProof,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
    genesis_state_digest: u64,
) -> Result<(), &'static str> {
    if proof.seq == 0 {
        let genesis = proof.hist == Digest::ZERO
            && proof.votes.is_empty()
            && proof.state_digest == genesis_state_digest;
        return if genesis {
            Ok(())
        } else {
            Err("checkpoint: bad genesis")
        };
    }
    if proof.votes.len() > params.n as usize {
        return Err("checkpoint: more votes than replicas");
    }
    let mut signers = BTreeSet::new();
    for vote in &proof.votes {
        let body = &vote.value;
        let matches = body.commit
            && (body.seq, body.hist, body.state_digest)
                == (proof.seq, proof.hist, proof.state_digest);
        if !matches {
            return Err("checkpoint: mixed payloads");
        }
        if !params.is_replica(body.replica) || !signers.insert(body.replica) {
            return Err("checkpoint: duplicated or unknown signer");
        }
        if !signed_by(verify, &vote.signature, body.replica, &vote.digest()) {
            return Err("checkpoint: bad signature");
        }
    }
    if signers.len() < params.slow_quorum() {
        return Err("checkpoint: too few signers");
    }
    Ok(())
}

/// Checks a request body against its client's signature.
pub fn verify_request<C: Serialize>(
    request: &SignedRequest<C>,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> bool {
    request.signature.signer() == Principal::Client(request.value.client)
        && verify(&request.signature, &request.digest())
}

/// Walks `chain` from `start` (the history digest at `start_seq`) and returns the history
/// digest per link; an error if slots are not consecutive or a body does not match its digest.
pub fn walk_chain<C: Serialize>(
    start_seq: u64,
    start: Digest,
    chain: &[Link<C>],
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> Result<Vec<Digest>, &'static str> {
    let mut hist = start;
    let mut hists = Vec::with_capacity(chain.len());
    for (index, link) in chain.iter().enumerate() {
        if Some(link.seq) != start_seq.checked_add(index as u64 + 1) {
            return Err("chain: slots not consecutive");
        }
        if entry_digest(link.request.as_ref(), link.seq) != link.digest {
            return Err("chain: body does not match digest");
        }
        if let Some(request) = &link.request {
            if !verify_request(request, verify) {
                return Err("chain: bad client signature");
            }
        }
        hist = hist.chain(&link.digest);
        hists.push(hist);
    }
    Ok(hists)
}

/// Verifies a POM: two ORDER-REQs for one `(view, seq)` with different histories, both
/// signed by the primary of that view. Returns the view.
pub fn verify_pom(
    params: &Params,
    first: &Signed<OrderBody>,
    second: &Signed<OrderBody>,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> Result<u64, &'static str> {
    let (a, b) = (&first.value, &second.value);
    if a.view != b.view || a.seq != b.seq || a.hist == b.hist {
        return Err("pom: not two conflicting orders for one slot");
    }
    let primary = params.primary(a.view);
    if !signed_by(verify, &first.signature, primary, &first.digest())
        || !signed_by(verify, &second.signature, primary, &second.digest())
    {
        return Err("pom: not signed by the view's primary");
    }
    Ok(a.view)
}

/// Verifies that `proof` justifies a VIEW-CHANGE to `new_view` (see [`ViewChangeProof`]).
pub fn verify_view_change_proof(
    params: &Params,
    proof: &ViewChangeProof,
    new_view: u64,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> Result<(), &'static str> {
    let Some(previous) = new_view.checked_sub(1) else {
        return Err("view change proof: no view before view 0");
    };
    match proof {
        ViewChangeProof::Ihtp(ihtps) => {
            if ihtps.len() > params.n as usize {
                return Err("view change proof: more IHTPs than replicas");
            }
            let mut signers = BTreeSet::new();
            for ihtp in ihtps {
                let body = &ihtp.value;
                if body.view < previous {
                    return Err("view change proof: IHTP for an older view");
                }
                if !params.is_replica(body.replica) || !signers.insert(body.replica) {
                    return Err("view change proof: duplicated or unknown IHTP signer");
                }
                if !signed_by(verify, &ihtp.signature, body.replica, &ihtp.digest()) {
                    return Err("view change proof: bad IHTP signature");
                }
            }
            if signers.len() < params.one_correct() {
                return Err("view change proof: too few IHTPs");
            }
            Ok(())
        }
        ViewChangeProof::Pom { first, second } => {
            let view = verify_pom(params, first, second, verify)?;
            if view != previous {
                return Err("view change proof: POM for another view");
            }
            Ok(())
        }
    }
}
