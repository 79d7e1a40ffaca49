//! `dst shrink`: minimise a failing seed's decision trace and save it.

use std::path::PathBuf;
use std::process::ExitCode;

use dst::runner;
use dst::shrink::{event_summary, shrink};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: super::ClusterArgs,
    /// The failing seed.
    #[arg(long, env = "DST_SEED", required_unless_present = "trace")]
    seed: Option<u64>,
    /// Shrink this recorded trace instead of the seed's run (failures found by the campaign
    /// strategies, coverage and exhaustive, which their seed alone does not reproduce). Its
    /// header must match the configuration given.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Replays to try at most.
    #[arg(long, default_value_t = 400)]
    attempts: u32,
    /// Where to write the shrunk trace.
    #[arg(long, default_value = "shrunk.trace")]
    out: PathBuf,
    /// Also keep the shrunk failure as an entry of this corpus folder (e.g. seeds/).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// A note for the corpus entry.
    #[arg(long, default_value = "")]
    note: String,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let mut spec = args.cluster.spec(args.seed.unwrap_or(0));
    if let Some(path) = &args.trace {
        match dst_sim::Trace::read(path) {
            Ok(trace) => {
                spec.seed = trace.header.seed;
                spec.replay = Some(trace);
            }
            Err(error) => return super::bad_input(error),
        }
    }
    if let Err(error) = runner::validate(&spec) {
        return super::bad_input(error);
    }
    let shrunk = match shrink(&spec, args.attempts) {
        Ok(shrunk) => shrunk,
        Err(error) => return super::bad_input(error),
    };
    if let Err(error) = shrunk.trace.write_atomic(&args.out) {
        return super::bad_input(error);
    }
    println!(
        "shrunk [{}] in {} replays: events {} -> {}, decisions {} -> {} ({} -> {} non-zero), faults {} -> {}",
        shrunk.signature,
        shrunk.attempts,
        shrunk.events_before,
        shrunk.events_after,
        shrunk.decisions_before,
        shrunk.decisions_after,
        shrunk.nonzero_before,
        shrunk.nonzero_after,
        shrunk.faults_before,
        shrunk.faults_after
    );
    println!("{}", event_summary(&shrunk.outcome));
    println!(
        "replay: {} --replay {}",
        shrunk.outcome.spec.command(),
        args.out.display()
    );
    if let Some(dir) = &args.corpus {
        match dst::corpus::save(dir, &shrunk, &args.note) {
            Ok(path) => println!("kept: {}", path.display()),
            Err(error) => return super::bad_input(error),
        }
    }
    ExitCode::from(super::EXIT_VIOLATION)
}
