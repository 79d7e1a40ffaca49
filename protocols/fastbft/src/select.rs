//! The view-change rule (brief section 5, corrected): evidence is ordered by view first.
//!
//! From `Qvc` validated VIEW-CHANGEs the new primary (and every replica checking its
//! NEW-VIEW) computes:
//! 1. base = the highest valid stable checkpoint;
//! 2. for `s = base + 1, base + 2, ...`:
//!    a. slow candidate: among all CCs with `cc.seq >= s`, the one of the highest view `u`
//!    (ties: higher seq, then smaller digest) gives its chain's entry at `s`;
//!    b. fast candidate: an entry held by `>= Tf` reporters, counting each reporter's latest
//!    accepted ORDER-REQ at `s`, whose view is `> u`;
//!    c. take the fast candidate, else the slow one, else stop;
//!    d. stop unless the chosen entry chains from the entry chosen at `s - 1`.
//!
//! The function is pure and deterministic, so every replica recomputes the same answer from
//! the same messages, and any `Qvc` messages yield an answer (the primary never gets stuck).

use std::collections::BTreeMap;

use dst_sim::{Digest, Signature};
use serde::Serialize;

use crate::config::Params;
use crate::msg::{
    entry_digest, signed_by, verify_cc, verify_request, walk_chain, SignedRequest, StableProof,
    ViewChangeBody,
};

/// One slot's entry as evidence: its view, digest, history digest and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence<C> {
    pub view: u64,
    pub digest: Digest,
    pub hist: Digest,
    pub request: Option<SignedRequest<C>>,
}

/// A CC after validation: its view and seq and the entries of its chain by slot.
#[derive(Clone, Debug)]
pub struct CheckedCc<C> {
    pub view: u64,
    pub seq: u64,
    pub entries: BTreeMap<u64, Evidence<C>>,
}

/// A VIEW-CHANGE whose every proof verified.
#[derive(Clone, Debug)]
pub struct CheckedViewChange<C> {
    pub checkpoint: StableProof,
    pub ccs: Vec<CheckedCc<C>>,
    /// Latest-view accepted entry per slot above the checkpoint.
    pub log: BTreeMap<u64, Evidence<C>>,
}

/// The history a NEW-VIEW carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection<C> {
    pub base: StableProof,
    /// Consecutive entries from `base.seq + 1`.
    pub entries: Vec<(u64, Evidence<C>)>,
}

impl<C> Selection<C> {
    /// Where the history ends: the last entry's `(seq, hist)`, or the base's.
    pub fn end(&self) -> (u64, Digest) {
        self.entries
            .last()
            .map_or((self.base.seq, self.base.hist), |(seq, entry)| {
                (*seq, entry.hist)
            })
    }
}

/// Validates a VIEW-CHANGE's proofs (why it asks for the view, its checkpoint, CCs and log);
/// any bad proof discards the whole message.
pub fn check_view_change<C: Serialize + Clone, O: Serialize>(
    params: &Params,
    body: &ViewChangeBody<C, O>,
    entries_max: u64,
    genesis_state_digest: u64,
    verify: &mut impl FnMut(&Signature, &Digest) -> bool,
) -> Result<CheckedViewChange<C>, &'static str> {
    crate::msg::verify_view_change_proof(params, &body.proof, body.new_view, verify)?;
    let checkpoint = &body.checkpoint;
    crate::msg::verify_stable(params, checkpoint, verify, genesis_state_digest)?;
    if body.log.len() as u64 > entries_max || body.ccs.len() > params.n as usize * 4 {
        return Err("view change: too much evidence");
    }
    let mut ccs = Vec::new();
    for evidence in &body.ccs {
        let cc = &evidence.cc;
        if cc.view >= body.new_view || cc.seq <= checkpoint.seq {
            return Err("view change: cc out of range");
        }
        if cc.seq - checkpoint.seq != evidence.chain.len() as u64 {
            return Err("view change: cc chain has the wrong length");
        }
        verify_cc(params, cc, verify)?;
        let hists = walk_chain(checkpoint.seq, checkpoint.hist, &evidence.chain, verify)?;
        if hists.last() != Some(&cc.hist) {
            return Err("view change: cc chain does not reach the cc");
        }
        let entries = evidence
            .chain
            .iter()
            .zip(hists)
            .map(|(link, hist)| {
                let entry = Evidence {
                    view: cc.view,
                    digest: link.digest,
                    hist,
                    request: link.request.clone(),
                };
                (link.seq, entry)
            })
            .collect();
        ccs.push(CheckedCc {
            view: cc.view,
            seq: cc.seq,
            entries,
        });
    }
    let mut log = BTreeMap::new();
    for order in &body.log {
        let value = &order.order.value;
        if value.seq <= checkpoint.seq || value.view >= body.new_view {
            return Err("view change: log entry out of range");
        }
        if value.seq - checkpoint.seq > entries_max {
            return Err("view change: log entry beyond the window");
        }
        let primary = params.primary(value.view);
        if !signed_by(
            verify,
            &order.order.signature,
            primary,
            &order.order.digest(),
        ) {
            return Err("view change: log entry not signed by its primary");
        }
        if entry_digest(order.request.as_ref(), value.seq) != value.digest {
            return Err("view change: log entry body does not match");
        }
        if let Some(request) = &order.request {
            if !verify_request(request, verify) {
                return Err("view change: bad client signature");
            }
        }
        let entry = Evidence {
            view: value.view,
            digest: value.digest,
            hist: value.hist,
            request: order.request.clone(),
        };
        if log.insert(value.seq, entry).is_some() {
            return Err("view change: two log entries for one slot");
        }
    }
    Ok(CheckedViewChange {
        checkpoint: checkpoint.clone(),
        ccs,
        log,
    })
}

/// Step 2a: the entry at `seq` of the highest-view CC covering it.
fn slow_candidate<C>(view_changes: &[CheckedViewChange<C>], seq: u64) -> Option<&Evidence<C>> {
    let mut best: Option<(u64, u64, Digest, &Evidence<C>)> = None;
    for view_change in view_changes {
        for cc in &view_change.ccs {
            let Some(entry) = cc.entries.get(&seq) else {
                continue;
            };
            let key = (cc.view, cc.seq);
            let better = match &best {
                None => true,
                Some((view, cc_seq, hist, _)) => {
                    key > (*view, *cc_seq) || (key == (*view, *cc_seq) && entry.hist < *hist)
                }
            };
            if better {
                best = Some((cc.view, cc.seq, entry.hist, entry));
            }
        }
    }
    best.map(|(_, _, _, entry)| entry)
}

/// Step 2b: an entry at `seq` of a view above `above` that `>= Tf` reporters hold.
fn fast_candidate<'a, C>(
    params: &Params,
    view_changes: &'a [CheckedViewChange<C>],
    seq: u64,
    above: Option<u64>,
) -> Option<&'a Evidence<C>> {
    let mut counts: BTreeMap<Digest, (usize, &'a Evidence<C>)> = BTreeMap::new();
    for view_change in view_changes {
        let Some(entry) = view_change.log.get(&seq) else {
            continue;
        };
        if above.is_some_and(|view| entry.view <= view) {
            continue;
        }
        counts.entry(entry.hist).or_insert((0, entry)).0 += 1;
    }
    // More than one candidate needs more than f Byzantine reporters; pick deterministically.
    counts
        .into_values()
        .filter(|(count, _)| *count >= params.fast_evidence())
        .max_by_key(|(count, _)| *count)
        .map(|(_, entry)| entry)
}

/// The corrected rule over validated VIEW-CHANGEs (at most `entries_max` slots).
pub fn select<C: Clone>(
    params: &Params,
    view_changes: &[CheckedViewChange<C>],
    entries_max: u64,
) -> Option<Selection<C>> {
    let base = view_changes
        .iter()
        .map(|view_change| &view_change.checkpoint)
        .max_by_key(|checkpoint| checkpoint.seq)?
        .clone();
    let mut entries = Vec::new();
    let mut previous = base.hist;
    for seq in base.seq + 1..=base.seq.saturating_add(entries_max) {
        let slow = slow_candidate(view_changes, seq);
        let fast = fast_candidate(params, view_changes, seq, slow.map(|entry| entry.view));
        let Some(chosen) = fast.or(slow) else {
            break;
        };
        if previous.chain(&chosen.digest) != chosen.hist {
            break;
        }
        previous = chosen.hist;
        entries.push((seq, chosen.clone()));
    }
    Some(Selection { base, entries })
}
