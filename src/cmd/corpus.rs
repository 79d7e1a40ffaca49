//! `dst corpus`: combine corpus folders (one per shard) without duplicate failures, and
//! replay a folder's entries as `cargo test` does for `seeds/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Corpus commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Merge corpus folders into one, one entry per failure signature (a shrunk entry before
    /// an unshrunk one, then the lowest seed).
    Merge {
        /// The folder to merge into (created if missing).
        #[arg(long)]
        into: PathBuf,
        /// Folders to merge from.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Replay every entry of a corpus folder: open bugs must still fail as recorded, fixed
    /// ones must pass. Exit 1 if any entry does not behave as it expects.
    Check {
        /// The corpus folder.
        #[arg(default_value = "seeds")]
        dir: PathBuf,
    },
}

/// Entry point.
pub fn main(command: Command) -> ExitCode {
    match command {
        Command::Merge { into, sources } => merge(&into, &sources),
        Command::Check { dir } => check(&dir),
    }
}

fn merge(into: &Path, sources: &[PathBuf]) -> ExitCode {
    match dst::corpus::merge(sources, into) {
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

fn check(dir: &Path) -> ExitCode {
    let entries = dst::corpus::load_all(dir);
    if entries.is_empty() {
        return super::bad_input(format!("no corpus entries in {}", dir.display()));
    }
    let mut problems = 0;
    for (path, loaded) in &entries {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let verdict = loaded
            .clone()
            .and_then(|(entry, trace)| dst::corpus::check(&entry, trace));
        match verdict {
            Ok(description) => println!("{name}: {description}"),
            Err(problem) => {
                problems += 1;
                println!("{name}: PROBLEM: {problem}");
            }
        }
    }
    println!(
        "{} entries in {}: {} as expected, {problems} not",
        entries.len(),
        dir.display(),
        entries.len() - problems
    );
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_VIOLATION)
    }
}
