//! One replica driven by hand-built messages: the paper's rules one at a time (votes after
//! durable safety data, certificates verified, the 2-chain lock, the 3-chain commit with
//! direct parents, crash recovery).

use dst_hotstuff::{
    forge_qc, proposal_digest, timeout_digest, vote_digest, Block, ClientRequest, HotStuff,
    HotStuffConfig, Message, Qc, Round, Tc, TimeoutVote,
};
use dst_protocols::{KvCommand, KvStore, Observation, Request};
use dst_sim::{
    ClientCtx, ClientId, Digest, Effect, NoClient, Node, NodeCtx, NodeId, SeededSource, Signature,
    Storage, StorageFaults,
};

type Replica = HotStuff<KvStore>;
type KvBlock = Block<KvCommand>;

const NODES: u32 = 4;

/// One leader per round in these tests: the leader of round r is r mod 4.
fn config() -> HotStuffConfig {
    HotStuffConfig {
        leader_rounds: 1,
        ..HotStuffConfig::default()
    }
}

struct Solo {
    node: Replica,
    id: NodeId,
    storage: Storage,
    decisions: SeededSource,
    next_timer_id: u64,
    ignored: Vec<&'static str>,
}

impl Solo {
    fn start(id: u32) -> Self {
        let mut solo = Solo {
            node: HotStuff::for_service(config(), KvStore::new()),
            id: NodeId(id),
            storage: Storage::new(StorageFaults::default()),
            decisions: SeededSource::new(7),
            next_timer_id: 0,
            ignored: Vec::new(),
        };
        solo.step(|node, ctx| node.on_start(ctx));
        solo
    }

    /// Runs a handler; completes its syncs (the disk keeps up in these tests).
    fn step(
        &mut self,
        handler: impl FnOnce(&mut Replica, &mut NodeCtx<'_, Replica>),
    ) -> Vec<Effect<Replica>> {
        let mut effects = Vec::new();
        self.ignored.clear();
        {
            let mut ctx = NodeCtx::new(
                self.id,
                NODES,
                0,
                &mut effects,
                &mut self.storage,
                &mut self.decisions,
                &mut self.next_timer_id,
                &mut self.ignored,
            );
            handler(&mut self.node, &mut ctx);
        }
        for effect in &effects {
            if let Effect::Sync { up_to } = effect {
                self.storage.complete_sync(*up_to);
            }
        }
        effects
    }

    fn deliver(&mut self, from: u32, msg: Message<KvCommand>) -> Vec<Effect<Replica>> {
        self.step(|node, ctx| node.on_message(ctx, NodeId(from), msg))
    }

    /// Crashes (unsynced writes lost) and boots a fresh instance on the same disk.
    fn crash_and_restart(&mut self) {
        self.storage.crash(&mut self.decisions);
        self.node = HotStuff::for_service(config(), KvStore::new());
        self.step(|node, ctx| node.on_restart(ctx));
    }
}

fn sign_as(node: u32, digest: &Digest) -> Signature {
    let (mut effects, mut storage, mut decisions) =
        (Vec::new(), Storage::default(), SeededSource::new(1));
    let (mut timers, mut ignored) = (0, Vec::new());
    let mut ctx = NodeCtx::<Replica>::new(
        NodeId(node),
        NODES,
        0,
        &mut effects,
        &mut storage,
        &mut decisions,
        &mut timers,
        &mut ignored,
    );
    ctx.sign(digest)
}

fn client_request(client: u32, sequence: u64, value: &str) -> ClientRequest<KvCommand> {
    let (mut effects, mut decisions, mut timers) = (Vec::new(), SeededSource::new(2), 0);
    let mut ctx = ClientCtx::<NoClient<Replica>>::new(
        ClientId(client),
        NODES,
        0,
        &mut effects,
        &mut decisions,
        &mut timers,
    );
    ctx.sign_value(Request {
        client: ClientId(client),
        sequence,
        command: KvCommand::Put {
            key: "k".to_string(),
            value: value.to_string(),
        },
    })
}

fn qc(round: u64, block: &KvBlock, signers: &[u32]) -> Qc {
    let digest = block.digest();
    Qc {
        round: Round(round),
        block: digest,
        votes: signers
            .iter()
            .map(|signer| sign_as(*signer, &vote_digest(Round(round), &digest)))
            .collect(),
    }
}

fn genesis() -> KvBlock {
    Block::genesis()
}

fn genesis_qc() -> Qc {
    Qc::genesis(genesis().digest())
}

/// A block of `round` by its leader, extending the block `justify` certifies.
fn block(round: u64, parent: &KvBlock, justify: Qc, value: &str) -> KvBlock {
    Block {
        round: Round(round),
        height: parent.height + 1,
        parent: justify.block,
        justify,
        proposer: NodeId((round % u64::from(NODES)) as u32),
        requests: vec![client_request(0, round, value)],
    }
}

fn propose(block: &KvBlock, tc: Option<Tc>) -> Message<KvCommand> {
    let signature = sign_as(block.proposer.0, &proposal_digest(&block.digest()));
    Message::Propose {
        block: block.clone(),
        tc,
        signature,
    }
}

fn tc(round: u64, high_qc_round: u64, signers: &[u32]) -> Tc {
    Tc {
        round: Round(round),
        timeouts: signers
            .iter()
            .map(|signer| TimeoutVote {
                high_qc_round: Round(high_qc_round),
                signature: sign_as(*signer, &timeout_digest(Round(round), Round(high_qc_round))),
            })
            .collect(),
    }
}

/// The votes among the effects: (to, round, block), and the position of the first one.
fn votes(effects: &[Effect<Replica>]) -> Vec<(NodeId, Round, Digest)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                to,
                msg: Message::Vote { round, block, .. },
            } => Some((*to, *round, *block)),
            _ => None,
        })
        .collect()
}

fn committed_slots(effects: &[Effect<Replica>]) -> Vec<(u64, Option<(ClientId, u64)>)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Observe(Observation::Commit { slot, request, .. }) => Some((*slot, *request)),
            _ => None,
        })
        .collect()
}

/// b1 <- b2 <- b3, rounds 1, 2, 3, each certified by nodes 0, 1, 2.
fn chain_of_three() -> Vec<KvBlock> {
    let b1 = block(1, &genesis(), genesis_qc(), "a");
    let b2 = block(2, &b1, qc(1, &b1, &[0, 1, 2]), "b");
    let b3 = block(3, &b2, qc(2, &b2, &[0, 1, 2]), "c");
    vec![b1, b2, b3]
}

#[test]
fn a_vote_leaves_only_after_the_safety_record_is_synced() {
    let mut solo = Solo::start(3);
    let b1 = block(1, &genesis(), genesis_qc(), "a");
    let effects = solo.deliver(1, propose(&b1, None));
    let sync = effects
        .iter()
        .position(|e| matches!(e, Effect::Sync { .. }));
    let vote = effects.iter().position(|e| {
        matches!(
            e,
            Effect::Send {
                msg: Message::Vote { .. },
                ..
            }
        )
    });
    assert!(
        vote.is_some(),
        "no vote for a valid proposal: {:?}",
        solo.ignored
    );
    assert!(
        sync < vote,
        "the vote is not ordered after the sync: {effects:?}"
    );
    assert_eq!(
        votes(&effects),
        vec![(NodeId(2), Round(1), b1.digest())],
        "vote goes to leader(r + 1)"
    );
    assert_eq!(solo.node.last_voted_round(), Round(1));
}

#[test]
fn proposals_with_forged_certificates_get_no_vote() {
    let [b1, b2, _] = <[KvBlock; 3]>::try_from(chain_of_three()).expect("three");
    let valid = qc(1, &b1, &[0, 1, 2]);
    let mut forgeries: Vec<(&str, Qc)> = (0..3)
        .map(|variant| {
            (
                [
                    "duplicated signer",
                    "too few votes",
                    "votes moved to another block",
                ][variant],
                forge_qc(&valid, variant as u64),
            )
        })
        .collect();
    let mut other_round = valid.clone();
    other_round.round = Round(0);
    other_round.votes.clear();
    forgeries.push(("a genesis QC for a real block", other_round));
    let mut by_client = valid.clone();
    by_client.votes[2] = {
        let request = client_request(5, 1, "x");
        request.signature
    };
    forgeries.push(("a client's signature as a vote", by_client));
    let mut wrong_round = qc(7, &b1, &[0, 1, 2]);
    wrong_round.round = Round(1);
    forgeries.push(("votes signed for another round", wrong_round));
    for (what, forged) in forgeries {
        let mut solo = Solo::start(3);
        solo.deliver(1, propose(&b1, None));
        let mut bad = b2.clone();
        bad.parent = forged.block;
        bad.justify = forged;
        let effects = solo.deliver(2, propose(&bad, None));
        assert!(
            votes(&effects).is_empty(),
            "{what}: voted for a forged certificate"
        );
        assert!(
            !solo.ignored.is_empty(),
            "{what}: rejected without a counted reason"
        );
        assert_eq!(
            solo.node.high_qc().round,
            Round(0),
            "{what}: forged QC adopted"
        );
    }
    // The same proposal with the genuine certificate gets its vote (kept locally: this
    // replica leads round 3 and collects round 2's votes): the forgery was the reason.
    let mut solo = Solo::start(3);
    solo.deliver(1, propose(&b1, None));
    solo.deliver(2, propose(&b2, None));
    assert_eq!(solo.node.last_voted_round(), Round(2), "{:?}", solo.ignored);
}

#[test]
fn a_proposal_not_signed_by_the_round_leader_gets_no_vote() {
    let mut solo = Solo::start(3);
    let b1 = block(1, &genesis(), genesis_qc(), "a");
    let signature = sign_as(0, &proposal_digest(&b1.digest()));
    let effects = solo.deliver(
        0,
        Message::Propose {
            block: b1,
            tc: None,
            signature,
        },
    );
    assert!(votes(&effects).is_empty());
    assert_eq!(
        solo.ignored,
        vec!["proposal not signed by the round's leader"]
    );
}

#[test]
fn a_replica_votes_once_per_round() {
    let mut solo = Solo::start(3);
    let b1 = block(1, &genesis(), genesis_qc(), "a");
    let other = block(1, &genesis(), genesis_qc(), "equivocation");
    assert_eq!(votes(&solo.deliver(1, propose(&b1, None))).len(), 1);
    assert!(votes(&solo.deliver(1, propose(&other, None))).is_empty());
    assert_eq!(solo.ignored, vec!["already voted in this round"]);
}

/// The locking rule: after b1 <- b2 <- b3 the replica is locked on b1 (2-chain). A proposal
/// whose QC is older than the lock and that does not extend b1 gets no vote, even when
/// its round is justified by a valid TC; one whose QC is newer than the lock does.
#[test]
fn a_locked_replica_refuses_a_conflicting_branch_but_follows_a_newer_qc() {
    let mut solo = Solo::start(3);
    let chain = chain_of_three();
    for block in &chain {
        solo.deliver(block.proposer.0, propose(block, None));
    }
    assert_eq!(
        solo.node.locked_qc().round,
        Round(1),
        "not locked on the 2-chain"
    );
    assert_eq!(solo.node.locked_qc().block, chain[0].digest());
    let conflicting = block(4, &genesis(), genesis_qc(), "fork");
    let effects = solo.deliver(0, propose(&conflicting, Some(tc(3, 0, &[0, 1, 2]))));
    assert!(votes(&effects).is_empty(), "voted against its lock");
    assert_eq!(
        solo.ignored,
        vec!["proposal fails safeNode (conflicts with the lock)"]
    );
    // A fork from b2 with QC(b2): round 2 > locked round 1, so safeNode's liveness rule holds.
    let newer = block(5, &chain[1], qc(2, &chain[1], &[0, 1, 2]), "newer");
    let effects = solo.deliver(1, propose(&newer, Some(tc(4, 2, &[0, 1, 2]))));
    assert_eq!(
        votes(&effects).len(),
        1,
        "refused a block with a QC above the lock: {:?}",
        solo.ignored
    );
}

/// The commit rule: a QC for the third of three blocks with consecutive rounds commits the
/// first (and only then).
#[test]
fn three_consecutive_certified_rounds_commit_the_first_block() {
    let mut solo = Solo::start(3);
    let chain = chain_of_three();
    for block in &chain {
        let effects = solo.deliver(block.proposer.0, propose(block, None));
        assert!(
            committed_slots(&effects).is_empty(),
            "committed on a 2-chain"
        );
    }
    let b4 = block(4, &chain[2], qc(3, &chain[2], &[0, 1, 2]), "d");
    let effects = solo.deliver(0, propose(&b4, None));
    assert_eq!(committed_slots(&effects), vec![(1, Some((ClientId(0), 1)))]);
    assert_eq!(solo.node.committed().0, chain[0].digest());
}

/// A gap in the rounds (a TC between b2 and b4) means no direct-parent 3-chain: nothing
/// commits until three consecutive rounds follow, which then commit the whole prefix.
#[test]
fn a_three_chain_with_a_round_gap_does_not_commit() {
    let mut solo = Solo::start(3);
    let chain = chain_of_three();
    let (b1, b2) = (&chain[0], &chain[1]);
    solo.deliver(1, propose(b1, None));
    solo.deliver(2, propose(b2, None));
    let b4 = block(4, b2, qc(2, b2, &[0, 1, 2]), "after a timeout");
    let b5 = block(5, &b4, qc(4, &b4, &[0, 1, 3]), "e");
    let b6 = block(6, &b5, qc(5, &b5, &[1, 2, 3]), "f");
    let b7 = block(7, &b6, qc(6, &b6, &[0, 2, 3]), "g");
    for (block, tc) in [(&b4, Some(tc(3, 2, &[0, 1, 2]))), (&b5, None), (&b6, None)] {
        let effects = solo.deliver(block.proposer.0, propose(block, tc));
        assert!(
            committed_slots(&effects).is_empty(),
            "committed across a round gap at {}",
            block.round
        );
    }
    let effects = solo.deliver(3, propose(&b7, None));
    let slots: Vec<u64> = committed_slots(&effects)
        .iter()
        .map(|(slot, _)| *slot)
        .collect();
    assert_eq!(
        slots,
        vec![1, 2, 3],
        "b1, b2 and b4 commit together, in order"
    );
    assert_eq!(solo.node.committed().0, b4.digest());
}

#[test]
fn a_restarted_replica_remembers_its_vote_and_lock() {
    let mut solo = Solo::start(3);
    let chain = chain_of_three();
    for block in &chain {
        solo.deliver(block.proposer.0, propose(block, None));
    }
    assert_eq!(solo.node.last_voted_round(), Round(3));
    solo.crash_and_restart();
    assert_eq!(
        solo.node.last_voted_round(),
        Round(3),
        "forgot its last vote"
    );
    assert_eq!(solo.node.locked_qc().round, Round(1), "forgot its lock");
    let again = block(3, &chain[1], qc(2, &chain[1], &[0, 1, 2]), "equivocation");
    let effects = solo.deliver(3, propose(&again, None));
    assert!(
        votes(&effects).is_empty(),
        "voted twice in round 3 across a restart"
    );
}

#[test]
fn a_committed_prefix_is_replayed_after_a_restart() {
    let mut solo = Solo::start(3);
    let chain = chain_of_three();
    for block in &chain {
        solo.deliver(block.proposer.0, propose(block, None));
    }
    let b4 = block(4, &chain[2], qc(3, &chain[2], &[0, 1, 2]), "d");
    solo.deliver(0, propose(&b4, None));
    let digest = dst_sim::StateMachine::digest(solo.node.state());
    solo.storage.complete_sync(solo.storage.last_sequence());
    solo.crash_and_restart();
    assert_eq!(solo.node.executed_slot(), 1, "committed block not replayed");
    assert_eq!(dst_sim::StateMachine::digest(solo.node.state()), digest);
}

/// b1 <- b2 <- ... <- bn, each certified in the next round by nodes 0, 1, 2.
fn chain_of(length: u64) -> Vec<KvBlock> {
    let mut chain: Vec<KvBlock> = Vec::new();
    for round in 1..=length {
        let next = match chain.last() {
            None => block(round, &genesis(), genesis_qc(), "v"),
            Some(parent) => block(round, parent, qc(round - 1, parent, &[0, 1, 2]), "v"),
        };
        chain.push(next);
    }
    chain
}

/// The blocks a replica sent back for a fetch.
fn fetched(effects: &[Effect<Replica>]) -> Vec<KvBlock> {
    effects
        .iter()
        .flat_map(|effect| match effect {
            Effect::Send {
                msg: Message::Blocks { blocks },
                ..
            } => blocks.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Commits `length - 3` blocks of a chain of `length` while storage faults hit, then heals
/// the disk, syncs, crashes and restarts.
fn commit_under_storage_faults(
    solo: &mut Solo,
    length: u64,
    faults: StorageFaults,
) -> Vec<KvBlock> {
    let chain = chain_of(length);
    solo.storage.set_faults(faults);
    for block in &chain {
        solo.deliver(block.proposer.0, propose(block, None));
    }
    solo.storage.set_faults(StorageFaults::default());
    solo.storage.complete_sync(solo.storage.last_sequence());
    solo.crash_and_restart();
    chain
}

/// The swarm liveness bug (seeds 45 and 677 before the fix): committed blocks leave memory,
/// so their disk records are the only copies lagging replicas can fetch. Written once with
/// I/O errors and misdirected writes ignored, heights went missing on every up-to-date
/// replica and restarted replicas could never catch up. Every committed height must be
/// replayed after a restart and served to a fetch.
#[test]
fn committed_blocks_survive_failed_and_misdirected_writes() {
    let mut solo = Solo::start(3);
    let faults = StorageFaults {
        io_error_ppm: 150_000,
        misdirect_ppm: 50_000,
        ..StorageFaults::default()
    };
    let chain = commit_under_storage_faults(&mut solo, 24, faults);
    let committed = chain.len() as u64 - 3;
    assert_eq!(
        solo.node.executed_slot(),
        committed,
        "a committed block was lost on disk: the restart replayed only a prefix"
    );
    for block in &chain[..committed as usize] {
        let fetch = Message::Fetch {
            block: block.digest(),
            height: block.height,
        };
        let served = fetched(&solo.deliver(1, fetch));
        assert_eq!(
            served.first().map(KvBlock::digest),
            Some(block.digest()),
            "committed height {} cannot be served to a lagging peer",
            block.height
        );
    }
}

/// A latent flip or a misdirected write of another record damages one copy of a committed
/// block: the mirror serves it and the damaged copy is rewritten.
#[test]
fn a_damaged_block_copy_is_read_from_its_mirror_and_repaired() {
    let mut solo = Solo::start(3);
    let chain = commit_under_storage_faults(&mut solo, 6, StorageFaults::default());
    let key = dst_hotstuff::durable::block_key(2);
    let healthy = solo.storage.durable()[key.as_str()].to_vec();
    let mut flipped = healthy.clone();
    flipped[0] ^= 1;
    solo.storage
        .write(&key, flipped, &mut solo.decisions)
        .expect("no storage faults");
    solo.storage.complete_sync(solo.storage.last_sequence());
    solo.crash_and_restart();
    assert_eq!(
        solo.node.executed_slot(),
        3,
        "replay stopped at the damaged copy"
    );
    assert_eq!(
        solo.storage
            .read(&key, &mut solo.decisions)
            .expect("no faults"),
        Some(healthy),
        "the damaged copy was not repaired from the mirror"
    );
    let served = fetched(&solo.deliver(
        1,
        Message::Fetch {
            block: chain[1].digest(),
            height: 2,
        },
    ));
    assert_eq!(served.first().map(KvBlock::digest), Some(chain[1].digest()));
}

/// The second `swarm` liveness bug (seeds 1033 and 2979 before the fix): every voter of a
/// certified block crashed in turn before it committed, losing it from memory, while the QC
/// lived on in other replicas' locks and timeouts; no replica could serve the block, so no
/// proposal could carry a QC as high as the TCs demanded. A voter keeps what it voted for
/// (and the ancestors) on disk before the vote leaves and serves it after a restart.
#[test]
fn a_voted_block_survives_its_voters_crash_and_is_served_after_restart() {
    let mut solo = Solo::start(3);
    let chain = chain_of(3);
    for block in &chain {
        solo.deliver(block.proposer.0, propose(block, None));
    }
    assert_eq!(solo.node.last_voted_round(), Round(3));
    assert_eq!(solo.node.executed_slot(), 0, "nothing committed yet");
    solo.crash_and_restart();
    for block in &chain {
        assert!(
            solo.node.block(&block.digest()).is_some(),
            "voted block of {} lost in the crash",
            block.round
        );
    }
    let served = fetched(&solo.deliver(
        1,
        Message::Fetch {
            block: chain[2].digest(),
            height: 3,
        },
    ));
    let served: Vec<Digest> = served.iter().map(KvBlock::digest).collect();
    let expected: Vec<Digest> = chain.iter().rev().map(KvBlock::digest).collect();
    assert_eq!(
        served, expected,
        "the voted chain is not served after a restart"
    );
    // Committing prunes the records: b1 commits with b4's QC of b3.
    let b4 = block(4, &chain[2], qc(3, &chain[2], &[0, 1, 2]), "d");
    solo.deliver(0, propose(&b4, None));
    assert_eq!(solo.node.executed_slot(), 1);
    let records = solo
        .storage
        .keys_with_prefix(dst_hotstuff::durable::CHAIN_PREFIX);
    assert_eq!(
        records.len(),
        3,
        "records of b2, b3, b4 remain: {records:?}"
    );
}

#[test]
fn requests_not_signed_by_their_client_are_rejected() {
    let mut solo = Solo::start(0);
    let mut request = client_request(1, 1, "x");
    request.value.client = ClientId(2);
    solo.step(|node, ctx| node.on_request(ctx, ClientId(2), request));
    assert_eq!(solo.ignored, vec!["request not signed by its client"]);
    let effects =
        solo.step(|node, ctx| node.on_request(ctx, ClientId(1), client_request(1, 1, "x")));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: Message::Forward { .. },
                ..
            }
        )),
        "a genuine request is forwarded to the leaders"
    );
}

/// A QC needs n - f distinct voters: duplicates and bad signatures do not count.
#[test]
fn the_next_leader_forms_a_qc_from_a_quorum_of_distinct_votes() {
    let mut solo = Solo::start(2);
    let b1 = block(1, &genesis(), genesis_qc(), "a");
    let digest = b1.digest();
    solo.deliver(1, propose(&b1, None)); // its own vote is the first
    let vote = |signer: u32| Message::Vote {
        round: Round(1),
        block: digest,
        signature: sign_as(signer, &vote_digest(Round(1), &digest)),
    };
    solo.deliver(0, vote(0));
    solo.deliver(0, vote(0));
    assert_eq!(solo.ignored, vec!["duplicate vote"]);
    let moved = Message::Vote {
        round: Round(1),
        block: digest,
        signature: sign_as(3, &vote_digest(Round(1), &Digest::of_bytes(b"other"))),
    };
    solo.deliver(3, moved);
    assert_eq!(solo.ignored, vec!["vote with a bad signature"]);
    assert_eq!(
        solo.node.high_qc().round,
        Round(0),
        "a QC from two distinct votes"
    );
    let effects = solo.deliver(1, vote(1));
    assert_eq!(
        solo.node.high_qc().round,
        Round(1),
        "no QC from three distinct votes"
    );
    let proposed = effects.iter().any(|e| {
        let Effect::Broadcast {
            msg: Message::Propose { block, .. },
        } = e
        else {
            return false;
        };
        block.round == Round(2) && block.parent == digest
    });
    assert!(
        proposed,
        "the leader of round 2 did not propose on the new QC"
    );
}

/// Runs the protocol's own forger as Byzantine node `node` on `msg`.
fn forged(node: u32, msg: &Message<KvCommand>, variant: u64) -> Option<Message<KvCommand>> {
    let (mut effects, mut storage, mut decisions) =
        (Vec::new(), Storage::default(), SeededSource::new(3));
    let (mut timers, mut ignored) = (0, Vec::new());
    let mut ctx = NodeCtx::<Replica>::new(
        NodeId(node),
        NODES,
        0,
        &mut effects,
        &mut storage,
        &mut decisions,
        &mut timers,
        &mut ignored,
    );
    <Replica as dst_sim::Adversarial>::forge(&mut ctx, msg, variant)
}

/// Every forgery the Adversarial hook makes of a proposal or a timeout is rejected by a
/// correct replica (the equivocating proposal is valid but comes second: no second vote).
#[test]
fn every_forgery_of_the_adversarial_hook_is_rejected() {
    let chain = chain_of_three();
    let (b1, b2) = (&chain[0], &chain[1]);
    for variant in 0..8 {
        let mut solo = Solo::start(3);
        solo.deliver(1, propose(b1, None));
        solo.deliver(2, propose(b2, None));
        assert_eq!(solo.node.last_voted_round(), Round(2));
        let b3 = &chain[2];
        let equivocation = variant % 4 == 3;
        if equivocation {
            solo.deliver(3, propose(b3, None));
        }
        let voted = solo.node.last_voted_round();
        let forgery = forged(3, &propose(b3, None), variant).expect("proposals are forged");
        let effects = solo.deliver(3, forgery);
        assert!(
            votes(&effects).is_empty(),
            "variant {variant}: voted for a forgery"
        );
        assert_eq!(solo.node.last_voted_round(), voted, "variant {variant}");
        if equivocation {
            continue; // the high QC moved with b3
        }
        let timeout = Message::Timeout {
            round: Round(3),
            high_qc: b3.justify.clone(),
            signature: sign_as(0, &timeout_digest(Round(3), Round(2))),
        };
        let before = solo.node.high_qc().clone();
        let forgery = forged(0, &timeout, variant).expect("timeouts are forged");
        solo.deliver(0, forgery);
        assert_eq!(
            solo.ignored.len(),
            1,
            "variant {variant}: forged timeout accepted"
        );
        assert_eq!(solo.node.high_qc(), &before);
    }
}

#[test]
fn a_lying_replica_changes_the_output() {
    let (mut effects, mut storage, mut decisions) =
        (Vec::new(), Storage::default(), SeededSource::new(3));
    let (mut timers, mut ignored) = (0, Vec::new());
    let mut ctx = NodeCtx::<Replica>::new(
        NodeId(1),
        NODES,
        0,
        &mut effects,
        &mut storage,
        &mut decisions,
        &mut timers,
        &mut ignored,
    );
    for output in [
        dst_protocols::KvOutput::Written,
        dst_protocols::KvOutput::Value(None),
        dst_protocols::KvOutput::Value(Some("v".to_string())),
        dst_protocols::KvOutput::Swapped(true),
    ] {
        let reply = dst_protocols::Reply::Done {
            sequence: 4,
            output: output.clone(),
        };
        for variant in 0..2 {
            let lie = <Replica as dst_sim::Adversarial>::lie(&mut ctx, &reply, variant);
            match lie {
                Some(dst_protocols::Reply::Done {
                    sequence: 4,
                    output: told,
                }) => {
                    assert_ne!(told, output, "a lie that tells the truth")
                }
                other => panic!("no lie about {output:?}: {other:?}"),
            }
        }
    }
}
