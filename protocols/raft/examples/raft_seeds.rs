//! Throughput of Raft seeds in the simulator: `cargo run --release -p dst-raft --example
//! raft_seeds -- [profile] [seeds] [nodes] [operations]` prints seeds per second and the
//! virtual-to-wall time ratio. Defaults: heavy, 100 seeds, 5 nodes, 1,000 operations.

use dst_protocols::{ClientConfig, KvStore, KvWorkload, KvWorkloadConfig, SimClient};
use dst_raft::{Raft, RaftConfig};
use dst_sim::{FaultProfile, SeededSource, Sim, SimConfig};

const CLIENTS: u32 = 4;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile_name = args.first().map_or("heavy", String::as_str).to_string();
    let number = |index: usize, default: u64| -> u64 {
        args.get(index)
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let (seeds, nodes, operations) = (number(1, 100), number(2, 5) as u32, number(3, 1000));
    // Measuring wall time is the point of this tool; simulated code never sees it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let (mut virtual_ns, mut events, mut failed) = (0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let mut knobs = SeededSource::new(seed ^ 0x5eed);
        let Ok(profile) = FaultProfile::named(&profile_name, &mut knobs) else {
            eprintln!("unknown profile {profile_name}");
            std::process::exit(2);
        };
        let config = SimConfig::new(nodes, CLIENTS, profile);
        let clients = (0..CLIENTS)
            .map(|client| {
                let workload = KvWorkloadConfig::contention(operations / CLIENTS as u64);
                SimClient::new(ClientConfig::default(), KvWorkload::new(client, workload))
            })
            .collect();
        let make = Box::new(|_| Raft::for_service(RaftConfig::default(), KvStore::new()));
        let mut sim = Sim::new(config, make, clients, SeededSource::new(seed), false);
        let summary = sim.run();
        virtual_ns += summary.virtual_ns;
        events += summary.events;
        if !summary.invariant_failures.is_empty() {
            failed += 1;
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "profile {profile_name} nodes {nodes} operations {operations} seeds {seeds}: \
         {:.1} seeds/s, virtual/wall {:.0}x, {:.0} events/s, invariant failures {failed}",
        seeds as f64 / wall_s,
        virtual_ns as f64 / 1e9 / wall_s,
        events as f64 / wall_s,
    );
}
