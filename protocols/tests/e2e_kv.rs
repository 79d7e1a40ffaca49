//! End to end: simulated clients against a trivial single-primary key-value replica in the
//! real engine, judged by every oracle. The correct replica passes; two deliberately broken
//! ones (replicas answering reads from their own empty copy; a primary that forgets its log
//! when it crashes) are caught.

use dst_checkers::linearizability::{CheckConfig, Verdict};
use dst_checkers::oracles::Property;
use dst_protocols::harness::{check_kv_run, RunFacts, RunVerdict};
use dst_protocols::strategies::{fault_plan_on, kv_script};
use dst_protocols::{
    command_digest, ClientConfig, KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig,
    Observation, Reply, Request, ScriptedWorkload, Sessions, SimClient, Workload,
};
use dst_sim::{
    parse_plan, ClientId, FaultProfile, Node, NodeCtx, NodeId, SeededSource, Sim, SimConfig,
    StateMachine, MS, SEC,
};
use proptest::prelude::*;

/// How the replica misbehaves, if at all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// Non-primary replicas answer reads from their own (empty) store.
    LocalReads,
    /// The primary stops serving after the quiet phase starts.
    Silent,
}

/// Node 0 executes every request at once (its log is in memory, so it does not survive a
/// crash); the others redirect to it.
struct Primary {
    flaw: Flaw,
    service: Sessions<KvStore>,
    slot: u64,
}

impl Primary {
    fn new(flaw: Flaw) -> Self {
        Primary {
            flaw,
            service: Sessions::new(KvStore::new()),
            slot: 0,
        }
    }

    fn execute(&mut self, ctx: &mut NodeCtx<'_, Self>, request: Request<KvCommand>) {
        self.slot += 1;
        let node = ctx.id();
        let identity = Some((request.client, request.sequence));
        ctx.observe(Observation::Commit {
            node,
            slot: self.slot,
            request: identity,
            command_digest: command_digest(&request.command),
        });
        let output = self.service.apply(&request);
        ctx.observe(Observation::Apply {
            node,
            slot: self.slot,
            request: identity,
            state_digest: self.service.digest(),
        });
        if let Some(output) = output.into_output() {
            let sequence = request.sequence;
            ctx.reply(request.client, Reply::Done { sequence, output });
        }
    }
}

impl Node for Primary {
    type Msg = ();
    type Timer = ();
    type Request = Request<KvCommand>;
    type Reply = Reply<KvOutput>;
    type Obs = Observation<KvCommand, KvOutput>;

    fn on_start(&mut self, _ctx: &mut NodeCtx<'_, Self>) {}

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, _from: NodeId, _msg: ()) {
        ctx.ignore("replicas do not talk to each other");
    }

    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Request<KvCommand>,
    ) {
        assert_eq!(
            client, request.client,
            "a request comes from its own client"
        );
        if ctx.id() == NodeId(0) {
            if self.flaw == Flaw::Silent && ctx.now_ns() >= QUIET_AT_NS {
                return ctx.ignore("deliberately silent primary");
            }
            return self.execute(ctx, request);
        }
        let sequence = request.sequence;
        if self.flaw == Flaw::LocalReads && request.command.is_read_only() {
            if let Some(output) = self.service.service().query(&request.command) {
                ctx.reply(client, Reply::Done { sequence, output });
                return;
            }
        }
        let leader = Some(NodeId(0));
        ctx.reply(client, Reply::Redirect { sequence, leader });
    }
}

type KvClient = SimClient<Primary, KvWorkload>;

const NODES: u32 = 3;
const CLIENTS: u32 = 3;
const QUIET_AT_NS: u64 = 50 * MS;

/// The oracles' verdict, requests still open per client, and retries over all clients.
fn run(seed: u64, flaw: Flaw, plan: &str, requests: u64) -> (RunVerdict, Vec<usize>, u64) {
    let clients: Vec<KvClient> = (0..CLIENTS)
        .map(|client| {
            let workload = KvWorkload::new(client, KvWorkloadConfig::contention(requests));
            SimClient::new(ClientConfig::default(), workload)
        })
        .collect();
    run_clients(seed, flaw, plan, clients)
}

fn run_clients<W>(
    seed: u64,
    flaw: Flaw,
    plan: &str,
    clients: Vec<SimClient<Primary, W>>,
) -> (RunVerdict, Vec<usize>, u64)
where
    W: Workload<Command = KvCommand, Output = KvOutput>,
{
    let mut decisions = SeededSource::new(seed);
    let profile = FaultProfile::named("none", &mut decisions).expect("known profile");
    let mut config = SimConfig::new(NODES, CLIENTS, profile);
    config.plan = parse_plan(plan).expect("valid plan");
    config.quiet_at_ns = QUIET_AT_NS;
    config.end_ns = 20 * SEC;
    let factory = Box::new(move |_id: NodeId| Primary::new(flaw));
    let mut sim = Sim::new(config, factory, clients, SeededSource::new(seed), false);
    let summary = sim.run();
    let observations = sim.take_observations();
    let facts = RunFacts {
        liveness_bound_ns: 5 * SEC,
        ..RunFacts::from_summary(NODES, &summary)
    };
    let verdict = check_kv_run(&observations, &facts, &CheckConfig::default());
    let retries = (0..CLIENTS)
        .map(|client| sim.client(ClientId(client)).stats().retries)
        .sum();
    (verdict, summary.clients_pending, retries)
}

fn kinds(verdict: &RunVerdict) -> Vec<Property> {
    verdict
        .violations
        .iter()
        .map(|violation| violation.property.clone())
        .collect()
}

#[test]
fn a_correct_replica_passes_every_oracle() {
    for seed in 0..4 {
        let (verdict, pending, _) = run(seed, Flaw::None, "", 40);
        assert!(verdict.is_clean(), "seed {seed}: {:#?}", verdict.violations);
        assert_eq!(
            pending,
            [0, 0, 0],
            "seed {seed}: clients left requests open"
        );
        let report = verdict.linearizability.expect("checked");
        assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        assert_eq!(
            report.partitions.len(),
            3,
            "seed {seed}: the workload uses 3 keys"
        );
    }
}

#[test]
fn a_crashed_secondary_costs_retries_not_requests() {
    let (verdict, pending, retries) = run(5, Flaw::None, "at 1ms crash 1; at 40ms restart 1", 20);
    assert!(verdict.is_clean(), "{:#?}", verdict.violations);
    assert_eq!(pending, [0, 0, 0]);
    assert!(retries > 0, "no client ever met the crashed replica");
}

#[test]
fn local_reads_from_a_stale_replica_are_caught() {
    let caught = (0..8).any(|seed| {
        let (verdict, _, _) = run(seed, Flaw::LocalReads, "", 40);
        kinds(&verdict).contains(&Property::Linearizability)
    });
    assert!(caught, "stale local reads went unnoticed on 8 seeds");
}

#[test]
fn a_primary_that_forgets_its_log_on_crash_is_caught() {
    // Node 0 loses its in-memory log at the crash and reuses slot numbers after the restart.
    let (verdict, _, _) = run(3, Flaw::None, "at 40ms crash 0; at 45ms restart 0", 40);
    assert!(verdict.linearizability.is_some());
    let kinds = kinds(&verdict);
    assert!(
        kinds.contains(&Property::Agreement),
        "{:#?}",
        verdict.violations
    );
}

#[test]
fn a_primary_that_stops_serving_in_the_quiet_phase_is_caught() {
    let (verdict, _, _) = run(1, Flaw::Silent, "", 40);
    assert!(
        kinds(&verdict).contains(&Property::Liveness),
        "{:#?} {:#?}",
        verdict.violations,
        verdict.liveness
    );
    assert!(
        !kinds(&verdict).contains(&Property::Agreement),
        "a silent primary breaks no safety property: {:#?}",
        verdict.violations
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any scripts, any faults that spare the primary: every oracle passes and every request
    /// completes. A failure shrinks to a short script and plan.
    #[test]
    fn any_script_with_faults_sparing_the_primary_passes(
        scripts in proptest::collection::vec(kv_script(2, 12, 3 * MS), CLIENTS as usize),
        plan in fault_plan_on(NODES, 1..NODES, 45, 6),
        seed in 0u64..1_000,
    ) {
        let clients = scripts
            .into_iter()
            .map(|script| SimClient::new(ClientConfig::default(), ScriptedWorkload::new(script)))
            .collect();
        let (verdict, pending, _) = run_clients(seed, Flaw::None, &plan, clients);
        prop_assert!(verdict.is_clean(), "plan {:?}: {:#?}", plan, verdict.violations);
        prop_assert_eq!(pending, vec![0, 0, 0]);
    }
}
