//! Every fault kind has a test that asserts its effect.

use dst_sim::decision::SeededSource;
use dst_sim::engine::NoClient;
use dst_sim::net::PPM;
use dst_sim::testing::{Ball, PingPong};
use dst_sim::{
    parse_plan, ClientId, FaultProfile, Latency, Node, NodeCtx, NodeId, RunSummary, Sim, SimConfig,
    MS, SEC,
};

/// What a probe node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Received {
        at: NodeId,
        from: NodeId,
        seq: u64,
    },
    Booted {
        node: NodeId,
        restart: bool,
        vote: Option<Vec<u8>>,
    },
    Tick {
        node: NodeId,
        local_ns: u64,
    },
}

/// Node 0 sends numbered messages to every other node every 10 ms; everyone reports receipts.
/// On start it writes "vote" (synced) and "draft" (never synced), then sends "after sync".
struct Probe {
    sent: u64,
    stop_after: u64,
}

#[derive(Clone, Debug, Hash, serde::Serialize, serde::Deserialize)]
struct Numbered {
    seq: u64,
}

impl Node for Probe {
    type Msg = Numbered;
    type Timer = ();
    type Request = ();
    type Reply = ();
    type Obs = Seen;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.boot(ctx, false);
    }
    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.boot(ctx, true);
    }
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Numbered) {
        let at = ctx.id();
        ctx.observe(Seen::Received {
            at,
            from,
            seq: msg.seq,
        });
    }
    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, _timer: ()) {
        let (node, local_ns) = (ctx.id(), ctx.now_ns());
        ctx.observe(Seen::Tick { node, local_ns });
        if ctx.id() == NodeId(0) && self.sent < self.stop_after {
            self.sent += 1;
            ctx.broadcast(Numbered { seq: self.sent });
        }
        ctx.set_timer(10 * MS, ());
    }
    fn on_request(&mut self, ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {
        ctx.ignore("probe serves no clients");
    }
}

impl Probe {
    fn boot(&mut self, ctx: &mut NodeCtx<'_, Self>, restart: bool) {
        let vote = ctx.read("vote").expect("no storage faults in these tests");
        let node = ctx.id();
        ctx.observe(Seen::Booted {
            node,
            restart,
            vote,
        });
        if !restart {
            ctx.write("vote", b"synced").unwrap();
            ctx.sync();
            ctx.write("vote", b"unsynced").unwrap();
        }
        ctx.set_timer(10 * MS, ());
    }
}

fn quiet_profile() -> FaultProfile {
    let mut profile = FaultProfile::named("none", &mut SeededSource::new(0)).unwrap();
    profile.link.latency = Latency::Constant { latency_ns: MS };
    profile
}

fn run_probe(profile: FaultProfile, plan: &str, seed: u64) -> (RunSummary, Vec<Seen>) {
    let mut config = SimConfig::new(3, 0, profile);
    config.plan = parse_plan(plan).expect("test plan parses");
    config.end_ns = 2 * SEC;
    config.quiet_at_ns = 10 * SEC;
    let factory = Box::new(|_| Probe {
        sent: 0,
        stop_after: 100,
    });
    let mut sim: Sim<Probe, NoClient<Probe>> =
        Sim::new(config, factory, vec![], SeededSource::new(seed), false);
    let summary = sim.run();
    let seen = sim
        .take_observations()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    (summary, seen)
}

/// The local clock readings of `node` at each of its ticks.
fn local_ticks(seen: &[Seen], node: u32) -> Vec<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Tick { node: n, local_ns } if n.0 == node => Some(*local_ns),
            _ => None,
        })
        .collect()
}

fn received(seen: &[Seen], at: u32, from: u32) -> Vec<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Received {
                at: a,
                from: f,
                seq,
            } if a.0 == at && f.0 == from => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_partitioned_link_delivers_nothing() {
    let (summary, seen) = run_probe(quiet_profile(), "at 0ms partition 0 | 1,2", 1);
    assert!(
        received(&seen, 1, 0).is_empty(),
        "a message crossed the partition"
    );
    assert!(summary.stats.dropped_partition >= 100);
    let (_, healed) = run_probe(
        quiet_profile(),
        "at 0ms partition 0 | 1,2; at 500ms heal",
        1,
    );
    let got = received(&healed, 1, 0);
    assert!(
        !got.is_empty() && got.iter().all(|&seq| seq >= 49),
        "healed link: {got:?}"
    );
}

#[test]
fn a_one_way_partition_cuts_one_direction() {
    let (_, seen) = run_probe(quiet_profile(), "at 0ms oneway 1 -> 0", 1);
    assert_eq!(received(&seen, 1, 0).len(), 100, "0 -> 1 still works");
    let (_, cut) = run_probe(quiet_profile(), "at 0ms oneway 0 -> 1", 1);
    assert!(received(&cut, 1, 0).is_empty());
    assert_eq!(received(&cut, 2, 0).len(), 100, "0 -> 2 is untouched");
}

#[test]
fn a_lossy_link_loses_and_a_duplicating_link_duplicates() {
    let mut lossy = quiet_profile();
    lossy.link.loss_ppm = PPM;
    let (summary, seen) = run_probe(lossy, "", 2);
    assert!(received(&seen, 1, 0).is_empty());
    assert_eq!(summary.stats.dropped_loss, 200);

    let mut duplicating = quiet_profile();
    duplicating.link.duplicate_ppm = PPM;
    let (summary, seen) = run_probe(duplicating, "", 2);
    let got = received(&seen, 1, 0);
    assert_eq!(got.len(), 200, "every message arrives twice");
    assert!(got.windows(2).step_by(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(summary.stats.duplicated, 200);
}

#[test]
fn reordering_lets_later_messages_overtake() {
    let mut profile = quiet_profile();
    profile.link.reorder_ppm = PPM / 2;
    profile.link.reorder_window_ns = 100 * MS;
    let (summary, seen) = run_probe(profile, "", 3);
    let got = received(&seen, 1, 0);
    assert_eq!(got.len(), 100, "reordering loses nothing");
    assert!(
        got.windows(2).any(|pair| pair[0] > pair[1]),
        "no overtaking: {got:?}"
    );
    assert!(summary.stats.reordered > 0);
}

#[test]
fn corruption_changes_bytes_and_is_counted() {
    let mut profile = quiet_profile();
    profile.link.corrupt_ppm = PPM;
    let (summary, seen) = run_probe(profile, "", 4);
    let stats = &summary.stats;
    assert_eq!(stats.corrupted, 200, "every message was corrupted");
    assert_eq!(
        stats.corrupt_rejected + stats.corrupt_delivered,
        stats.corrupted
    );
    assert!(
        stats.corrupt_delivered > 0,
        "some corrupted bytes still decode"
    );
    let got = received(&seen, 1, 0);
    let changed = got
        .iter()
        .enumerate()
        .filter(|(i, &seq)| seq != *i as u64 + 1)
        .count();
    assert!(changed > 0, "decoded messages carry changed contents");
}

#[test]
fn a_clogged_link_holds_messages_until_release() {
    let (_, seen) = run_probe(quiet_profile(), "at 0ms clog 0->1 for 300ms", 5);
    let got = received(&seen, 1, 0);
    assert_eq!(got.len(), 100, "clogging delays, it does not drop");
    let early = seen
        .iter()
        .position(|s| matches!(s, Seen::Received { at, .. } if at.0 == 2));
    let first_at_1 = seen
        .iter()
        .position(|s| matches!(s, Seen::Received { at, .. } if at.0 == 1));
    assert!(
        first_at_1 > early,
        "node 1 received before node 2 despite the clog"
    );
}

#[test]
fn an_unsynced_write_is_gone_after_a_crash() {
    let (summary, seen) = run_probe(quiet_profile(), "at 50ms crash 1; at 60ms restart 1", 6);
    let reboot = seen.iter().find_map(|s| match s {
        Seen::Booted {
            node,
            restart: true,
            vote,
        } if node.0 == 1 => Some(vote.clone()),
        _ => None,
    });
    assert_eq!(
        reboot,
        Some(Some(b"synced".to_vec())),
        "the synced vote survives, the later write does not"
    );
    assert_eq!(summary.stats.crashes, 1);
    assert_eq!(summary.stats.storage.lost_on_crash, 1);
}

#[test]
fn a_crashed_node_receives_nothing_and_a_paused_node_catches_up() {
    let (summary, seen) = run_probe(quiet_profile(), "at 100ms crash 1; at 200ms restart 1", 7);
    let got = received(&seen, 1, 0);
    assert!(
        got.len() < 95 && got.len() > 80,
        "lost the crash window only: {}",
        got.len()
    );
    assert!(summary.stats.dropped_down > 0);

    let (summary, seen) = run_probe(quiet_profile(), "at 100ms pause 1; at 500ms resume 1", 7);
    assert_eq!(
        received(&seen, 1, 0).len(),
        100,
        "a paused node loses nothing"
    );
    assert_eq!(summary.stats.pauses, 1);
    let ticks = local_ticks(&seen, 1);
    assert!(
        ticks.windows(2).any(|w| w[1] - w[0] >= 390 * MS),
        "a pause stops the timers"
    );
}

#[test]
fn drift_moves_a_node_clock_at_the_configured_rate() {
    let (_, seen) = run_probe(quiet_profile(), "at 0ms drift 2 100000", 8);
    let ticks = local_ticks(&seen, 2);
    // 10% fast: a 10 ms local timer fires every ~9.09 ms of true time, so more ticks fit.
    let baseline = seen
        .iter()
        .filter(|s| matches!(s, Seen::Tick { node, .. } if node.0 == 1))
        .count();
    assert!(
        ticks.len() as f64 > baseline as f64 * 1.08,
        "{} vs {baseline}",
        ticks.len()
    );
    let off = ticks
        .windows(2)
        .skip(1)
        .find(|w| (w[1] - w[0]).abs_diff(10 * MS) > 1_000);
    assert!(off.is_none(), "local intervals stay 10 ms: {off:?}");
}

#[test]
fn a_clock_jump_moves_the_node_reading() {
    let (_, seen) = run_probe(quiet_profile(), "at 95ms jump 1 -50ms", 9);
    let ticks = local_ticks(&seen, 1);
    assert!(
        ticks.windows(2).any(|w| w[1] < w[0]),
        "the clock went backwards"
    );
}

#[test]
fn sends_after_a_sync_wait_for_it_and_die_with_a_crash() {
    #[derive(Debug)]
    struct SyncThenSend;
    impl Node for SyncThenSend {
        type Msg = Ball;
        type Timer = ();
        type Request = ();
        type Reply = ();
        type Obs = u64;
        fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
            if ctx.id() == NodeId(0) {
                ctx.send(NodeId(1), Ball { hops: 1 });
                ctx.write("k", vec![1]).unwrap();
                ctx.sync();
                ctx.send(NodeId(1), Ball { hops: 2 });
            }
        }
        fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, _from: NodeId, msg: Ball) {
            ctx.observe(msg.hops);
        }
        fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}
        fn on_request(&mut self, _ctx: &mut NodeCtx<'_, Self>, _c: ClientId, _r: ()) {}
    }
    let run = |plan: &str| {
        let mut config = SimConfig::new(2, 0, quiet_profile());
        config.fsync_min_ns = 20 * MS;
        config.fsync_max_ns = 20 * MS;
        config.plan = parse_plan(plan).unwrap();
        config.end_ns = SEC;
        let mut sim: Sim<SyncThenSend, NoClient<SyncThenSend>> = Sim::new(
            config,
            Box::new(|_| SyncThenSend),
            vec![],
            SeededSource::new(1),
            false,
        );
        sim.run();
        sim.take_observations()
    };
    let arrivals = run("");
    assert_eq!(
        arrivals.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(arrivals[0].0, MS, "the first send leaves at once");
    assert_eq!(
        arrivals[1].0,
        21 * MS,
        "the second waits for the 20 ms sync"
    );
    let crashed = run("at 10ms crash 0");
    assert_eq!(
        crashed.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        vec![1],
        "never sent"
    );
}

#[test]
fn pingpong_bounces_with_encoding_on_every_hop() {
    let mut config = SimConfig::new(5, 0, quiet_profile());
    config.events_max = 10_000;
    config.encode_every_hop = true;
    let mut sim: Sim<PingPong, NoClient<PingPong>> = Sim::new(
        config,
        Box::new(|_| PingPong::new(10)),
        vec![],
        SeededSource::new(3),
        false,
    );
    let summary = sim.run();
    assert_eq!(summary.stats.messages_delivered, 10_000);
    let total: u64 = (0..5).map(|i| sim.node(NodeId(i)).unwrap().received).sum();
    assert_eq!(total, 10_000);
}

/// Booted-on-restart reports with an empty disk: wipes.
fn wiped_reboots(seen: &[Seen]) -> Vec<NodeId> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Booted {
                node,
                restart: true,
                vote: None,
            } => Some(*node),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wiped_node_restarts_with_an_empty_disk_and_the_wipes_profile_wipes_at_most_wipes_max() {
    let (_, seen) = run_probe(quiet_profile(), "at 50ms wipe 2", 8);
    assert_eq!(
        wiped_reboots(&seen),
        vec![NodeId(2)],
        "a scripted wipe empties the disk"
    );

    let mut profile = FaultProfile::named("wipes", &mut SeededSource::new(0)).unwrap();
    profile.fault_interval_ns = 20 * MS;
    profile.weights = dst_sim::faults::FaultWeights {
        wipe: 1,
        ..Default::default()
    };
    let (_, seen) = run_probe(profile, "", 9);
    let wiped = wiped_reboots(&seen);
    assert_eq!(
        wiped.len(),
        1,
        "3 nodes: wipes_max is 1 (a majority keeps its data)"
    );

    let (_, seen) = run_probe(
        FaultProfile::named("heavy", &mut SeededSource::new(0)).unwrap(),
        "",
        9,
    );
    assert!(
        wiped_reboots(&seen).is_empty(),
        "only the wipes profile wipes disks"
    );
}
