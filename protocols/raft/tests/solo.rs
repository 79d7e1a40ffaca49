//! Scripted scenarios: one Raft node driven message by message, its peers played by the test.
//! The harness honours the ordering duty (messages after a sync leave once it completed)
//! unless a test asks it not to.

use dst_protocols::{KvCommand, KvOutput, KvStore, Observation, Reply, Request, Seal};
use dst_raft::durable::{encode, log_key, LogRecord, Meta, META_KEYS};
use dst_raft::message::{
    AppendEntries, AppendResponse, Body, Entry, LogIndex, RaftMsg, RequestVote, Term, VoteResponse,
};
use dst_raft::{Raft, RaftConfig, RaftTimer, ReadMode, Role, Status};
use dst_sim::{ClientId, Effect, Node, NodeCtx, NodeId, SeededSource, Storage, StorageFaults};

type KvRaft = Raft<KvStore>;
type Obs = Observation<KvCommand, KvOutput>;

/// How the harness treats syncs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Host {
    /// Syncs complete at once; messages after them leave.
    Honest,
    /// Syncs never complete; messages after them are held (as if the node crashes first).
    SyncsHang,
    /// Broken host: messages leave at once, syncs never complete.
    IgnoresOrdering,
}

struct Solo {
    node: KvRaft,
    config: RaftConfig,
    id: NodeId,
    cluster_size: u32,
    storage: Storage,
    decisions: SeededSource,
    next_timer_id: u64,
    now_ns: u64,
    host: Host,
    timers: Vec<(dst_sim::TimerId, RaftTimer)>,
    /// Messages that left, with their destination (None = broadcast).
    sent: Vec<(Option<NodeId>, Body<KvCommand>)>,
    /// Notes the node sent itself, delivered on `deliver_notes`.
    notes: Vec<RaftMsg<KvCommand>>,
    replies: Vec<(ClientId, Reply<KvOutput>)>,
    observations: Vec<Obs>,
    ignored: Vec<&'static str>,
}

fn config() -> RaftConfig {
    RaftConfig {
        pre_vote: false,
        check_quorum: false,
        read_mode: ReadMode::ReadIndex,
        max_entries_per_message: 1,
        ..RaftConfig::default()
    }
}

impl Solo {
    fn new(id: u32, cluster_size: u32, storage: Storage, config: RaftConfig) -> Self {
        let mut solo = Solo {
            node: Raft::for_service(config.clone(), KvStore::new()),
            config,
            id: NodeId(id),
            cluster_size,
            storage,
            decisions: SeededSource::new(1),
            next_timer_id: 0,
            now_ns: 1_000_000,
            host: Host::Honest,
            timers: Vec::new(),
            sent: Vec::new(),
            notes: Vec::new(),
            replies: Vec::new(),
            observations: Vec::new(),
            ignored: Vec::new(),
        };
        solo.step(|node, ctx| node.on_start(ctx));
        solo
    }

    fn step(&mut self, handler: impl FnOnce(&mut KvRaft, &mut NodeCtx<'_, KvRaft>)) {
        let mut effects = Vec::new();
        {
            let mut ctx = NodeCtx::new(
                self.id,
                self.cluster_size,
                self.now_ns,
                &mut effects,
                &mut self.storage,
                &mut self.decisions,
                &mut self.next_timer_id,
                &mut self.ignored,
            );
            handler(&mut self.node, &mut ctx);
        }
        let mut held = false;
        for effect in effects {
            match effect {
                Effect::Sync { up_to } => match self.host {
                    Host::Honest => self.storage.complete_sync(up_to),
                    Host::SyncsHang => held = true,
                    Host::IgnoresOrdering => {}
                },
                Effect::Send { to, msg } if !held => {
                    assert!(msg.verify(true), "node sent a message with a bad checksum");
                    if to == self.id {
                        self.notes.push(msg);
                    } else {
                        self.sent.push((Some(to), msg.body));
                    }
                }
                Effect::Broadcast { msg } if !held => self.sent.push((None, msg.body)),
                Effect::Reply { client, reply } if !held => self.replies.push((client, reply)),
                Effect::SetTimer { id, timer, .. } => self.timers.push((id, timer)),
                Effect::CancelTimer { id } => self.timers.retain(|(live, _)| *live != id),
                Effect::Observe(observation) => self.observations.push(observation),
                Effect::Send { .. } | Effect::Broadcast { .. } | Effect::Reply { .. } => {}
            }
        }
        self.node.check_invariants().expect("local invariants hold");
    }

    fn fire(&mut self, wanted: RaftTimer) {
        self.now_ns += 400 * dst_sim::MS;
        self.fire_now(wanted);
    }

    /// Stands (its election timer fires) and wins with the votes of `voters`.
    fn elect(&mut self, voters: &[u32]) {
        self.fire(RaftTimer::Election);
        let term = self.node.current_term();
        for &voter in voters {
            let granted = VoteResponse {
                term,
                granted: true,
                incarnation: 0,
            };
            self.receive(voter, Body::RequestVoteResponse(granted));
        }
        assert_eq!(self.node.role(), Role::Leader, "not elected");
    }

    /// Fires a timer without moving the clock (the test sets `now_ns` itself).
    fn fire_now(&mut self, wanted: RaftTimer) {
        let position = self
            .timers
            .iter()
            .position(|(_, timer)| *timer == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} timer set"));
        let (_, timer) = self.timers.remove(position);
        self.step(|node, ctx| node.on_timer(ctx, timer));
    }

    fn receive(&mut self, from: u32, body: Body<KvCommand>) {
        let msg = RaftMsg::seal(body, true);
        self.step(|node, ctx| node.on_message(ctx, NodeId(from), msg));
    }

    fn deliver_notes(&mut self) {
        for note in std::mem::take(&mut self.notes) {
            let id = self.id;
            self.step(|node, ctx| node.on_message(ctx, id, note));
        }
    }

    /// Crash (unsynced writes are lost) and boot a fresh instance on what survived.
    fn crash_and_restart(&mut self) {
        self.storage.crash(&mut self.decisions);
        self.node = Raft::for_service(self.config.clone(), KvStore::new());
        self.timers.clear();
        self.notes.clear();
        self.host = Host::Honest;
        self.step(|node, ctx| node.on_restart(ctx));
    }

    fn take_sent(&mut self) -> Vec<(Option<NodeId>, Body<KvCommand>)> {
        std::mem::take(&mut self.sent)
    }

    /// Whether any vote response sent since the last look granted the vote.
    fn granted_a_vote(&mut self) -> bool {
        self.vote_responses().iter().any(|(_, r)| r.granted)
    }

    fn vote_responses(&mut self) -> Vec<(NodeId, VoteResponse)> {
        self.take_sent()
            .into_iter()
            .filter_map(|(to, body)| match body {
                Body::RequestVoteResponse(response) => Some((to.expect("addressed"), response)),
                _ => None,
            })
            .collect()
    }

    fn append_responses(&mut self) -> Vec<AppendResponse> {
        self.take_sent()
            .into_iter()
            .filter_map(|(_, body)| match body {
                Body::AppendEntriesResponse(response) => Some(response),
                _ => None,
            })
            .collect()
    }

    fn commits(&self) -> Vec<u64> {
        self.observations
            .iter()
            .filter_map(|obs| match obs {
                Observation::Commit { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect()
    }

    fn log_terms(&self) -> Vec<u64> {
        self.node
            .entries()
            .iter()
            .map(|entry| entry.term.0)
            .collect()
    }
}

fn put(client: u32, sequence: u64, value: &str) -> Request<KvCommand> {
    Request {
        client: ClientId(client),
        sequence,
        command: KvCommand::Put {
            key: "x".to_string(),
            value: value.to_string(),
        },
    }
}

fn entry(index: u64, term: u64, request: Option<Request<KvCommand>>) -> Entry<KvCommand> {
    Entry::new(Term(term), LogIndex(index), request, None)
}

/// A disk holding `term` and a log with the given entry terms (entry i is a put of "v<i>").
fn disk(term: u64, voted_for: Option<u32>, terms: &[u64]) -> Storage {
    let mut decisions = SeededSource::new(0);
    let mut storage = Storage::new(StorageFaults::default());
    let meta = Meta {
        version: 1,
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
        recovery: None,
        incarnation: 0,
        rejoining: false,
        entry_term_max: Term(terms.iter().copied().max().unwrap_or(0)),
    };
    for key in META_KEYS {
        storage
            .write(key, encode(key, &meta), &mut decisions)
            .expect("write");
    }
    let mut prev_term = Term(0);
    for (offset, &entry_term) in terms.iter().enumerate() {
        let index = offset as u64 + 1;
        let record = LogRecord {
            entry: entry(index, entry_term, Some(put(9, index, &format!("v{index}")))),
            prev_term,
        };
        prev_term = Term(entry_term);
        let key = log_key(LogIndex(index));
        storage
            .write(&key, encode(&key, &record), &mut decisions)
            .expect("write");
    }
    storage.complete_sync(storage.last_sequence());
    storage
}

/// A latent bit flip in the durable record of log entry `index`.
fn flip_a_bit_of_entry(storage: &mut Storage, index: u64) {
    let mut decisions = SeededSource::new(0);
    let key = log_key(LogIndex(index));
    let mut bytes = storage
        .read(&key, &mut decisions)
        .expect("read")
        .expect("present");
    bytes[2] ^= 0x10;
    storage.write(&key, bytes, &mut decisions).expect("write");
    storage.complete_sync(storage.last_sequence());
}

fn get(client: u32, sequence: u64) -> Request<KvCommand> {
    Request {
        client: ClientId(client),
        sequence,
        command: KvCommand::Get {
            key: "x".to_string(),
        },
    }
}

fn append(
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry<KvCommand>>,
    commit: u64,
) -> Body<KvCommand> {
    let last = prev.0 + entries.len() as u64;
    Body::AppendEntries(AppendEntries {
        term: Term(term),
        leader: NodeId(0),
        prev_log_index: LogIndex(prev.0),
        prev_log_term: Term(prev.1),
        entries: entries.into_iter().map(std::sync::Arc::new).collect(),
        leader_commit: LogIndex(commit),
        leader_last_index: LogIndex(last),
        round: 1,
    })
}

fn vote_request(term: u64, candidate: u32, last: (u64, u64)) -> Body<KvCommand> {
    Body::RequestVote(RequestVote {
        term: Term(term),
        candidate: NodeId(candidate),
        last_log_index: LogIndex(last.0),
        last_log_term: Term(last.1),
    })
}

fn append_ok(term: u64, matched: u64) -> Body<KvCommand> {
    append_ok_in_round(term, matched, 1)
}

fn append_ok_in_round(term: u64, matched: u64, round: u64) -> Body<KvCommand> {
    Body::AppendEntriesResponse(AppendResponse {
        term: Term(term),
        request_term: Term(term),
        success: true,
        match_or_hint: LogIndex(matched),
        round,
        incarnation: 0,
    })
}

/// Figure 8: S1 leads term 4 with an entry of term 2 at index 2. Once that entry is on a
/// majority (S1, S2, S3) it must still not be committed: a server with a term-3 entry at
/// index 2 could yet be elected and overwrite it. Only when the term-4 no-op at index 3
/// reaches a majority are indices 2 and 3 committed.
#[test]
fn figure_8_an_entry_from_a_previous_term_is_not_committed_by_counting_replicas() {
    let mut s1 = Solo::new(0, 5, disk(3, None, &[1, 2]), config());
    s1.fire(RaftTimer::Election);
    assert_eq!(s1.node.role(), Role::Candidate);
    assert_eq!(s1.node.current_term(), Term(4));
    s1.take_sent();
    for voter in [1, 2] {
        let granted = VoteResponse {
            term: Term(4),
            granted: true,
            incarnation: 0,
        };
        s1.receive(voter, Body::RequestVoteResponse(granted));
    }
    assert_eq!(s1.node.role(), Role::Leader);
    assert_eq!(
        s1.log_terms(),
        vec![1, 2, 4],
        "a no-op of term 4 is appended"
    );
    s1.deliver_notes();
    // S2 and S3 now hold index 2 (term 2), but not yet index 3.
    s1.receive(1, append_ok(4, 2));
    s1.receive(2, append_ok(4, 2));
    assert_eq!(
        s1.node.commit_index(),
        LogIndex(0),
        "term-2 entry committed by counting"
    );
    assert!(
        s1.commits().is_empty(),
        "commits reported: {:?}",
        s1.commits()
    );
    // The term-4 no-op reaches S2: only two of five hold index 3.
    s1.receive(1, append_ok(4, 3));
    assert_eq!(
        s1.node.commit_index(),
        LogIndex(0),
        "committed without a majority"
    );
    // And S3: a majority holds index 3 of the current term, which commits 2 with it.
    s1.receive(2, append_ok(4, 3));
    assert_eq!(s1.node.commit_index(), LogIndex(3));
    assert_eq!(s1.commits(), vec![1, 2, 3]);
}

/// "If an existing entry conflicts with a new one (same index but different terms), delete
/// the existing entry and all that follow it." Matching entries are kept, and a stale
/// AppendEntries that matches a prefix never shortens the log.
#[test]
fn follower_with_conflicting_suffix_truncates_only_from_the_first_conflict() {
    let mut follower = Solo::new(1, 3, disk(2, None, &[1, 1, 2, 2, 2]), config());
    assert_eq!(follower.log_terms(), vec![1, 1, 2, 2, 2]);
    // Index 3 matches (term 2); index 4 conflicts (term 3).
    let entries = vec![entry(3, 2, Some(put(9, 3, "v3"))), entry(4, 3, None)];
    follower.receive(0, append(3, (2, 1), entries, 0));
    assert_eq!(
        follower.log_terms(),
        vec![1, 1, 2, 3],
        "cut from index 4 only"
    );
    let responses = follower.append_responses();
    assert!(responses[0].success && responses[0].match_or_hint == LogIndex(4));
    // A delayed AppendEntries carrying only index 2 must not remove 3 and 4.
    follower.receive(
        0,
        append(3, (1, 1), vec![entry(2, 1, Some(put(9, 2, "v2")))], 0),
    );
    assert_eq!(
        follower.log_terms(),
        vec![1, 1, 2, 3],
        "a stale append shortened the log"
    );
    // A mismatching previous entry is refused.
    follower.receive(0, append(3, (4, 2), vec![entry(5, 3, None)], 0));
    let refused = follower.append_responses();
    assert!(
        !refused[1].success,
        "append after a mismatching entry was accepted"
    );
    // The truncation is durable.
    follower.crash_and_restart();
    assert_eq!(follower.log_terms(), vec![1, 1, 2, 3], "log after restart");
}

/// The vote is synced before the response leaves, so a restarted node remembers it.
#[test]
fn vote_is_durable_across_crash() {
    let mut voter = Solo::new(0, 3, disk(1, None, &[1]), config());
    voter.receive(1, vote_request(5, 1, (1, 1)));
    let responses = voter.vote_responses();
    assert_eq!(responses.len(), 1);
    assert!(
        responses[0].1.granted,
        "first candidate of term 5 gets the vote"
    );
    voter.crash_and_restart();
    assert_eq!(voter.node.current_term(), Term(5));
    assert_eq!(voter.node.voted_for(), Some(NodeId(1)));
    voter.receive(2, vote_request(5, 2, (1, 1)));
    let responses = voter.vote_responses();
    assert!(!responses[0].1.granted, "voted twice in term 5");
}

/// If the sync never completes (the node crashes first), the vote response never leaves.
#[test]
fn a_vote_response_waits_for_its_sync() {
    let mut voter = Solo::new(0, 3, disk(1, None, &[1]), config());
    voter.host = Host::SyncsHang;
    voter.receive(1, vote_request(5, 1, (1, 1)));
    assert!(
        voter.vote_responses().is_empty(),
        "vote left before its sync completed"
    );
    voter.crash_and_restart();
    voter.receive(2, vote_request(5, 2, (1, 1)));
    assert!(
        voter.vote_responses()[0].1.granted,
        "the unsent vote was not binding"
    );
}

/// Deliberately broken variant: a host that lets messages leave before their sync, then
/// loses the unsynced vote in a crash. The double-vote detector below must catch it.
#[test]
fn deliberately_broken_host_that_skips_the_sync_is_caught_voting_twice() {
    let mut voter = Solo::new(0, 3, disk(1, None, &[1]), config());
    voter.host = Host::IgnoresOrdering;
    let mut granted_in_term: Vec<(Term, NodeId)> = Vec::new();
    voter.receive(1, vote_request(5, 1, (1, 1)));
    for (to, response) in voter.vote_responses() {
        if response.granted {
            granted_in_term.push((response.term, to));
        }
    }
    voter.crash_and_restart();
    voter.receive(2, vote_request(5, 2, (1, 1)));
    for (to, response) in voter.vote_responses() {
        if response.granted {
            granted_in_term.push((response.term, to));
        }
    }
    let double = granted_in_term.iter().any(|(term, to)| {
        granted_in_term
            .iter()
            .any(|(t, other)| t == term && other != to)
    });
    assert!(
        double,
        "the detector missed a double vote: {granted_in_term:?}"
    );
}

/// A storage error means the reply that depended on the write is not sent.
#[test]
fn storage_errors_withhold_the_dependent_reply() {
    let mut voter = Solo::new(0, 3, disk(1, None, &[1]), config());
    voter.storage.set_faults(StorageFaults {
        io_error_ppm: 1_000_000,
        ..StorageFaults::default()
    });
    voter.receive(1, vote_request(5, 1, (1, 1)));
    assert!(
        voter.vote_responses().is_empty(),
        "vote sent although it was not written"
    );
    assert!(voter
        .ignored
        .iter()
        .any(|reason| reason.contains("I/O error")));
    voter.storage.set_faults(StorageFaults::default());
    voter.fire(RaftTimer::StorageRetry);
    voter.crash_and_restart();
    assert_eq!(
        voter.node.voted_for(),
        Some(NodeId(1)),
        "the retried write is durable"
    );
}

/// Both copies of term/vote unreadable: the node cannot know whether it voted, so it halts.
#[test]
fn unreadable_term_and_vote_halt_the_node() {
    let mut storage = disk(3, Some(1), &[1, 2]);
    let mut decisions = SeededSource::new(0);
    for key in META_KEYS {
        let mut bytes = storage
            .read(key, &mut decisions)
            .expect("read")
            .expect("present");
        bytes[0] ^= 0x40;
        storage.write(key, bytes, &mut decisions).expect("write");
    }
    storage.complete_sync(storage.last_sequence());
    let mut node = Solo::new(0, 3, storage, config());
    assert!(matches!(node.node.status(), Status::Halted(_)));
    node.receive(1, vote_request(9, 1, (5, 5)));
    assert!(node.take_sent().is_empty(), "a halted node answered");
    assert!(node.ignored.iter().any(|reason| reason.contains("halted")));
}

/// One damaged copy of term/vote is survivable: the other copy holds the same state.
#[test]
fn one_damaged_term_copy_is_survivable() {
    let mut storage = disk(3, Some(1), &[1, 2]);
    let mut decisions = SeededSource::new(0);
    let mut bytes = storage
        .read(META_KEYS[0], &mut decisions)
        .expect("read")
        .expect("present");
    bytes[1] ^= 0x01;
    storage
        .write(META_KEYS[0], bytes, &mut decisions)
        .expect("write");
    storage.complete_sync(storage.last_sequence());
    let node = Solo::new(0, 3, storage, config());
    assert_eq!(node.node.status(), &Status::Running);
    assert_eq!(node.node.voted_for(), Some(NodeId(1)));
}

/// A corrupt log entry may have been acknowledged: the node cuts its log there and does not
/// vote until it has the leader's log up to where its own used to end, durably.
#[test]
fn a_corrupt_log_entry_puts_the_node_in_recovery_until_it_catches_up() {
    let mut storage = disk(2, None, &[1, 1, 2, 2]);
    flip_a_bit_of_entry(&mut storage, 3);
    let mut node = Solo::new(1, 3, storage, config());
    assert!(node.node.is_recovering(), "damage went unnoticed");
    // Until the recovery bound is durable, nothing may overwrite the damaged entry.
    node.receive(0, append(3, (2, 1), vec![entry(3, 2, None)], 0));
    assert!(
        node.append_responses().is_empty(),
        "stored entries before the bound was durable"
    );
    assert_eq!(node.log_terms(), vec![1, 1]);
    node.deliver_notes();
    assert_eq!(node.log_terms(), vec![1, 1], "log cut at the damaged entry");
    node.receive(2, vote_request(3, 2, (2, 1)));
    let refused = node.vote_responses();
    assert!(
        !refused.iter().any(|(_, r)| r.granted),
        "voted for a log that may lack entries"
    );
    // A candidate whose log reaches the bound (term 2, index 4) may get its vote.
    node.receive(2, vote_request(4, 2, (4, 2)));
    assert!(node.granted_a_vote(), "bound-satisfying candidate");
    // The leader brings it back to index 4.
    for (index, term) in [(3u64, 2u64), (4, 2)] {
        let prev = (index - 1, if index == 3 { 1 } else { 2 });
        node.receive(0, append(5, prev, vec![entry(index, term, None)], 0));
    }
    assert!(
        node.node.is_recovering(),
        "recovery must wait for durability"
    );
    node.deliver_notes();
    assert!(
        !node.node.is_recovering(),
        "caught up and durable, yet still recovering"
    );
    node.receive(2, vote_request(6, 2, (4, 2)));
    assert!(node.granted_a_vote(), "recovered node refuses");
}

/// Unsynced writes that stop mid-way (a torn tail) are cut without recovery: nothing after
/// the break was acknowledged.
#[test]
fn a_torn_log_tail_is_cut_cleanly() {
    let mut storage = disk(2, None, &[1, 1, 2]);
    let mut decisions = SeededSource::new(0);
    // Index 4 claims a predecessor of term 1, but index 3 has term 2: a broken chain.
    let key = log_key(LogIndex(4));
    let record = LogRecord {
        entry: entry(4, 2, None),
        prev_term: Term(1),
    };
    storage
        .write(&key, encode(&key, &record), &mut decisions)
        .expect("write");
    storage.complete_sync(storage.last_sequence());
    let node = Solo::new(1, 3, storage, config());
    assert_eq!(node.log_terms(), vec![1, 1, 2]);
    assert!(!node.node.is_recovering());
}

/// Retries of a request are applied once; the retry is answered from the session table.
#[test]
fn a_retried_request_is_applied_once() {
    let mut leader = Solo::new(0, 1, Storage::new(StorageFaults::default()), config());
    leader.fire(RaftTimer::Election);
    assert_eq!(leader.node.role(), Role::Leader);
    leader.deliver_notes();
    let request = Request {
        client: ClientId(0),
        sequence: 1,
        command: KvCommand::Append {
            key: "k".to_string(),
            value: "a".to_string(),
        },
    };
    for _ in 0..2 {
        let retry = request.clone();
        leader.step(|node, ctx| node.on_request(ctx, ClientId(0), retry));
        leader.deliver_notes();
    }
    assert_eq!(
        leader.node.state().get("k"),
        Some("a"),
        "applied twice or never"
    );
    let done = leader
        .replies
        .iter()
        .filter(|(_, reply)| matches!(reply, Reply::Done { sequence: 1, .. }))
        .count();
    assert!(done >= 1, "no reply: {:?}", leader.replies);
}

/// A corrupted message that still decodes is rejected by its checksum.
#[test]
fn a_message_with_a_bad_checksum_is_ignored() {
    let mut voter = Solo::new(0, 3, disk(1, None, &[1]), config());
    let sealed = RaftMsg::seal(vote_request(5, 1, (1, 1)), true);
    let msg = RaftMsg {
        seal: Seal::Received(sealed.checksum() ^ 1),
        ..sealed
    };
    voter.step(|node, ctx| node.on_message(ctx, NodeId(1), msg));
    assert!(voter.take_sent().is_empty());
    assert!(voter.ignored.contains(&"message checksum mismatch"));
    assert_eq!(
        voter.node.current_term(),
        Term(1),
        "a rejected message changed the term"
    );
}

/// The registered cross-node invariants must fail on broken clusters: two leaders of one
/// term (a voter voted twice), and logs that agree on (index, term) but not before it.
#[test]
fn registered_invariants_catch_two_leaders_and_mismatched_logs() {
    let granted = VoteResponse {
        term: Term(3),
        granted: true,
        incarnation: 0,
    };
    let mut leaders = Vec::new();
    for id in [0, 1] {
        let mut node = Solo::new(id, 3, disk(2, None, &[1]), config());
        node.fire(RaftTimer::Election);
        node.receive(2, Body::RequestVoteResponse(granted.clone()));
        assert_eq!(node.node.role(), Role::Leader);
        leaders.push(node);
    }
    let a = Solo::new(1, 3, disk(2, None, &[1, 1, 2]), config());
    let b = Solo::new(2, 3, disk(2, None, &[1, 2, 2]), config());
    let healthy = Solo::new(0, 3, disk(2, None, &[1, 1, 2]), config());
    // The registry borrows the nodes through its views: build it after them.
    let mut registry = dst_checkers::oracles::InvariantRegistry::new();
    dst_raft::register_invariants(&mut registry);
    let view = dst_raft::ClusterView {
        nodes: leaders.iter().map(|solo| &solo.node).collect(),
    };
    let violations = registry.check(&view);
    assert!(
        violations
            .iter()
            .any(|v| format!("{v:?}").contains("raft-election-safety")),
        "two leaders of term 3 not caught: {violations:?}"
    );
    let view = dst_raft::ClusterView {
        nodes: vec![&a.node, &b.node],
    };
    let violations = registry.check(&view);
    assert!(
        violations
            .iter()
            .any(|v| format!("{v:?}").contains("raft-log-matching")),
        "mismatched logs not caught: {violations:?}"
    );
    let view = dst_raft::ClusterView {
        nodes: vec![&a.node, &healthy.node],
    };
    assert!(registry.check(&view).is_empty(), "matching logs reported");
}

/// A record cut short by a crash was never synced: the log ends before it, no recovery.
#[test]
fn a_torn_last_record_is_cut_without_recovery() {
    let mut storage = disk(2, None, &[1, 1, 2]);
    let mut decisions = SeededSource::new(0);
    let key = log_key(LogIndex(3));
    let bytes = storage
        .read(&key, &mut decisions)
        .expect("read")
        .expect("present");
    storage
        .write(&key, &bytes[..bytes.len() / 2], &mut decisions)
        .expect("write");
    storage.complete_sync(storage.last_sequence());
    let node = Solo::new(1, 3, storage, config());
    assert_eq!(node.log_terms(), vec![1, 1]);
    assert!(
        !node.node.is_recovering(),
        "a torn unsynced write is not damage"
    );
}

/// Thesis 4.1 and the 2015 raft-dev fix: a leader accepts a membership change only after it
/// committed an entry of its term and while no configuration entry is uncommitted; every
/// change is a single-server change. Two changes at once (the unsafe case: majorities of the
/// old and new configurations need not overlap) are refused.
#[test]
fn unsafe_membership_changes_are_refused() {
    use dst_raft::{ChangeRefused, Member, MembershipChange};
    let mut leader = Solo::new(0, 3, disk(1, None, &[1]), config());
    let change = |solo: &mut Solo, change: MembershipChange| {
        let mut result = None;
        solo.step(|node, ctx| result = Some(node.propose_change(ctx, change)));
        result.expect("handler ran")
    };
    let member = |node: u32, incarnation: u64| Member::new(NodeId(node), incarnation);
    assert_eq!(
        change(&mut leader, MembershipChange::Remove(member(2, 0))),
        Err(ChangeRefused::NotLeader)
    );
    leader.fire(RaftTimer::Election);
    let granted = VoteResponse {
        term: Term(2),
        granted: true,
        incarnation: 0,
    };
    leader.receive(1, Body::RequestVoteResponse(granted));
    assert_eq!(leader.node.role(), Role::Leader);
    leader.deliver_notes();
    assert_eq!(
        change(&mut leader, MembershipChange::Remove(member(2, 0))),
        Err(ChangeRefused::TermNotCommitted),
        "a change before this term's no-op commits could be lost to an older leader's change"
    );
    leader.receive(1, append_ok(2, 2));
    assert_eq!(leader.node.commit_index(), LogIndex(2));
    assert_eq!(
        change(&mut leader, MembershipChange::Add(member(1, 7))),
        Err(ChangeRefused::Invalid),
        "machine 1 already votes: replacing it takes a removal first"
    );
    assert_eq!(
        change(&mut leader, MembershipChange::Remove(member(2, 0))),
        Ok(())
    );
    let removed = dst_raft::Configuration::of(vec![member(0, 0), member(1, 0)]);
    assert_eq!(
        Some(leader.node.members()),
        removed.as_ref(),
        "in force at once"
    );
    assert_eq!(leader.node.members_index(), LogIndex(3));
    assert_eq!(
        change(&mut leader, MembershipChange::Remove(member(1, 0))),
        Err(ChangeRefused::ChangeInProgress),
        "a second change while the first is uncommitted"
    );
    leader.deliver_notes();
    // The new configuration {0, 1} counts node 1 and this leader only.
    leader.receive(1, append_ok(2, 3));
    assert_eq!(leader.node.commit_index(), LogIndex(3));
    assert_eq!(
        change(&mut leader, MembershipChange::Add(member(2, 0))),
        Ok(())
    );
    assert_eq!(
        leader.node.members_index(),
        LogIndex(3),
        "a new server catches up before it is added"
    );
    assert_eq!(
        change(&mut leader, MembershipChange::Remove(member(1, 0))),
        Err(ChangeRefused::CatchUpInProgress)
    );
}

/// A vote counts only for the incarnation that gave it: a machine back from a wipe under a
/// new incarnation cannot stand in for its old member, whose votes it forgot.
#[test]
fn a_vote_from_another_incarnation_does_not_count() {
    let mut candidate = Solo::new(0, 3, disk(1, None, &[1]), config());
    candidate.fire(RaftTimer::Election);
    let granted = |incarnation| VoteResponse {
        term: Term(2),
        granted: true,
        incarnation,
    };
    candidate.receive(1, Body::RequestVoteResponse(granted(99)));
    assert_eq!(
        candidate.node.role(),
        Role::Candidate,
        "a vote from 1@99 counted for 1@0"
    );
    candidate.receive(2, Body::RequestVoteResponse(granted(0)));
    assert_eq!(candidate.node.role(), Role::Leader);
}

/// A machine whose disk was wiped draws a non-zero incarnation, persists it, and neither
/// votes nor stands until a configuration in its log names it.
#[test]
fn a_wiped_node_does_not_vote_until_it_is_a_member_again() {
    let mut node = Solo::new(1, 3, disk(3, Some(0), &[1, 2]), config());
    node.storage.wipe();
    node.crash_and_restart();
    assert_eq!(node.node.status(), &Status::Running);
    assert_ne!(node.node.incarnation(), 0);
    assert!(node.node.is_rejoining());
    node.receive(2, vote_request(1, 2, (0, 0)));
    let responses = node.vote_responses();
    assert!(
        responses.iter().all(|(_, response)| !response.granted),
        "a rejoining node voted: {responses:?}"
    );
    let incarnation = node.node.incarnation();
    node.crash_and_restart();
    assert_eq!(
        node.node.incarnation(),
        incarnation,
        "the incarnation is durable"
    );
    node.fire(RaftTimer::Election);
    let sent = node.take_sent();
    assert!(
        sent.iter()
            .all(|(_, body)| !matches!(body, Body::RequestVote(_) | Body::PreVote(_))),
        "a rejoining node stood for election"
    );
    assert!(
        sent.iter()
            .any(|(_, body)| matches!(body, Body::ChangeMembership(_))),
        "it asks to rejoin: {sent:?}"
    );
}

/// Thesis 4.2.2: a server removed by a configuration it does not know committed may hold
/// entries the remaining voters need (here the removed leader's own log), so it still
/// stands, without counting its own vote; once it knows the removal committed, it does not.
#[test]
fn a_server_removed_by_an_uncommitted_configuration_still_stands() {
    use dst_raft::{Configuration, Member};
    let removed = Configuration::of(vec![
        Member::new(NodeId(1), 0),
        Member::new(NodeId(2), 0),
        Member::new(NodeId(3), 0),
    ])
    .expect("distinct machines");
    let mut storage = disk(2, None, &[1, 2]);
    let mut decisions = SeededSource::new(0);
    let record: LogRecord<KvCommand> = LogRecord {
        entry: Entry::new(Term(2), LogIndex(3), None, Some(removed)),
        prev_term: Term(2),
    };
    let key = log_key(LogIndex(3));
    storage
        .write(&key, encode(&key, &record), &mut decisions)
        .expect("write");
    storage.complete_sync(storage.last_sequence());
    let mut node = Solo::new(0, 4, storage, config());
    node.crash_and_restart();
    assert!(!node.node.is_voter());
    node.fire(RaftTimer::Election);
    assert_eq!(
        node.node.role(),
        Role::Candidate,
        "removal not known committed"
    );
    node.take_sent();
    let granted = VoteResponse {
        term: Term(3),
        granted: true,
        incarnation: 0,
    };
    node.receive(1, Body::RequestVoteResponse(granted.clone()));
    assert_eq!(
        node.node.role(),
        Role::Candidate,
        "its own vote counted: 2 of the 3 voters are needed"
    );
    node.receive(2, Body::RequestVoteResponse(granted));
    assert_eq!(node.node.role(), Role::Leader);
    // It leads until its no-op (which commits the removal) commits, then steps down.
    node.deliver_notes();
    node.receive(1, append_ok(3, 4));
    node.receive(2, append_ok(3, 4));
    assert_eq!(node.node.commit_index(), LogIndex(4));
    assert_eq!(
        node.node.role(),
        Role::Follower,
        "stepped down once removed"
    );
    node.fire(RaftTimer::Election);
    assert_eq!(
        node.node.role(),
        Role::Follower,
        "stood again after its removal committed"
    );
}

/// Deliberately broken logs a correct leader never writes: a configuration two members
/// away from the previous one (two changes at once, whose majorities need not overlap), and
/// two configuration entries above everything committed (a change before the previous one
/// committed). The membership invariants must name both.
#[test]
fn membership_invariants_catch_two_changes_at_once_and_two_uncommitted_changes() {
    use dst_raft::{Configuration, Member};
    let voters = |nodes: &[u32]| {
        let members = nodes.iter().map(|node| Member::new(NodeId(*node), 0));
        Configuration::of(members.collect()).expect("distinct machines")
    };
    let config_entry =
        |index: u64, nodes: &[u32]| Entry::new(Term(2), LogIndex(index), None, Some(voters(nodes)));
    let follower_with = |entries: Vec<Entry<KvCommand>>| {
        let mut node = Solo::new(1, 5, disk(2, None, &[1]), config());
        node.receive(0, append(2, (1, 1), entries, 0));
        node
    };
    // 0..5 -> {0, 1, 2}: two members removed by one entry.
    let jumped = follower_with(vec![config_entry(2, &[0, 1, 2])]);
    let caught = dst_raft::invariants::check_single_server_changes(&[&jumped.node]);
    assert!(
        caught
            .as_ref()
            .is_err_and(|error| error.contains("2 members away")),
        "{caught:?}"
    );
    // 0..5 -> {0, 1, 2, 3} -> {0, 1, 2}, both above the commit index.
    let hurried = follower_with(vec![
        config_entry(2, &[0, 1, 2, 3]),
        config_entry(3, &[0, 1, 2]),
    ]);
    assert!(dst_raft::invariants::check_single_server_changes(&[&hurried.node]).is_ok());
    let caught = ClusterMonitorProbe::observe(&hurried.node);
    assert!(
        caught
            .as_ref()
            .is_err_and(|error| error.contains("one change at a time")),
        "{caught:?}"
    );
    // The same log with its first change committed is fine.
    let mut steady = follower_with(vec![config_entry(2, &[0, 1, 2, 3])]);
    steady.receive(0, append(2, (2, 2), vec![config_entry(3, &[0, 1, 2])], 2));
    assert!(ClusterMonitorProbe::observe(&steady.node).is_ok());
}

struct ClusterMonitorProbe;

impl ClusterMonitorProbe {
    fn observe(node: &KvRaft) -> Result<(), String> {
        dst_raft::ClusterMonitor::new().observe(&[node])
    }
}

/// The same node can lead twice: here n0 led term 2 (sending rounds up to 500) and leads
/// term 4. Followers now in term 4 reject delayed term-2 AppendEntries in term 4, echoing
/// the old rounds. Counted as acknowledgements of this term's rounds, two such answers plus
/// the leader make a majority, and a read would be served without any follower having
/// heard of it: a stale read if n0 was in fact deposed. (Found by seed 534 of raft heavy at
/// 1,000 operations once replication was pipelined.)
#[test]
fn a_rejection_of_an_earlier_terms_append_confirms_no_read() {
    let mut leader = Solo::new(0, 5, disk(3, None, &[2]), config());
    leader.elect(&[1, 2]);
    leader.deliver_notes();
    // The term-4 no-op (index 2) commits, so reads may be served once confirmed.
    leader.receive(1, append_ok(4, 2));
    leader.receive(2, append_ok(4, 2));
    assert_eq!(leader.node.commit_index(), LogIndex(2));
    for peer in [3, 4] {
        let stale = AppendResponse {
            term: Term(4),
            request_term: Term(2),
            success: false,
            match_or_hint: LogIndex(2),
            round: 500,
            incarnation: 0,
        };
        leader.receive(peer, Body::AppendEntriesResponse(stale));
    }
    leader.take_sent();
    leader.step(|node, ctx| node.on_request(ctx, ClientId(7), get(7, 1)));
    assert!(
        leader.replies.is_empty(),
        "read served on answers to another term's requests: {:?}",
        leader.replies
    );
    let round = leader
        .take_sent()
        .into_iter()
        .find_map(|(_, body)| match body {
            Body::AppendEntries(append) => Some(append.round),
            _ => None,
        })
        .expect("the read starts a round");
    leader.receive(1, append_ok_in_round(4, 2, round));
    assert!(leader.replies.is_empty(), "served with two of five");
    leader.receive(2, append_ok_in_round(4, 2, round));
    assert!(
        matches!(leader.replies[..], [(_, Reply::Done { sequence: 1, .. })]),
        "a majority confirmed the round, yet: {:?}",
        leader.replies
    );
}

/// Pipelining (thesis 10.2.2): entries on their way to a follower are not sent again with
/// the next round; a rejection (here: the follower never got them) sends them again from
/// the follower's hint.
#[test]
fn entries_in_flight_are_sent_again_only_after_a_rejection() {
    let mut leader = Solo::new(0, 3, Storage::new(StorageFaults::default()), config());
    leader.elect(&[1]);
    let appends_to = |leader: &mut Solo, peer: u32| -> Vec<AppendEntries<KvCommand>> {
        leader
            .take_sent()
            .into_iter()
            .filter_map(|(to, body)| match body {
                Body::AppendEntries(append) if to == Some(NodeId(peer)) => Some(append),
                _ => None,
            })
            .collect()
    };
    let first = appends_to(&mut leader, 1);
    assert!(
        matches!(&first[..], [append] if append.entries.len() == 1),
        "the no-op goes out with the first round: {first:?}"
    );
    leader.fire(RaftTimer::Heartbeat);
    let heartbeat = appends_to(&mut leader, 1);
    assert!(
        matches!(&heartbeat[..], [append] if append.entries.is_empty()
            && append.prev_log_index == LogIndex(1)),
        "the no-op in flight was sent again: {heartbeat:?}"
    );
    let rejection = AppendResponse {
        term: Term(1),
        request_term: Term(1),
        success: false,
        match_or_hint: LogIndex(0),
        round: heartbeat[0].round,
        incarnation: 0,
    };
    leader.receive(1, Body::AppendEntriesResponse(rejection));
    let again = appends_to(&mut leader, 1);
    assert!(
        matches!(&again[..], [append] if append.prev_log_index == LogIndex(0)
            && append.entries.len() == 1),
        "a rejection hinting an empty log sends the no-op again: {again:?}"
    );
}

/// The recovery bound's term is the highest term of any entry the node stored, not its
/// current term: here elections took the node to term 6 without appending anything, and
/// its log holds entries of terms 1 and 2 only. A candidate whose log reaches (term 2,
/// index 4) holds everything the node may have acknowledged, and gets its vote. (With the
/// current term as the bound, three such nodes refused every candidate for good: raft swarm
/// seeds 10936, 16702 and 17529 ended without a leader.)
#[test]
fn the_recovery_bound_uses_the_highest_stored_term_not_the_current_term() {
    let mut storage = disk(6, None, &[1, 1, 2, 2]);
    flip_a_bit_of_entry(&mut storage, 3);
    let mut node = Solo::new(1, 3, storage, config());
    assert!(node.node.is_recovering(), "damage went unnoticed");
    let bound = node.node.recovery().expect("recovering");
    assert_eq!((bound.term, bound.last_index), (Term(2), LogIndex(4)));
    node.deliver_notes();
    node.receive(2, vote_request(7, 2, (3, 2)));
    assert!(!node.granted_a_vote(), "voted for a log short of the bound");
    node.receive(2, vote_request(8, 2, (4, 2)));
    assert!(
        node.granted_a_vote(),
        "refused a candidate holding everything it may have acknowledged"
    );
}

/// A round a read started reaches every peer like a heartbeat, so the heartbeat that falls
/// due soon after it sends nothing and waits for an interval after that round.
#[test]
fn a_recent_round_puts_the_next_heartbeat_off() {
    let mut leader = Solo::new(0, 3, Storage::new(StorageFaults::default()), config());
    leader.elect(&[1]);
    let rounds_sent = |leader: &mut Solo| {
        leader
            .take_sent()
            .into_iter()
            .filter(|(_, body)| matches!(body, Body::AppendEntries(_)))
            .count()
    };
    rounds_sent(&mut leader);
    leader.step(|node, ctx| node.on_request(ctx, ClientId(7), get(7, 1)));
    assert_eq!(rounds_sent(&mut leader), 2, "the read starts a round");
    let interval_ns = leader.config.heartbeat_interval_ns;
    leader.now_ns += interval_ns / 4;
    leader.fire_now(RaftTimer::Heartbeat);
    assert_eq!(
        rounds_sent(&mut leader),
        0,
        "a heartbeat a quarter interval after a round"
    );
    leader.now_ns += interval_ns * 3 / 4;
    leader.fire_now(RaftTimer::Heartbeat);
    assert_eq!(
        rounds_sent(&mut leader),
        2,
        "no heartbeat an interval after the last round"
    );
}

/// Contact with the leader moves the election deadline without setting a timer (one per
/// AppendEntries was a quarter of all simulated events); the timer that fires before the
/// deadline is set again for the rest, and one that fires after it starts an election.
#[test]
fn contact_with_the_leader_moves_the_election_deadline_without_a_new_timer() {
    let mut follower = Solo::new(1, 3, Storage::new(StorageFaults::default()), config());
    let election_timers = |solo: &Solo| -> Vec<dst_sim::TimerId> {
        (solo.timers.iter())
            .filter(|(_, timer)| *timer == RaftTimer::Election)
            .map(|(id, _)| *id)
            .collect()
    };
    let first = election_timers(&follower);
    assert_eq!(first.len(), 1, "one election timer at start");
    let step_ns = follower.config.election_timeout_min_ns / 2;
    for _ in 0..5 {
        follower.now_ns += step_ns;
        follower.receive(0, append(1, (0, 0), vec![], 0));
    }
    assert_eq!(
        election_timers(&follower),
        first,
        "contact set or cancelled a timer"
    );
    follower.fire_now(RaftTimer::Election);
    assert_eq!(
        follower.node.role(),
        Role::Follower,
        "stood despite contact"
    );
    assert_eq!(
        election_timers(&follower).len(),
        1,
        "the early timer is set again for the rest"
    );
    follower.now_ns += follower.config.election_timeout_max_ns;
    follower.fire_now(RaftTimer::Election);
    assert_eq!(
        follower.node.role(),
        Role::Candidate,
        "no contact for a whole timeout, yet no election"
    );
}
