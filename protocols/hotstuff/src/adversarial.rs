//! What HotStuff tells the generic Byzantine wrappers: forgeries of its messages and lies.

use dst_protocols::{KvOutput, Reply};
use dst_sim::{Adversarial, Digest, NodeCtx, StateMachine};

use crate::replica::HotStuff;
use crate::types::{proposal_digest, timeout_digest, vote_digest, Message, Qc, Round};

/// Outputs a lying replica can replace with a plausible wrong one.
pub trait Falsify: Sized {
    /// A different output than `self` (`variant` picks among the lies known).
    fn falsified(&self, variant: u64) -> Option<Self>;
}

impl Falsify for KvOutput {
    fn falsified(&self, variant: u64) -> Option<Self> {
        Some(match self {
            KvOutput::Value(Some(value)) if variant.is_multiple_of(2) => {
                KvOutput::Value(Some(format!("{value}~forged")))
            }
            KvOutput::Value(_) => KvOutput::Value(Some("forged".to_string())),
            KvOutput::Written => KvOutput::Swapped(false),
            KvOutput::Swapped(swapped) => KvOutput::Swapped(!swapped),
        })
    }
}

/// The ways a certificate can be wrong.
const QC_FORGERIES: u64 = 3;

/// A plausible but invalid variant of `qc`: a duplicated signer, one vote short of a
/// quorum, or the votes moved onto another block. A genesis QC (no votes) can only be
/// moved onto another block.
pub fn forge_qc(qc: &Qc, variant: u64) -> Qc {
    let mut forged = qc.clone();
    match (variant % QC_FORGERIES, qc.votes.len()) {
        (0, 2..) => {
            let last = forged.votes.len() - 1;
            forged.votes[last] = forged.votes[0];
        }
        (1, 1..) => {
            forged.votes.pop();
        }
        _ => {
            forged.block = Digest::of(&("forged block", qc.block, variant));
        }
    }
    forged
}

impl<S: StateMachine> Adversarial for HotStuff<S>
where
    S::Output: Falsify,
{
    fn forge(
        ctx: &mut NodeCtx<'_, Self>,
        msg: &Message<S::Command>,
        variant: u64,
    ) -> Option<Message<S::Command>> {
        match msg {
            Message::Propose { block, tc, .. } => {
                let mut block = block.clone();
                if variant % (QC_FORGERIES + 1) == QC_FORGERIES {
                    // Equivocation: another batch for the same round, signed as itself.
                    if block.requests.pop().is_none() {
                        block.height = block.height.saturating_add(1);
                    }
                } else {
                    block.justify = forge_qc(&block.justify, variant);
                    block.parent = block.justify.block;
                }
                let signature = ctx.sign(&proposal_digest(&block.digest()));
                Some(Message::Propose {
                    block,
                    tc: tc.clone(),
                    signature,
                })
            }
            Message::Vote { round, block, .. } => {
                let other = Digest::of(&("forged vote", block, variant));
                let signature = ctx.sign(&vote_digest(*round, &other));
                Some(Message::Vote {
                    round: *round,
                    block: other,
                    signature,
                })
            }
            Message::Timeout { round, high_qc, .. } => {
                // Claims a higher QC than it carries, or carries a broken one.
                let mut high_qc = forge_qc(high_qc, variant);
                if variant % 2 == 1 {
                    high_qc.round = Round(round.0.saturating_sub(1)).max(high_qc.round);
                }
                let signature = ctx.sign(&timeout_digest(*round, high_qc.round));
                Some(Message::Timeout {
                    round: *round,
                    high_qc,
                    signature,
                })
            }
            Message::Certificate { qc, tc } => Some(Message::Certificate {
                qc: forge_qc(qc, variant),
                tc: tc.clone(),
            }),
            Message::Blocks { blocks } => {
                let mut blocks = blocks.clone();
                let first = blocks.first_mut()?;
                first.round = first.round.next();
                Some(Message::Blocks { blocks })
            }
            Message::Forward { .. } | Message::Fetch { .. } => None,
        }
    }

    fn lie(
        _ctx: &mut NodeCtx<'_, Self>,
        reply: &Reply<S::Output>,
        variant: u64,
    ) -> Option<Reply<S::Output>> {
        match reply {
            Reply::Done { sequence, output } => Some(Reply::Done {
                sequence: *sequence,
                output: output.falsified(variant)?,
            }),
            Reply::Redirect { .. } => None,
        }
    }
}
