//! `dst explore`: many seeds of a protocol, with a summary of what broke.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dst::runner::{self, RunOutcome, RunSpec};
use serde_json::json;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: super::ClusterArgs,
    /// How many seeds.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed; seeds run are first-seed .. first-seed + seeds.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run only shard K of N ("K/N", K from 0): seeds whose index is K modulo N.
    #[arg(long)]
    shard: Option<String>,
    /// Worker threads (each seed is an independent single-threaded simulation).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Shrink failures and keep one entry per failure signature in this corpus folder.
    #[arg(long)]
    corpus: Option<std::path::PathBuf>,
    /// Replays the shrinker may spend per kept failure.
    #[arg(long, default_value_t = 200)]
    shrink_attempts: u32,
}

#[derive(Default)]
struct Tally {
    seeds: u64,
    events: u64,
    virtual_ns: u128,
    by_property: BTreeMap<String, u64>,
    failing: Vec<(u64, String, String)>,
    /// Wall seconds from the start until the first violating seed finished.
    first_violation_seconds: Option<f64>,
    /// Seeds finished when the first violation was found (including it).
    seeds_to_first_violation: Option<u64>,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let shard = match parse_shard(args.shard.as_deref()) {
        Ok(shard) => shard,
        Err(error) => return super::bad_input(error),
    };
    let template = spec_for(&args, args.first_seed);
    if let Err(error) = runner::validate(&template) {
        return super::bad_input(error);
    }
    if args.jobs == 0 {
        return super::bad_input("--jobs must be at least 1");
    }
    let seeds: Vec<u64> = (0..args.seeds)
        .filter(|index| index % shard.1 == shard.0)
        .map(|index| args.first_seed + index)
        .collect();
    let (tally, wall_seconds) = explore(&args, &seeds);
    report(&args, &tally, wall_seconds);
    if let Some(dir) = &args.corpus {
        keep_failures(&args, &tally, dir);
    }
    if tally.failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_VIOLATION)
    }
}

fn spec_for(args: &Args, seed: u64) -> RunSpec {
    args.cluster.spec(seed)
}

/// Parses "K/N"; also reads the index variables of Kubernetes indexed jobs and CI matrices.
fn parse_shard(text: Option<&str>) -> Result<(u64, u64), String> {
    let text = match text {
        Some(text) => text.to_string(),
        None => match (
            std::env::var("JOB_COMPLETION_INDEX"),
            std::env::var("DST_SHARDS"),
        ) {
            (Ok(index), Ok(count)) => format!("{index}/{count}"),
            _ => return Ok((0, 1)),
        },
    };
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard '{text}' is not K/N"))?;
    let index: u64 = index
        .trim()
        .parse()
        .map_err(|_| format!("bad shard index in '{text}'"))?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("bad shard count in '{text}'"))?;
    if count == 0 || index >= count {
        return Err(format!("--shard '{text}': need 0 <= K < N"));
    }
    Ok((index, count))
}

// Exploration is tooling: it times itself and runs independent simulations on threads.
#[allow(clippy::disallowed_methods)]
fn explore(args: &Args, seeds: &[u64]) -> (Tally, f64) {
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(seeds.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(index) else { break };
                let outcome = runner::run(&spec_for(args, seed)).expect("validated spec");
                record(&tally, &outcome, started.elapsed().as_secs_f64());
            });
        }
    });
    let tally = tally
        .into_inner()
        .expect("no worker panicked while holding the tally");
    (tally, started.elapsed().as_secs_f64())
}

fn record(tally: &Mutex<Tally>, outcome: &RunOutcome, elapsed_seconds: f64) {
    let mut tally = tally.lock().expect("tally lock");
    tally.seeds += 1;
    if !outcome.violations.is_empty() && tally.first_violation_seconds.is_none() {
        tally.first_violation_seconds = Some(elapsed_seconds);
        tally.seeds_to_first_violation = Some(tally.seeds);
    }
    tally.events += outcome.summary.events;
    tally.virtual_ns += outcome.summary.virtual_ns as u128;
    for violation in &outcome.violations {
        *tally
            .by_property
            .entry(violation.property.clone())
            .or_default() += 1;
    }
    if let Some(first) = outcome.violations.first() {
        let line = format!("[{}] {}", first.property, first.detail);
        tally
            .failing
            .push((outcome.spec.seed, line, outcome.spec.command()));
    }
}

fn report(args: &Args, tally: &Tally, wall_seconds: f64) {
    let mut failing = tally.failing.clone();
    failing.sort();
    let seeds_per_sec = tally.seeds as f64 / wall_seconds.max(1e-9);
    let ratio = tally.virtual_ns as f64 / 1e9 / wall_seconds.max(1e-9);
    if args.json {
        let object = json!({
            "protocol": args.cluster.protocol,
            "profile": args.cluster.profile,
            "seeds": tally.seeds,
            "violations": failing.len(),
            "violations_by_property": tally.by_property,
            "failing_seeds": failing.iter().map(|(seed, what, command)| json!({"seed": seed, "violation": what, "reproduce": command})).collect::<Vec<_>>(),
            "seeds_per_sec": seeds_per_sec,
            "virtual_to_wall": ratio,
            "events": tally.events,
            "wall_seconds": wall_seconds,
            "first_violation_seconds": tally.first_violation_seconds,
            "seeds_to_first_violation": tally.seeds_to_first_violation,
            "jobs": args.jobs,
        });
        println!("{object}");
        return;
    }
    println!(
        "{} seeds of {} under {}: {} violating, {:.1} seeds/s, virtual/wall {:.0}x, {} events, {:.2} s",
        tally.seeds,
        args.cluster.protocol,
        args.cluster.profile,
        failing.len(),
        seeds_per_sec,
        ratio,
        tally.events,
        wall_seconds
    );
    for (property, count) in &tally.by_property {
        println!("  {property}: {count}");
    }
    if let (Some(seconds), Some(seeds)) = (
        tally.first_violation_seconds,
        tally.seeds_to_first_violation,
    ) {
        println!("first violation after {seeds} seeds, {seconds:.3} s");
    }
    for (seed, what, command) in failing.iter().take(20) {
        println!("seed {seed}: {what}\n  reproduce: {command}\n  for cargo test: DST_SEED={seed}");
    }
}

/// Shrinks the lowest failing seed of each signature and keeps it in the corpus.
fn keep_failures(args: &Args, tally: &Tally, dir: &std::path::Path) {
    let mut failing = tally.failing.clone();
    failing.sort();
    let mut kept = std::collections::BTreeSet::new();
    for (seed, what, _) in failing {
        let signature = what.split(']').next().unwrap_or_default().to_string();
        if !kept.insert(signature) {
            continue;
        }
        let spec = spec_for(args, seed);
        let shrunk = match dst::shrink::shrink(&spec, args.shrink_attempts) {
            Ok(shrunk) => shrunk,
            Err(error) => {
                eprintln!("dst: warning: seed {seed} not kept: {error}");
                continue;
            }
        };
        let note = format!("found by dst explore: {what}");
        match dst::corpus::save(dir, &shrunk.outcome, &shrunk.trace, &note) {
            Ok(path) => println!(
                "kept {} (events {} -> {})",
                path.display(),
                shrunk.events_before,
                shrunk.events_after
            ),
            Err(error) => eprintln!("dst: warning: seed {seed} not kept: {error}"),
        }
    }
}
