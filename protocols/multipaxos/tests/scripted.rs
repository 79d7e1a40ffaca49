//! Scripted scenarios driving replicas by hand (every delivery chosen by the test), and the
//! same scenario with a deliberately broken phase 1 that the chosen-value check catches.
//!
//! Scenario (the classic one for Paxos recovery): leader n0 gets a value accepted by itself
//! and n1 (a majority: the value is chosen), learns it, and crashes before telling anyone.
//! n2 then runs phase 1 with n1; n1's promise reports the accepted value, so n2 must propose
//! that value again in the same slot, never a no-op or something else.

use std::sync::Arc;

use dst_multipaxos::{Body, ChosenMonitor, PaxosConfig, PaxosMsg, PaxosTimer, Role, Slot};
use dst_protocols::{KvCommand, Request};
use dst_sim::{ClientId, Node, NodeId};

#[path = "common/hand.rs"]
mod hand;

use hand::HandCluster as Cluster;

impl Cluster {
    /// Delivers messages until none is left that `pass` lets through (the rest are lost).
    fn deliver(&mut self, pass: impl Fn(NodeId, NodeId, &Body<KvCommand>) -> bool) {
        // Bounded: a handful of handlers per message in a three-node cluster.
        for _ in 0..1_000 {
            let Some((from, to, msg)) = self.wire.pop() else {
                return;
            };
            if pass(from, to, &msg.body) {
                self.step(to, |node, ctx| node.on_message(ctx, from, msg));
            }
        }
        panic!("messages kept flowing");
    }

    fn crash(&mut self, id: NodeId) {
        self.disks[id.0 as usize].crash(&mut self.decisions);
        self.nodes[id.0 as usize] = self.fresh();
        self.wire.retain(|(from, to, _)| *from != id && *to != id);
    }
}

fn put() -> Request<KvCommand> {
    Request {
        client: ClientId(0),
        sequence: 1,
        command: KvCommand::Put {
            key: "k".to_string(),
            value: "v".to_string(),
        },
    }
}

fn other_put() -> Request<KvCommand> {
    Request {
        client: ClientId(1),
        sequence: 1,
        command: KvCommand::Put {
            key: "k".to_string(),
            value: "w".to_string(),
        },
    }
}

/// Strips every report from promises in flight: a proposer that ignores accepted values.
fn forget_reports(cluster: &mut Cluster) {
    for (_, _, msg) in cluster.wire.iter_mut() {
        if let Body::Promise { accepted, .. } = &mut msg.body {
            accepted.clear();
            *msg = PaxosMsg::seal(msg.body.clone(), true);
        }
    }
}

/// Runs the scenario; `broken` makes the new leader's phase 1 ignore accepted values.
/// Returns the cross-node check's verdict and the cluster.
fn leader_crash_after_choosing(broken: bool) -> (Result<(), String>, Cluster) {
    let (n0, n2) = (NodeId(0), NodeId(2));
    let mut cluster = Cluster::new(3, PaxosConfig::default(), 7);
    let mut monitor = ChosenMonitor::new();
    cluster.step(n0, |node, ctx| node.on_timer(ctx, PaxosTimer::Election));
    cluster.deliver(|_, _, _| true);
    assert_eq!(cluster.node(0).role(), Role::Leader, "n0 won phase 1");

    cluster.step(n0, |node, ctx| node.on_request(ctx, ClientId(0), put()));
    // n2 hears nothing, and nobody hears that the slot is chosen.
    cluster.deliver(|_, to, body| to != n2 && !matches!(body, Body::Chosen { .. }));
    assert_eq!(
        cluster.node(0).chosen().get(&Slot(1)),
        Some(&Some(Arc::new(put()))),
        "n0 learned it"
    );
    assert!(cluster.node(1).chosen().is_empty(), "n1 must not know yet");
    monitor
        .observe(&[cluster.node(0), cluster.node(1), cluster.node(2)])
        .expect("one leader so far");
    cluster.crash(n0);

    cluster.step(n2, |node, ctx| node.on_timer(ctx, PaxosTimer::Election));
    for _ in 0..10 {
        if broken {
            forget_reports(&mut cluster);
        }
        let Some(next) = cluster.wire.pop() else {
            break;
        };
        cluster.wire.push(next);
        cluster.deliver_one_round(n0);
    }
    assert_eq!(cluster.node(2).role(), Role::Leader, "n2 won phase 1");
    // A new request must land after the recovered slot, never in it.
    cluster.step(n2, |node, ctx| {
        node.on_request(ctx, ClientId(1), other_put())
    });
    cluster.deliver(|from, to, _| from != n0 && to != n0);
    let verdict = monitor.observe(&[cluster.node(1), cluster.node(2)]);
    (verdict, cluster)
}

impl Cluster {
    /// Delivers what is on the wire now (not what it causes), skipping `down`.
    fn deliver_one_round(&mut self, down: NodeId) {
        for (from, to, msg) in std::mem::take(&mut self.wire) {
            if to != down && from != down {
                self.step(to, |node, ctx| node.on_message(ctx, from, msg));
            }
        }
    }
}

#[test]
fn a_new_leader_recovers_the_value_chosen_by_the_crashed_one() {
    let (verdict, mut cluster) = leader_crash_after_choosing(false);
    verdict.unwrap_or_else(|error| panic!("{error}"));
    for id in [1, 2] {
        assert_eq!(
            cluster.node(id).chosen().get(&Slot(1)),
            Some(&Some(Arc::new(put()))),
            "n{id} learned the recovered value"
        );
        assert_eq!(
            cluster.node(id).chosen().get(&Slot(2)),
            Some(&Some(Arc::new(other_put()))),
            "n{id} learned the new request after it"
        );
    }
    // n0 comes back with its accept on disk, and catches up through heartbeats.
    cluster.step(NodeId(0), |node, ctx| node.on_restart(ctx));
    let record = cluster
        .node(0)
        .accepted()
        .get(&Slot(1))
        .expect("accept survived the crash");
    assert_eq!(record.value, Some(Arc::new(put())));
    cluster.step(NodeId(2), |node, ctx| node.on_timer(ctx, PaxosTimer::Tick));
    cluster.deliver(|_, _, _| true);
    assert_eq!(
        cluster.node(0).chosen().get(&Slot(1)),
        Some(&Some(Arc::new(put())))
    );
    assert_eq!(
        cluster.node(0).applied_below(),
        Slot(3),
        "n0 applied both slots"
    );
    assert_eq!(cluster.node(0).state().get("k"), Some("w"));
}

#[test]
fn a_proposer_ignoring_accepted_values_is_caught_by_the_chosen_value_check() {
    let (verdict, _) = leader_crash_after_choosing(true);
    let error = verdict.expect_err("the broken phase 1 chose another value in slot 1");
    assert!(error.contains("slot 1"), "unexpected report: {error}");
}

#[test]
fn a_prepare_below_the_promise_is_refused() {
    let mut cluster = Cluster::new(3, PaxosConfig::default(), 7);
    cluster.step(NodeId(2), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    cluster.deliver(|_, _, _| true);
    let promised = cluster.node(1).promised();
    assert_eq!(promised.node, NodeId(2));
    cluster.wire.clear();
    let low = dst_multipaxos::Ballot {
        round: promised.round,
        node: NodeId(0),
    };
    let prepare = PaxosMsg::seal(
        Body::Prepare {
            ballot: low,
            from: Slot(1),
        },
        true,
    );
    cluster.step(NodeId(1), |node, ctx| {
        node.on_message(ctx, NodeId(0), prepare)
    });
    assert!(
        matches!(cluster.wire.as_slice(), [(_, to, msg)] if *to == NodeId(0)
            && matches!(msg.body, Body::Nack { promised: p, .. } if p == promised)),
        "expected one nack, got {:?}",
        cluster.wire
    );
    assert_eq!(
        cluster.node(1).promised(),
        promised,
        "the promise went down"
    );
}

impl Cluster {
    /// Replaces a durable value on `id`'s disk with garbage (a latent corruption).
    fn damage(&mut self, id: NodeId, key: &str) {
        let disk = &mut self.disks[id.0 as usize];
        disk.write(
            key,
            vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5],
            &mut self.decisions,
        )
        .expect("no storage faults configured");
        let up_to = disk.last_sequence();
        disk.complete_sync(up_to);
    }
}

/// n0 leads and gets `put()` chosen in slot 1; everyone learns it.
fn cluster_with_one_chosen_slot() -> Cluster {
    let mut cluster = Cluster::new(3, PaxosConfig::default(), 7);
    cluster.step(NodeId(0), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    cluster.deliver(|_, _, _| true);
    cluster.step(NodeId(0), |node, ctx| {
        node.on_request(ctx, ClientId(0), put())
    });
    cluster.deliver(|_, _, _| true);
    for id in 0..3 {
        assert_eq!(
            cluster.node(id).chosen().get(&Slot(1)),
            Some(&Some(Arc::new(put())))
        );
    }
    cluster
}

#[test]
fn a_damaged_accept_record_is_reported_and_not_counted_until_rewritten() {
    let mut cluster = cluster_with_one_chosen_slot();
    let n1 = NodeId(1);
    cluster.crash(n1);
    cluster.damage(n1, &dst_multipaxos::durable::accept_key(Slot(1)));
    cluster.step(n1, |node, ctx| node.on_restart(ctx));
    assert!(
        cluster.node(1).is_recovering(),
        "damage must not be trusted"
    );
    assert!(cluster.node(1).accepted().is_empty());
    assert!(cluster.node(1).damaged().contains(&Slot(1)));

    // n0 is down and n2 restarts (forgetting what is chosen) and stands: n1's promise
    // names slot 1 damaged, so n1 and n2 alone must not decide slot 1.
    let (n0, n2) = (NodeId(0), NodeId(2));
    cluster.crash(n0);
    cluster.crash(n2);
    cluster.step(n2, |node, ctx| node.on_restart(ctx));
    cluster.step(n2, |node, ctx| node.on_timer(ctx, PaxosTimer::Election));
    cluster.deliver(|from, to, _| from != n0 && to != n0);
    assert_eq!(
        cluster.node(2).role(),
        Role::Candidate,
        "decided slot 1 without n1's record"
    );

    // n0 comes back and promises too: two intact promisers cover slot 1.
    cluster.step(n0, |node, ctx| node.on_restart(ctx));
    cluster.step(n2, |node, ctx| node.on_timer(ctx, PaxosTimer::Tick));
    cluster.deliver(|_, _, _| true);
    assert_eq!(cluster.node(2).role(), Role::Leader);
    assert_eq!(
        cluster.node(2).chosen().get(&Slot(1)),
        Some(&Some(Arc::new(put())))
    );
    assert!(
        !cluster.node(1).is_recovering(),
        "slot 1 rewritten, still damaged"
    );
    let record = &cluster.node(1).accepted()[&Slot(1)];
    assert_eq!(record.value, Some(Arc::new(put())), "{record:?}");

    // The rewrite is durable: the damage is gone after another restart.
    cluster.crash(n1);
    cluster.step(n1, |node, ctx| node.on_restart(ctx));
    assert!(!cluster.node(1).is_recovering());
    assert_eq!(
        cluster.node(1).accepted()[&Slot(1)].value,
        Some(Arc::new(put()))
    );
}

#[test]
fn unreadable_promise_copies_halt_the_node() {
    let mut cluster = cluster_with_one_chosen_slot();
    let n1 = NodeId(1);
    cluster.crash(n1);
    for key in dst_multipaxos::durable::META_KEYS {
        cluster.damage(n1, key);
    }
    cluster.step(n1, |node, ctx| node.on_restart(ctx));
    assert!(
        matches!(cluster.node(1).status(), dst_multipaxos::Status::Halted(_)),
        "{:?}",
        cluster.node(1).status()
    );
    // One good copy is enough.
    let mut cluster = cluster_with_one_chosen_slot();
    cluster.crash(n1);
    cluster.damage(n1, dst_multipaxos::durable::META_KEYS[0]);
    cluster.step(n1, |node, ctx| node.on_restart(ctx));
    assert_eq!(cluster.node(1).status(), &dst_multipaxos::Status::Running);
    assert_eq!(cluster.node(1).promised().node, NodeId(0));
}

/// A ballot serves one candidacy. n2 stands with ballot (r, n2), and its own Prepare (its
/// promise to itself) is lost when it crashes. Reusing (r, n2) after the restart would let
/// it propose a second value in a slot where an acceptor may hold the first candidacy's
/// value under the very same ballot, and answers to the first candidacy still in flight
/// would count for the second.
#[test]
fn a_restarted_node_never_stands_again_with_a_ballot_it_used() {
    let mut cluster = Cluster::new(3, PaxosConfig::default(), 7);
    cluster.step(NodeId(2), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    let first = cluster.node(2).ballot();
    assert_eq!(cluster.node(2).role(), Role::Candidate);
    cluster.crash(NodeId(2));
    cluster.step(NodeId(2), |node, ctx| node.on_restart(ctx));
    cluster.step(NodeId(2), |node, ctx| {
        node.on_timer(ctx, PaxosTimer::Election)
    });
    let second = cluster.node(2).ballot();
    assert!(
        second > first,
        "stood again with {second:?} after {first:?}"
    );
}
