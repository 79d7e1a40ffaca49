//! # Chained HotStuff as a sans-IO [`dst_sim::Node`]
//!
//! Yin, Malkhi, Reiter, Gueta, Abraham: "HotStuff: BFT Consensus with Linearity and
//! Responsiveness", PODC 2019.
//!
//! [`HotStuff<S>`] replicates any [`dst_sim::StateMachine`] `S` among `n >= 3f + 1` replicas
//! of which at most `f` are Byzantine. It follows the chained (pipelined) protocol of the
//! paper (arXiv:1803.05069, Algorithms 3 and 4), with the parent of every block being the
//! block its justify QC certifies (as in LibraBFT), a pacemaker with timeout certificates,
//! and client sessions for exactly-once execution.
//!
//! ## Terms
//! - A **block** carries a round, a height, its parent's digest, the justify **QC** (which
//!   certifies the parent), its proposer and at most `batch_max` client requests, each
//!   signed by its client. A block's identity is the SHA-256 digest of all of it.
//! - A **vote** is a replica's signature over `(round, block digest)`. A **QC** is `n - f`
//!   (`2f + 1` for `n = 3f + 1`) votes of distinct replicas for one `(round, block)`. The
//!   genesis QC (round 0, the genesis block, no votes) is valid by definition.
//! - A **timeout** is a replica's signature over `(round, its high QC's round)`; a **TC** is
//!   `n - f` timeouts of distinct replicas for one round.
//! - The leader of round `r` is `(r / leader_rounds) mod n`, in the rotation order drawn from
//!   `leader_order` (0: `0, 1, ..., n-1`; Twins runs draw another).
//! - Safety data (durable): `last_voted_round`, `locked_qc`, and `high_qc`.
//!
//! ## Rules ("upon receiving ...")
//! - **Upon a proposal** of block `B` for round `r` (from anyone, signed by `leader(r)`):
//!   reject unless the signature is the leader's, `B.parent` is the block `B.justify`
//!   certifies, `r > B.justify.round`, the batch is within bound, every request is signed
//!   by its client, `B.justify` verifies (never trusted: `n - f` distinct valid signers), and
//!   either `r = B.justify.round + 1` or the proposal carries a valid TC of a round `t`
//!   whose highest reported QC round is `<= B.justify.round`, with `r` the first round of
//!   the leader tenure after `t`'s (`t + 1` with one round per leader), or of the tenure
//!   after that if `t` is the last round of a tenure of several rounds (its votes went to
//!   the next leader, which failed to form a QC: it is skipped, see `round_after_tc`). Enter round `r` (a
//!   TC entry is a view change: `Observation::NewView`). If an ancestor is missing, keep the
//!   proposal (bounded) and **fetch** the ancestor from peers. With the chain complete down
//!   to the last committed block: process `B.justify` (below), then vote if `r` is the
//!   current round, `r > last_voted_round`, and **safeNode(B)** holds: `B` extends the
//!   locked block, or `B.justify.round > locked_qc.round`.
//!   Voting: set `last_voted_round = r`, write `B` and its ancestors above the committed
//!   block that are not on disk yet (each read back; a failed write withholds the vote),
//!   write the safety record and sync, then send the vote to `leader(r + 1)` (the send
//!   waits for the sync). So every certified block is durable at its `n - f` voters: a QC
//!   never outlives every copy of its block (it did when blocks lived in memory only and
//!   each voter crashed in turn; the QC, kept in locks and timeouts, then forced TCs to
//!   demand a QC no leader could extend).
//! - **Processing a QC** for block `X` (with `Y` the block `X.justify` certifies and `Z` the
//!   one `Y.justify` certifies): enter round `X.round + 1`; `high_qc = max(high_qc, qc)`;
//!   **lock** on the 2-chain: `locked_qc = X.justify` if it is higher; **commit** on the
//!   3-chain: if `X.round = Y.round + 1` and `Y.round = Z.round + 1` (direct parents), commit
//!   `Z` and every uncommitted ancestor, oldest first.
//! - **Upon a vote** for `(r, B)` as `leader(r + 1)`: verify it, tally it; `n - f` distinct
//!   voters form a QC, which is processed; then try to propose.
//! - **Proposing** (leader of the current round `r`, once per round): with a QC of round
//!   `r - 1` (or a TC that leads to `r`, carried along), extend `high_qc`'s block with
//!   requests from the mempool that are neither executed nor in an uncommitted ancestor
//!   (at most `batch_max`, starting at a round-dependent client). A leader proposes
//!   only if there is something to order, an uncommitted request in the chain, a commit of
//!   requests it made from its high QC (the others commit them only when a proposal shows
//!   them that QC), or a TC; otherwise the chain rests until a request arrives.
//! - **Pacemaker**: entering a round (re)starts its timer; its length doubles with every
//!   timeout in a row after the first (reset by a QC), capped at `round_timeout_max_ns`.
//!   Upon the timer with work outstanding (mempool, uncommitted requests, pending
//!   proposals): broadcast a signed timeout carrying the high QC and send the mempool to the
//!   next leader. Upon a timeout: verify it (and its QC, if newer than ours, which is then
//!   processed); upon `n - f` timeouts of round `r`: form a TC, enter the first round of the
//!   next leader's tenure; upon `f + 1` replicas' latest timeouts at or above the current
//!   round: join them (enter that round and time out too). A sender
//!   behind us gets our high QC and TC back; a QC received that way is processed even if
//!   it is below the high QC (it may complete a 3-chain on a branch we moved away from).
//! - **Upon a client request** (signed by the client, verified): a retry of the client's last
//!   executed request is answered from the session cache; a new one enters the bounded
//!   mempool (one per client, newest wins) and, from the client directly, is forwarded to
//!   the leaders of the current and next round.
//! - **Execution**: committed blocks execute in height order; each request takes the next
//!   slot (a global counter of executed requests) through [`dst_protocols::Sessions`]; the
//!   replica reports `Commit` and `Apply` per slot and replies `Done` to the client (every
//!   replica replies; the client waits for `f + 1` matching replies). Committed blocks are
//!   written to disk twice (a copy and a mirror, under separate keys), each read back and
//!   rewritten until it reads as written. Committed blocks leave memory, so these records
//!   are the only copies a restarted or lagging replica can fetch (there is no snapshot
//!   transfer): a height lost on every up-to-date replica would stall the cluster forever.
//!   That happened with one best-effort write per block (an I/O error or a misdirected write
//!   silently dropped it; the event logs of seeds 45 and 677 of `swarm` show two replicas
//!   restarted far behind, fetching a committed height both others had lost).
//! - **Block sync**: upon `Fetch(digest, height)`, answer with that block and its ancestors
//!   (at most `fetch_blocks_max`, from memory or, committed ones, from disk: the first copy
//!   that decodes, a damaged copy being rewritten from the good one); upon `Blocks`,
//!   keep only blocks asked for (their digest authenticates them against a verified QC's
//!   chain) and ask for their missing parents.
//! - **Recovery** after a crash: the newest readable safety record is restored; the rounds
//!   in the names of unreadable newer records act as floors (never vote at or below the last
//!   voted round; require justify QCs at least as high as the locked round). The committed
//!   chain found on disk is re-executed (same slots, no replies), the uncommitted blocks
//!   stored before votes are reloaded, the rest is fetched. Records of uncommitted blocks
//!   at or below the committed round are deleted as blocks commit.
//!
//! ## Invariants
//! - A correct replica votes at most once per round, only for safe blocks, and only after its
//!   safety record covering that vote and the block voted for (with its uncommitted
//!   ancestors) are durable.
//! - `locked_qc.round <= high_qc.round`; blocks held are the last committed one and blocks of
//!   higher rounds; every queue and map is bounded (`mempool_max`, `blocks_max`, pending
//!   proposals, fetches, vote tallies, one timeout per replica).
//! - No certificate is used before it verifies; every rejected message is counted with its
//!   reason through `ctx.ignore`.
//!
//! Not implemented: state transfer by snapshot (a replica far behind fetches and re-executes
//! every block), read-only fast paths (reads are ordered like writes), reconfiguration.

mod adversarial;
mod config;
mod consensus;
pub mod durable;
mod pacemaker;
mod replica;
mod sync;
pub mod types;

pub use adversarial::{forge_qc, Falsify};
pub use config::HotStuffConfig;
pub use replica::HotStuff;
pub use types::{
    proposal_digest, timeout_digest, vote_digest, Block, ClientRequest, HotStuffTimer, Message, Qc,
    Round, Tc, TimeoutVote,
};
