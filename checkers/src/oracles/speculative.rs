//! Oracle for speculative BFT histories (FastBFT's brief, section 7, S1-S3).
//!
//! Input: what correct replicas and clients reported, as [`SpecEvent`]s (harnesses convert
//! their observations; Byzantine replicas' reports are left out by the caller).
//! - Every `Accept` gives one link of the global hash chain: `hist` at `slot` extends `prev`.
//! - S1: for any two completions at slots `s1 <= s2`, `h1` is the ancestor of `h2` at `s1`.
//! - S2: every history a correct replica installs by NEW-VIEW of a view at or above a
//!   completion's view, and every stable checkpoint, extends every completion at or below its
//!   length.
//! - S3: correct replicas agree on stable checkpoints (same slot: same hist and state).
//!
//! An ancestor that cannot be found (a link no correct replica reported) is a violation too:
//! correct replicas report every entry they accept. Digests are the protocol's (short)
//! history digests; the oracle never recomputes them.

use std::collections::BTreeMap;

use super::{Property, Violation};

/// One report about a speculative history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecEvent {
    /// A correct replica accepted `hist` at `slot`, extending `prev`.
    Accept {
        node: u32,
        slot: u64,
        prev: u64,
        hist: u64,
    },
    /// A client completed a request at `(view, slot)` of history `hist`.
    Complete {
        client: u32,
        sequence: u64,
        view: u64,
        slot: u64,
        hist: u64,
    },
    /// A correct replica installed a history up to `slot`: a NEW-VIEW's (`view: Some`) or a
    /// stable checkpoint's (`view: None`, with the state digest).
    Install {
        node: u32,
        view: Option<u64>,
        slot: u64,
        hist: u64,
        state_digest: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Completed {
    client: u32,
    sequence: u64,
    view: u64,
    slot: u64,
    hist: u64,
}

/// The reported links, by history digest: `hist -> (slot, prev)`.
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

fn violation(name: &str, detail: String) -> Violation {
    Violation::new(Property::Invariant(name.to_string()), detail)
}

/// Every S1-S3 violation in `events`.
pub fn check_speculative(events: &[SpecEvent]) -> Vec<Violation> {
    let mut chain = Chain::default();
    let mut completions = Vec::new();
    let mut installs = Vec::new();
    let mut stable: BTreeMap<u64, (u64, u64, u32)> = BTreeMap::new();
    let mut violations = Vec::new();
    for event in events {
        match *event {
            SpecEvent::Accept {
                slot, prev, hist, ..
            } => {
                chain.links.insert(hist, (slot, prev));
            }
            SpecEvent::Complete {
                client,
                sequence,
                view,
                slot,
                hist,
            } => {
                completions.push(Completed {
                    client,
                    sequence,
                    view,
                    slot,
                    hist,
                });
            }
            SpecEvent::Install {
                node,
                view,
                slot,
                hist,
                state_digest,
            } => {
                installs.push((node, view, slot, hist));
                if let (None, Some(state)) = (view, state_digest) {
                    let first = *stable.entry(slot).or_insert((hist, state, node));
                    if (first.0, first.1) != (hist, state) {
                        violations.push(violation(
                            "S3",
                            format!(
                                "stable checkpoint at slot {slot}: n{} has hist {:x} state {:x}, n{node} has {hist:x} {state:x}",
                                first.2, first.0, first.1
                            ),
                        ));
                    }
                }
            }
        }
    }
    check_completions(&chain, &mut completions, &mut violations);
    check_installs(&chain, &completions, &installs, &mut violations);
    violations
}

/// S1 over consecutive completions in slot order (being a prefix is transitive).
fn check_completions(
    chain: &Chain,
    completions: &mut [Completed],
    violations: &mut Vec<Violation>,
) {
    completions.sort_by_key(|completed| (completed.slot, completed.hist));
    for pair in completions.windows(2) {
        let (low, high) = (pair[0], pair[1]);
        if chain.ancestor(high.slot, high.hist, low.slot) != Some(low.hist) {
            violations.push(violation(
                "S1",
                format!(
                    "c{}#{} completed at slot {} (view {}) is not a prefix of c{}#{} at slot {} (view {})",
                    low.client, low.sequence, low.slot, low.view, high.client, high.sequence, high.slot, high.view
                ),
            ));
        }
    }
}

/// S2: installed histories extend the completions they cover (one report per install).
/// `completions` are in (slot, hist) order, as [`check_completions`] leaves them.
fn check_installs(
    chain: &Chain,
    completions: &[Completed],
    installs: &[(u32, Option<u64>, u64, u64)],
    violations: &mut Vec<Violation>,
) {
    for &(node, view, slot, hist) in installs {
        let Some(completed) = first_dropped(chain, completions, view, slot, hist) else {
            continue;
        };
        let what = match view {
            Some(view) => format!("NEW-VIEW {view}"),
            None => "stable checkpoint".to_string(),
        };
        violations.push(violation(
            "S2",
            format!(
                "n{node} installed {what} up to slot {slot} that drops c{}#{} completed at slot {} in view {}",
                completed.client, completed.sequence, completed.slot, completed.view
            ),
        ));
    }
}

/// The first completion (in slot order) that the install `(view, slot, hist)` covers but whose
/// history it does not extend. One walk down the install's chain serves every completion: the
/// completions are visited from the highest slot down, so each link is looked up once per
/// install instead of once per (install, completion).
fn first_dropped(
    chain: &Chain,
    completions: &[Completed],
    view: Option<u64>,
    slot: u64,
    hist: u64,
) -> Option<Completed> {
    let reach = completions.partition_point(|completed| completed.slot <= slot);
    // The walk: `walked` is the history digest at slot `at` on the install's chain, or None
    // once a link is missing (then no lower completion is extended either).
    let (mut at, mut walked) = (slot, Some(hist));
    let mut dropped = None;
    for completed in completions[..reach].iter().rev() {
        if view.is_some_and(|view| view < completed.view) {
            continue;
        }
        while at > completed.slot && walked.is_some() {
            walked = walked.and_then(|current| match chain.links.get(&current) {
                Some(&(link_slot, prev)) if link_slot == at => Some(prev),
                _ => None,
            });
            at -= 1;
        }
        if walked != Some(completed.hist) {
            dropped = Some(*completed);
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(slot: u64, prev: u64, hist: u64) -> SpecEvent {
        SpecEvent::Accept {
            node: 0,
            slot,
            prev,
            hist,
        }
    }
    fn complete(client: u32, view: u64, slot: u64, hist: u64) -> SpecEvent {
        SpecEvent::Complete {
            client,
            sequence: 1,
            view,
            slot,
            hist,
        }
    }
    fn stable(node: u32, slot: u64, hist: u64, state: u64) -> SpecEvent {
        SpecEvent::Install {
            node,
            view: None,
            slot,
            hist,
            state_digest: Some(state),
        }
    }
    /// Chain a: 0 -> 11 -> 12; chain b: 0 -> 21 -> 22.
    fn chains() -> Vec<SpecEvent> {
        vec![
            accept(1, 0, 11),
            accept(2, 11, 12),
            accept(1, 0, 21),
            accept(2, 21, 22),
        ]
    }
    fn names(violations: &[Violation]) -> Vec<String> {
        violations
            .iter()
            .map(|violation| violation.property.to_string())
            .collect()
    }

    #[test]
    fn consistent_histories_pass() {
        let mut events = chains();
        events.extend([
            complete(0, 0, 1, 11),
            complete(1, 0, 2, 12),
            stable(0, 2, 12, 7),
            stable(1, 2, 12, 7),
        ]);
        assert!(check_speculative(&events).is_empty());
    }

    #[test]
    fn conflicting_completions_break_s1() {
        let mut events = chains();
        events.extend([complete(0, 0, 1, 11), complete(1, 0, 2, 22)]);
        assert_eq!(names(&check_speculative(&events)), ["invariant:S1"]);
    }

    #[test]
    fn a_new_view_dropping_a_completion_breaks_s2() {
        let mut events = chains();
        events.extend([
            complete(0, 2, 1, 11),
            SpecEvent::Install {
                node: 1,
                view: Some(3),
                slot: 2,
                hist: 22,
                state_digest: None,
            },
            // An older view's install is not judged against a later view's completion.
            SpecEvent::Install {
                node: 1,
                view: Some(1),
                slot: 2,
                hist: 22,
                state_digest: None,
            },
        ]);
        assert_eq!(names(&check_speculative(&events)), ["invariant:S2"]);
    }

    #[test]
    fn diverging_stable_checkpoints_break_s3() {
        let mut events = chains();
        events.extend([stable(0, 2, 12, 7), stable(1, 2, 12, 8)]);
        assert_eq!(names(&check_speculative(&events)), ["invariant:S3"]);
    }

    #[test]
    fn one_walk_per_install_finds_what_a_walk_per_completion_finds() {
        // Random forests of links (some missing), completions and installs; the reference
        // walks the chain once per (install, completion) pair.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            state = crate::linearizability::memo::splitmix64(state);
            state % bound
        };
        let (mut dropped, mut kept) = (0, 0);
        for _ in 0..300 {
            let mut chain = Chain::default();
            for hist in 1..40u64 {
                if next(8) != 0 {
                    let prev = if hist < 4 { 0 } else { next(hist) };
                    let slot = chain.links.get(&prev).map_or(1, |&(slot, _)| slot + 1);
                    chain
                        .links
                        .insert(hist, (slot + u64::from(next(10) == 0), prev));
                }
            }
            let mut completions: Vec<Completed> = (0..next(12))
                .map(|index| Completed {
                    client: index as u32,
                    sequence: 1,
                    view: next(4),
                    slot: next(8),
                    hist: next(40),
                })
                .collect();
            completions.sort_by_key(|completed| (completed.slot, completed.hist));
            for _ in 0..10 {
                let (view, slot, hist) = ((next(3) != 0).then(|| next(4)), next(10), next(40));
                let reference = completions.iter().find(|completed| {
                    let covers =
                        completed.slot <= slot && view.is_none_or(|view| view >= completed.view);
                    covers && chain.ancestor(slot, hist, completed.slot) != Some(completed.hist)
                });
                let found = first_dropped(&chain, &completions, view, slot, hist);
                if found.is_some() {
                    dropped += 1;
                } else if completions.iter().any(|c| c.slot <= slot) {
                    kept += 1;
                }
                assert_eq!(
                    found.map(|c| c.client),
                    reference.map(|c| c.client),
                    "install ({view:?}, {slot}, {hist}) over {completions:?}"
                );
            }
        }
        assert!(
            dropped > 100 && kept > 100,
            "{dropped} dropped, {kept} kept"
        );
    }

    #[test]
    fn an_unreported_ancestor_is_a_violation() {
        let events = [complete(0, 0, 1, 11), complete(1, 0, 2, 99)];
        assert_eq!(names(&check_speculative(&events)), ["invariant:S1"]);
    }
}
