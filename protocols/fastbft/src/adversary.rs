//! What FastBFT teaches the Byzantine wrappers: plausible but invalid messages and lies.
//! Honest replicas reject every forgery here (tests in `tests/forgery.rs`).

use dst_sim::{Adversarial, Digest, NodeCtx, StateMachine};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::msg::{
    entry_digest, Cc, CcEvidence, FastReply, IhtpBody, Link, Msg, OrderBody, ViewChangeProof, Vote,
};
use crate::replica::FastBft;

/// A different value of the same type: one byte of its encoding changed, if that decodes.
fn mutate<T: Serialize + DeserializeOwned + PartialEq>(value: &T, variant: u64) -> Option<T> {
    let bytes = postcard::to_allocvec(value).ok()?;
    for offset in 0..bytes.len() {
        let index = (variant as usize + offset) % bytes.len();
        let mut changed = bytes.clone();
        changed[index] ^= 1;
        if let Ok(decoded) = postcard::from_bytes::<T>(&changed) {
            if decoded != *value {
                return Some(decoded);
            }
        }
    }
    None
}

impl<S: StateMachine> Adversarial for FastBft<S> {
    fn forge(ctx: &mut NodeCtx<'_, Self>, msg: &Self::Msg, variant: u64) -> Option<Self::Msg> {
        match msg {
            // Another entry (a no-op) at the same (view, seq), signed as itself.
            Msg::Order(order) => {
                let mut body = order.order.value.clone();
                body.digest = entry_digest::<S::Command>(None, body.seq);
                body.hist = Digest::of(&("forged", body.hist));
                let mut forged = order.clone();
                forged.order = ctx.sign_value(body);
                forged.request = None;
                Some(Msg::Order(forged))
            }
            // A VIEW-CHANGE with a fabricated proof: its own IHTP repeated, or a POM whose
            // two orders do not conflict.
            Msg::ViewChange(view_change) if variant % 4 >= 2 => {
                let mut body = view_change.value.clone();
                let ihtp = ctx.sign_value(IhtpBody {
                    view: body.new_view.saturating_sub(1),
                    replica: body.replica,
                });
                body.proof = match (variant % 4, &body.proof) {
                    (3, ViewChangeProof::Ihtp(ihtps)) if !ihtps.is_empty() => {
                        let order = ctx.sign_value(OrderBody {
                            view: body.new_view.saturating_sub(1),
                            seq: 1,
                            hist: Digest::of(&("forged", variant)),
                            digest: Digest::ZERO,
                        });
                        ViewChangeProof::Pom {
                            first: order.clone(),
                            second: order,
                        }
                    }
                    _ => ViewChangeProof::Ihtp(vec![ihtp; 4]),
                };
                Some(Msg::ViewChange(Box::new(ctx.sign_value(body))))
            }
            // A VIEW-CHANGE with a fabricated CC: its own vote repeated, or too few signers.
            Msg::ViewChange(view_change) => {
                let mut body = view_change.value.clone();
                let seq = body.checkpoint.seq + 1;
                let digest = entry_digest::<S::Command>(None, seq);
                let hist = body.checkpoint.hist.chain(&digest);
                let vote = ctx.sign_value(crate::msg::CheckpointBody {
                    commit: false,
                    view: body.new_view.saturating_sub(1),
                    seq,
                    hist,
                    state_digest: 0,
                    replica: body.replica,
                });
                let copies = if variant.is_multiple_of(2) { 4 } else { 1 };
                let cc = Cc {
                    view: body.new_view.saturating_sub(1),
                    seq,
                    hist,
                    votes: vec![Vote::Checkpoint(vote); copies],
                };
                let chain = vec![Link {
                    seq,
                    digest,
                    request: None,
                }];
                body.ccs.push(CcEvidence { cc, chain });
                Some(Msg::ViewChange(Box::new(ctx.sign_value(body))))
            }
            // A NEW-VIEW whose re-issued history does not match its view changes.
            Msg::NewView(new_view) => {
                let mut body = new_view.value.clone();
                match body.orders.pop() {
                    Some(_) => {}
                    None => body.view_changes.truncate(1),
                }
                Some(Msg::NewView(Box::new(ctx.sign_value(body))))
            }
            // A VIEW-CONFIRM for another history end (it is unsigned: anyone can lie in it).
            Msg::ViewConfirm {
                view,
                seq,
                hist,
                answer,
            } => Some(Msg::ViewConfirm {
                view: *view,
                seq: seq.saturating_add(variant % 2),
                hist: Digest::of(&("forged", *hist, variant)),
                answer: *answer,
            }),
            // A STATE-REPLY whose archived final entries are out of order or altered.
            Msg::StateReply {
                proof,
                snapshot,
                entries,
                finals,
            } => {
                let mut finals = finals.clone();
                match (variant % 2, finals.len()) {
                    (0, 2..) => finals.swap(0, 1),
                    _ => {
                        if let Some(request) = finals.last_mut().and_then(|f| f.request.as_mut()) {
                            request.value.sequence ^= 1;
                        }
                    }
                }
                Some(Msg::StateReply {
                    proof: proof.clone(),
                    snapshot: snapshot.clone(),
                    entries: entries.clone(),
                    finals,
                })
            }
            // A checkpoint vote with a wrong state digest.
            Msg::Checkpoint(vote) => {
                let mut body = vote.value.clone();
                body.state_digest ^= 1 | variant;
                Some(Msg::Checkpoint(ctx.sign_value(body)))
            }
            _ => None,
        }
    }

    fn lie(ctx: &mut NodeCtx<'_, Self>, reply: &Self::Reply, variant: u64) -> Option<Self::Reply> {
        match reply {
            FastReply::Spec { spec, order } => {
                let mut body = spec.value.clone();
                match mutate(&body.output, variant) {
                    Some(output) => body.output = output,
                    None => body.hist = Digest::of(&("lie", body.hist)),
                }
                Some(FastReply::Spec {
                    spec: ctx.sign_value(body),
                    order: order.clone(),
                })
            }
            FastReply::Final { sequence, output } => Some(FastReply::Final {
                sequence: *sequence,
                output: mutate(output, variant)?,
            }),
            FastReply::LocalCommit {
                view,
                seq,
                hist,
                sequence,
            } => Some(FastReply::LocalCommit {
                view: *view,
                seq: *seq,
                hist: Digest::of(&("lie", *hist)),
                sequence: *sequence,
            }),
        }
    }
}
