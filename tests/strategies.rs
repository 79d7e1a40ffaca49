//! Every exploration strategy finds a deliberately broken configuration's violation, the
//! shrinker reduces it, and the shrunk run, kept in a corpus, replays as recorded.
//!
//! The broken configuration: Raft without client checksums under message corruption, where a
//! corrupted client request can arrive as another well-formed request and be committed
//! (validity / linearizability break). Campaign strategies (coverage, exhaustive) keep their
//! failures as recorded traces, so those are what is shrunk and kept.

use std::process::Command;

use dst::runner::{self, RunOutcome, RunSpec};
use dst::strategy::coverage::Coverage;
use dst::strategy::exhaustive::{Bounds, Exhaustive};
use dst::strategy::Strategy;

/// Bound on the runs a strategy may take to find the violation here (a budget: exhaustive
/// search needs the most, 46 at the time of writing; the others under 20).
const RUNS_MAX: u64 = 80;

fn broken(strategy: &str, seed: u64) -> RunSpec {
    let mut spec = RunSpec::new("raft", seed, "corruption");
    spec.ops = 40;
    spec.client_checksums = false;
    spec.strategy = strategy.to_string();
    spec
}

/// The first failing run of a strategy, as a spec that reproduces it (seed, or seed + trace).
fn first_failure(strategy: &str) -> (RunSpec, u64) {
    let kind = Strategy::parse(strategy).expect("known strategy");
    let template = broken(strategy, 1);
    let mut coverage = Coverage::new(&template, 1);
    let mut exhaustive = Exhaustive::new(
        &template,
        Bounds {
            depth_max: 50,
            deviations_max: 1,
        },
    );
    for run in 1..=RUNS_MAX {
        let outcome: RunOutcome = match kind {
            Strategy::Coverage => coverage.run(run).expect("valid spec"),
            Strategy::Exhaustive => match exhaustive.run() {
                Some(outcome) => outcome.expect("valid spec"),
                None => break,
            },
            _ => runner::run(&broken(strategy, run)).expect("valid spec"),
        };
        if outcome.violations.is_empty() {
            continue;
        }
        let mut spec = outcome.spec.clone();
        spec.record = false;
        if kind.is_campaign() {
            spec.replay = outcome.trace.clone();
            assert!(spec.replay.is_some(), "campaign runs are recorded");
        }
        return (spec, run);
    }
    panic!("{strategy} found no violation in {RUNS_MAX} runs");
}

fn replay_twice(spec: &RunSpec) -> (u64, Vec<String>) {
    let first = runner::run(spec).expect("valid replay");
    let second = runner::run(spec).expect("valid replay");
    assert_eq!(
        first.summary.trace_hash, second.summary.trace_hash,
        "a replay must be deterministic"
    );
    let properties = first
        .violations
        .iter()
        .map(|v| v.property.clone())
        .collect();
    (first.summary.trace_hash, properties)
}

fn find_shrink_keep_replay(strategy: &str) {
    let (spec, runs) = first_failure(strategy);
    println!("{strategy}: first violation after {runs} runs");
    let shrunk = dst::shrink::shrink(&spec, 30).expect("the failure shrinks");
    println!(
        "{strategy}: events {} -> {}, non-zero decisions {} -> {}",
        shrunk.events_before, shrunk.events_after, shrunk.nonzero_before, shrunk.nonzero_after
    );
    assert!(
        shrunk.events_after <= shrunk.events_before,
        "{strategy}: shrinking grew the run"
    );
    let mut replay = shrunk.outcome.spec.clone();
    replay.record = false;
    replay.replay = Some(shrunk.trace.clone());
    let (_, properties) = replay_twice(&replay);
    assert!(
        properties.contains(&shrunk.signature),
        "{strategy}: the shrunk trace must still break [{}], got {properties:?}",
        shrunk.signature
    );
    let dir = std::env::temp_dir().join(format!("dst-strategy-{strategy}-{}", std::process::id()));
    let path = dst::corpus::save(&dir, &shrunk, "test").expect("saved");
    let loaded = dst::corpus::load_all(&dir);
    assert_eq!(loaded.len(), 1, "{}", path.display());
    let (_, entry) = &loaded[0];
    let (entry, trace) = entry.clone().expect("readable entry");
    assert_eq!(entry.strategy, strategy, "the entry records its strategy");
    let verdict = dst::corpus::check(&entry, trace);
    assert!(verdict.is_ok(), "{strategy}: {verdict:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn random_finds_shrinks_and_keeps_the_violation() {
    find_shrink_keep_replay("random");
}

#[test]
fn swarm_finds_shrinks_and_keeps_the_violation() {
    find_shrink_keep_replay("swarm");
}

#[test]
fn pct_finds_shrinks_and_keeps_the_violation() {
    find_shrink_keep_replay("pct");
}

#[test]
fn coverage_finds_shrinks_and_keeps_the_violation() {
    find_shrink_keep_replay("coverage");
}

#[test]
fn exhaustive_finds_shrinks_and_keeps_the_violation() {
    find_shrink_keep_replay("exhaustive");
}

#[test]
fn per_seed_strategies_reproduce_from_the_seed_alone() {
    for strategy in ["swarm", "pct", "pct:1"] {
        let mut spec = broken(strategy, 7);
        spec.client_checksums = true;
        let a = runner::run(&spec).expect("valid");
        let b = runner::run(&spec).expect("valid");
        assert_eq!(a.summary.trace_hash, b.summary.trace_hash, "{strategy}");
        spec.record = true;
        let recorded = runner::run(&spec).expect("valid");
        let mut replay = spec.clone();
        replay.record = false;
        replay.replay = recorded.trace;
        let replayed = runner::run(&replay).expect("valid");
        assert_eq!(
            replayed.summary.trace_hash, a.summary.trace_hash,
            "{strategy}: the recorded trace replays the seed's run"
        );
        assert!(replayed.summary.divergence.is_none(), "{strategy}");
    }
}

#[test]
fn strategies_change_the_schedule() {
    let hash = |strategy: &str| {
        let spec = broken(strategy, 3);
        runner::run(&spec).expect("valid").summary.trace_hash
    };
    let random = hash("random");
    assert_ne!(hash("pct"), random, "pct schedules deliveries by priority");
    assert_ne!(hash("swarm"), random, "swarm changes the fault rates");
}

fn dst(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dst"))
        .args(args)
        .output()
        .expect("dst runs")
}

#[test]
fn an_unknown_strategy_is_bad_input() {
    for strategy in ["dfs", "pct:many"] {
        let output = dst(&["run", "--strategy", strategy, "--seed", "1"]);
        assert_eq!(output.status.code(), Some(2), "{strategy}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("strategy"), "{stderr}");
    }
}

#[test]
fn compare_reports_every_strategy_with_time_to_first_violation() {
    let traces = std::env::temp_dir().join(format!("dst-compare-traces-{}", std::process::id()));
    let output = dst(&[
        "explore",
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        "--ops",
        "40",
        // A budget, not the expected count: each strategy stops at its first violation
        // (exhaustive search needs the most runs, 64 at the time of writing).
        "--seeds",
        "150",
        "--stop-on-violation",
        "--compare",
        "random,swarm,pct,coverage,exhaustive",
        "--trace-dir",
        traces.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "violations were found");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["random", "swarm", "pct", "coverage", "exhaustive"]);
    for row in &rows {
        assert!(row["seeds_to_first_violation"].as_u64().is_some(), "{row}");
        assert!(row["first_violation_seconds"].as_f64().is_some(), "{row}");
    }
    // Campaign failures are kept as traces that replay.
    let coverage = &rows[3]["failing_seeds"][0]["reproduce"];
    let command = coverage.as_str().expect("reproduce command");
    let trace = command
        .split("--replay ")
        .nth(1)
        .expect("a campaign failure replays its trace");
    let replay = dst(&[
        "run",
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        "--ops",
        "40",
        "--strategy",
        "coverage",
        "--replay",
        trace,
    ]);
    assert_eq!(replay.status.code(), Some(1), "{command}");
    // `dst shrink --trace` shrinks such a trace; the shrunk trace replays the failure.
    let shrunk = traces.join("shrunk.trace");
    let cluster = [
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        "--ops",
        "40",
        "--strategy",
        "coverage",
    ];
    let output = dst(&[
        &["shrink", "--trace", trace, "--attempts", "20", "--out"][..],
        &[shrunk.to_str().expect("utf-8 path")],
        &cluster,
    ]
    .concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("events"), "{stdout}");
    let replay = dst(&[
        &["run", "--replay", shrunk.to_str().expect("utf-8 path")][..],
        &cluster,
    ]
    .concat());
    assert_eq!(
        replay.status.code(),
        Some(1),
        "the shrunk trace still fails"
    );
    std::fs::remove_dir_all(&traces).ok();
}

/// A replay cut short goes on past the end of its trace, where the fault process stops. The
/// recording of that run says where the replayed trace ended, so it replays the same run
/// (the shrinker keeps such recordings, and the corpus check replays them).
#[test]
fn a_recording_of_a_replay_cut_short_replays_the_same_run() {
    let mut spec = RunSpec::new("raft", 3, "heavy");
    spec.ops = 40;
    spec.record = true;
    let full = runner::run(&spec).expect("valid").trace.expect("recorded");
    let mut cut = full.clone();
    cut.decisions.truncate(full.decisions.len() / 3);
    let mut replay = spec.clone();
    replay.replay = Some(cut);
    let cut_run = runner::run(&replay).expect("valid replay");
    let recording = cut_run.trace.clone().expect("recorded");
    assert_eq!(
        recording.header.exhausted_at,
        Some((full.decisions.len() / 3) as u64),
        "the recording names where the replayed trace ended"
    );
    let mut again = spec.clone();
    again.record = false;
    again.replay = Some(recording);
    let rerun = runner::run(&again).expect("valid replay");
    assert!(
        rerun.summary.divergence.is_none(),
        "{:?}",
        rerun.summary.divergence
    );
    assert_eq!(rerun.summary.trace_hash, cut_run.summary.trace_hash);
}
