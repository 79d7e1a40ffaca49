//! `dst corpus merge`: combine corpus folders (one per shard) without duplicate failures.

use std::path::PathBuf;
use std::process::ExitCode;

/// Corpus commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Merge corpus folders into one, one entry per failure signature (the lowest seed).
    Merge {
        /// The folder to merge into (created if missing).
        #[arg(long)]
        into: PathBuf,
        /// Folders to merge from.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
}

/// Entry point.
pub fn main(command: Command) -> ExitCode {
    let Command::Merge { into, sources } = command;
    match dst::corpus::merge(&sources, &into) {
        Ok(report) => {
            for error in &report.errors {
                eprintln!("dst: warning: skipped {error}");
            }
            println!(
                "merged {} entries into {}: {} kept, {} duplicates, {} unreadable",
                report.read,
                into.display(),
                report.kept,
                report.duplicates,
                report.errors.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => super::bad_input(error),
    }
}
