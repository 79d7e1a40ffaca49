//! The Byzantine fault model, generic over protocols.
//!
//! Byzantine behaviours wrap honest nodes; they are never flags inside them. A wrapper hosts
//! the honest node through [`crate::NodeCtx::nest`], sees every effect it asks for, and
//! rewrites them: drops, redirects, duplicates, or replaces messages. A Byzantine node signs
//! as itself only (see [`crate::auth`]): whatever it forges carries its own signature or a
//! replayed one, so honest nodes that verify certificates reject it.
//!
//! Protocols teach the generic wrappers their message semantics through [`Adversarial`]:
//! how to build a plausible but invalid variant of a message (a certificate with too few or
//! duplicated signers, a vote for another value, a wrong digest) and how to lie to a client.

use crate::node::{Node, NodeCtx};

/// What a protocol tells the Byzantine wrappers about its messages. Every method has a
/// default that forges nothing, so a protocol can opt in piece by piece.
pub trait Adversarial: Node {
    /// A plausible but invalid or conflicting variant of `msg`, about to be sent by this
    /// (Byzantine) node: for example a proposal for another value signed as itself, or a
    /// certificate with too few, duplicated or mismatched signatures. `variant` picks among
    /// the forgeries the protocol knows (taken modulo their number). None: nothing to forge.
    fn forge(ctx: &mut NodeCtx<'_, Self>, msg: &Self::Msg, variant: u64) -> Option<Self::Msg> {
        let _ = (ctx, msg, variant);
        None
    }

    /// A wrong answer to a client in place of `reply` (a different output for the same
    /// request). None: the protocol's replies have nothing to lie about.
    fn lie(ctx: &mut NodeCtx<'_, Self>, reply: &Self::Reply, variant: u64) -> Option<Self::Reply> {
        let _ = (ctx, reply, variant);
        None
    }
}
