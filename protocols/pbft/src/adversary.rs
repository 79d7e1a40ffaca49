//! What PBFT teaches the generic Byzantine wrappers: plausible forgeries of its messages and
//! wrong replies. Every forgery is signed by the Byzantine node itself (it cannot sign for
//! anyone else); honest replicas must reject each one or stay safe when it is a legitimate
//! equivocation.

use dst_protocols::Reply;
use dst_sim::{Adversarial, Digest, NodeCtx, Signed, StateMachine};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::message::{
    Message, NewView, Phase, PreparedCert, Seq, Statement, View, ViewChange, NULL_DIGEST,
};
use crate::replica::Pbft;

fn forged_digest(variant: u64) -> Digest {
    Digest::of(&("pbft-forged", variant))
}

impl<S: StateMachine> Adversarial for Pbft<S> {
    fn forge(ctx: &mut NodeCtx<'_, Self>, msg: &Self::Msg, variant: u64) -> Option<Self::Msg> {
        match msg {
            Message::PrePrepare { statement, request } => {
                let mut value = statement.value;
                if variant.is_multiple_of(2) {
                    // Equivocation: the same slot, a null request, properly signed.
                    value.digest = NULL_DIGEST;
                    Some(Message::PrePrepare {
                        statement: ctx.sign_value(value),
                        request: None,
                    })
                } else {
                    // A digest that does not match the body it carries.
                    value.digest = forged_digest(variant);
                    Some(Message::PrePrepare {
                        statement: ctx.sign_value(value),
                        request: request.clone(),
                    })
                }
            }
            Message::Prepare(vote) | Message::Commit(vote) | Message::Checkpoint(vote) => {
                let mut value = vote.value;
                value.digest = forged_digest(variant);
                let forged = ctx.sign_value(value);
                Some(match msg {
                    Message::Prepare(_) => Message::Prepare(forged),
                    Message::Commit(_) => Message::Commit(forged),
                    _ => Message::Checkpoint(forged),
                })
            }
            Message::ViewChange(change) => Some(Message::ViewChange(forge_view_change(
                ctx,
                &change.value,
                variant,
            ))),
            Message::NewView(new_view) => {
                forge_new_view(ctx, &new_view.value, variant).map(Message::NewView)
            }
            _ => None,
        }
    }

    fn lie(_ctx: &mut NodeCtx<'_, Self>, reply: &Self::Reply, variant: u64) -> Option<Self::Reply> {
        match reply {
            Reply::Done { sequence, output } => Some(Reply::Done {
                sequence: *sequence,
                output: other_output(output, variant)?,
            }),
            Reply::Redirect { .. } => None,
        }
    }
}

/// A VIEW-CHANGE carrying a fabricated prepared certificate: a duplicated signer, a
/// signature moved onto another statement, or a certificate signed only by the forger.
fn forge_view_change<S: StateMachine>(
    ctx: &mut NodeCtx<'_, Pbft<S>>,
    change: &ViewChange<S::Command>,
    variant: u64,
) -> Signed<ViewChange<S::Command>> {
    let mut forged = change.clone();
    let n = ctx.cluster_size().max(1);
    let seq = Seq(change.stable_seq.0 + 1);
    // A view below the target in which the forger is the primary, when there is one. The
    // hook has no configuration, so it assumes the default rotation; under another order
    // the forgery is only cruder (and rejected all the same).
    let own_view = (0..change.view.0)
        .rev()
        .find(|view| View(*view).primary(n, 0) == ctx.id())
        .map_or(View(0), View);
    let pre_prepare = ctx.sign_value(Statement {
        phase: Phase::PrePrepare,
        view: own_view,
        seq,
        digest: NULL_DIGEST,
    });
    let prepare = ctx.sign_value(Statement {
        phase: Phase::Prepare,
        ..pre_prepare.value
    });
    let cert = match (variant % 3, forged.prepared.first()) {
        (0, _) => PreparedCert {
            pre_prepare,
            prepares: vec![prepare; 3],
            request: None,
        },
        (1, Some(existing)) => {
            let mut cert = existing.clone();
            if let Some(first) = cert.prepares.first_mut() {
                // The signature stays, the statement changes: it no longer verifies.
                first.value.digest = forged_digest(variant);
            }
            cert
        }
        _ => PreparedCert {
            pre_prepare,
            prepares: vec![prepare],
            request: None,
        },
    };
    forged
        .prepared
        .retain(|held| held.pre_prepare.value.seq != cert.pre_prepare.value.seq);
    forged.prepared.push(cert);
    ctx.sign_value(forged)
}

/// A NEW-VIEW whose O set differs from what its view changes imply.
fn forge_new_view<S: StateMachine>(
    ctx: &mut NodeCtx<'_, Pbft<S>>,
    new_view: &NewView<S::Command>,
    variant: u64,
) -> Option<Signed<NewView<S::Command>>> {
    let mut forged = new_view.clone();
    if variant.is_multiple_of(2) || forged.pre_prepares.is_empty() {
        // One slot too many: a null request above max_s.
        let next = forged
            .pre_prepares
            .last()
            .map_or(Seq(1), |last| Seq(last.value.seq.0 + 1));
        forged.pre_prepares.push(ctx.sign_value(Statement {
            phase: Phase::PrePrepare,
            view: new_view.view,
            seq: next,
            digest: NULL_DIGEST,
        }));
    } else {
        let index = (variant as usize / 2) % forged.pre_prepares.len();
        let mut value = forged.pre_prepares[index].value;
        value.digest = if value.digest == NULL_DIGEST {
            forged_digest(variant)
        } else {
            NULL_DIGEST
        };
        forged.pre_prepares[index] = ctx.sign_value(value);
    }
    Some(ctx.sign_value(forged))
}

/// A value of the same type as `output` that differs from it, found by decoding short byte
/// strings (so it works for any serialisable output type). None if nothing else decodes.
pub fn other_output<O: Serialize + DeserializeOwned + PartialEq>(
    output: &O,
    variant: u64,
) -> Option<O> {
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for tag in 0u8..8 {
        candidates.push(vec![tag]);
        candidates.push(vec![tag, 0]);
        candidates.push(vec![tag, 1]);
        candidates.push(vec![tag, 1, 1, b'x']);
        candidates.push(vec![tag, 1, 1, b'y']);
    }
    if let Ok(bytes) = postcard::to_allocvec(output) {
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 1;
            candidates.push(flipped);
        }
    }
    let count = candidates.len();
    (0..count)
        .map(|offset| &candidates[(variant as usize).wrapping_add(offset) % count])
        .filter_map(|bytes| postcard::from_bytes::<O>(bytes).ok())
        .find(|decoded| decoded != output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dst_protocols::KvOutput;

    #[test]
    fn other_output_differs_for_every_variant() {
        for output in [
            KvOutput::Written,
            KvOutput::Swapped(true),
            KvOutput::Value(None),
            KvOutput::Value(Some("ab".to_string())),
        ] {
            for variant in 0..20 {
                let lie = other_output(&output, variant).expect("a lie exists");
                assert_ne!(lie, output, "variant {variant} told the truth");
            }
        }
    }
}
