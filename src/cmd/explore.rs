//! `dst explore`: many runs of a protocol under one or more strategies, with a summary of what
//! broke, time and runs to the first violation, and (with `--corpus`) shrunk failures kept.
//!
//! Per-seed strategies (random, swarm, pct) run each seed independently on `--jobs` threads;
//! a failure is reproduced by its seed. Campaign strategies (coverage, exhaustive) run each
//! seed as one step of a campaign (one campaign per job); a failure is kept as its recorded
//! trace in `--trace-dir`, and reproduced by replaying it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use dst::runner::{self, RunOutcome, RunSpec};
use dst::strategy::coverage::Coverage;
use dst::strategy::exhaustive::{Bounds, Exhaustive};
use dst::strategy::Strategy;
use dst_sim::{EndReason, Trace};
use serde_json::json;

mod found;
mod progress;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: super::ClusterArgs,
    /// How many seeds (runs) in all shards together [default: 100, or unbounded with --time].
    #[arg(long)]
    seeds: Option<u64>,
    /// Stop starting new runs after this many wall seconds.
    #[arg(long)]
    time: Option<f64>,
    /// The first seed; seeds run are first-seed .. first-seed + seeds.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run only shard K of N ("K/N", K from 0): seeds whose index is K modulo N. Also read from
    /// JOB_COMPLETION_INDEX (Kubernetes indexed jobs) with DST_SHARDS.
    #[arg(long)]
    shard: Option<String>,
    /// Worker threads (each seed is an independent single-threaded simulation; campaign
    /// strategies run one campaign per job).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print the summary as one JSON object (with --compare: one per strategy, one per line).
    #[arg(long)]
    json: bool,
    /// Shrink failures and keep one entry per failure signature in this corpus folder.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Replays the shrinker may spend per kept failure.
    #[arg(long, default_value_t = 200)]
    shrink_attempts: u32,
    /// Compare strategies on the same seeds: a comma-separated list (e.g.
    /// random,swarm,pct,coverage,exhaustive); --strategy is then ignored.
    #[arg(long)]
    compare: Option<String>,
    /// Stop each campaign at its first violation (for time-to-first-violation figures).
    #[arg(long)]
    stop_on_violation: bool,
    /// Where campaign strategies write the recorded traces of failing runs.
    #[arg(long, default_value = "dst-traces")]
    trace_dir: PathBuf,
    /// Exhaustive: deviations only among the first this many decisions.
    #[arg(long, default_value_t = 200)]
    depth: usize,
    /// Exhaustive: at most this many deviations from the base run.
    #[arg(long, default_value_t = 2)]
    deviations: u32,
    /// Warn (naming the seed and its reproduce command) about a run still going after this
    /// many wall seconds: a hang in a handler would otherwise stall the campaign silently.
    #[arg(long, default_value_t = 30.0)]
    warn_after_seconds: f64,
}

/// A failing run: seed, "[property] detail", reproduce command, recorded trace (campaigns).
type Failure = (u64, String, String, Option<Trace>);

#[derive(Default)]
struct Tally {
    seeds: u64,
    events: u64,
    virtual_ns: u128,
    /// Runs that ended before their clients finished, by what ended them (the time limit,
    /// say): their workload was cut short, which a verdict alone does not show.
    unfinished: BTreeMap<String, u64>,
    by_property: BTreeMap<String, u64>,
    failing: Vec<Failure>,
    /// Wall seconds from the start until the first violating seed finished.
    first_violation_seconds: Option<f64>,
    /// Seeds finished when the first violation was found (including it).
    seeds_to_first_violation: Option<u64>,
    /// What a campaign strategy did (pool, features, pruning).
    campaign: Vec<String>,
    /// Corpus entries kept unshrunk as found (`--corpus`), by property.
    unshrunk: BTreeMap<String, PathBuf>,
    /// A signal stopped the campaign before its seeds ran out.
    interrupted: bool,
    /// The properties of the failures announced so far (as the first violation of a run).
    announced: BTreeSet<String>,
}

/// The seeds of one shard, lazily: the `n`-th is `first + shard + n * shards`.
#[derive(Clone, Copy)]
struct SeedRange {
    first: u64,
    shard: u64,
    shards: u64,
    total: u64,
}

impl SeedRange {
    fn get(&self, n: u64) -> Option<u64> {
        let index = self.shard.checked_add(n.checked_mul(self.shards)?)?;
        (index < self.total).then(|| self.first.wrapping_add(index))
    }
    fn len(&self) -> u64 {
        self.total.saturating_sub(self.shard).div_ceil(self.shards)
    }
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let (shard, shards) = match parse_shard(args.shard.as_deref()) {
        Ok(shard) => shard,
        Err(error) => return super::bad_input(error),
    };
    let strategies: Vec<String> = match &args.compare {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => vec![args.cluster.strategy.clone()],
    };
    for name in &strategies {
        let template = spec_for(&args, name, args.first_seed);
        if let Err(error) = runner::validate(&template) {
            return super::bad_input(error);
        }
    }
    if args.jobs == 0 {
        return super::bad_input("--jobs must be at least 1");
    }
    if args.time.is_some_and(|t| t.is_nan() || t <= 0.0) {
        return super::bad_input("--time must be a positive number of seconds");
    }
    // Found out now, not after a night of runs whose failures then have nowhere to go.
    if let Some(dir) = &args.corpus {
        if let Err(error) = std::fs::create_dir_all(dir) {
            return super::bad_input(format!("cannot create {}: {error}", dir.display()));
        }
    }
    let default_seeds = if args.time.is_some() { u64::MAX } else { 100 };
    let range = SeedRange {
        first: args.first_seed,
        shard,
        shards,
        total: args.seeds.unwrap_or(default_seeds),
    };
    found::catch_interrupts();
    let mut any_failure = false;
    let mut rows = Vec::new();
    for name in &strategies {
        let (tally, wall_seconds) = explore(&args, name, range);
        any_failure |= !tally.failing.is_empty();
        report(&args, name, &tally, wall_seconds);
        if let Some(dir) = &args.corpus {
            keep_failures(&args, name, &tally, dir);
        }
        rows.push((name.clone(), tally, wall_seconds));
    }
    if strategies.len() > 1 && !args.json {
        compare_table(&rows);
    }
    if any_failure {
        ExitCode::from(super::EXIT_VIOLATION)
    } else {
        ExitCode::SUCCESS
    }
}

fn spec_for(args: &Args, strategy: &str, seed: u64) -> RunSpec {
    let mut spec = args.cluster.spec(seed);
    spec.strategy = strategy.to_string();
    spec
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

/// Shared by the workers of one strategy's campaign.
struct Shared<'a> {
    args: &'a Args,
    strategy: &'a str,
    tally: Mutex<Tally>,
    stop: AtomicBool,
    /// Numbers the failing traces a campaign writes (several runs share a seed label).
    traces_written: AtomicU64,
    progress: progress::Progress,
    /// Per worker: the seed it is running, since when (campaign seconds), and whether the
    /// watchdog already warned about it.
    running: Mutex<BTreeMap<usize, (u64, f64, bool)>>,
    /// Set when every worker has finished; the watchdog then stops.
    done: AtomicBool,
    unshrunk: found::Unshrunk,
    // Exploration is tooling: it times itself and runs independent simulations on threads.
    #[allow(clippy::disallowed_types)]
    started: std::time::Instant,
}

impl Shared<'_> {
    fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// False once the campaign should start no new run.
    fn go_on(&self) -> bool {
        let out_of_time = self
            .args
            .time
            .is_some_and(|limit| self.elapsed_seconds() >= limit);
        !out_of_time && !self.stop.load(Ordering::Relaxed) && !found::interrupted()
    }

    /// Runs `run` as worker `worker`'s run of `seed`, under the watchdog's eye.
    fn watched<T>(&self, worker: usize, seed: u64, run: impl FnOnce() -> T) -> T {
        let started = self.elapsed_seconds();
        self.running
            .lock()
            .expect("running lock")
            .insert(worker, (seed, started, false));
        let result = run();
        self.running.lock().expect("running lock").remove(&worker);
        result
    }
}

/// Warns once about each run that has gone on for longer than `--warn-after-seconds`.
fn watchdog(shared: &Shared<'_>) {
    let limit = shared.args.warn_after_seconds;
    while !shared.done.load(Ordering::Relaxed) {
        std::thread::park_timeout(std::time::Duration::from_millis(500));
        let now = shared.elapsed_seconds();
        let mut running = shared.running.lock().expect("running lock");
        for (seed, started, warned) in running.values_mut() {
            if !*warned && now - *started > limit {
                *warned = true;
                let command = spec_for(shared.args, shared.strategy, *seed).command();
                eprintln!(
                    "dst: warning: seed {seed} has run for {:.0} wall seconds (a hang?); reproduce: {command}",
                    now - *started
                );
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // tooling: wall time of the campaign
fn explore(args: &Args, strategy: &str, range: SeedRange) -> (Tally, f64) {
    let shared = Shared {
        args,
        strategy,
        tally: Mutex::new(Tally::default()),
        stop: AtomicBool::new(false),
        traces_written: AtomicU64::new(0),
        progress: progress::Progress::new(strategy, range.len(), args.json),
        running: Mutex::new(BTreeMap::new()),
        done: AtomicBool::new(false),
        unshrunk: found::Unshrunk::default(),
        started: std::time::Instant::now(),
    };
    let kind = Strategy::parse(strategy).expect("validated strategy");
    let jobs = args.jobs.min(range.len().clamp(1, 1 << 16) as usize);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let shared = &shared;
        let watchdog = scope.spawn(move || watchdog(shared));
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                let next = &next;
                scope.spawn(move || match kind {
                    Strategy::Exhaustive if job == 0 => exhaustive(shared, range),
                    Strategy::Exhaustive => {}
                    _ if kind.is_campaign() => coverage(shared, range, job, jobs),
                    _ => per_seed_worker(shared, range, next, job),
                })
            })
            .collect();
        for worker in workers {
            if worker.join().is_err() {
                eprintln!("dst: error: a worker panicked (see above)");
            }
        }
        shared.done.store(true, Ordering::Relaxed);
        watchdog.thread().unpark();
    });
    shared.progress.finish();
    let wall_seconds = shared.elapsed_seconds();
    let mut tally = shared
        .tally
        .into_inner()
        .expect("no worker panicked while holding the tally");
    tally.unshrunk = shared.unshrunk.into_kept();
    tally.interrupted = found::interrupted();
    (tally, wall_seconds)
}

fn per_seed_worker(shared: &Shared<'_>, range: SeedRange, next: &AtomicU64, worker: usize) {
    while shared.go_on() {
        let Some(seed) = range.get(next.fetch_add(1, Ordering::Relaxed)) else {
            break;
        };
        let spec = spec_for(shared.args, shared.strategy, seed);
        let outcome = shared
            .watched(worker, seed, || runner::run(&spec))
            .expect("validated spec");
        record(shared, &outcome);
    }
}

/// One coverage campaign over the seeds `job`, `job + jobs`, ... of the shard.
fn coverage(shared: &Shared<'_>, range: SeedRange, job: usize, jobs: usize) {
    let Some(first) = range.get(job as u64) else {
        return;
    };
    let template = spec_for(shared.args, shared.strategy, first);
    let mut campaign = Coverage::new(&template, first);
    let mut n = job as u64;
    while shared.go_on() {
        let Some(seed) = range.get(n) else { break };
        n += jobs as u64;
        let outcome = shared
            .watched(job, seed, || campaign.run(seed))
            .expect("validated spec");
        record(shared, &outcome);
    }
    let mut tally = shared.tally.lock().expect("tally lock");
    tally.campaign.push(campaign.describe());
}

/// The bounded enumeration from the shard's first seed; `--seeds` bounds its runs.
fn exhaustive(shared: &Shared<'_>, range: SeedRange) {
    let Some(first) = range.get(0) else { return };
    let template = spec_for(shared.args, shared.strategy, first);
    let bounds = Bounds {
        depth_max: shared.args.depth,
        deviations_max: shared.args.deviations,
    };
    let mut campaign = Exhaustive::new(&template, bounds);
    let mut runs = 0;
    while shared.go_on() && runs < range.len() {
        let Some(outcome) = shared.watched(0, first, || campaign.run()) else {
            break;
        };
        runs += 1;
        record(shared, &outcome.expect("validated spec"));
    }
    let mut tally = shared.tally.lock().expect("tally lock");
    tally.campaign.push(campaign.describe());
}

fn record(shared: &Shared<'_>, outcome: &RunOutcome) {
    let failure = outcome.violations.first().map(|first| {
        let line = format!("[{}] {}", first.property, first.detail);
        let (command, trace) = reproduce(shared, outcome);
        (outcome.spec.seed, line, command, trace)
    });
    if let (Some(dir), Some((_, line, _, trace))) = (&shared.args.corpus, &failure) {
        let note = format!(
            "found by dst explore --strategy {}: {line}",
            shared.strategy
        );
        shared.unshrunk.keep(dir, outcome, trace.as_ref(), &note);
    }
    let mut tally = shared.tally.lock().expect("tally lock");
    tally.seeds += 1;
    if failure.is_some() && tally.first_violation_seconds.is_none() {
        tally.first_violation_seconds = Some(shared.elapsed_seconds());
        tally.seeds_to_first_violation = Some(tally.seeds);
    }
    tally.events += outcome.summary.events;
    tally.virtual_ns += outcome.summary.virtual_ns as u128;
    let end_reason = outcome.summary.end_reason;
    // Runs without clients (pingpong) have no workload to finish.
    let has_clients = !outcome.summary.clients_pending.is_empty();
    if has_clients && end_reason != EndReason::ClientsDone {
        *tally
            .unfinished
            .entry(format!("{end_reason:?}"))
            .or_default() += 1;
    }
    for violation in &outcome.violations {
        *tally
            .by_property
            .entry(violation.property.clone())
            .or_default() += 1;
    }
    let failed = failure.is_some();
    if let Some(failure) = failure {
        announce(shared, &mut tally, &failure);
        tally.failing.push(failure);
    }
    drop(tally);
    shared.progress.tick(failed);
    if failed && shared.args.stop_on_violation {
        shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The property a failure line ("[property] detail") names.
fn property_of(line: &str) -> &str {
    let named = line.split(']').next().unwrap_or_default();
    named.trim_start_matches('[')
}

/// Failures announced as found, besides the first of each property.
const ANNOUNCED_MAX: usize = 20;

/// Prints a failure when found (after it is kept), so that a campaign killed later loses
/// nothing: the first `ANNOUNCED_MAX`, and the first of each property.
fn announce(shared: &Shared<'_>, tally: &mut Tally, failure: &Failure) {
    let (seed, line, command, _) = failure;
    let first_of_property = tally.announced.insert(property_of(line).to_string());
    if tally.failing.len() < ANNOUNCED_MAX || first_of_property {
        shared.progress.println(&format!(
            "dst: found seed {seed}: {line}\n  reproduce: {command}"
        ));
    }
}

/// The command that reproduces a failing run; for campaign runs it replays the recorded trace,
/// written to `--trace-dir`.
fn reproduce(shared: &Shared<'_>, outcome: &RunOutcome) -> (String, Option<Trace>) {
    let command = outcome.spec.command();
    let Some(trace) = outcome.trace.clone() else {
        return (command, None);
    };
    let dir = &shared.args.trace_dir;
    let number = shared.traces_written.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(
        "{}-{}-{}-seed{}-{number}.trace",
        outcome.spec.protocol,
        outcome.spec.profile,
        shared.strategy.replace(':', "_"),
        outcome.spec.seed
    ));
    let written = std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
        .and_then(|()| trace.write_atomic(&path));
    match written {
        Ok(()) => (
            format!("{command} --replay {}", path.display()),
            Some(trace),
        ),
        Err(error) => {
            eprintln!("dst: warning: failing trace not written: {error}");
            (format!("{command} (trace not written)"), Some(trace))
        }
    }
}

/// Names the runs whose workload was cut short, and how to give them room.
fn unfinished_line(unfinished: &BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = unfinished.values().sum();
    if total == 0 {
        return None;
    }
    let reasons: Vec<String> = unfinished
        .iter()
        .map(|(reason, count)| format!("{reason}: {count}"))
        .collect();
    let hint = if unfinished.contains_key("TimeLimit") {
        "; --end-ms raises the time limit"
    } else {
        ""
    };
    Some(format!(
        "{total} runs ended before their clients finished ({}){hint}",
        reasons.join(", ")
    ))
}

fn report(args: &Args, strategy: &str, tally: &Tally, wall_seconds: f64) {
    let mut failing: Vec<&Failure> = tally.failing.iter().collect();
    failing.sort_by_key(|f| f.0);
    let seeds_per_sec = tally.seeds as f64 / wall_seconds.max(1e-9);
    let ratio = tally.virtual_ns as f64 / 1e9 / wall_seconds.max(1e-9);
    if args.json {
        let object = json!({
            "protocol": args.cluster.protocol,
            "profile": args.cluster.profile,
            "strategy": strategy,
            "seeds": tally.seeds,
            "violations": failing.len(),
            "violations_by_property": tally.by_property,
            "failing_seeds": failing.iter().map(|(seed, what, command, _)| json!({"seed": seed, "violation": what, "reproduce": command})).collect::<Vec<_>>(),
            "seeds_per_sec": seeds_per_sec,
            "virtual_to_wall": ratio,
            "virtual_seconds": tally.virtual_ns as f64 / 1e9,
            "events": tally.events,
            "unfinished": tally.unfinished.values().sum::<u64>(),
            "unfinished_by_reason": tally.unfinished,
            "wall_seconds": wall_seconds,
            "first_violation_seconds": tally.first_violation_seconds,
            "seeds_to_first_violation": tally.seeds_to_first_violation,
            "jobs": args.jobs,
            "interrupted": tally.interrupted,
            "campaign": tally.campaign,
        });
        println!("{object}");
        return;
    }
    println!(
        "{} seeds of {} under {} with {strategy}: {} violating, {:.1} seeds/s, virtual/wall {:.0}x ({:.1} virtual s a seed), {} events, {:.2} s",
        tally.seeds,
        args.cluster.protocol,
        args.cluster.profile,
        failing.len(),
        seeds_per_sec,
        ratio,
        tally.virtual_ns as f64 / 1e9 / tally.seeds.max(1) as f64,
        tally.events,
        wall_seconds
    );
    for line in &tally.campaign {
        println!("  {line}");
    }
    if let Some(line) = unfinished_line(&tally.unfinished) {
        println!("  {line}");
    }
    if tally.interrupted {
        println!("  interrupted: a signal stopped the campaign starting runs");
    }
    for (property, count) in &tally.by_property {
        println!("  {property}: {count}");
    }
    if let (Some(seconds), Some(seeds)) = (
        tally.first_violation_seconds,
        tally.seeds_to_first_violation,
    ) {
        println!("first violation after {seeds} seeds, {seconds:.3} s");
    }
    for (seed, what, command, _) in failing.iter().take(20) {
        println!("seed {seed}: {what}\n  reproduce: {command}\n  for cargo test: DST_SEED={seed}");
    }
}

/// One row per strategy: runs, failures, and how soon the first one came.
fn compare_table(rows: &[(String, Tally, f64)]) {
    println!(
        "\n{:<12} {:>8} {:>10} {:>12} {:>14} {:>10}",
        "strategy", "seeds", "violating", "seeds-to-1st", "seconds-to-1st", "seeds/s"
    );
    for (name, tally, wall_seconds) in rows {
        let first_seeds = tally
            .seeds_to_first_violation
            .map_or("-".to_string(), |s| s.to_string());
        let first_seconds = tally
            .first_violation_seconds
            .map_or("-".to_string(), |s| format!("{s:.3}"));
        println!(
            "{:<12} {:>8} {:>10} {:>12} {:>14} {:>10.1}",
            name,
            tally.seeds,
            tally.failing.len(),
            first_seeds,
            first_seconds,
            tally.seeds as f64 / wall_seconds.max(1e-9)
        );
    }
}

/// Shrinks the lowest failing run of each signature and keeps it in the corpus.
fn keep_failures(args: &Args, strategy: &str, tally: &Tally, dir: &Path) {
    let mut failing: Vec<&Failure> = tally.failing.iter().collect();
    failing.sort_by_key(|f| f.0);
    let mut kept = std::collections::BTreeSet::new();
    for (seed, what, _, trace) in failing {
        if !kept.insert(property_of(what)) {
            continue;
        }
        let mut spec = spec_for(args, strategy, *seed);
        spec.replay = trace.clone();
        let shrunk = match dst::shrink::shrink(&spec, args.shrink_attempts) {
            Ok(shrunk) => shrunk,
            Err(error) => {
                eprintln!("dst: warning: seed {seed} not kept: {error}");
                continue;
            }
        };
        let note = format!("found by dst explore --strategy {strategy}: {what}");
        match dst::corpus::save(dir, &shrunk, &note) {
            Ok(path) => println!(
                "kept {} (events {} -> {})",
                path.display(),
                shrunk.events_before,
                shrunk.events_after
            ),
            Err(error) => {
                eprintln!("dst: warning: seed {seed} not kept: {error}");
                continue;
            }
        }
        // The shrunk entry stands for the property now; one that failed to shrink or save
        // keeps its unshrunk entry.
        if let Some(unshrunk) = tally.unshrunk.get(&shrunk.signature) {
            if let Err(error) = dst::corpus::remove(unshrunk) {
                eprintln!("dst: warning: {error}");
            }
        }
    }
}
