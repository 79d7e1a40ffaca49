//! A seed means the same run; a recorded trace replays it without the seed; the self-check
//! names the first divergent event of a nondeterministic node.

use std::sync::atomic::{AtomicU64, Ordering};

use dst_sim::decision::SeededSource;
use dst_sim::engine::NoClient;
use dst_sim::testing::{Ball, PingPong};
use dst_sim::trace::Decider;
use dst_sim::{
    check_determinism, ClientId, FaultProfile, Node, NodeCtx, NodeId, ReplaySource, Sim, SimConfig,
    Trace, TraceHeader,
};

fn pingpong(
    seed: u64,
    profile: &str,
    source: impl Into<Decider>,
    record: bool,
) -> Sim<PingPong, NoClient<PingPong>> {
    let profile = FaultProfile::named(profile, &mut SeededSource::new(seed)).unwrap();
    let mut config = SimConfig::new(5, 0, profile);
    config.events_max = 20_000;
    Sim::new(
        config,
        Box::new(|_| PingPong::new(10)),
        vec![],
        source,
        record,
    )
}

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    for profile in ["none", "heavy", "corruption", "swarm"] {
        let a = pingpong(11, profile, SeededSource::new(11), false).run();
        let b = pingpong(11, profile, SeededSource::new(11), false).run();
        assert_eq!(a.trace_hash, b.trace_hash, "profile {profile}");
        assert_eq!(a.stats, b.stats, "profile {profile}");
        let c = pingpong(12, profile, SeededSource::new(12), false).run();
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "seeds 11 and 12 ran alike under {profile}"
        );
    }
}

#[test]
fn a_recorded_trace_replays_to_the_same_hash_without_the_seed() {
    let mut recorded = pingpong(21, "heavy", SeededSource::new(21), true);
    let original = recorded.run();
    let trace = Trace {
        header: TraceHeader {
            protocol: "pingpong".into(),
            profile: "heavy".into(),
            ..TraceHeader::default()
        },
        decisions: recorded.take_decisions(),
    };
    assert_eq!(trace.decisions.len() as u64, original.stats.decisions);
    let bytes = trace.to_bytes();
    let reread = Trace::from_bytes(&bytes).unwrap();
    // The profile's knobs are not drawn under "heavy", so the seed given here is irrelevant;
    // everything else comes from the trace.
    let replay = ReplaySource::new(reread.decisions);
    let replayed = pingpong(999, "heavy", replay, false).run();
    assert_eq!(replayed.trace_hash, original.trace_hash);
    assert!(replayed.divergence.is_none(), "{:?}", replayed.divergence);
}

#[test]
fn a_replay_past_the_end_of_its_trace_injects_no_more_random_faults() {
    // The start of the quiet phase is logged too; it is not a fault.
    let faults_of = |summary: &dst_sim::RunSummary| -> Vec<(u64, String)> {
        let log = summary.fault_log.iter();
        let faults = log.filter(|(_, what)| *what != dst_sim::FaultAction::Quiet);
        faults.map(|(at, what)| (*at, what.to_string())).collect()
    };
    let mut recorded = pingpong(23, "heavy", SeededSource::new(23), true);
    let original = faults_of(&recorded.run());
    let decisions = recorded.take_decisions();
    assert!(
        original.len() > 4,
        "heavy pingpong faults often: {original:?}"
    );
    // With zeros past the end, the fault process would partition every half interval.
    let empty = pingpong(23, "heavy", ReplaySource::new(Vec::new()), false).run();
    assert_eq!(faults_of(&empty), vec![]);
    let cut = decisions[..decisions.len() / 10].to_vec();
    let faults = faults_of(&pingpong(23, "heavy", ReplaySource::new(cut), false).run());
    // The cut falls inside the fault process's active phase (before the quiet phase).
    assert!(
        !faults.is_empty() && faults.len() < original.len(),
        "{} faults after the cut, {} recorded",
        faults.len(),
        original.len()
    );
    // The fault drawn when the trace ran out may differ; every one before it is the recorded one.
    let settled = faults.len().saturating_sub(1);
    assert_eq!(faults[..settled], original[..settled]);
}

#[test]
fn a_trace_for_another_configuration_is_reported_as_divergent() {
    let mut recorded = pingpong(21, "none", SeededSource::new(21), true);
    recorded.run();
    let replay = ReplaySource::new(recorded.take_decisions());
    let replayed = pingpong(21, "heavy", replay, false).run();
    assert!(
        replayed.divergence.is_some(),
        "a heavy run consumed a fault-free trace silently"
    );
}

#[test]
fn the_self_check_passes_a_deterministic_run() {
    let hash = check_determinism(|| pingpong(5, "heavy", SeededSource::new(5), false));
    assert!(hash.is_ok(), "{hash:?}");
}

static AMBIENT: AtomicU64 = AtomicU64::new(0);

/// A deliberately nondeterministic node: it consults process-global state, as code that
/// reads the wall clock or iterates a hash map would.
struct Leaky;

impl Node for Leaky {
    type Msg = Ball;
    type Timer = ();
    type Request = ();
    type Reply = ();
    type Obs = ();
    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        ctx.send(NodeId((ctx.id().0 + 1) % 3), Ball { hops: 0 });
    }
    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, _from: NodeId, msg: Ball) {
        let ambient = AMBIENT.fetch_add(1, Ordering::Relaxed);
        let hops = if msg.hops == 40 {
            msg.hops + ambient
        } else {
            msg.hops + 1
        };
        ctx.send(NodeId((ctx.id().0 + 1) % 3), Ball { hops });
    }
    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}
    fn on_request(&mut self, _ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {}
}

#[test]
fn the_self_check_names_the_first_divergent_event() {
    let build = || {
        let profile = FaultProfile::named("none", &mut SeededSource::new(1)).unwrap();
        let mut config = SimConfig::new(3, 0, profile);
        config.events_max = 500;
        let sim: Sim<Leaky, NoClient<Leaky>> = Sim::new(
            config,
            Box::new(|_| Leaky),
            vec![],
            SeededSource::new(1),
            false,
        );
        sim
    };
    let error = check_determinism(build).expect_err("the leaky node must be caught");
    println!("{error}");
    assert!(error.contains("first divergent event #"), "{error}");
    assert!(error.contains("message"), "names the event kind: {error}");
    assert!(
        error.contains("hops: 40"),
        "shows the event's payload: {error}"
    );
    assert!(
        error.contains("=> send n0 Ball { hops: "),
        "shows what the handler did: {error}"
    );
}
