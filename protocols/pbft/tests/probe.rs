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
