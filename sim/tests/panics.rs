//! A handler's panic ends its run as a finding: the summary says which event panicked and
//! why, the observations up to it are kept, and the next run on the thread is unaffected.

use dst_sim::decision::SeededSource;
use dst_sim::engine::NoClient;
use dst_sim::testing::Ball;
use dst_sim::{ClientId, EndReason, FaultProfile, Node, NodeCtx, NodeId, Sim, SimConfig};

/// Ping-pong around a ring, one ball per node, whose node 2 asserts, wrongly, that no ball
/// travels more than `hops_max` hops.
struct Asserting {
    hops_max: u64,
}

impl Node for Asserting {
    type Msg = Ball;
    type Timer = ();
    type Request = ();
    type Reply = ();
    type Obs = u64;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        let to = NodeId((ctx.id().0 + 1) % ctx.cluster_size());
        ctx.send(to, Ball { hops: 0 });
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, _from: NodeId, msg: Ball) {
        if ctx.id() == NodeId(2) {
            assert!(msg.hops < self.hops_max, "ball travelled {} hops", msg.hops);
        }
        ctx.observe(msg.hops);
        let to = NodeId((ctx.id().0 + 1) % ctx.cluster_size());
        ctx.send(to, Ball { hops: msg.hops + 1 });
    }

    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}

    fn on_request(&mut self, _ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {}
}

fn sim(hops_max: u64, describe: bool) -> Sim<Asserting, NoClient<Asserting>> {
    let profile = FaultProfile::named("none", &mut SeededSource::new(1)).unwrap();
    let mut config = SimConfig::new(3, 0, profile);
    config.events_max = 10_000;
    config.catch_panics = true;
    let mut sim = Sim::new(
        config,
        Box::new(move |_| Asserting { hops_max }),
        vec![],
        SeededSource::new(1),
        false,
    );
    sim.record_events(describe);
    sim
}

#[test]
fn a_panicking_handler_ends_the_run_with_its_message() {
    dst_sim::panic::install_hook();
    let mut run = sim(50, false);
    let summary = run.run();
    assert_eq!(summary.end_reason, EndReason::Panicked);
    let panic = summary.panic.expect("the panic is reported");
    assert!(panic.contains("ball travelled 5"), "{panic}");
    assert!(panic.contains("(at sim/tests/panics.rs:"), "{panic}");
    assert!(
        panic.starts_with(&format!("event {} at ", summary.events - 1)),
        "{panic}"
    );
    // Everything observed before the panicking event is kept for the oracles.
    let observations = run.take_observations();
    let hops_max = observations.iter().map(|(_, hops)| *hops).max();
    assert!(hops_max >= Some(49), "{hops_max:?}");
}

#[test]
fn a_described_run_names_the_panicking_event() {
    let summary = sim(7, true).run();
    let panic = summary.panic.expect("the panic is reported");
    assert!(panic.contains("handling message n2"), "{panic}");
}

#[test]
fn a_run_without_a_panic_reports_none_and_the_next_run_is_clean() {
    let broken = sim(5, false).run();
    assert_eq!(broken.end_reason, EndReason::Panicked);
    let clean = sim(u64::MAX, false).run();
    assert_eq!(clean.end_reason, EndReason::EventLimit);
    assert_eq!(clean.panic, None);
}

#[test]
#[should_panic(expected = "ball travelled")]
fn without_catch_panics_the_panic_unwinds_out_of_run() {
    let profile = FaultProfile::named("none", &mut SeededSource::new(1)).unwrap();
    let config = SimConfig::new(3, 0, profile);
    let make = Box::new(|_| Asserting { hops_max: 5 });
    Sim::<_, NoClient<Asserting>>::new(config, make, vec![], SeededSource::new(1), false).run();
}
