//! The simulated client driven by hand against a fake replica: sequence numbers, retries,
//! leader hints, back-off, abandonment, and the history it records.

use dst_protocols::{
    ClientConfig, ClientTimer, KvCommand, KvOutput, KvWorkload, KvWorkloadConfig, Observation,
    Reply, Request, SimClient,
};
use dst_sim::{
    Client, ClientCtx, ClientEffect, ClientId, Node, NodeCtx, NodeId, SeededSource, TimerId, MS,
};

/// A replica that does nothing: the tests play its part by hand.
struct FakeNode;

impl Node for FakeNode {
    type Msg = ();
    type Timer = ();
    type Request = Request<KvCommand>;
    type Reply = Reply<KvOutput>;
    type Obs = Observation<KvCommand, KvOutput>;

    fn on_start(&mut self, _ctx: &mut NodeCtx<'_, Self>) {}
    fn on_message(&mut self, _ctx: &mut NodeCtx<'_, Self>, _from: NodeId, _msg: ()) {}
    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}
    fn on_request(
        &mut self,
        _ctx: &mut NodeCtx<'_, Self>,
        _client: ClientId,
        _request: Request<KvCommand>,
    ) {
    }
}

type TestClient = SimClient<FakeNode, KvWorkload>;
type Effects = Vec<ClientEffect<TestClient>>;

/// Drives one client by hand.
struct Driver {
    client: TestClient,
    source: SeededSource,
    next_timer_id: u64,
    now_ns: u64,
    /// Timers set and not cancelled, with their payloads.
    timers: Vec<(TimerId, ClientTimer)>,
    observations: Vec<Observation<KvCommand, KvOutput>>,
    last_target: Option<NodeId>,
}

const NODES: u32 = 3;

impl Driver {
    fn new(requests: u64, config: ClientConfig) -> Self {
        let workload = KvWorkload::new(
            7,
            KvWorkloadConfig {
                think_ns_max: 0,
                ..KvWorkloadConfig::contention(requests)
            },
        );
        Driver {
            client: SimClient::new(config, workload),
            source: SeededSource::new(1),
            next_timer_id: 0,
            now_ns: 0,
            timers: Vec::new(),
            observations: Vec::new(),
            last_target: None,
        }
    }

    fn step(
        &mut self,
        handler: impl FnOnce(&mut TestClient, &mut ClientCtx<'_, TestClient>),
    ) -> Vec<(NodeId, Request<KvCommand>)> {
        let mut effects: Effects = Vec::new();
        let mut ctx = ClientCtx::new(
            ClientId(7),
            NODES,
            self.now_ns,
            &mut effects,
            &mut self.source,
            &mut self.next_timer_id,
        );
        handler(&mut self.client, &mut ctx);
        let mut sent = Vec::new();
        for effect in effects {
            match effect {
                ClientEffect::Send { to, request } => {
                    self.last_target = Some(to);
                    sent.push((to, request))
                }
                ClientEffect::SetTimer { id, timer, .. } => self.timers.push((id, timer)),
                ClientEffect::CancelTimer { id } => self.timers.retain(|(known, _)| *known != id),
                ClientEffect::Observe(observation) => self.observations.push(observation),
            }
        }
        sent
    }

    fn start(&mut self) -> Vec<(NodeId, Request<KvCommand>)> {
        self.step(|client, ctx| client.on_start(ctx))
    }

    fn reply(&mut self, from: NodeId, reply: Reply<KvOutput>) -> Vec<(NodeId, Request<KvCommand>)> {
        self.step(|client, ctx| client.on_reply(ctx, from, reply))
    }

    /// Fires the only live retry timer.
    fn fire_retry(&mut self) -> Vec<(NodeId, Request<KvCommand>)> {
        let retries: Vec<ClientTimer> = self
            .timers
            .iter()
            .filter(|(_, timer)| {
                matches!(
                    timer,
                    ClientTimer::Retry { .. } | ClientTimer::Backoff { .. }
                )
            })
            .map(|(_, timer)| timer.clone())
            .collect();
        assert_eq!(
            retries.len(),
            1,
            "expected one live retry timer: {retries:?}"
        );
        self.timers.clear();
        self.now_ns += 100 * MS;
        let timer = retries[0].clone();
        self.step(|client, ctx| client.on_timer(ctx, timer))
    }

    /// Where the last request went.
    fn client_target(&self) -> NodeId {
        self.last_target.expect("something was sent")
    }

    fn invokes(&self) -> Vec<u64> {
        self.observations
            .iter()
            .filter_map(|observation| match observation {
                Observation::Invoke { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .collect()
    }
}

fn done(sequence: u64) -> Reply<KvOutput> {
    Reply::Done {
        sequence,
        output: KvOutput::Written,
    }
}

#[test]
fn a_request_is_invoked_once_sent_and_completed_on_the_reply() {
    let mut driver = Driver::new(2, ClientConfig::default());
    let sent = driver.start();
    assert_eq!(sent.len(), 1);
    let (target, request) = sent[0].clone();
    assert_eq!((request.client, request.sequence), (ClientId(7), 1));
    assert_eq!(driver.invokes(), [1]);
    assert_eq!(driver.client.pending(), 1);

    let next = driver.reply(target, done(1));
    assert!(matches!(
        driver.observations.last(),
        Some(Observation::Invoke { sequence: 2, .. })
    ));
    assert!(driver.observations.contains(&Observation::Complete {
        client: ClientId(7),
        sequence: 1,
        output: KvOutput::Written
    }));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, target, "the replier is the believed leader");
    assert_eq!(next[0].1.sequence, 2);

    driver.reply(target, done(2));
    assert!(driver.client.is_done());
    assert_eq!(driver.client.pending(), 0);
    assert_eq!(driver.client.stats().completed, 2);
}

#[test]
fn a_timeout_retries_the_same_sequence_at_the_next_replica() {
    let mut driver = Driver::new(1, ClientConfig::default());
    let (first, request) = driver.start()[0].clone();
    let retry = driver.fire_retry();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].0, NodeId((first.0 + 1) % NODES));
    assert_eq!(retry[0].1, request, "a retry carries the same request");
    assert_eq!(driver.invokes(), [1], "a retry is not a new invocation");
}

#[test]
fn a_redirect_is_followed_once_then_backed_off() {
    let mut driver = Driver::new(1, ClientConfig::default());
    let (first, _) = driver.start()[0].clone();
    let leader = NodeId((first.0 + 2) % NODES);
    let redirect = Reply::Redirect {
        sequence: 1,
        leader: Some(leader),
    };
    let followed = driver.reply(first, redirect);
    assert_eq!(followed.len(), 1);
    assert_eq!(followed[0].0, leader);
    assert_eq!(followed[0].1.sequence, 1);

    // The hinted node redirects back: do not ping-pong, wait for the back-off.
    let again = driver.reply(
        leader,
        Reply::Redirect {
            sequence: 1,
            leader: Some(first),
        },
    );
    assert!(again.is_empty(), "second redirect in a row must back off");
    let after_backoff = driver.fire_retry();
    assert_eq!(after_backoff[0].0, first);
}

#[test]
fn a_redirect_without_a_leader_backs_off_then_tries_the_next_replica() {
    let mut driver = Driver::new(1, ClientConfig::default());
    let (first, _) = driver.start()[0].clone();
    let none = driver.reply(
        first,
        Reply::Redirect {
            sequence: 1,
            leader: None,
        },
    );
    assert!(none.is_empty());
    let retry = driver.fire_retry();
    assert_eq!(retry[0].0, NodeId((first.0 + 1) % NODES));
}

#[test]
fn the_client_abandons_after_its_timeouts_and_moves_on() {
    let config = ClientConfig {
        timeouts_max: 3,
        ..ClientConfig::default()
    };
    let mut driver = Driver::new(2, config);
    driver.start();
    assert_eq!(driver.fire_retry()[0].1.sequence, 1);
    // Redirects in between do not use up the client's patience.
    for _ in 0..5 {
        let target = driver.client_target();
        driver.reply(
            target,
            Reply::Redirect {
                sequence: 1,
                leader: None,
            },
        );
        assert_eq!(driver.fire_retry()[0].1.sequence, 1);
    }
    assert_eq!(driver.fire_retry()[0].1.sequence, 1);
    let next = driver.fire_retry();
    assert!(driver.observations.contains(&Observation::Abandon {
        client: ClientId(7),
        sequence: 1
    }));
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].1.sequence, 2,
        "the next request gets a new sequence"
    );
    assert_eq!(driver.invokes(), [1, 2]);
    assert_eq!(driver.client.stats().abandoned, 1);
}

#[test]
fn replies_for_other_sequences_are_ignored() {
    let mut driver = Driver::new(3, ClientConfig::default());
    let (target, _) = driver.start()[0].clone();
    let observed = driver.observations.len();
    assert!(driver.reply(target, done(5)).is_empty());
    assert!(driver.reply(target, done(0)).is_empty());
    assert_eq!(driver.observations.len(), observed);
    assert_eq!(driver.client.stats().stale_replies, 2);
    assert_eq!(driver.client.pending(), 1);
}

#[test]
fn an_empty_workload_is_done_at_once() {
    let mut driver = Driver::new(0, ClientConfig::default());
    assert!(driver.start().is_empty());
    assert!(driver.client.is_done());
    assert!(driver.observations.is_empty());
}

#[test]
fn a_leader_hint_outside_the_cluster_is_not_followed() {
    let mut driver = Driver::new(1, ClientConfig::default());
    let (first, _) = driver.start()[0].clone();
    let bogus = driver.reply(
        first,
        Reply::Redirect {
            sequence: 1,
            leader: Some(NodeId(10)),
        },
    );
    assert!(
        bogus.is_empty(),
        "followed a hint off the cluster: {bogus:?}"
    );
    assert_eq!(driver.client.stats().bad_hints, 1);
    let retry = driver.fire_retry();
    assert!(retry[0].0 .0 < NODES, "retried at {:?}", retry[0].0);
}
