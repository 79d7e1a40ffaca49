//! An independent oracle for speculative histories (brief section 7, S1-S3), over the
//! `Spec*` observations only; it never calls protocol code.
//!
//! Ground truth: every `SpecAccept` a correct replica reports gives one link of the global
//! hash chain, `hist -> (slot, prev)`. Completions carry `(view, slot, hist)`.
//! - S1: for any two completions at slots s1 <= s2, h1 is the ancestor of h2 at s1.
//! - S2: every history a correct replica installs by NEW-VIEW of a view >= a completion's
//!   view, and every stable checkpoint, extends every completion at or below its length.
//! - S3: correct replicas agree on stable checkpoints (same slot: same hist and state).
//!
//! An ancestor that cannot be found (a link no correct replica reported) is a violation
//! too: correct replicas report every entry they accept.

use std::collections::{BTreeMap, BTreeSet};

use dst_protocols::{KvCommand, KvOutput, Observation};
use dst_sim::{ClientId, NodeId};

type Obs = Observation<KvCommand, KvOutput>;

#[derive(Clone, Copy, Debug)]
struct Completed {
    client: ClientId,
    sequence: u64,
    view: u64,
    slot: u64,
    hist: u64,
}

#[derive(Clone, Copy, Debug)]
struct Installed {
    node: NodeId,
    view: Option<u64>,
    slot: u64,
    hist: u64,
}

/// The chain links reported, by history digest.
#[derive(Default)]
struct Chain {
    links: BTreeMap<u64, (u64, u64)>,
}

impl Chain {
    /// The history digest at `slot` on the chain ending at `(top_slot, top)`.
    fn ancestor(&self, top_slot: u64, top: u64, slot: u64) -> Option<u64> {
        let (mut at, mut hist) = (top_slot, top);
        while at > slot {
            let (link_slot, prev) = *self.links.get(&hist)?;
            if link_slot != at {
                return None;
            }
            hist = prev;
            at -= 1;
        }
        Some(hist)
    }
}

/// Every S1-S3 violation in a run's observations, ignoring Byzantine replicas' reports.
pub fn check_speculative(observations: &[(u64, Obs)], byzantine: &BTreeSet<NodeId>) -> Vec<String> {
    let mut chain = Chain::default();
    let mut completions = Vec::new();
    let mut installs = Vec::new();
    let mut stable: BTreeMap<u64, (u64, u64, NodeId)> = BTreeMap::new();
    let mut violations = Vec::new();
    for (_, observation) in observations {
        match observation {
            Observation::SpecAccept {
                node,
                slot,
                prev,
                hist,
                ..
            } if !byzantine.contains(node) => {
                chain.links.insert(*hist, (*slot, *prev));
            }
            Observation::SpecComplete {
                client,
                sequence,
                view,
                slot,
                hist,
            } => {
                completions.push(Completed {
                    client: *client,
                    sequence: *sequence,
                    view: *view,
                    slot: *slot,
                    hist: *hist,
                });
            }
            Observation::SpecInstall {
                node,
                view,
                slot,
                hist,
                state_digest,
            } if !byzantine.contains(node) => {
                installs.push(Installed {
                    node: *node,
                    view: *view,
                    slot: *slot,
                    hist: *hist,
                });
                if let (None, Some(state)) = (view, state_digest) {
                    let first = *stable.entry(*slot).or_insert((*hist, *state, *node));
                    if (first.0, first.1) != (*hist, *state) {
                        violations.push(format!(
                            "S3: stable checkpoint at slot {slot}: {} has hist {:x} state {:x}, {node} has {hist:x} {state:x}",
                            first.2, first.0, first.1
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    check_completions(&chain, &mut completions, &mut violations);
    check_installs(&chain, &completions, &installs, &mut violations);
    violations
}

/// S1 over consecutive completions in slot order (prefix is transitive).
fn check_completions(chain: &Chain, completions: &mut [Completed], violations: &mut Vec<String>) {
    completions.sort_by_key(|completed| (completed.slot, completed.hist));
    for pair in completions.windows(2) {
        let (low, high) = (pair[0], pair[1]);
        if chain.ancestor(high.slot, high.hist, low.slot) != Some(low.hist) {
            violations.push(format!(
                "S1: {}#{} completed at slot {} (view {}) is not a prefix of {}#{} at slot {} (view {})",
                low.client, low.sequence, low.slot, low.view, high.client, high.sequence, high.slot, high.view
            ));
        }
    }
}

/// S2: installed histories extend the completions they cover.
fn check_installs(
    chain: &Chain,
    completions: &[Completed],
    installs: &[Installed],
    violations: &mut Vec<String>,
) {
    for install in installs {
        for completed in completions {
            let covers = completed.slot <= install.slot
                && install.view.is_none_or(|view| view >= completed.view);
            if !covers {
                continue;
            }
            if chain.ancestor(install.slot, install.hist, completed.slot) != Some(completed.hist) {
                let what = match install.view {
                    Some(view) => format!("NEW-VIEW {view}"),
                    None => "stable checkpoint".to_string(),
                };
                violations.push(format!(
                    "S2: {} installed {what} up to slot {} that drops {}#{} completed at slot {} in view {}",
                    install.node, install.slot, completed.client, completed.sequence, completed.slot, completed.view
                ));
                return;
            }
        }
    }
}
