//! Figures for the report (not assertions on timing): run with
//! `cargo test -p dst-fastbft --test figures -- --ignored --nocapture`.

mod common;

use common::{latencies, paths, run, Behaviour, Run};
use dst_sim::{Node, NodeId, MS};

fn report(name: &str, setup: &Run) {
    let outcome = run(setup);
    let found = common::violations(setup, &outcome);
    let (fast, slow) = paths(&outcome.observations);
    let mut latencies = latencies(&outcome.observations);
    latencies.sort_unstable();
    let delay_ns = setup.constant_latency_ns.unwrap_or(1);
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or(0);
    let footprint: Vec<u64> = (0..setup.nodes)
        .filter_map(|id| {
            outcome
                .sim
                .node(NodeId(id))
                .map(|node| node.footprint_bytes())
        })
        .collect();
    println!(
        "{name}: violations {} fast {fast} slow {slow} latency p50 {:.1} ms = {:.2} delays, \
         messages {} footprint at end {:?} B",
        found.len(),
        median as f64 / MS as f64,
        median as f64 / delay_ns as f64,
        outcome.summary.stats.messages_sent,
        footprint
    );
}

#[test]
#[ignore]
fn print_figures() {
    let mut quiet = Run::new(1, "none");
    quiet.constant_latency_ns = Some(5 * MS);
    quiet.client.fast_timeout_ns = 50 * MS;
    report("n=4 c=0 no faults", &quiet);
    let mut silent = Run::new(1, "none");
    silent.constant_latency_ns = Some(5 * MS);
    silent.behaviours.insert(NodeId(3), Behaviour::Silent);
    report("n=4 c=0 one silent backup", &silent);
    let mut liar = Run::new(1, "none");
    liar.constant_latency_ns = Some(5 * MS);
    liar.behaviours.insert(NodeId(2), Behaviour::Liar);
    report("n=4 c=0 one lying backup", &liar);
    let mut wide = Run::new(1, "none");
    wide.constant_latency_ns = Some(5 * MS);
    wide.nodes = 6;
    wide.config.c = 1;
    wide.client.c = 1;
    wide.plan = "at 0ms crash 5";
    report("n=6 c=1 one crashed", &wide);
    let mut long = Run::new(1, "none");
    long.constant_latency_ns = Some(5 * MS);
    long.requests_per_client = 500;
    long.config.checkpoint_interval = 128;
    report("n=4 c=0 K=128 1000 requests", &long);
}
