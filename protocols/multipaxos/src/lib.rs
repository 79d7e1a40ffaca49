//! # Multi-Paxos with a stable leader, as a sans-IO [`dst_sim::Node`]
//!
//! Lamport's "Paxos Made Simple" (section 3) with the usual engineering of "Paxos Made
//! Live" and van Renesse's "Paxos Made Moderately Complex": one leader runs phase 1 once
//! for every open slot, then phase 2 per slot in a pipeline. [`MultiPaxos<S>`] replicates
//! any [`dst_sim::StateMachine`] `S`; clients send [`dst_protocols::Request`]s and get
//! [`dst_protocols::Reply`]s. Every node is proposer, acceptor and learner; a proposer sends
//! its prepares and accepts to itself too, so its own promise and accept are on disk before
//! they count.
//!
//! ## Rules ("upon receiving ...")
//!
//! Ballots are `(round, node)` ordered lexicographically, so no two proposers share one.
//!
//! Acceptor (promise `p`, accepted `(b, v)` per slot, both durable):
//! - upon Prepare(b, from) from b's owner: if `b < p` answer Nack(p). Otherwise set `p = b`
//!   and answer Promise(b, from, reports, damaged): for every slot `>= from`, the value
//!   known chosen (flagged chosen) or the latest accepted `(b, v)`, and the slots whose
//!   record it found damaged on disk.
//! - upon Accept(b, s, v) from b's owner: if `b < p` answer Nack(p). Otherwise set `p = b`,
//!   accept `(b, v)` in `s` and answer Accepted(b, s).
//! - upon Heartbeat(b) from b's owner: if `b < p` answer Nack(p); otherwise `p = b`, take
//!   b's owner as leader, reset the election timer, answer with its first unknown slot.
//! - every changed promise or accept is written (with a checksum) and synced before the
//!   answer leaves.
//!
//! Proposer:
//! - upon the election timeout (randomised in `[min, max)` through `ctx.random_below`)
//!   without hearing from a leader: pick `b = (max round seen + 1, self)`, set `p = b`
//!   (persisted before anything leaves, so no restart stands with `b` again), send
//!   Prepare(b, first slot not known chosen) to every node, itself included;
//! - upon Promise(b) from a majority, once every slot some promiser found damaged is
//!   covered by a majority of promisers intact there (or reported chosen by someone; if
//!   not, wait for more promises): for every slot from `from` to the highest reported,
//!   adopt a value reported chosen, else the value with the highest accepted ballot, else a
//!   no-op (filling gaps); propose each with Accept(b, s, v); become leader;
//! - upon a client request as leader: propose it in the next free slot (window bounded by
//!   `max_open_slots`); as non-leader answer `Redirect` with the leader hint;
//! - upon Accepted(b, s) from a majority: `s` is chosen; send Chosen(s, v) to every node;
//! - upon Nack(p) with `p > b`: step down;
//! - every `heartbeat_interval_ns`: leaders send Heartbeat and resend open accepts;
//!   candidates resend prepares. Upon a heartbeat acknowledgement naming the follower's
//!   first unknown slot, send it the chosen values it misses (bounded per message).
//!
//! Learner: upon Chosen(s, v) record it (observe `Commit` once per slot and incarnation);
//! apply chosen slots in order (observe `Apply`); the proposer of a request replies `Done`
//! once it is applied. Exactly once: the service sits behind [`dst_protocols::Sessions`],
//! so a request chosen in two slots (a client retry through a new leader) applies once and
//! the second copy answers from the session cache. Reads go through the log by default.
//!
//! Sanity bounds: no single message buys work or memory out of proportion to its size,
//! even when a corrupted message passes as well-formed (option `message_checksums=false`).
//! An Accept or Chosen for a slot more than four windows (`4 * max_open_slots`) beyond the
//! receiver's chosen prefix is ignored, as is a Promise naming a slot more than four windows
//! beyond `from` plus its number of reports, so a new leader fills a bounded number of gaps
//! with no-ops. A lagging follower catches up through heartbeat acknowledgements instead.
//!
//! Leader leases (option `leader_lease`, off by default): a node that heard from a leader
//! within `election_timeout_min_ns` (or leads, or just booted) refuses to promise a new
//! ballot, so no other leader can arise meanwhile. Heartbeats carry a round number echoed
//! in the acknowledgement; once a majority (the leader included) acknowledged round `r`,
//! the leader holds a lease until `sent(r) + election_timeout_min_ns * (1 - 2 * drift)` on
//! its own clock. Under a lease, once every slot below its first proposal of this
//! leadership is applied (all values chosen before it), the leader answers read-only
//! commands from its state without the log. Only as safe as the clock-drift bound.
//!
//! ## Durability and damaged storage
//!
//! Records carry a checksum bound to their key (see [`durable`]); every write is read back
//! before the sync. On restart:
//! - the promise is kept in two copies; the newest valid one wins. If both are present and
//!   unreadable the node halts ([`Status::Halted`]): it cannot know what it promised. If a
//!   copy is missing, no promise was ever acknowledged (both are written in one batch
//!   before any reply) and the node starts afresh.
//! - a damaged accept record (corrupt, torn, misdirected) may hold an acknowledged accept
//!   that a future phase 1 must see. Keys are never damaged, only values, so the node knows
//!   exactly which slots it cannot vouch for: it names them in its promises and proposers
//!   do not count it for those slots (per-slot quorums of intact promisers keep the usual
//!   intersection argument). A slot stops being damaged once rewritten: by a new accept,
//!   or by learning its chosen value (stored flagged chosen). Missing keys are writes that
//!   were never synced, hence never acknowledged.
//!
//! ## Invariants
//!
//! Local ([`MultiPaxos`]'s `check_invariants`): the applied prefix is within the chosen
//! prefix, no accept above the promise, a leader's ballot is its own and at least its
//! promise. Cross-node ([`ChosenMonitor`]): a value chosen in a slot never changes.
//!
//! Not implemented: log compaction (accept records and chosen values are kept forever),
//! membership changes.

pub mod durable;
pub mod invariants;
pub mod message;
pub mod paxos;

pub use invariants::ChosenMonitor;
pub use message::{Ballot, Body, PaxosMsg, Report, Slot, Value};
pub use paxos::{MultiPaxos, PaxosConfig, PaxosTimer, Role, Status};
