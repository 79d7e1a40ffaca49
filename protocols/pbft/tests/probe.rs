mod common;
use common::*;
#[test]
#[ignore]
fn probe() {
    let profile: &'static str = Box::leak(std::env::var("P").unwrap_or("heavy".into()).into_boxed_str());
    let reqs: u64 = std::env::var("R").ok().and_then(|r| r.parse().ok()).unwrap_or(100);
    let mut bad = 0;
    for seed in dst_sim::testing::seeds_from_env(20) {
        let mut run = Run::new(seed, profile);
        run.requests_per_client = reqs;
        run.quiet_at_ns = 10 * dst_sim::SEC;
        run.end_ns = 40 * dst_sim::SEC;
        let outcome = run_pbft(&run);
        let v = verdict(&outcome, 4, &[]);
        let views = new_views(&outcome.observations);
        println!("seed {seed}: t={}ms completed {} top-slot {} newviews {} maxview {:?} faults {} clean {} {:?}",
            outcome.summary.virtual_ns / 1_000_000, completed(&outcome.observations), highest_commit(&outcome.observations),
            views.len(), views.iter().map(|v| v.1).max(), outcome.summary.fault_log.len(), v.is_clean(),
            v.violations.iter().take(2).collect::<Vec<_>>());
        if !v.is_clean() { bad += 1; }
    }
    assert_eq!(bad, 0);
}

#[test]
#[ignore]
fn probe_byz() {
    use dst_pbft::{Pbft, PbftConfig};
    use dst_protocols::KvStore;
    use dst_sim::{Behaviour, Byzantine, NodeId};
    let behaviour = std::env::var("B").unwrap_or("equivocate".into());
    let byz: Vec<u32> = std::env::var("Z").unwrap_or("0".into()).split(',').map(|s| s.parse().unwrap()).collect();
    let profile: &'static str = Box::leak(std::env::var("P").unwrap_or("light".into()).into_boxed_str());
    let mut bad = 0;
    for seed in dst_sim::testing::seeds_from_env(20) {
        let run = Run::new(seed, profile);
        let (b2, z2) = (behaviour.clone(), byz.clone());
        let outcome = run_with(&run, move |id: NodeId| {
            let honest = || Pbft::for_service(PbftConfig::default(), KvStore::new());
            let beh = if z2.contains(&id.0) { Behaviour::named(&b2, id, 4).unwrap() } else { Behaviour::Honest };
            Byzantine::new(beh, honest(), Some(honest()))
        });
        let zz: &'static [u32] = Box::leak(byz.clone().into_boxed_slice());
        let v = verdict(&outcome, 4, zz);
        let views = new_views(&outcome.observations);
        if !v.is_clean() || seed < 3 {
        println!("seed {seed}: t={}ms completed {} newviews {} clean {} {:?}",
            outcome.summary.virtual_ns / 1_000_000, completed(&outcome.observations),
            views.len(), v.is_clean(), v.violations.iter().take(2).collect::<Vec<_>>());
        }
        if !v.is_clean() {
            bad += 1;
            for id in 0..4 {
                if let Some(node) = outcome.sim.node(NodeId(id)) {
                    let n = node.inner();
                    println!("  n{id}: view {:?} changing {} mute {} last {:?} stable {:?} log {} {}", n.view(), n.is_view_changing(), n.is_mute(), n.last_executed(), n.stable_seq(), n.log_len(), n.debug_summary());
                }
            }
        }
    }
    println!("bad {bad}");
}
