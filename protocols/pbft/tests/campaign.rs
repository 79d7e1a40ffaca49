//! A seed campaign for longer runs than the default tests (ignored by default). Knobs from
//! the environment: `P` profile (default heavy), `B` Byzantine behaviour and `Z` the
//! comma-separated Byzantine replicas (default none), `R` requests per client (60), `K`
//! checkpoint interval (32, window 2K), `DST_SEEDS` / `DST_FIRST_SEED` / `DST_SEED`.
//! Prints every failing seed with each replica's state, then a summary line; fails if any
//! seed failed. Example:
//! `P=swarm B=equivocate Z=0 DST_SEEDS=500 cargo test -p dst-pbft --test campaign -- --ignored --nocapture`

mod common;
use common::*;
use dst_pbft::Pbft;
use dst_protocols::KvStore;
use dst_sim::{Behaviour, Byzantine, NodeId};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore]
fn campaign() {
    let profile: &'static str = Box::leak(
        std::env::var("P")
            .unwrap_or("heavy".into())
            .into_boxed_str(),
    );
    let behaviour = std::env::var("B").ok();
    let byz: Vec<u32> = std::env::var("Z")
        .ok()
        .map(|z| z.split(',').map(|s| s.parse().unwrap()).collect())
        .unwrap_or_default();
    let mut bad = 0;
    let (mut msgs, mut commits, mut views) = (0u64, 0u64, 0usize);
    let mut footprint_max = 0u64;
    for seed in dst_sim::testing::seeds_from_env(20) {
        let mut run = Run::new(seed, profile);
        run.requests_per_client = env_u64("R", 60);
        let k = env_u64("K", 32);
        run.pbft.checkpoint_interval = k;
        run.pbft.window = 2 * k;
        let config = run.pbft.clone();
        let (b2, z2) = (behaviour.clone(), byz.clone());
        let outcome = run_with(&run, move |id: NodeId| {
            let honest = || Pbft::for_service(config.clone(), KvStore::new());
            let beh = match &b2 {
                Some(b) if z2.contains(&id.0) => Behaviour::named(b, id, 4).unwrap(),
                _ => Behaviour::Honest,
            };
            Byzantine::new(beh, honest(), Some(honest()))
        });
        let zz: &'static [u32] = Box::leak(byz.clone().into_boxed_slice());
        let v = verdict(&outcome, 4, zz);
        let nv = new_views(&outcome.observations);
        msgs += outcome.summary.stats.messages_sent;
        commits += completed(&outcome.observations) as u64;
        views += nv.len();
        for id in 0..4 {
            if let Some(node) = outcome.sim.node(NodeId(id)) {
                footprint_max = footprint_max.max(dst_sim::Node::footprint_bytes(node.inner()));
            }
        }
        if !v.is_clean() {
            bad += 1;
            println!(
                "seed {seed}: t={}ms completed {} newviews {} {:?}",
                outcome.summary.virtual_ns / 1_000_000,
                completed(&outcome.observations),
                nv.len(),
                v.violations.iter().take(2).collect::<Vec<_>>()
            );
            for id in 0..4 {
                if let Some(node) = outcome.sim.node(NodeId(id)) {
                    let n = node.inner();
                    println!(
                        "  n{id}: view {:?} changing {} mute {} last {:?} stable {:?} log {} {}",
                        n.view(),
                        n.is_view_changing(),
                        n.is_mute(),
                        n.last_executed(),
                        n.stable_seq(),
                        n.log_len(),
                        n.debug_summary()
                    );
                }
            }
        }
    }
    println!(
        "bad {bad} messages/completed {:.1} newview-observations {views} \
         replica footprint at the end (max) {footprint_max} bytes",
        msgs as f64 / commits.max(1) as f64
    );
}
