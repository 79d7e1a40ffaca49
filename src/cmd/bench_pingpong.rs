//! `dst bench pingpong`: simulator message throughput.
//!
//! 5 nodes, 10 messages in flight per node, every receipt answered to a uniformly random other
//! node, latency uniform 1-10 ms, 1,000,000 deliveries. `--encode` encodes and decodes every
//! hop (postcard), as corruption and bandwidth modelling require.

use std::process::ExitCode;

use dst_sim::decision::SeededSource;
use dst_sim::engine::NoClient;
use dst_sim::testing::PingPong;
use dst_sim::{FaultProfile, Latency, Sim, SimConfig, MS};
use serde::Serialize;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Encode and decode every message on every hop.
    #[arg(long)]
    encode: bool,
    /// Deliveries to simulate.
    #[arg(long, default_value_t = 1_000_000)]
    deliveries: u64,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Serialize)]
struct Report {
    deliveries: u64,
    encode: bool,
    wall_seconds: f64,
    msgs_per_sec: f64,
    virtual_seconds: f64,
    peak_rss_bytes: u64,
    repeat: u32,
    wall_seconds_all: Vec<f64>,
    trace_hash: String,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    if args.deliveries == 0 || args.repeat == 0 {
        return super::bad_input("--deliveries and --repeat must be positive");
    }
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat {
        let (wall, summary) = run_once(&args);
        walls.push(wall);
        last = Some(summary);
    }
    let summary = last.expect("at least one repetition");
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let report = Report {
        deliveries: summary.stats.messages_delivered,
        encode: args.encode,
        wall_seconds: median,
        msgs_per_sec: summary.stats.messages_delivered as f64 / median,
        virtual_seconds: summary.virtual_ns as f64 / 1e9,
        peak_rss_bytes: super::peak_rss_bytes(),
        repeat: args.repeat,
        wall_seconds_all: walls,
        trace_hash: format!("{:016x}", summary.trace_hash),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        println!(
            "pingpong{}: {} deliveries in {:.3} s (median of {}) = {:.2} M msgs/s; {:.1} virtual s; peak RSS {:.1} MiB",
            if args.encode { " --encode" } else { "" },
            report.deliveries,
            report.wall_seconds,
            report.repeat,
            report.msgs_per_sec / 1e6,
            report.virtual_seconds,
            report.peak_rss_bytes as f64 / 1048576.0
        );
    }
    ExitCode::SUCCESS
}

// Benchmarks measure wall time by design; this is tooling, not simulated code.
#[allow(clippy::disallowed_methods)]
fn run_once(args: &Args) -> (f64, dst_sim::RunSummary) {
    let mut profile =
        FaultProfile::named("none", &mut SeededSource::new(args.seed)).expect("profile none");
    profile.link.latency = Latency::Uniform {
        min_ns: MS,
        max_ns: 10 * MS,
    };
    let mut config = SimConfig::new(5, 0, profile);
    config.events_max = args.deliveries;
    config.end_ns = u64::MAX;
    config.quiet_at_ns = u64::MAX;
    config.encode_every_hop = args.encode;
    let mut sim: Sim<PingPong, NoClient<PingPong>> = Sim::new(
        config,
        Box::new(|_| PingPong::new(10)),
        vec![],
        SeededSource::new(args.seed),
        false,
    );
    let started = std::time::Instant::now();
    let summary = sim.run();
    (started.elapsed().as_secs_f64(), summary)
}
