//! `dst run`: one seed of a protocol under a fault profile, checked by every oracle.

use std::path::PathBuf;
use std::process::ExitCode;

use dst::runner::{self, RunOutcome, RunSpec};
use dst_sim::Trace;
use serde_json::json;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: super::ClusterArgs,
    /// The seed: one u64 determines the whole run.
    #[arg(long, default_value_t = 1, env = "DST_SEED")]
    seed: u64,
    /// Scripted faults, e.g. "at 120ms partition 0,1 | 2,3,4; at 400ms heal", or @FILE.
    #[arg(long)]
    plan: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the run's decision trace to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Replay a recorded decision trace instead of drawing from the seed.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Run the seed twice and name the first divergent event if the runs differ.
    #[arg(long)]
    check_determinism: bool,
    /// Print one line per event to stderr.
    #[arg(long)]
    log_events: bool,
    /// Print `tracing` output at this level (error, warn, info, debug, trace) to stderr:
    /// handler logs and ignored messages, each inside a span naming the node and virtual time.
    #[arg(long, value_name = "LEVEL")]
    tracing: Option<tracing::Level>,
    /// The ids of the flags given on the command line (`main` fills them in): a replay
    /// takes the trace's configuration when none of them configures the run.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// Flags that say what to do with a run rather than which run it is.
const NOT_CONFIGURATION: [&str; 7] = [
    "seed",
    "json",
    "record",
    "replay",
    "check_determinism",
    "log_events",
    "tracing",
];

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let spec = match spec_from(&args) {
        Ok(spec) => spec,
        Err(error) => return super::bad_input(error),
    };
    if let Some(level) = args.tracing {
        // No wall-clock timestamps: the spans carry virtual time, which is what a run means.
        tracing_subscriber::fmt()
            .with_max_level(level)
            .without_time()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
    if args.check_determinism {
        return check_determinism(&spec, args.json);
    }
    let outcome = match runner::run(&spec) {
        Ok(outcome) => outcome,
        Err(error) => return super::bad_input(error),
    };
    if let (Some(path), Some(trace)) = (&args.record, &outcome.trace) {
        if let Err(error) = trace.write_atomic(path) {
            return super::bad_input(error);
        }
    }
    if let Some(divergence) = &outcome.summary.divergence {
        eprintln!(
            "dst: warning: the trace diverged from this run at decision {} (wanted {:?}, found {:?})",
            divergence.index, divergence.wanted, divergence.found
        );
    }
    report(&outcome, args.json);
    if outcome.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_VIOLATION)
    }
}

fn spec_from(args: &Args) -> Result<RunSpec, String> {
    let mut spec = configured(args)?;
    if let Some(path) = &args.replay {
        let trace = Trace::read(path)?;
        if !trace.header.args.is_empty() && gives_no_configuration(args) {
            spec = configured(&recorded_args(&trace.header.args)?)?;
        }
        spec.seed = trace.header.seed;
        spec.replay = Some(trace);
    }
    spec.record = args.record.is_some();
    spec.log_events = args.log_events;
    spec.measure = true;
    runner::validate(&spec)?;
    Ok(spec)
}

/// The run the configuration flags describe (everything but what to do with it).
fn configured(args: &Args) -> Result<RunSpec, String> {
    let mut spec = args.cluster.spec(args.seed);
    spec.plan = match &args.plan {
        Some(plan) => match plan.strip_prefix('@') {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read plan {path}: {e}"))?,
            ),
            None => Some(plan.clone()),
        },
        None => None,
    };
    Ok(spec)
}

/// `dst run` with only these flags.
#[derive(clap::Parser)]
#[command(name = "dst run")]
struct Recorded {
    #[command(flatten)]
    args: Args,
}

fn recorded_args(flags: &[String]) -> Result<Args, String> {
    let argv = std::iter::once("dst run".to_string()).chain(flags.iter().cloned());
    match <Recorded as clap::Parser>::try_parse_from(argv) {
        Ok(recorded) => Ok(recorded.args),
        Err(error) => Err(format!(
            "the trace's recorded flags do not parse: {}",
            error.to_string().lines().next().unwrap_or("")
        )),
    }
}

/// Whether no flag on the command line configures the run: then a replay takes the
/// trace's configuration.
fn gives_no_configuration(args: &Args) -> bool {
    args.given
        .iter()
        .all(|id| NOT_CONFIGURATION.contains(&id.as_str()))
}

fn check_determinism(spec: &RunSpec, json: bool) -> ExitCode {
    match runner::check_run_determinism(spec) {
        Err(error) => super::bad_input(error),
        Ok(Ok(hash)) => {
            if json {
                println!(
                    "{}",
                    json!({"seed": spec.seed, "deterministic": true, "trace_hash": format!("{hash:016x}")})
                );
            } else {
                println!(
                    "deterministic: seed {} ran twice to trace hash {hash:016x}",
                    spec.seed
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Err(divergence)) => {
            if json {
                println!(
                    "{}",
                    json!({"seed": spec.seed, "deterministic": false, "divergence": divergence})
                );
            } else {
                println!("NOT deterministic: {divergence}");
                println!("reproduce: {} --check-determinism", spec.command());
            }
            ExitCode::from(super::EXIT_VIOLATION)
        }
    }
}

fn options_json(spec: &RunSpec) -> serde_json::Value {
    let options = runner::protocol_options(spec).unwrap_or_default();
    serde_json::Value::Object(
        options
            .into_iter()
            .map(|(name, value)| (name, json!(value)))
            .collect(),
    )
}

fn report(outcome: &RunOutcome, json: bool) {
    let spec = &outcome.spec;
    let summary = &outcome.summary;
    if json {
        let knobs: serde_json::Map<String, serde_json::Value> = outcome
            .knobs
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let object = json!({
            "seed": spec.seed,
            "protocol": spec.protocol,
            "profile": spec.profile,
            "nodes": spec.nodes,
            "clients": spec.clients,
            "ops": spec.ops,
            "verdict": outcome.verdict(),
            "violations": outcome.violations,
            "events": summary.events,
            "virtual_ms": summary.virtual_ns as f64 / 1e6,
            "trace_hash": format!("{:016x}", summary.trace_hash),
            "end_reason": format!("{:?}", summary.end_reason),
            "knobs": knobs,
            "options": options_json(spec),
            "stats": summary.stats,
            "faults": summary.fault_log.len(),
            "reproduce": spec.command(),
        });
        let mut object = object;
        if let (Some(map), Ok(serde_json::Value::Object(metrics))) = (
            object.as_object_mut(),
            serde_json::to_value(&outcome.metrics),
        ) {
            map.extend(metrics);
        }
        println!("{object}");
        return;
    }
    let knobs: Vec<String> = outcome
        .knobs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "SEED={} protocol={} profile={} {}",
        spec.seed,
        spec.protocol,
        spec.profile,
        knobs.join(" ")
    );
    println!(
        "{}: {} events, {:.1} virtual ms, {} faults, trace hash {:016x}, ended: {:?}",
        outcome.verdict(),
        summary.events,
        summary.virtual_ns as f64 / 1e6,
        summary.fault_log.len(),
        summary.trace_hash,
        summary.end_reason
    );
    let mut options = runner::protocol_options(spec).unwrap_or_default();
    // A Twins run draws the leader order (unless set explicitly): show what the replicas used.
    let explicit = spec.options.iter().any(|(name, _)| name == "leader_order");
    let drawn = outcome
        .knobs
        .iter()
        .find(|(name, _)| name == "leader_order");
    if let (false, Some((_, drawn))) = (explicit, drawn) {
        for (name, value) in &mut options {
            if name == "leader_order" {
                value.clone_from(drawn);
            }
        }
    }
    if !options.is_empty() {
        let options: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("options: {}", options.join(" "));
    }
    for violation in &outcome.violations {
        println!("violation [{}]: {}", violation.property, violation.detail);
    }
    if !outcome.violations.is_empty() {
        println!("reproduce: {}", spec.command());
        println!("for cargo test: DST_SEED={}", spec.seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traces_flags_parse_back_to_its_configuration() {
        for spec in [runner::every_option_set(), RunSpec::new("raft", 3, "heavy")] {
            let parsed = configured(&recorded_args(&spec.run_args()).unwrap()).unwrap();
            assert_eq!(parsed.trace_header(), spec.trace_header());
            assert_eq!(parsed.command(), spec.command());
        }
    }

    #[test]
    fn only_configuration_flags_stop_a_replay_from_taking_the_traces() {
        let mut args = recorded_args(&[]).unwrap();
        args.given = ["seed", "json", "replay", "record"]
            .map(String::from)
            .to_vec();
        assert!(gives_no_configuration(&args));
        args.given.push("protocol".into());
        assert!(!gives_no_configuration(&args));
    }
}
