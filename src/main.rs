//! `dst`: deterministic simulation testing for consensus protocols.
//!
//! Exit codes: 0 when every check passes, 1 on a violation, 2 on bad usage or bad input.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;

// Simulations allocate and free small objects at a high rate (messages, log entries, keys);
// mimalloc serves them in a fraction of the system allocator's time. Nothing simulated depends
// on addresses, so runs are the same under either allocator.
// `--no-default-features` builds with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dst",
    version,
    about = "Deterministic simulation testing for consensus protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed of a protocol under a fault profile and check it.
    Run(cmd::run::Args),
    /// Run many seeds and summarise the violations found.
    Explore(cmd::explore::Args),
    /// Shrink a failing seed to a minimal decision trace.
    Shrink(cmd::shrink::Args),
    /// Manage failing-seed corpora.
    #[command(subcommand)]
    Corpus(cmd::corpus::Command),
    /// Check histories for linearizability.
    Check(cmd::check::Args),
    /// Compare protocols and protocol variants on identical seeds.
    Compare(cmd::compare::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Simulator message throughput: 5 nodes bouncing messages.
    Pingpong(cmd::bench_pingpong::Args),
    /// Linearizability checker over a directory of reference histories.
    Check(cmd::bench_check::Args),
    /// The hybrid-model inference service.
    Inference(cmd::bench_inference::Args),
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    // A protocol's panic inside a run is a finding the run reports (with the seed and the
    // command that reproduces it), not a crash to print here.
    dst_sim::panic::install_hook();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::Run(mut args) => {
            args.given = given_flags(matches.subcommand_matches("run"));
            cmd::run::main(args)
        }
        Command::Explore(args) => cmd::explore::main(args),
        Command::Check(args) => cmd::check::main(args),
        Command::Compare(args) => cmd::compare::main(args),
        Command::Shrink(args) => cmd::shrink::main(args),
        Command::Corpus(command) => cmd::corpus::main(command),
        Command::Bench(BenchCommand::Pingpong(args)) => cmd::bench_pingpong::main(args),
        Command::Bench(BenchCommand::Check(args)) => cmd::bench_check::main(args),
        Command::Bench(BenchCommand::Inference(args)) => cmd::bench_inference::main(args),
    }
}

/// The ids of the flags given on the command line (not defaulted, not from the environment).
fn given_flags(matches: Option<&clap::ArgMatches>) -> Vec<String> {
    let Some(matches) = matches else {
        return Vec::new();
    };
    matches
        .ids()
        .filter(|id| {
            matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|id| id.to_string())
        .collect()
}

/// `dst ... | head` should end quietly when the reader goes away, as command-line tools do,
/// instead of panicking on a failed write to stdout.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at startup before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
