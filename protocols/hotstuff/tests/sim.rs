//! HotStuff in the real simulator: the paper's claims checked end to end over the KV store.

mod common;

use common::{completed, invoked, new_views, run_hotstuff, seeds, Run};
use dst_sim::{NodeId, SEC};

fn assert_clean(run: &Run, outcome: &common::Outcome<common::KvHotStuff>, what: &str) {
    let verdict = outcome.verdict(run);
    assert!(
        verdict.is_clean(),
        "{what} (profile {} DST_SEED={}): {:?}\nend {:?} completed {}/{} pending {:?} ignored {:?}",
        run.profile,
        run.seed,
        verdict.violations,
        outcome.summary.end_reason,
        completed(&outcome.observations),
        invoked(&outcome.observations),
        outcome.summary.clients_pending,
        outcome.summary.stats.ignored,
    );
}

#[test]
fn clients_complete_and_replicas_agree_without_faults() {
    let run = Run::new(1, "none");
    let outcome = run_hotstuff(&run);
    assert_clean(&run, &outcome, "fault-free run");
    assert_eq!(
        completed(&outcome.observations),
        60,
        "every request completed"
    );
    assert_eq!(
        new_views(&outcome.observations),
        0,
        "no view change without faults"
    );
    // The run stops once clients are done (f + 1 replies), so replicas may lag by a block;
    // replicas that executed equally far hold equal states.
    let nodes: Vec<_> = (0..4)
        .filter_map(|id| outcome.sim.node(NodeId(id)))
        .collect();
    assert_eq!(nodes.len(), 4);
    for pair in nodes.windows(2) {
        if pair[0].executed_slot() == pair[1].executed_slot() {
            assert_eq!(
                dst_sim::StateMachine::digest(pair[0].state()),
                dst_sim::StateMachine::digest(pair[1].state()),
                "replica states differ at slot {}",
                pair[0].executed_slot()
            );
        }
    }
    let furthest = nodes.iter().map(|node| node.executed_slot()).max();
    assert_eq!(furthest, Some(60), "every request executed once");
}

fn profile_runs(profile: &'static str, default_seeds: u64) {
    for seed in seeds(default_seeds) {
        let run = Run::new(seed, profile);
        let outcome = run_hotstuff(&run);
        if std::env::var("DST_VERBOSE").is_ok() {
            eprintln!(
                "{profile} seed {seed}: {:?} at {} ms, events {}, completed {}, views {}, \
                 faults {:?}, ignored {:?}, corrupt {}",
                outcome.summary.end_reason,
                outcome.summary.virtual_ns / dst_sim::MS,
                outcome.summary.events,
                completed(&outcome.observations),
                new_views(&outcome.observations),
                outcome.summary.fault_log,
                outcome.summary.stats.ignored,
                outcome.summary.stats.corrupt_delivered,
            );
        }
        assert_clean(&run, &outcome, "seeded run");
    }
}

#[test]
fn no_violations_under_profile_none() {
    profile_runs("none", 8);
}

#[test]
fn no_violations_under_profile_light() {
    profile_runs("light", 8);
}

#[test]
fn no_violations_under_profile_heavy() {
    profile_runs("heavy", 8);
}

#[test]
fn no_violations_under_profile_corruption() {
    profile_runs("corruption", 8);
}

/// The other fault profiles, a few seeds each (`DST_PROFILE` picks one).
#[test]
fn no_violations_under_the_other_profiles() {
    let only = std::env::var("DST_PROFILE").ok();
    for profile in ["partitions", "clocks", "storage", "swarm"] {
        if only.as_deref().is_none_or(|only| only == profile) {
            profile_runs(profile, 3);
        }
    }
}

#[test]
fn hotstuff_is_deterministic_per_seed() {
    let run = Run::new(11, "heavy");
    let first = run_hotstuff(&run).summary.trace_hash;
    let second = run_hotstuff(&run).summary.trace_hash;
    assert_eq!(first, second, "same seed, different runs");
}

/// The pacemaker claim: with the leader of the coming rounds crashed, rounds advance
/// through timeouts (view changes) and requests still complete.
#[test]
fn a_crashed_leader_is_replaced_through_timeouts() {
    for seed in seeds(3) {
        let mut run = Run::new(seed, "none");
        run.plan = "at 300ms crash 1; at 3s restart 1";
        run.end_ns = 20 * SEC;
        let outcome = run_hotstuff(&run);
        assert_clean(&run, &outcome, "leader crash");
        assert_eq!(
            completed(&outcome.observations),
            60,
            "seed {seed}: all completed"
        );
        assert!(
            new_views(&outcome.observations) > 0,
            "seed {seed}: no view change although a leader was down"
        );
    }
}

fn slots_committed_by(observations: &[(u64, common::KvObs)], node: u32, before_ns: u64) -> u64 {
    observations
        .iter()
        .filter_map(|(time_ns, obs)| match obs {
            dst_protocols::Observation::Commit { node: n, slot, .. }
                if n.0 == node && *time_ns < before_ns =>
            {
                Some(*slot)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Block sync: a replica cut off while the others commit fetches the blocks it missed
/// (committed ones come from its peers' disks) and executes them in order.
#[test]
fn a_partitioned_replica_catches_up_through_block_sync() {
    for seed in seeds(3) {
        let mut run = Run::new(seed, "none");
        run.plan = "at 100ms partition 3 | 0,1,2; at 2s heal";
        run.requests_per_client = 60;
        let outcome = run_hotstuff(&run);
        assert_clean(&run, &outcome, "partition and heal");
        let before_heal = slots_committed_by(&outcome.observations, 0, 2 * SEC);
        let cut_off = slots_committed_by(&outcome.observations, 3, 2 * SEC);
        assert!(
            before_heal > cut_off,
            "seed {seed}: the majority made little progress ({before_heal} vs {cut_off})"
        );
        let node = outcome.sim.node(NodeId(3)).expect("up");
        assert!(
            node.executed_slot() > before_heal,
            "seed {seed}: n3 executed {} of the {before_heal} slots committed while it was cut off",
            node.executed_slot()
        );
    }
}

/// Durable safety data and committed blocks: a replica crashed twice rejoins, replays its
/// committed prefix from disk and keeps executing the same slots as everyone.
#[test]
fn a_restarted_replica_replays_its_prefix_and_rejoins() {
    for seed in seeds(3) {
        let mut run = Run::new(seed, "none");
        run.plan = "at 400ms crash 2; at 800ms restart 2; at 1500ms crash 2; at 1700ms restart 2";
        run.requests_per_client = 60;
        let outcome = run_hotstuff(&run);
        assert_clean(&run, &outcome, "crash and restart");
        let node = outcome.sim.node(NodeId(2)).expect("restarted");
        let furthest = (0..4)
            .filter_map(|id| outcome.sim.node(NodeId(id)))
            .map(|node| node.executed_slot())
            .max()
            .unwrap_or(0);
        assert!(
            node.executed_slot() + 16 >= furthest,
            "seed {seed}: n2 executed {} of {furthest}",
            node.executed_slot()
        );
    }
}

/// The `swarm` liveness bug (seeds 45 and 677 before the fix), as a scenario: heavy storage
/// faults until the quiet phase while two replicas in turn crash and fall far behind. The
/// lagging replicas can only catch up from the others' disk records of committed blocks
/// (committed blocks leave memory); with one best-effort write per block, some height went
/// missing on every up-to-date replica, and without the lagging ones there is no quorum.
#[test]
fn replicas_far_behind_catch_up_despite_failed_and_misdirected_block_writes() {
    for seed in seeds(3) {
        let mut run = Run::new(seed, "none");
        run.storage = Some(dst_sim::StorageFaults {
            io_error_ppm: 250_000,
            misdirect_ppm: 20_000,
            read_corrupt_ppm: 2_000,
            ..dst_sim::StorageFaults::default()
        });
        run.plan = "at 100ms crash 0; at 1500ms restart 0; at 1600ms crash 2; at 3s restart 2";
        run.requests_per_client = 80;
        let outcome = run_hotstuff(&run);
        assert_clean(&run, &outcome, "lagging replicas after storage faults");
    }
}
