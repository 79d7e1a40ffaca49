//! # FastBFT: a speculative BFT protocol as a sans-IO [`dst_sim::Node`]
//!
//! Zyzzyva-like (Kotla et al., SOSP 2007) with the view change corrected to order evidence by
//! view first (Abraham et al., arXiv:1712.01367 and 1801.10022). The design brief is
//! `shared/docs/fastbft.md`; section numbers below refer to it.
//!
//! `n = 3f + 2c + 1` replicas; quorums `Qf = n - c` (fast), `Qs = 2f + c + 1` (slow and
//! checkpoints), `Qvc = n - f` (view change), `Tf = f + c + 1` (fast evidence). Every message
//! that serves as a proof is signed; every certificate is verified on receipt.
//!
//! ## Rules ("upon receiving ...")
//! - Primary, upon a signed REQUEST newer than the client's last executed one: assign the next
//!   slot `s`, `h_s = H(h_{s-1} || d)`, sign ORDER-REQ(v, s, h_s, d), execute, persist, answer
//!   the client with a signed SPEC-RESPONSE and broadcast the ORDER-REQ. A request already
//!   executed gets its SPEC-RESPONSE again (or `Final` if it is below the stable checkpoint).
//! - Backup, upon ORDER-REQ of the current view signed by its primary, with `s = tip + 1`,
//!   `h = H(tip || d)` and a valid request: append, execute speculatively, persist (synced
//!   before the answer leaves), send SPEC-RESPONSE. `s > tip + 1`: buffer it and send
//!   FILL-HOLE to the primary; after a timeout broadcast FILL-HOLE (anyone relays the signed
//!   ORDER-REQs it holds), after another send IHTP. A second ORDER-REQ for one `(v, s)` with
//!   another history is a POM: broadcast it and change view.
//! - Backup, upon a REQUEST it has not seen: forward it to the primary and start a timer;
//!   IHTP if it is not ordered in time.
//! - A SPEC-RESPONSE travels with the primary's signed ORDER-REQ it executed. A client that
//!   holds two of them for one `(view, seq)` with different histories has a POM (case 4d):
//!   it sends it to every replica (again with each retry); a replica verifies it like a
//!   replica's POM and changes view with it as the proof.
//! - Upon COMMIT(CC) from a client: verify the CC (`Qs` distinct replica signatures over one
//!   `(v, seq, hist)`); if the log has `hist` at `seq`, store the CC durably and answer
//!   LOCAL-COMMIT; a shorter log asks to fill the hole; a conflicting log sends IHTP.
//! - Upon `f + 1` IHTPs for the current view, or a valid POM: broadcast VIEW-CHANGE(v+1)
//!   (its proof: the `f + 1` signed IHTPs or the POM; stable checkpoint with proof,
//!   Pareto-maximal CCs with their chains, and per slot the latest-view accepted ORDER-REQ)
//!   and start a timer with exponential back-off; on expiry send IHTP about the awaited
//!   view, and upon `f + 1` of those move to the next view with them as the proof. Upon
//!   `f + 1` VIEW-CHANGEs for higher views, join, carrying the proof of the one asking for
//!   the view joined.
//! - Upon VIEW-CHANGE(w): verify its proof ([`msg::verify_view_change_proof`]): `f + 1`
//!   IHTPs of distinct replicas about views `>= w - 1` (one is correct, and a correct
//!   replica complains only about the view it is in or awaits, so a proof for a later view
//!   also justifies earlier ones), or a POM of the primary of `w - 1` in view `w - 1`. A
//!   VIEW-CHANGE without a valid proof is ignored: it is no complaint, joins nothing and
//!   does not count towards a NEW-VIEW (which re-verifies every enclosed proof).
//! - New primary, upon `Qvc` valid VIEW-CHANGEs: compute the history with the rule of
//!   [`select`] (by view first), re-sign its entries as ORDER-REQs of the new view, send
//!   NEW-VIEW. Replicas recompute the history from the enclosed VIEW-CHANGEs and install only
//!   an exact match: roll back to the stable checkpoint and re-execute the carried entries.
//! - After installing: broadcast VIEW-CONFIRM(view, seq, hist) with the end of the NEW-VIEW
//!   history (see `confirm.rs`). Until `Qs` replicas (itself included) announced the same
//!   end, the view is not resumed: no SPEC-RESPONSE, no ordering, ORDER-REQs of the view are
//!   buffered, COMMITs and checkpoint votes ignored. Then answer the carried entries'
//!   clients, vote their checkpoints and accept the buffered ORDER-REQs. A replica that sees
//!   `Qs` confirm another end of its view installs that NEW-VIEW (a confirmed replica sends
//!   it once to a replica that announced a different end); a view not confirmed within the
//!   NEW-VIEW timeout is complained about (IHTP). This guards against a primary signing two
//!   valid NEW-VIEWs for one view (different `Qvc` sets): at most one end is confirmed.
//!   VIEW-CONFIRM is not signed (the brief allows a MAC; it is never forwarded as proof).
//! - Every `K` slots, and at the tip once idle: CHECKPOINT(v, s, h_s, state digest); `Qs`
//!   matching ones form a checkpoint CC (kept like a CC) and trigger CHECKPOINT-COMMIT; `Qs`
//!   matching CHECKPOINT-COMMITs make the checkpoint stable. Only then are entries final:
//!   `Commit`/`Apply` are reported for them and the log below is garbage-collected.
//! - A replica that sees a stable proof its log does not reach fetches the state
//!   (STATE-REQ/STATE-REPLY), checks the snapshot against the proof and replays above it.
//!   The reply also carries the sender's archived final entries between the asker's
//!   checkpoint and the new one (kept on disk for two windows below the checkpoint); if they
//!   chain to the proof the asker reports `Commit`/`Apply` for the slots it skipped
//!   (`finals.rs`, which also says when slots can still go unreported).
//!
//! ## Liveness rules added to the brief
//! - The NEW-VIEW timer starts only once `Qvc` replicas ask for the target view (PBFT's
//!   rule), so a lone replica never races ahead; a VIEW-CHANGE for a later view counts as a
//!   complaint about the current one. A replica in an older view (seen through its IHTP,
//!   VIEW-CHANGE, FILL-HOLE, forwarded request or ORDER-REQ) is sent the last NEW-VIEW.
//! - A backup whose ordered request a client keeps retrying complains (IHTP) unless a CC it
//!   holds covers the entry: the client is short of a quorum in this view.
//! - A replica checkpoints its tip once idle, so the tail of a run becomes final; checkpoint
//!   votes are retransmitted (both rounds) until stable; a replica whose window is overtaken
//!   asks for state.
//! - A checkpoint vote not stable after `checkpoint_stall_ns` is a complaint (IHTP): a view
//!   that executes requests but cannot finalise them is not making progress.
//! - A primary never signs a slot twice in one view, even after a state transfer rolled it
//!   back; the NEW-VIEW it built for a view is recorded durably (one per view).
//!
//! ## Interpretations of the brief (where it leaves a choice)
//! - VIEW-CONFIRM's quorum is `Qs` (two `Qs` sets share a correct replica; `n - f >= Qs`
//!   keeps it live); it costs a view change one more message delay before the new view
//!   answers or orders, and requests reaching the primary meanwhile are dropped (clients
//!   retransmit).
//! - An IHTP proof may hold IHTPs about later views than `w - 1` (so a replica joining or
//!   complaining can reuse a proof it received); a POM justifies only its own view's
//!   successor, since a Byzantine replica can sign conflicting ORDER-REQs for a future view
//!   it leads.
//! - A replica restarted in a view change re-sends its VIEW-CHANGE with the persisted proof;
//!   if that record is unreadable it stays out of the old view and waits for a NEW-VIEW or
//!   `f + 1` later VIEW-CHANGEs instead of sending an unproven one.
//!
//! ## Invariants (brief section 7)
//! S4 (no request twice in a correct log) and S5 (one ORDER-REQ / SPEC-RESPONSE per (v, s)
//! signed by a correct replica) are checked in [`dst_sim::Node::check_invariants`]; S1-S3
//! are global: `dst_checkers::oracles::speculative` judges them from the `SpecAccept`,
//! `SpecComplete` and `SpecInstall` observations (see the crate's tests for the adapter).

mod adversary;
mod checkpoint;
pub mod client;
pub mod config;
mod confirm;
pub mod durable;
mod finals;
pub mod msg;
mod normal;
pub mod replica;
pub mod select;
mod view;

pub use client::{FastBftClient, FastBftClientConfig};
pub use config::{FastBftConfig, Params};
pub use msg::{ClientMsg, FastReply, Msg};
pub use replica::{FastBft, Timer};
