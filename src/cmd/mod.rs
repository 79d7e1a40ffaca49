//! One module per subcommand; each exposes `Args` (clap) and `main(Args) -> ExitCode`.

use std::process::ExitCode;

pub mod bench_check;
pub mod bench_inference;
pub mod bench_pingpong;
pub mod check;
pub mod compare;
pub mod corpus;
pub mod explore;
pub mod run;
pub mod shrink;

/// Exit code for a run where every check passed.
pub const EXIT_OK: u8 = 0;
/// Exit code for a run that found a violation.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit code for bad usage or bad input.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Prints a one-line error and returns exit code 2.
pub fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("dst: error: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// What to simulate: shared by `run`, `explore` and `shrink`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Protocol: raft, multipaxos, pbft, hotstuff, fastbft, pingpong.
    #[arg(long, default_value = "raft")]
    pub protocol: String,
    /// Fault profile: none, light, heavy, partitions, clocks, storage, corruption, swarm,
    /// wipes (disks replaced; raft only), byzantine (typed adversaries), twins (BFT only).
    #[arg(long, default_value = "light")]
    pub profile: String,
    /// Number of replicas (default: 5 for crash-tolerant protocols, 4 for BFT ones).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Number of simulated clients.
    #[arg(long, default_value_t = 3)]
    pub clients: u32,
    /// Client operations in total, shared by the clients.
    #[arg(long, default_value_t = 200)]
    pub ops: u64,
    /// Turn off the client sessions' end-to-end checksums (corrupted client traffic can then
    /// arrive as other well-formed requests and replies).
    #[arg(long)]
    pub no_client_checksums: bool,
    /// Exploration strategy that takes the run's decisions (see `dst explore --help`).
    #[arg(long, default_value = "random")]
    pub strategy: String,
    /// Byzantine replicas under --profile byzantine or twins (default f = (nodes-1)/3; more
    /// than f shows the checkers fire).
    #[arg(long)]
    pub byzantine: Option<u32>,
    /// Behaviour of every Byzantine replica under --profile byzantine: silent, withhold,
    /// equivocate, replay, forge, lie (default: drawn per replica from the seed).
    #[arg(long)]
    pub behaviour: Option<String>,
    /// A protocol design option, `name=value` (repeatable; `dst run --list-options` shows
    /// them). An unknown option is an error.
    #[arg(long = "option", value_name = "NAME=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// Virtual CPU per signature, in microseconds (default 20).
    #[arg(long)]
    pub sign_us: Option<u64>,
    /// Virtual CPU per signature verification, in microseconds (default 50).
    #[arg(long)]
    pub verify_us: Option<u64>,
    /// Message corruption rate in parts per million, overriding the profile's.
    #[arg(long)]
    pub corrupt_ppm: Option<u64>,
    /// A constant one-way message delay in microseconds, overriding the profile's latency.
    #[arg(long)]
    pub latency_us: Option<u64>,
    /// The replicated service: kv, or inference (the hybrid-model service; fastbft, pbft).
    #[arg(long, default_value = "kv")]
    pub service: String,
    /// Service faults per replica, e.g. "1:weight-flip@10,2:split-k" (with --service
    /// inference): weight-flip, session-flip, stale-model, split-k, forge-output.
    #[arg(long)]
    pub service_fault: Option<String>,
    /// Faults stop and the network heals at this virtual time.
    #[arg(long, default_value_t = 10_000)]
    pub quiet_at_ms: u64,
    /// Virtual time limit: a run still going then ends, finished or not.
    #[arg(long, default_value_t = 30_000)]
    pub end_ms: u64,
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    dst_protocols::options::parse_assignment(text)
}

impl ClusterArgs {
    /// The run of `seed` with these settings.
    pub fn spec(&self, seed: u64) -> dst::runner::RunSpec {
        let mut spec = dst::runner::RunSpec::new(&self.protocol, seed, &self.profile);
        spec.nodes = self
            .nodes
            .unwrap_or_else(|| dst::runner::default_nodes(&self.protocol));
        spec.clients = self.clients;
        spec.ops = self.ops;
        spec.client_checksums = !self.no_client_checksums;
        spec.strategy = self.strategy.clone();
        spec.byzantine = self.byzantine;
        spec.behaviour = self.behaviour.clone();
        spec.options = self.options.clone();
        spec.sign_us = self.sign_us;
        spec.verify_us = self.verify_us;
        spec.corrupt_ppm = self.corrupt_ppm;
        spec.latency_us = self.latency_us;
        spec.service = self.service.clone();
        spec.service_fault = self.service_fault.clone();
        spec.quiet_at_ms = self.quiet_at_ms;
        spec.end_ms = self.end_ms;
        spec
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
