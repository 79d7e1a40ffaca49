//! The generic Byzantine wrappers and the Twins host, on a tiny gossip protocol whose
//! replicas announce every client request they receive, signed, and record what they hear.

use dst_sim::{
    Adversarial, Behaviour, Byzantine, Client, ClientCtx, ClientId, FaultProfile, Node, NodeCtx,
    NodeId, SeededSource, Signed, Sim, SimConfig, TwinsHost, TwinsScenario, MS,
};

/// "I received request `value`", signed by the announcer.
type Announce = Signed<(NodeId, u64)>;

/// Observations: (receiver, announcer, value, signature valid).
type Heard = (NodeId, NodeId, u64, bool);

struct Gossip;

impl Node for Gossip {
    type Msg = Announce;
    type Timer = ();
    type Request = u64;
    type Reply = u64;
    type Obs = Heard;

    fn on_start(&mut self, _ctx: &mut NodeCtx<'_, Self>) {}
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Announce) {
        let valid = ctx.verify_signed(&msg) && msg.signer() == dst_sim::Principal::Node(from);
        ctx.observe((ctx.id(), msg.value.0, msg.value.1, valid));
    }
    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}
    fn on_request(&mut self, ctx: &mut NodeCtx<'_, Self>, client: ClientId, value: u64) {
        let announce = ctx.sign_value((ctx.id(), value));
        ctx.broadcast(announce);
        ctx.reply(client, value);
    }
}

impl Adversarial for Gossip {
    /// Claims another value, signed as itself; or relabels a signature onto another value.
    fn forge(ctx: &mut NodeCtx<'_, Self>, msg: &Announce, variant: u64) -> Option<Announce> {
        let (node, value) = msg.value;
        Some(match variant % 2 {
            0 => ctx.sign_value((node, value + 1000)),
            _ => Signed {
                value: (node, value + 2000),
                signature: msg.signature,
            },
        })
    }
    fn lie(_ctx: &mut NodeCtx<'_, Self>, reply: &u64, _variant: u64) -> Option<u64> {
        Some(reply + 100)
    }
}

/// Sends requests 1, 2, 3, 4 to `target`, one millisecond apart; counts wrong replies.
struct Feeder<N> {
    target: NodeId,
    sent: u64,
    wrong: u64,
    _node: std::marker::PhantomData<N>,
}

impl<N> Feeder<N> {
    fn new(target: NodeId) -> Self {
        Feeder {
            target,
            sent: 0,
            wrong: 0,
            _node: std::marker::PhantomData,
        }
    }
}

impl<N: Node<Request = u64, Reply = u64>> Client for Feeder<N> {
    type Node = N;
    type Timer = ();
    fn on_start(&mut self, ctx: &mut ClientCtx<'_, Self>) {
        ctx.set_timer(MS, ());
    }
    fn on_reply(&mut self, _ctx: &mut ClientCtx<'_, Self>, _from: NodeId, reply: u64) {
        if reply > 4 {
            self.wrong += 1;
        }
    }
    fn on_timer(&mut self, ctx: &mut ClientCtx<'_, Self>, _timer: ()) {
        self.sent += 1;
        ctx.send(self.target, self.sent);
        if self.sent < 4 {
            ctx.set_timer(MS, ());
        }
    }
    fn pending(&self) -> usize {
        0
    }
    fn is_done(&self) -> bool {
        false
    }
}

fn config(clients: u32) -> SimConfig {
    let profile = FaultProfile::named("none", &mut SeededSource::new(0)).expect("profile");
    let mut config = SimConfig::new(4, clients, profile);
    // One fixed delay: arrival order is send order, so orders can be asserted.
    config.profile.link.latency = dst_sim::Latency::Constant { latency_ns: MS / 2 };
    config.end_ns = 100 * MS;
    config
}

/// Runs node 0 with `behaviour`; returns what every node heard from node 0, and wrong replies.
fn run(behaviour: Behaviour) -> (Vec<Heard>, u64) {
    let make = move |id: NodeId| {
        if id == NodeId(0) {
            Byzantine::new(behaviour.clone(), Gossip, Some(Gossip))
        } else {
            Byzantine::new(Behaviour::Honest, Gossip, None)
        }
    };
    let feeder = Feeder::new(NodeId(0));
    let mut sim = Sim::new(
        config(1),
        Box::new(make),
        vec![feeder],
        SeededSource::new(3),
        false,
    );
    sim.run();
    let heard = sim.observations().iter().map(|(_, heard)| *heard).collect();
    (heard, sim.client(ClientId(0)).wrong)
}

fn values_heard_by(heard: &[Heard], node: u32) -> Vec<u64> {
    heard
        .iter()
        .filter(|h| h.0 == NodeId(node))
        .map(|h| h.2)
        .collect()
}

#[test]
fn an_honest_wrapper_changes_nothing() {
    let (heard, wrong) = run(Behaviour::Honest);
    for node in 1..4 {
        assert_eq!(values_heard_by(&heard, node), vec![1, 2, 3, 4]);
    }
    assert!(heard.iter().all(|h| h.3), "honest signatures verify");
    assert_eq!(wrong, 0);
}

#[test]
fn a_silent_node_sends_nothing() {
    let (heard, _) = run(Behaviour::Silent);
    assert!(heard.is_empty(), "a silent node was heard: {heard:?}");
}

#[test]
fn a_withholding_node_starves_all_but_its_chosen_peers() {
    let (heard, _) = run(Behaviour::named("withhold", NodeId(0), 4).expect("known"));
    assert_eq!(values_heard_by(&heard, 1), vec![1, 2, 3, 4]);
    assert!(values_heard_by(&heard, 2).is_empty());
    assert!(values_heard_by(&heard, 3).is_empty());
}

#[test]
fn an_equivocating_node_tells_each_half_a_different_order() {
    let (heard, _) = run(Behaviour::Equivocate);
    assert_eq!(
        values_heard_by(&heard, 2),
        vec![1, 2, 3, 4],
        "first instance"
    );
    assert_eq!(
        values_heard_by(&heard, 1),
        vec![2, 1, 4, 3],
        "second instance"
    );
    assert_eq!(
        values_heard_by(&heard, 3),
        vec![2, 1, 4, 3],
        "second instance"
    );
    assert!(
        heard.iter().all(|h| h.3),
        "both instances sign validly as node 0"
    );
}

#[test]
fn forgeries_signed_by_the_forger_verify_and_relabelled_ones_do_not() {
    let (heard, _) = run(Behaviour::Forge { per_mille: 1000 });
    assert_eq!(
        heard.len(),
        12,
        "every announcement was forged and delivered"
    );
    for (_, _, value, valid) in &heard {
        match value {
            1001..=1004 => assert!(valid, "a node may sign any lie as itself"),
            2001..=2004 => assert!(!valid, "a moved signature must not verify"),
            other => panic!("unforged value {other} delivered"),
        }
    }
}

#[test]
fn a_replaying_node_repeats_old_messages() {
    let (heard, _) = run(Behaviour::Replay { per_mille: 1000 });
    assert!(heard.len() > 12, "no replays: {} messages", heard.len());
}

#[test]
fn a_lying_node_answers_clients_wrongly() {
    let (_, wrong) = run(Behaviour::Lie);
    assert_eq!(wrong, 4);
}

/// Node 0 is twinned; round 0 (the whole run) partitions {n0a, n1} from {n2, n3, n0b}.
/// Returns the values each node's first instance heard, by node.
fn twins_run(target: NodeId) -> Vec<Vec<u64>> {
    let scenario = TwinsScenario {
        nodes: 4,
        twins: vec![NodeId(0)],
        round_ns: 1_000 * MS,
        rounds: vec![vec![0, 0, 1, 1, 1]],
    };
    let make = move |id: NodeId| {
        let twin = (id == NodeId(0)).then_some(Gossip);
        TwinsHost::new(scenario.clone(), Gossip, twin)
    };
    let feeder = Feeder::<TwinsHost<Gossip>>::new(target);
    let mut sim = Sim::new(
        config(1),
        Box::new(make),
        vec![feeder],
        SeededSource::new(1),
        false,
    );
    sim.run();
    let heard: Vec<Heard> = sim.observations().iter().map(|(_, h)| *h).collect();
    (0..4).map(|node| values_heard_by(&heard, node)).collect()
}

#[test]
fn each_twin_is_heard_only_inside_its_partition() {
    let heard = twins_run(NodeId(0));
    assert_eq!(heard[1], vec![1, 2, 3, 4], "n1 hears the first instance");
    assert_eq!(heard[2], vec![1, 2, 3, 4], "n2 hears the second instance");
    assert_eq!(heard[3], vec![1, 2, 3, 4], "n3 hears the second instance");
}

#[test]
fn a_partitioned_side_is_not_heard() {
    let heard = twins_run(NodeId(2));
    assert!(
        heard[0].is_empty(),
        "n0's first instance is on the other side"
    );
    assert!(heard[1].is_empty(), "n1 is on the other side");
    assert_eq!(heard[3], vec![1, 2, 3, 4]);
}

/// Time node 1 first heard node 0's announcement, with this CPU cost model.
fn first_heard_ns(cpu: dst_sim::CpuCosts) -> u64 {
    let make = |_id: NodeId| Byzantine::new(Behaviour::Honest, Gossip, None);
    let mut config = config(1);
    config.cpu = cpu;
    let feeder = Feeder::<Byzantine<Gossip>>::new(NodeId(0));
    let mut sim = Sim::new(
        config,
        Box::new(make),
        vec![feeder],
        SeededSource::new(3),
        false,
    );
    sim.run();
    sim.observations()
        .iter()
        .find(|(_, heard)| heard.0 == NodeId(1))
        .map(|(time_ns, _)| *time_ns)
        .expect("node 1 heard something")
}

#[test]
fn signing_and_verifying_cost_virtual_time() {
    let free = first_heard_ns(dst_sim::CpuCosts::FREE);
    let costly = first_heard_ns(dst_sim::CpuCosts {
        sign_ns: 3 * MS,
        verify_ns: 2 * MS,
    });
    // The sender signs before its message leaves; the receiver verifies before it observes,
    // but observations are stamped when the handler runs, so only the signing shows.
    assert_eq!(costly - free, 3 * MS, "signing must delay the send");
}
