//! PBFT in the real simulator: seeded runs under fault profiles judged by every oracle, and
//! scripted scenarios named after the paper's claims.

mod common;

use common::{completed, run_pbft, verdict, Run};
use dst_sim::testing::seeds_from_env;

fn clean_under(profile: &'static str) {
    for seed in seeds_from_env(8) {
        let mut run = Run::new(seed, profile);
        // Long enough that the fault process crashes, partitions and corrupts during the run.
        run.requests_per_client = 60;
        let outcome = run_pbft(&run);
        let verdict = verdict(&outcome, run.nodes, &[]);
        assert!(
            verdict.is_clean(),
            "DST_SEED={seed} profile {profile}: {:?}",
            verdict.violations
        );
        let expected = (run.clients as u64 * run.requests_per_client) as usize;
        assert_eq!(
            completed(&outcome.observations),
            expected,
            "DST_SEED={seed} profile {profile}: clients did not finish"
        );
    }
}

#[test]
fn agrees_and_stays_live_without_faults() {
    clean_under("none");
}

#[test]
fn agrees_and_stays_live_under_light_faults() {
    clean_under("light");
}

#[test]
fn agrees_and_stays_live_under_heavy_faults() {
    clean_under("heavy");
}

#[test]
fn agrees_and_stays_live_under_corruption() {
    clean_under("corruption");
}
