//! The BFT client against toy replicas, some of them liars: a result is accepted only when
//! `reply_quorum` replicas agree on it, so up to `reply_quorum - 1` colluding liars never
//! make a client accept a wrong output, and `reply_quorum` of them do (the quorum is what
//! protects the client).

use dst_protocols::{
    BftClient, BftClientConfig, KvCommand, KvOutput, KvStore, KvWorkload, KvWorkloadConfig,
    Observation, Reply, Request, Sessions,
};
use dst_sim::{
    ClientId, FaultProfile, Node, NodeCtx, NodeId, Principal, SeededSource, Signed, Sim, SimConfig,
    StateMachine,
};

/// Every replica executes each verified request on its own copy (one client, so all copies
/// see the same order); liars answer a made-up output.
struct Toy {
    liar: bool,
    service: Sessions<KvStore>,
}

type Obs = Observation<KvCommand, KvOutput>;

impl Node for Toy {
    type Msg = ();
    type Timer = ();
    type Request = Signed<Request<KvCommand>>;
    type Reply = Reply<KvOutput>;
    type Obs = Obs;

    fn on_start(&mut self, _ctx: &mut NodeCtx<'_, Self>) {}
    fn on_message(&mut self, _ctx: &mut NodeCtx<'_, Self>, _from: NodeId, _msg: ()) {}
    fn on_timer(&mut self, _ctx: &mut NodeCtx<'_, Self>, _timer: ()) {}
    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        if !ctx.verify_signed(&request) || request.signer() != Principal::Client(client) {
            ctx.ignore("request signature does not verify");
            return;
        }
        let sequence = request.value.sequence;
        let Some(output) = self.service.apply(&request.value).into_output() else {
            return;
        };
        let output = if self.liar {
            KvOutput::Value(Some("forged".into()))
        } else {
            output
        };
        ctx.reply(client, Reply::Done { sequence, output });
    }
}

/// Runs one client against four replicas with `liars` lying replicas; returns the outputs
/// the client accepted that are the forged one.
fn forged_acceptances(liars: u32, reply_quorum: usize) -> (u64, u64) {
    let profile = FaultProfile::named("none", &mut SeededSource::new(0)).expect("known profile");
    let mut config = SimConfig::new(4, 1, profile);
    config.end_ns = 20 * dst_sim::SEC;
    let client_config = BftClientConfig {
        reply_quorum,
        ..BftClientConfig::for_cluster(4)
    };
    let workload = KvWorkload::new(
        0,
        KvWorkloadConfig::contention(30).with_reads_per_mille(500),
    );
    let clients = vec![BftClient::new(client_config, workload)];
    let make = move |id: NodeId| Toy {
        liar: id.0 < liars,
        service: Sessions::new(KvStore::new()),
    };
    let mut sim = Sim::new(config, Box::new(make), clients, SeededSource::new(7), false);
    sim.run();
    let mut completed = 0;
    let mut forged = 0;
    for (_, observation) in sim.observations() {
        if let Observation::Complete { output, .. } = observation {
            completed += 1;
            if *output == KvOutput::Value(Some("forged".into())) {
                forged += 1;
            }
        }
    }
    (completed, forged)
}

#[test]
fn one_liar_never_fools_a_client_waiting_for_f_plus_one_matching_replies() {
    let (completed, forged) = forged_acceptances(1, 2);
    assert_eq!(
        completed, 30,
        "every request completes with three honest replicas"
    );
    assert_eq!(forged, 0, "a single liar's answer was accepted");
}

#[test]
fn f_plus_one_colluding_liars_do_fool_it() {
    let (_, forged) = forged_acceptances(2, 2);
    assert!(
        forged > 0,
        "two colluding liars should reach a quorum of two"
    );
}

#[test]
fn a_quorum_of_one_trusts_whoever_answers_first() {
    let (_, forged) = forged_acceptances(1, 1);
    assert!(
        forged > 0,
        "the liar (replica 0, the first contacted) answers first"
    );
}
