//! # Raft as a sans-IO [`dst_sim::Node`], generic over the replicated service
//!
//! Follows the Raft paper (Ongaro and Ousterhout, "In Search of an Understandable Consensus
//! Algorithm", Figure 2) and chapter 4 plus sections 6.2-6.4, 9.6 of Ongaro's thesis.
//! [`Raft<S>`] replicates any [`dst_sim::StateMachine`] `S`; clients send
//! [`dst_protocols::Request`]s and get [`dst_protocols::Reply`]s.
//!
//! ## Rules ("upon receiving ...")
//!
//! All servers:
//! - upon any request or response with term `T > currentTerm`: set `currentTerm = T`, clear
//!   the vote, become follower (PreVote messages are the exception: they never change terms);
//! - whenever `commitIndex > lastApplied`: apply entries in order, report `Commit` when an
//!   index becomes committed and `Apply` (with the state digest) after applying it.
//!
//! Followers:
//! - upon the election timeout (only a voter of its configuration stands, see below) (randomised in `[min, max)` through `ctx.random_below`) with no
//!   AppendEntries from a current leader or vote granted: become pre-candidate (or candidate
//!   with PreVote off). A node recovering a damaged log never stands. The timeout is drawn
//!   once per period and measured on the monotonic clock (`ctx.monotonic_ns`): contact moves
//!   its deadline, and the one timer, if it fires first, is set again for the rest.
//! - upon AppendEntries(term, prevLogIndex, prevLogTerm, entries, leaderCommit): reply false
//!   if `term < currentTerm` or the log has no entry at `prevLogIndex` with `prevLogTerm`;
//!   otherwise delete an existing entry only if it conflicts (same index, different term) and
//!   everything after it, append the new entries, set
//!   `commitIndex = min(leaderCommit, index of last new entry)`, and reply true after the
//!   entries are durable.
//! - upon InstallSnapshot: adopt the snapshot unless already committed that far; keep the
//!   log suffix only if it follows the snapshot's last entry.
//! - upon a client request: reply `Redirect { leader }` with the best guess of the leader.
//!
//! PreVote (thesis 9.6): a pre-candidate asks for votes for `currentTerm + 1` without bumping
//! its term; a node grants if that term is above its own, the candidate's log is at least as
//! up-to-date as its own, and it has not heard from a leader within the minimum election
//! timeout. A majority of grants makes it a candidate.
//!
//! Candidates: increment `currentTerm`, vote for self, persist both, send RequestVote; upon
//! votes from a majority become leader; upon AppendEntries from a leader of the current term
//! become follower.
//!
//! RequestVote receiver: ignore it while hearing from a leader (CheckQuorum's stickiness,
//! thesis 4.2.3); grant if `votedFor` is null or the candidate and the candidate's log is at
//! least as up-to-date ((last term, last index) compared lexicographically). The term and the
//! vote are written and synced before the response leaves.
//!
//! Leaders:
//! - upon election: append a no-op of the new term (it commits earlier entries, and reads
//!   wait for it), then send AppendEntries to everyone; heartbeat (a round of
//!   AppendEntries to every peer) every `heartbeat_interval_ns`, counted from the latest
//!   round (a read's round serves as one);
//! - upon a client write: unless the session table already holds it, append it and replicate;
//!   reply `Done` after applying it;
//! - replication is pipelined (thesis 10.2.2): sending entries moves `nextIndex` past them,
//!   so later messages (heartbeats, new writes) carry only what follows; a lost or reordered
//!   message shows as a rejection;
//! - upon an AppendEntries response: on success advance `matchIndex`/`nextIndex`; on failure
//!   back `nextIndex` off (to the follower's hint) and retry; send InstallSnapshot if
//!   `nextIndex` fell into the snapshot. A response counts only if it answers a request of
//!   the current term: each names its request's term, because a follower rejects an
//!   AppendEntries of an earlier term in its own term, which may be the term of a later
//!   leadership of the same node (its echoed round would then confirm reads falsely);
//! - commit index `N` only if a majority has `matchIndex >= N` **and** `log[N].term ==
//!   currentTerm` (Figure 8: earlier terms' entries are never committed by counting). The
//!   leader counts itself only up to what it knows durable on its own disk;
//! - CheckQuorum (thesis 6.2): step down if no majority answered within an election timeout.
//!
//! Reads (for a [`dst_protocols::Service`], built with [`Raft::for_service`], a command is a
//! read if `Service::is_read_only` says so and is answered by `Service::query`; without
//! that, or with [`ReadMode::Log`], every command goes through the log): ReadIndex records the commit index,
//! starts a heartbeat round and answers once a majority acknowledged the round, this term's
//! no-op is applied and the state has caught up with the read index. With
//! [`ReadMode::Lease`] a read arriving while the lease holds skips the round; the lease lasts
//! the minimum election timeout shrunk by twice the drift bound from the send time of the
//! last majority-acknowledged round, and is only as safe as the clock bound.
//!
//! Exactly once: the service runs inside [`dst_protocols::Sessions`], which keeps per client
//! the last sequence applied and its output. A retry of that request is appended again but
//! not applied again (it is answered from the cache); an older one is ignored. Sessions are
//! part of the state, so of snapshots.
//!
//! Durability notes: after a sync, a node that needs to know what is durable (a leader,
//! which counts itself towards a commit only up to its durable log; a recovering node; a
//! node with a new snapshot) sends itself a `Persisted` message, which by the host's
//! ordering duty arrives only after the sync completed.
//!
//! ## Durability and damaged storage
//!
//! Every handler ends in one step: write what changed, read each write back, sync, then
//! release the outgoing messages (the host sends them only after the sync completed). If a
//! write fails (I/O error, full disk) or reads back different (a misdirected write or a bit
//! flip), the messages are withheld and the write retried; a misdirected write clobbered an
//! unknown key, so everything is rewritten. Records carry a checksum bound to their key (see
//! [`durable`]). On restart:
//! - term/vote are kept in two copies; the newest valid copy wins. If none is readable the
//!   node halts ([`Status::Halted`]): it cannot know whether it already voted. The first
//!   boot writes a term record at once, so a disk found empty on restart was wiped: that
//!   machine rejoins as a new member (see "Membership changes").
//! - the log is read as the longest chain of valid entries after the snapshot, each entry
//!   naming its predecessor's term. A missing key, a torn record (shorter than its
//!   length header) or a broken chain is where unsynced writes stopped: cut there (nothing
//!   after it was acknowledged, or it was superseded by a newer leader's entries).
//! - a corrupt entry or snapshot may have been acknowledged. The node cuts its log there and
//!   enters *recovery* (persisted) with the bound `(term, last_index)`: the highest term of
//!   any entry it ever stored (kept in the term record, which is written with the entries
//!   before any of them is acknowledged; its current term would be sound too, but elections
//!   that appended nothing inflate it until a majority of recovering nodes refuses every
//!   candidate) and the highest log index found on disk. It
//!   does not stand for election, and it votes only for candidates whose log is at least as
//!   up-to-date as that bound (such a candidate holds every entry this node may have helped
//!   commit). Once the bound is durable (before that it stores nothing, so the damaged keys
//!   stay as evidence) it accepts entries as usual, and it leaves recovery once its log
//!   matches a leader's up to the bound (or the whole log of a leader of a later term) and
//!   that is durable.
//! - a log entry or snapshot of a term above the stored term (the term record of that batch
//!   was lost, unsynced): the node adopts that term without a vote.
//!
//! Log compaction: after `snapshot_threshold_entries` applied entries the node snapshots the
//! service and session table into one of two slots (never the one holding the latest durable
//! snapshot); log keys below it are deleted only once the snapshot is known durable.
//!
//! ## Membership changes (thesis chapter 4, one server at a time)
//!
//! Voters are [`Member`]s: a machine id plus an *incarnation* (0 on a machine's first disk).
//! The initial configuration is every machine `0..cluster_size` in incarnation 0.
//!
//! - Configurations live in the log as configuration entries ([`Entry::config`]). A server
//!   uses the latest configuration in its log, committed or not; truncating a configuration
//!   entry reverts to the one before it; snapshots carry the configuration at their last
//!   index (and InstallSnapshot sends it).
//! - Every quorum is counted over the voters of the current configuration: votes and
//!   PreVotes, commit (the leader counts itself only if it is a voter), ReadIndex rounds and
//!   leases, CheckQuorum. A vote or an acknowledgement carries the sender's incarnation and
//!   counts only for the member of that incarnation; when a machine answers under another
//!   incarnation, the leader forgets the progress of the previous one.
//! - A server that is not a voter of its configuration stands for election only while that
//!   configuration is not known committed (thesis 4.2.2: it may hold entries the remaining
//!   voters need, e.g. a leader that removed itself and crashed before the commit) and it
//!   is not rejoining after a wipe; it never counts its own vote. Leaders replicate to every
//!   machine, voters or not: learners catch up and removed servers learn of their removal.
//! - Upon a change request ([`Raft::propose_change`], or [`RaftMsg`] `ChangeMembership`
//!   from a peer) a leader accepts it only if no configuration entry is uncommitted, it has
//!   committed an entry of its own term (Ongaro's 2015 raft-dev fix), and the change adds a
//!   machine that does not vote or removes a voter other than the last
//!   ([`ChangeRefused`] says why not). RemoveServer appends the new configuration at once.
//!   AddServer first catches the server up as a learner in rounds (thesis 4.2.1): each
//!   round replicates up to the leader's last index at its start; once a round takes less
//!   than the minimum election timeout the configuration entry is appended; after 10 rounds
//!   (or 10 election timeouts without progress) the change is given up.
//! - A leader removed by its own change keeps leading without counting itself until that
//!   configuration commits, then steps down.
//! - Disruptive removed servers (thesis 4.2.3): once the configuration differs from the
//!   initial one, a server ignores RequestVote and PreVote within the minimum election
//!   timeout of hearing from a leader (with CheckQuorum or leases, always).
//! - Churn for simulation (`membership_churn_ms`, 0 = off): every so often of its own clock
//!   a leader makes one change: add back a machine that does not vote (in the incarnation
//!   it last answered with), or else, if every machine holds every committed entry,
//!   remove a random voter (itself included) while more
//!   than `max(3, cluster_size / 2 + 1)` vote; a re-add is retried every heartbeat until
//!   done. So at most one machine is out at a time, briefly, and three-node clusters never
//!   shrink: every missing voter costs fault tolerance the fault profiles do not account
//!   for.
//!
//! Wiped machines. A machine that restarts with an empty disk draws a fresh non-zero
//! incarnation (from the context's randomness; 64 bits, so a repeat is negligible),
//! persists it before anything leaves, and is *rejoining*: it grants no votes, never stands,
//! and asks the leader (at most once per minimum election timeout) to take it in. The
//! leader performs two single-server changes: RemoveServer(old incarnation), then, when
//! asked again, AddServer(new incarnation) with learner catch-up. The machine votes again
//! once the latest configuration in its log names its incarnation.
//!
//! Why this is safe: Raft's proofs need every vote and acknowledgement a member gave to
//! stay true (it voted at most once per term; it holds what it acknowledged and votes only
//! for candidates at least as up-to-date). The wiped machine forgot both, so its old member
//! must never count again. It never does: the old incarnation is dead (no process ever
//! answers as it again), and messages of the new incarnation name the new incarnation, which
//! counts only in configurations that contain it, i.e. after the old member was removed and
//! the new one added by single-server changes. Until then the old member is a voter that
//! stays silent forever, exactly like a crashed server: it may have helped commit an entry,
//! but every later majority of that configuration needs another voter of the commit's
//! majority, which still holds the entry. Removing it is an ordinary RemoveServer. The new
//! member starts with no votes and a durable incarnation; it joins by an ordinary AddServer.
//! While a wiped machine's old member is still a voter the cluster tolerates one failure
//! less.
//!
//! ## Invariants
//!
//! Local (`Node::check_invariants`, [`invariants::check_local`]): `lastApplied <= commitIndex <= lastIndex`, the log is
//! contiguous after the snapshot with non-decreasing terms, no entry's term exceeds
//! `currentTerm`, a leader voted for itself; a leader holds no second uncommitted
//! configuration beside one of its own term, it is a voter of its configuration or that
//! configuration is uncommitted (it is stepping down), and the configuration in force is
//! its log's latest. Cross-node ([`invariants`]): election safety, log matching, leader
//! completeness, state machine safety, single-server changes (each configuration in a log
//! differs from the one before it by one member), and one change at a time (no log holds two
//! configuration entries above the highest index seen committed, in [`ClusterMonitor`]).
//!
//! Not implemented: leadership transfer, chunked snapshots; a removed or replaced machine
//! is taken back only by an administrator, churn, or its own rejoin request.

pub mod durable;
pub mod invariants;
pub mod membership;
pub mod message;
pub mod raft;

pub use invariants::{check_cluster, register_invariants, ClusterMonitor, ClusterView};
pub use membership::{ChangeRefused, Configuration, Member, MembershipChange};
pub use message::{Entry, LogIndex, RaftMsg, Term};
pub use raft::{Raft, RaftConfig, RaftTimer, ReadMode, Role, Status};
