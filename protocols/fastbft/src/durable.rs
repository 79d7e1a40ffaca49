//! What a replica keeps on disk, each record with its own checksum.
//!
//! - `fb/view`: the current view and the view-change target (written and synced before a
//!   VIEW-CHANGE leaves, so a restarted replica never goes back to an abandoned view);
//! - `fb/log/<seq>`: every accepted ORDER-REQ (synced before its SPEC-RESPONSE leaves);
//! - `fb/ccs`: the CC set (synced before a LOCAL-COMMIT or CHECKPOINT-COMMIT leaves);
//! - `fb/stable`: the stable checkpoint's proof and service snapshot;
//! - `fb/built`: the last view this replica built a NEW-VIEW for as its primary;
//! - `fb/proof`: the target and proof of the last VIEW-CHANGE sent (written with `fb/view`);
//! - `fb/confirm`: the installed view's NEW-VIEW end and whether `Qs` replicas confirmed it.
//!
//! A record whose checksum fails (torn write, bit rot) reads as absent; a log is recovered
//! only as far as it chains from the checkpoint.

use dst_sim::{Digest, Node, NodeCtx};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const VIEW_KEY: &str = "fb/view";
pub const STABLE_KEY: &str = "fb/stable";
pub const CCS_KEY: &str = "fb/ccs";
/// The last view this replica built a NEW-VIEW for (it signs one per view, even across
/// crashes).
pub const BUILT_KEY: &str = "fb/built";
pub const LOG_PREFIX: &str = "fb/log/";
/// The proof of the last VIEW-CHANGE this replica sent, with its target view.
pub const PROOF_KEY: &str = "fb/proof";
/// The current view's NEW-VIEW end and whether it was confirmed (VIEW-CONFIRM).
pub const CONFIRM_KEY: &str = "fb/confirm";

/// The key of the log record of `seq` (zero-padded, so keys sort by slot).
pub fn log_key(seq: u64) -> String {
    format!("{LOG_PREFIX}{seq:020}")
}

/// Writes `value` with a checksum; false if the disk refused.
pub fn write_record<N: Node + ?Sized, T: Serialize>(
    ctx: &mut NodeCtx<'_, N>,
    key: &str,
    value: &T,
) -> bool {
    let Ok(bytes) = postcard::to_allocvec(value) else {
        return false;
    };
    let Ok(framed) = postcard::to_allocvec(&(Digest::of_bytes(&bytes), bytes)) else {
        return false;
    };
    ctx.write(key, framed).is_ok()
}

/// Reads a record; None if absent, unreadable or failing its checksum.
pub fn read_record<N: Node + ?Sized, T: DeserializeOwned>(
    ctx: &mut NodeCtx<'_, N>,
    key: &str,
) -> Option<T> {
    let framed = ctx.read(key).ok()??;
    let (checksum, bytes): (Digest, Vec<u8>) = postcard::from_bytes(&framed).ok()?;
    if Digest::of_bytes(&bytes) != checksum {
        return None;
    }
    postcard::from_bytes(&bytes).ok()
}
