//! Messages, signed statements and certificates, with pure verification functions.
//!
//! Every protocol vote is a [`Statement`] signed by its author; certificates are lists of
//! signed statements. Verification never trusts a certificate: each signature is checked
//! (through a caller-supplied `verify`, so handlers charge virtual CPU and unit tests do
//! not), signers must be distinct replicas of the cluster, and every statement must match
//! exactly what the certificate claims.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::Request;
use dst_sim::{Digest, NodeId, Principal, Signature, Signed};
use serde::{Deserialize, Serialize};

/// A view number; the primary of view `v` is replica `v mod n`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct View(pub u64);

/// A sequence number (a slot of the total order).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl View {
    /// The primary of this view in a cluster of `n` rotating in the order drawn from
    /// `leader_order` (0: replica `v mod n`; see `dst_protocols::leaders`).
    pub fn primary(self, n: u32, leader_order: u64) -> NodeId {
        dst_protocols::leaders::rotation_leader(leader_order, n, self.0)
    }
}

/// A client request as replicas carry it: signed by its client.
pub type ClientRequest<C> = Signed<Request<C>>;

/// The phase a statement votes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    PrePrepare,
    Prepare,
    Commit,
    /// `digest` is the service state digest after executing `seq`; `view` is always 0.
    Checkpoint,
}

/// What a replica signs: "in `view`, slot `seq` holds the request with `digest`" (or, for a
/// checkpoint, "my state after `seq` has `digest`").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Statement {
    pub phase: Phase,
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}

/// The digest a null request (a gap filled by a new view) is ordered under.
pub const NULL_DIGEST: Digest = Digest::ZERO;

/// The digest a request is ordered under: over what the client signed.
pub fn request_digest<C: Serialize>(request: &ClientRequest<C>) -> Digest {
    Digest::of(&request.value)
}

/// A prepared certificate: a pre-prepare and `2f` matching prepares from distinct backups,
/// with the request body (absent for a null request).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreparedCert<C> {
    pub pre_prepare: Signed<Statement>,
    pub prepares: Vec<Signed<Statement>>,
    pub request: Option<ClientRequest<C>>,
}

/// A committed certificate: `2f + 1` matching commits from distinct replicas, with the body.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommitProof<C> {
    pub commits: Vec<Signed<Statement>>,
    pub request: Option<ClientRequest<C>>,
}

/// VIEW-CHANGE: "I move to `view`; my stable checkpoint is `stable_seq` (with its proof);
/// these slots above it prepared at me".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ViewChange<C> {
    pub view: View,
    pub stable_seq: Seq,
    pub stable_digest: Digest,
    /// `2f + 1` checkpoint statements for `(stable_seq, stable_digest)`; empty at seq 0.
    pub checkpoint_proof: Vec<Signed<Statement>>,
    pub prepared: Vec<PreparedCert<C>>,
    /// Committed certificates standing in for prepared certificates this replica lost to
    /// storage damage (a committed value dominates every certificate for its slot).
    pub committed: Vec<CommitProof<C>>,
}

/// NEW-VIEW: `2f + 1` view changes for `view` and the pre-prepares (the O set) they imply.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewView<C> {
    pub view: View,
    pub view_changes: Vec<Signed<ViewChange<C>>>,
    pub pre_prepares: Vec<Signed<Statement>>,
}

/// A service snapshot with the stable checkpoint proof that vouches for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateTransfer {
    pub proof: Vec<Signed<Statement>>,
    pub snapshot: Vec<u8>,
}

/// A replica's progress, broadcast periodically so peers can help it catch up. Unsigned:
/// a lie only makes peers send verifiable proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Status {
    pub view: View,
    pub view_changing: bool,
    pub last_executed: Seq,
    pub stable: Seq,
}

/// Replica-to-replica messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message<C> {
    /// A client request forwarded by a backup to the primary.
    Request(ClientRequest<C>),
    PrePrepare {
        statement: Signed<Statement>,
        request: Option<ClientRequest<C>>,
    },
    Prepare(Signed<Statement>),
    Commit(Signed<Statement>),
    Checkpoint(Signed<Statement>),
    ViewChange(Signed<ViewChange<C>>),
    NewView(Signed<NewView<C>>),
    Status(Status),
    CommitProof(CommitProof<C>),
    State(StateTransfer),
}

/// Cluster arithmetic: `n = 3f + 1 + extra`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorums {
    pub n: u32,
    pub f: u32,
    /// The primary rotation order's seed (`PbftConfig::leader_order`).
    pub leader_order: u64,
}

impl Quorums {
    pub fn new(n: u32) -> Self {
        Quorums {
            n,
            f: n.saturating_sub(1) / 3,
            leader_order: 0,
        }
    }
    /// The same cluster with the primary rotation order drawn from `leader_order`.
    pub fn with_leader_order(self, leader_order: u64) -> Self {
        Quorums {
            leader_order,
            ..self
        }
    }
    /// The primary of `view`.
    pub fn primary(&self, view: View) -> NodeId {
        view.primary(self.n, self.leader_order)
    }
    /// Matching prepares (from backups) needed besides the pre-prepare.
    pub fn prepares(&self) -> usize {
        2 * self.f as usize
    }
    /// Matching commits, checkpoints or view changes needed.
    pub fn quorum(&self) -> usize {
        2 * self.f as usize + 1
    }
    /// Replicas of which at least one is correct.
    pub fn weak(&self) -> usize {
        self.f as usize + 1
    }
}

/// The replica a signature claims, if it is one of the cluster.
pub fn node_signer(signature: &Signature, n: u32) -> Option<NodeId> {
    match signature.signer() {
        Principal::Node(node) if node.0 < n => Some(node),
        _ => None,
    }
}

/// Checks one signed statement: its value is `expected` and it verifies. Returns the signer.
pub fn check_statement(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    signed: &Signed<Statement>,
    expected: &Statement,
    n: u32,
) -> Option<NodeId> {
    if signed.value != *expected {
        return None;
    }
    let signer = node_signer(&signed.signature, n)?;
    verify(&signed.signature, &Digest::of(&signed.value)).then_some(signer)
}

/// Checks that `statements` hold at least `needed` distinct valid signers of `expected`,
/// none of them in `excluded`. Duplicated or foreign signers make the whole list invalid.
pub fn check_quorum(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    statements: &[Signed<Statement>],
    expected: &Statement,
    needed: usize,
    excluded: Option<NodeId>,
    n: u32,
) -> Result<(), &'static str> {
    if statements.len() > n as usize {
        return Err("certificate: more statements than replicas");
    }
    let mut signers = BTreeSet::new();
    for signed in statements {
        let signer = check_statement(verify, signed, expected, n)
            .ok_or("certificate: statement mismatched or badly signed")?;
        if Some(signer) == excluded {
            return Err("certificate: statement from an excluded signer");
        }
        if !signers.insert(signer) {
            return Err("certificate: duplicate signer");
        }
    }
    if signers.len() < needed {
        return Err("certificate: too few signers");
    }
    Ok(())
}

/// Checks a client request: signed by the client it names.
pub fn check_request<C: Serialize>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    request: &ClientRequest<C>,
) -> bool {
    request.signature.signer() == Principal::Client(request.value.client)
        && verify(&request.signature, &request_digest(request))
}

/// Checks that `request` is the body of `digest` (absent exactly for the null digest).
pub fn check_body<C: Serialize>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    digest: &Digest,
    request: &Option<ClientRequest<C>>,
) -> Result<(), &'static str> {
    match request {
        None if *digest == NULL_DIGEST => Ok(()),
        None => Err("body: missing request"),
        Some(_) if *digest == NULL_DIGEST => Err("body: request on a null slot"),
        Some(request) if request_digest(request) != *digest => Err("body: digest mismatch"),
        Some(request) if !check_request(verify, request) => Err("body: bad client signature"),
        Some(_) => Ok(()),
    }
}

/// Checks a checkpoint proof for `(seq, digest)`; seq 0 (the initial state) needs none.
pub fn check_checkpoint_proof(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    seq: Seq,
    digest: Digest,
    proof: &[Signed<Statement>],
    quorums: Quorums,
) -> Result<(), &'static str> {
    if seq == Seq(0) {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err("checkpoint proof: a proof for seq 0")
        };
    }
    let expected = Statement {
        phase: Phase::Checkpoint,
        view: View(0),
        seq,
        digest,
    };
    check_quorum(verify, proof, &expected, quorums.quorum(), None, quorums.n)
}

/// Checks a prepared certificate whose view is below `below_view`. Returns its statement.
pub fn check_prepared<C: Serialize>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    cert: &PreparedCert<C>,
    below_view: View,
    quorums: Quorums,
) -> Result<Statement, &'static str> {
    let pre_prepare = cert.pre_prepare.value;
    if pre_prepare.phase != Phase::PrePrepare || pre_prepare.view >= below_view {
        return Err("prepared: not a pre-prepare of an earlier view");
    }
    let primary = quorums.primary(pre_prepare.view);
    if check_statement(verify, &cert.pre_prepare, &pre_prepare, quorums.n) != Some(primary) {
        return Err("prepared: pre-prepare not signed by the view's primary");
    }
    let prepare = Statement {
        phase: Phase::Prepare,
        ..pre_prepare
    };
    check_quorum(
        verify,
        &cert.prepares,
        &prepare,
        quorums.prepares(),
        Some(primary),
        quorums.n,
    )?;
    check_body(verify, &pre_prepare.digest, &cert.request)?;
    Ok(pre_prepare)
}

/// Checks a committed certificate; returns the statement it commits (its commit phase).
pub fn check_commit_proof<C: Serialize>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    proof: &CommitProof<C>,
    quorums: Quorums,
) -> Result<Statement, &'static str> {
    let first = proof.commits.first().ok_or("commit proof: empty")?.value;
    if first.phase != Phase::Commit {
        return Err("commit proof: not commits");
    }
    check_quorum(
        verify,
        &proof.commits,
        &first,
        quorums.quorum(),
        None,
        quorums.n,
    )?;
    check_body(verify, &first.digest, &proof.request)?;
    Ok(first)
}

/// Checks a VIEW-CHANGE for `view`; returns its signer. `window` bounds how far above its
/// stable checkpoint a prepared certificate may lie.
pub fn check_view_change<C: Serialize>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    signed: &Signed<ViewChange<C>>,
    view: View,
    window: u64,
    quorums: Quorums,
) -> Result<NodeId, &'static str> {
    let change = &signed.value;
    if change.view != view {
        return Err("view change: for another view");
    }
    let signer = node_signer(&signed.signature, quorums.n).ok_or("view change: foreign signer")?;
    if change.prepared.len() as u64 > window || change.committed.len() as u64 > window {
        return Err("view change: more certificates than the window");
    }
    if !verify(&signed.signature, &Digest::of(change)) {
        return Err("view change: bad signature");
    }
    check_checkpoint_proof(
        verify,
        change.stable_seq,
        change.stable_digest,
        &change.checkpoint_proof,
        quorums,
    )?;
    let mut seqs = BTreeSet::new();
    for cert in &change.prepared {
        let statement = check_prepared(verify, cert, view, quorums)?;
        let high = change.stable_seq.0.saturating_add(window);
        if statement.seq <= change.stable_seq || statement.seq.0 > high {
            return Err("view change: certificate outside the water marks");
        }
        if !seqs.insert(statement.seq) {
            return Err("view change: two certificates for one slot");
        }
    }
    let mut committed_seqs = BTreeSet::new();
    for proof in &change.committed {
        let statement = check_commit_proof(verify, proof, quorums)?;
        let high = change.stable_seq.0.saturating_add(window);
        if statement.seq <= change.stable_seq || statement.seq.0 > high {
            return Err("view change: committed certificate outside the water marks");
        }
        if !committed_seqs.insert(statement.seq) {
            return Err("view change: two committed certificates for one slot");
        }
    }
    Ok(signer)
}

/// What a set of valid VIEW-CHANGEs implies for the new view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan<C> {
    /// The latest stable checkpoint among the view changes, with its proof.
    pub min_s: Seq,
    pub stable_digest: Digest,
    pub checkpoint_proof: Vec<Signed<Statement>>,
    /// Pre-prepares of the new view for `min_s + 1 ..= max_s`, unsigned.
    pub pre_prepares: Vec<Statement>,
    /// Request bodies by digest, for the non-null pre-prepares.
    pub bodies: BTreeMap<Digest, ClientRequest<C>>,
}

/// The new-view computation (Castro and Liskov, section 4.4): `min_s` is the latest stable
/// checkpoint in the set, `max_s` the highest prepared slot; every slot between gets a
/// pre-prepare for the certificate of the highest view that prepared it, or a null request.
/// The view changes must have been checked already.
pub fn plan_new_view<C: Clone>(view: View, changes: &[&ViewChange<C>]) -> NewViewPlan<C> {
    let mut plan = NewViewPlan {
        min_s: Seq(0),
        stable_digest: Digest::ZERO,
        checkpoint_proof: Vec::new(),
        pre_prepares: Vec::new(),
        bodies: BTreeMap::new(),
    };
    for change in changes {
        if change.stable_seq > plan.min_s {
            plan.min_s = change.stable_seq;
            plan.stable_digest = change.stable_digest;
            plan.checkpoint_proof = change.checkpoint_proof.clone();
        }
    }
    let mut best: BTreeMap<Seq, (View, Digest)> = BTreeMap::new();
    for change in changes {
        for cert in &change.prepared {
            let statement = cert.pre_prepare.value;
            if statement.seq <= plan.min_s {
                continue;
            }
            let entry = best
                .entry(statement.seq)
                .or_insert((statement.view, statement.digest));
            if statement.view > entry.0 {
                *entry = (statement.view, statement.digest);
            }
            if let Some(request) = &cert.request {
                plan.bodies.insert(statement.digest, request.clone());
            }
        }
    }
    for change in changes {
        for proof in &change.committed {
            let Some(statement) = proof.commits.first().map(|vote| vote.value) else {
                continue;
            };
            if statement.seq <= plan.min_s {
                continue;
            }
            // A committed value is the only one any later view may order in its slot.
            best.insert(statement.seq, (View(u64::MAX), statement.digest));
            if let Some(request) = &proof.request {
                plan.bodies.insert(statement.digest, request.clone());
            }
        }
    }
    let max_s = best.keys().next_back().copied().unwrap_or(plan.min_s);
    for seq in plan.min_s.0 + 1..=max_s.0 {
        let digest = best
            .get(&Seq(seq))
            .map_or(NULL_DIGEST, |(_, digest)| *digest);
        plan.pre_prepares.push(Statement {
            phase: Phase::PrePrepare,
            view,
            seq: Seq(seq),
            digest,
        });
    }
    let wanted: BTreeSet<Digest> = plan.pre_prepares.iter().map(|pp| pp.digest).collect();
    plan.bodies.retain(|digest, _| wanted.contains(digest));
    plan
}

/// Checks a NEW-VIEW for `view` sent by its primary: `2f + 1` valid view changes from
/// distinct replicas and exactly the O set they imply, each pre-prepare signed by the
/// primary. Returns the plan.
pub fn check_new_view<C: Serialize + Clone>(
    verify: &mut dyn FnMut(&Signature, &Digest) -> bool,
    signed: &Signed<NewView<C>>,
    window: u64,
    quorums: Quorums,
) -> Result<NewViewPlan<C>, &'static str> {
    let new_view = &signed.value;
    let primary = quorums.primary(new_view.view);
    if node_signer(&signed.signature, quorums.n) != Some(primary) {
        return Err("new view: not from the view's primary");
    }
    if new_view.view_changes.len() > quorums.n as usize
        || new_view.pre_prepares.len() as u64 > window
    {
        return Err("new view: oversized");
    }
    if !verify(&signed.signature, &Digest::of(new_view)) {
        return Err("new view: bad signature");
    }
    let mut signers = BTreeSet::new();
    for change in &new_view.view_changes {
        let signer = check_view_change(verify, change, new_view.view, window, quorums)?;
        if !signers.insert(signer) {
            return Err("new view: duplicate view-change signer");
        }
    }
    if signers.len() < quorums.quorum() {
        return Err("new view: too few view changes");
    }
    let changes: Vec<&ViewChange<C>> = new_view.view_changes.iter().map(|c| &c.value).collect();
    let plan = plan_new_view(new_view.view, &changes);
    if plan.pre_prepares.len() != new_view.pre_prepares.len() {
        return Err("new view: O set of the wrong size");
    }
    for (expected, signed_pp) in plan.pre_prepares.iter().zip(&new_view.pre_prepares) {
        if check_statement(verify, signed_pp, expected, quorums.n) != Some(primary) {
            return Err("new view: O set differs from the recomputed one");
        }
    }
    Ok(plan)
}
