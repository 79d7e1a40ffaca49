//! Figures for the report (not assertions on performance): `cargo test -p dst-hotstuff
//! --test figures -- --ignored --nocapture`.

mod common;

use common::{completed, new_views, run_hotstuff, Run};
use dst_protocols::Observation;
use dst_sim::{Node, NodeId, MS};

#[test]
#[ignore]
fn print_figures() {
    for profile in ["none", "light", "heavy"] {
        let mut latencies_ms = Vec::new();
        let (mut commits, mut messages, mut bytes_max, mut views) = (0u64, 0u64, 0u64, 0usize);
        for seed in 1..=10 {
            let mut run = Run::new(seed, profile);
            run.requests_per_client = 50;
            let outcome = run_hotstuff(&run);
            let mut invoked_at = std::collections::BTreeMap::new();
            for (time_ns, obs) in &outcome.observations {
                match obs {
                    Observation::Invoke {
                        client, sequence, ..
                    } => {
                        invoked_at.insert((*client, *sequence), *time_ns);
                    }
                    Observation::Complete {
                        client, sequence, ..
                    } => {
                        if let Some(start) = invoked_at.get(&(*client, *sequence)) {
                            latencies_ms.push((time_ns - start) as f64 / MS as f64);
                        }
                    }
                    _ => {}
                }
            }
            commits += completed(&outcome.observations) as u64;
            messages += outcome.summary.stats.messages_sent;
            views += new_views(&outcome.observations);
            for id in 0..run.nodes {
                if let Some(node) = outcome.sim.node(NodeId(id)) {
                    bytes_max = bytes_max.max(node.footprint_bytes());
                }
            }
        }
        latencies_ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{profile}: 10 seeds x 150 requests, n=4: completed {commits}, latency p50 {:.1} ms \
             p99 {:.1} ms, messages/commit {:.1}, NewView reports {views}, footprint at end max \
             {bytes_max} B",
            at(0.5),
            at(0.99),
            messages as f64 / commits.max(1) as f64,
        );
    }
}
