//! The attack on Zyzzyva's original view change (Abraham et al., arXiv:1712.01367), four
//! replicas and two view changes, replayed against the view-change rule:
//!
//! - view 1 (primary n1): x is ordered at slot 1; n1, n2 and the Byzantine n3 answer, and a
//!   client sends the resulting commit certificate to n3 only;
//! - view 2 (primary n2): the VIEW-CHANGEs of n0, n2 and n3 carry x once (n2) and no CC (n3
//!   hides it), so the NEW-VIEW is empty; y is ordered at slot 1 and completes on the fast
//!   path (all four answer);
//! - view 3 (primary n3): n3 reveals its view-1 CC for x; n0 and n1 report y from view 2.
//!
//! Ranking CCs by sequence number (the original rule, written here as a deliberately broken
//! variant) puts x at slot 1 and drops the completed y: the speculative oracle's S2 flags the
//! moment view 3 is installed. Ordering evidence by view first keeps y.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::keys::{ihtp_proof, order, request, signed_by, spec};
use common::speculative::check_speculative;
use dst_fastbft::msg::{Cc, CcEvidence, Link, Order, StableProof, ViewChangeBody, Vote};
use dst_fastbft::select::{check_view_change, select, CheckedViewChange, Evidence, Selection};
use dst_fastbft::Params;
use dst_protocols::{KvCommand, KvOutput, KvStore, Observation, Sessions};
use dst_sim::{ClientId, Digest, NodeId, StateMachine};

type Obs = Observation<KvCommand, KvOutput>;

fn genesis() -> StableProof {
    StableProof {
        seq: 0,
        hist: Digest::ZERO,
        state_digest: Sessions::new(KvStore::new()).digest(),
        votes: Vec::new(),
    }
}

fn view_change(
    replica: u32,
    new_view: u64,
    log: Vec<Order<KvCommand>>,
    ccs: Vec<CcEvidence<KvCommand, KvOutput>>,
) -> CheckedViewChange<KvCommand> {
    let body = ViewChangeBody {
        new_view,
        replica: NodeId(replica),
        proof: ihtp_proof(new_view),
        checkpoint: genesis(),
        ccs,
        log,
    };
    let signed = signed_by(replica, body);
    assert!(signed.verify(), "a genuine VIEW-CHANGE");
    let params = Params::new(4, 0);
    check_view_change(
        &params,
        &signed.value,
        256,
        genesis().state_digest,
        &mut |sig, digest| sig.verify(digest),
    )
    .expect("every piece of evidence is genuinely signed")
}

/// Zyzzyva's original rule, deliberately broken: the CC with the highest sequence number
/// wins outright (whatever its view), then slots above it take entries `Tf` reporters hold.
fn rank_by_sequence(
    params: &Params,
    view_changes: &[CheckedViewChange<KvCommand>],
) -> Selection<KvCommand> {
    let base = genesis();
    let mut entries: Vec<(u64, Evidence<KvCommand>)> = Vec::new();
    let longest = view_changes
        .iter()
        .flat_map(|view_change| &view_change.ccs)
        .max_by_key(|cc| cc.seq);
    if let Some(cc) = longest {
        entries.extend(cc.entries.iter().map(|(seq, entry)| (*seq, entry.clone())));
    }
    let mut seq = base.seq + entries.len() as u64 + 1;
    loop {
        let mut counts: BTreeMap<Digest, (usize, Evidence<KvCommand>)> = BTreeMap::new();
        for view_change in view_changes {
            if let Some(entry) = view_change.log.get(&seq) {
                counts.entry(entry.hist).or_insert((0, entry.clone())).0 += 1;
            }
        }
        let Some((_, entry)) = counts
            .into_values()
            .find(|(count, _)| *count >= params.fast_evidence())
        else {
            break;
        };
        entries.push((seq, entry));
        seq += 1;
    }
    Selection { base, entries }
}

struct Scenario {
    view_changes: Vec<CheckedViewChange<KvCommand>>,
    observations: Vec<(u64, Obs)>,
}

fn accept(node: u32, order: &Order<KvCommand>) -> Obs {
    let body = &order.order.value;
    Observation::SpecAccept {
        node: NodeId(node),
        view: body.view,
        slot: body.seq,
        prev: Digest::ZERO.short(),
        entry: body.digest.short(),
        hist: body.hist.short(),
    }
}

fn scenario() -> Scenario {
    let params = Params::new(4, 0);
    let x = request(0, 1, "k0", "x");
    let y = request(1, 1, "k0", "y");
    // View 1: x at slot 1; a CC from n1, n2, n3 reaches n3 only.
    let order_x = order(&params, 1, 1, Digest::ZERO, &x);
    let cc_x = Cc {
        view: 1,
        seq: 1,
        hist: order_x.order.value.hist,
        votes: [1, 2, 3]
            .iter()
            .map(|replica| Vote::Spec(spec(*replica, &order_x)))
            .collect(),
    };
    let evidence_x = CcEvidence {
        cc: cc_x,
        chain: vec![Link {
            seq: 1,
            digest: order_x.order.value.digest,
            request: Some(x.clone()),
        }],
    };
    // View 2: n0, n2 and n3 (hiding its CC) change view; x has one reporter, below Tf.
    let to_view_2 = [
        view_change(0, 2, Vec::new(), Vec::new()),
        view_change(2, 2, vec![order_x.clone()], Vec::new()),
        view_change(3, 2, Vec::new(), Vec::new()),
    ];
    let view_2 = select(&params, &to_view_2, 256).expect("a selection");
    assert!(
        view_2.entries.is_empty(),
        "view 2 starts from the genesis: {view_2:?}"
    );
    // y at slot 1 of view 2 completes on the fast path.
    let order_y = order(&params, 2, 1, Digest::ZERO, &y);
    let mut observations: Vec<(u64, Obs)> =
        vec![(1, accept(1, &order_x)), (2, accept(2, &order_x))];
    for node in 0..3 {
        observations.push((3, accept(node, &order_y)));
    }
    observations.push((
        4,
        Observation::SpecComplete {
            client: ClientId(1),
            sequence: 1,
            view: 2,
            slot: 1,
            hist: order_y.order.value.hist.short(),
        },
    ));
    // View 3: n3 reveals the stale CC; n0 and n1 report y.
    let view_changes = vec![
        view_change(3, 3, vec![order_x], vec![evidence_x]),
        view_change(0, 3, vec![order_y.clone()], Vec::new()),
        view_change(1, 3, vec![order_y], Vec::new()),
    ];
    Scenario {
        view_changes,
        observations,
    }
}

fn installed(observations: &[(u64, Obs)], selection: &Selection<KvCommand>) -> Vec<(u64, Obs)> {
    let mut observations = observations.to_vec();
    let (slot, hist) = selection
        .entries
        .last()
        .map_or((0, Digest::ZERO), |(seq, entry)| (*seq, entry.hist));
    observations.push((
        5,
        Observation::SpecInstall {
            node: NodeId(0),
            view: Some(3),
            slot,
            hist: hist.short(),
            state_digest: None,
        },
    ));
    observations
}

#[test]
fn ranking_certificates_by_sequence_number_loses_a_fast_completion() {
    let scenario = scenario();
    let params = Params::new(4, 0);
    let broken = rank_by_sequence(&params, &scenario.view_changes);
    let found = check_speculative(
        &installed(&scenario.observations, &broken),
        &BTreeSet::from([NodeId(3)]),
    );
    assert!(
        found.iter().any(|violation| violation.starts_with("S2:")),
        "the oracle must catch the original rule: {found:?}"
    );
}

#[test]
fn ordering_evidence_by_view_first_keeps_the_fast_completion() {
    let scenario = scenario();
    let params = Params::new(4, 0);
    let corrected = select(&params, &scenario.view_changes, 256).expect("a selection");
    let found = check_speculative(
        &installed(&scenario.observations, &corrected),
        &BTreeSet::from([NodeId(3)]),
    );
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(corrected.entries.len(), 1, "y stays at slot 1");
    let (_, entry) = &corrected.entries[0];
    assert_eq!(
        entry.view, 2,
        "the view-2 fast evidence beats the view-1 CC"
    );
}
