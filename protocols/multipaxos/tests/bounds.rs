//! One message never buys unbounded work. With message checksums off a corrupted message
//! decodes as a well-formed one with absurd fields (a slot or round near `u64::MAX`); each
//! handler here gets such a message by hand and must ignore it, with its reason, before
//! doing anything in proportion to the field. And a CLI seed that meets such an accept ends:
//! seed 66 (`dst run --protocol multipaxos --option message_checksums=false --profile swarm
//! --seed 66`) once ran for minutes (a corrupted accept for slot 8427 with the prefix at 106
//! made the next leader fill and retransmit thousands of no-ops every tick). Since candidates
//! promise themselves their ballot, that seed's run no longer meets an absurd accept; seed 32
//! does, and stands in for it.

mod common;

use common::{run_like_cli, CLI_CLIENTS, CLI_OPS};
use dst_multipaxos::{Ballot, Body, PaxosConfig, PaxosMsg, PaxosTimer, Report, Role, Slot};
use dst_protocols::KvCommand;
use dst_sim::{EndReason, Node, NodeId};

#[path = "common/hand.rs"]
mod hand;

use hand::HandCluster as Cluster;

const ABSURD: Slot = Slot(u64::MAX - 1);

/// Three replicas driven by hand, checksums off.
fn cluster() -> Cluster {
    let config = PaxosConfig {
        message_checksums: false,
        ..PaxosConfig::default()
    };
    Cluster::new(3, config, 3)
}

impl Cluster {
    /// Hands `to` a message from `from`, as a corrupted delivery would.
    fn receive(&mut self, to: u32, from: u32, body: Body<KvCommand>) {
        let msg = PaxosMsg::seal(body, false);
        self.step(NodeId(to), |node, ctx| {
            node.on_message(ctx, NodeId(from), msg)
        });
    }

    fn deliver_all(&mut self) {
        for _ in 0..1_000 {
            let Some((from, to, msg)) = self.wire.pop() else {
                return;
            };
            self.step(to, |node, ctx| node.on_message(ctx, from, msg));
        }
        panic!("messages kept flowing");
    }
}

fn ballot(round: u64, node: u32) -> Ballot {
    Ballot {
        round,
        node: NodeId(node),
    }
}

#[test]
fn an_accept_for_an_absurd_slot_is_ignored_before_anything_changes() {
    let mut cluster = cluster();
    let accept = Body::Accept {
        ballot: ballot(1, 0),
        slot: ABSURD,
        value: None,
    };
    cluster.receive(1, 0, accept);
    assert_eq!(
        cluster.ignored,
        ["accept for a slot too far beyond the chosen prefix"]
    );
    assert!(cluster.node(1).accepted().is_empty(), "stored the accept");
    assert_eq!(cluster.node(1).promised(), Ballot::ZERO, "promised anyway");
    assert!(cluster.wire.is_empty(), "answered: {:?}", cluster.wire);

    // The bound is relative to the prefix: the next slot is fine.
    let accept = Body::Accept {
        ballot: ballot(1, 0),
        slot: Slot(1),
        value: None,
    };
    cluster.receive(1, 0, accept);
    assert_eq!(cluster.ignored.len(), 1, "{:?}", cluster.ignored);
    assert!(cluster.node(1).accepted().contains_key(&Slot(1)));
}

#[test]
fn a_chosen_value_for_an_absurd_slot_is_ignored() {
    let mut cluster = cluster();
    cluster.receive(
        2,
        0,
        Body::Chosen {
            slot: ABSURD,
            value: None,
        },
    );
    assert_eq!(
        cluster.ignored,
        ["chosen slot too far beyond the chosen prefix"]
    );
    assert!(cluster.node(2).chosen().is_empty());
}

/// n0 stands; a promise reporting an absurd slot would have it propose a no-op in every
/// slot up to there. It is ignored, and honest promises still make n0 leader.
#[test]
fn a_promise_reporting_an_absurd_slot_is_ignored_and_phase_1_still_completes() {
    let mut cluster = cluster();
    cluster.step(NodeId(0), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    let standing = cluster.node(0).ballot();
    cluster.wire.clear();
    for (slot, damaged) in [(ABSURD, vec![]), (Slot(1), vec![ABSURD])] {
        let report = Report {
            slot,
            ballot: standing,
            value: None,
            chosen: false,
        };
        let promise = Body::Promise {
            ballot: standing,
            from: Slot(1),
            accepted: vec![report],
            damaged,
        };
        cluster.receive(0, 1, promise.clone());
        cluster.receive(0, 2, promise);
    }
    assert_eq!(
        cluster.ignored,
        ["promise names a slot too far beyond its reports"; 4]
    );
    assert_eq!(cluster.node(0).role(), Role::Candidate);

    cluster.step(NodeId(0), |node, ctx| node.on_timer(ctx, PaxosTimer::Tick));
    cluster.deliver_all();
    assert_eq!(cluster.node(0).role(), Role::Leader);
    assert_eq!(
        cluster.node(0).chosen_below(),
        Slot(1),
        "nothing to recover"
    );
}

/// A corrupted ballot with a round near `u64::MAX` must not overflow the next election.
#[test]
fn an_absurd_round_does_not_overflow_the_next_ballot() {
    let mut cluster = cluster();
    let prepare = Body::Prepare {
        ballot: ballot(u64::MAX, 2),
        from: Slot(1),
    };
    cluster.receive(0, 2, prepare);
    assert_eq!(cluster.node(0).promised(), ballot(u64::MAX, 2));
    cluster.step(NodeId(0), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    assert_eq!(cluster.node(0).role(), Role::Candidate);
    assert_eq!(cluster.node(0).ballot().round, u64::MAX);
}

/// Events allowed for the regression run: it takes under 10 000 now; before the bounds such
/// a run hit any cap (2 million events in two minutes, with thousands of open slots).
const ABSURD_ACCEPT_RUN_EVENTS_MAX: u64 = 200_000;

/// A swarm seed whose run, with checksums off, meets a corrupted accept for an absurd slot.
const ABSURD_ACCEPT_SEED: u64 = 32;

#[test]
fn a_swarm_run_meeting_an_absurd_accept_with_checksums_off_ends() {
    let paxos = PaxosConfig {
        message_checksums: false,
        ..PaxosConfig::default()
    };
    let outcome = run_like_cli(
        ABSURD_ACCEPT_SEED,
        "swarm",
        paxos,
        ABSURD_ACCEPT_RUN_EVENTS_MAX,
    );
    let summary = &outcome.summary;
    assert_eq!(
        summary.end_reason,
        EndReason::ClientsDone,
        "events {}",
        summary.events
    );
    assert!(
        summary
            .stats
            .ignored
            .contains_key("accept for a slot too far beyond the chosen prefix"),
        "the corrupted accept was not what this run met: {:?}",
        summary.stats.ignored
    );
    assert_eq!(
        common::completed(&outcome.observations),
        CLI_OPS as usize,
        "{CLI_CLIENTS} clients"
    );
}
