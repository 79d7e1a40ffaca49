//! `dst check`: check recorded histories for linearizability.
//!
//! One line per file with its verdict and check time (parsing excluded), or with `--json` one
//! JSON object per line. Exit 0 when every file is linearizable, 1 when any is not, 2 on bad
//! input, 3 when none is illegal but some stayed undecided (a budget ran out).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use dst_checkers::files::{check_text, FileCheck, ModelName};
use dst_checkers::linearizability::{CheckConfig, Verdict};

/// Exit code when no history is illegal but some are undecided.
const EXIT_UNDECIDED: u8 = 3;

/// Arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 all linearizable, 1 any not linearizable, 2 bad input, 3 undecided (a budget ran out)."
)]
pub struct Args {
    /// Model and format: etcd (Jepsen etcd log), register, cas-register, kv (Jepsen EDN).
    #[arg(long)]
    pub model: ModelName,
    /// One JSON object per file and line.
    #[arg(long)]
    pub json: bool,
    /// Write an HTML explanation per file into this directory.
    #[arg(long, value_name = "DIR")]
    pub explain: Option<PathBuf>,
    /// Check a partitionable model as one history (for comparison).
    #[arg(long)]
    pub no_partition: bool,
    /// Decide every partition instead of stopping at the first illegal one, and report each.
    #[arg(long)]
    pub all_partitions: bool,
    /// Partitions checked in parallel.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Wall-clock budget per file; undecided partitions are reported as unknown.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Memory budget per file in megabytes.
    #[arg(long, default_value_t = 1024)]
    pub memory_mb: usize,
    /// History files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let timeout = match args.timeout {
        Some(seconds) if !(seconds > 0.0 && seconds.is_finite()) => {
            return super::bad_input(format!("--timeout must be positive, got {seconds}"));
        }
        timeout => timeout.map(Duration::from_secs_f64),
    };
    let config = CheckConfig {
        partition: !args.no_partition,
        all_partitions: args.all_partitions,
        threads: args.threads.max(1),
        timeout,
        memory_bytes_max: args.memory_mb.saturating_mul(1 << 20),
        explain: args.explain.is_some(),
        ..CheckConfig::default()
    };
    if let Some(dir) = &args.explain {
        if let Err(error) = std::fs::create_dir_all(dir) {
            return super::bad_input(format!("{}: {error}", dir.display()));
        }
    }
    let (mut bad, mut illegal, mut undecided) = (false, false, false);
    for file in &args.files {
        match check_file(file, &args, &config) {
            Err(message) => {
                eprintln!("dst: error: {message}");
                bad = true;
            }
            Ok(result) => {
                illegal |= result.report.verdict == Verdict::NotLinearizable;
                undecided |= result.report.verdict == Verdict::Unknown;
                print_result(file, &result, &args);
            }
        }
    }
    let code = if bad {
        super::EXIT_BAD_INPUT
    } else if illegal {
        super::EXIT_VIOLATION
    } else if undecided {
        EXIT_UNDECIDED
    } else {
        super::EXIT_OK
    };
    ExitCode::from(code)
}

fn check_file(file: &Path, args: &Args, config: &CheckConfig) -> Result<FileCheck, String> {
    let text =
        std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let title = file.display().to_string();
    let explain = args.explain.as_ref().map(|_| title.as_str());
    let result = check_text(args.model, &text, config, explain)
        .map_err(|error| format!("{}:{}: {}", file.display(), error.line, error.message))?;
    if let (Some(dir), Some(html)) = (&args.explain, &result.html) {
        let name = file
            .file_name()
            .map_or("history".into(), |n| n.to_string_lossy().into_owned());
        let path = dir.join(format!("{name}.html"));
        dst_sim::trace::write_atomic(&path, html.as_bytes())?;
    }
    Ok(result)
}

fn print_result(file: &Path, result: &FileCheck, args: &Args) {
    let report = &result.report;
    let failing = report.first_illegal();
    if args.json {
        let partitions: Vec<serde_json::Value> = report
            .partitions
            .iter()
            .filter(|_| args.all_partitions || report.partitions.len() > 1)
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "verdict": p.verdict,
                    "unknown_reason": p.unknown_reason,
                    "operations": p.operations.len(),
                    "states": p.states,
                    "steps": p.steps,
                })
            })
            .collect();
        let line = serde_json::json!({
            "file": file.display().to_string(),
            "verdict": report.verdict,
            "check_seconds": result.check_seconds,
            "parse_seconds": result.parse_seconds,
            "operations": result.operations,
            "partitions": partitions,
            "undecided": report.undecided,
            "failing_partition": failing.map(|p| p.name.clone()),
            "failing_operation": failing.and_then(|p| p.failing_operation),
            "longest_prefix": failing.map(|p| p.longest_prefix.clone()),
        });
        println!("{line}");
        return;
    }
    let mut line = format!(
        "{}: {} (check {:.6} s, parse {:.6} s, {} ops)",
        file.display(),
        report.verdict.as_str(),
        result.check_seconds,
        result.parse_seconds,
        result.operations
    );
    if let Some(partition) = failing {
        let op = partition
            .failing_operation
            .map_or("?".to_string(), |op| op.to_string());
        line += &format!(
            "; partition {:?}: op {op} cannot be placed after a prefix of {}",
            partition.name,
            partition.longest_prefix.len()
        );
    }
    if !report.undecided.is_empty() {
        line += &format!("; undecided partitions {:?}", report.undecided);
    }
    println!("{line}");
    if args.all_partitions {
        for partition in &report.partitions {
            let reason = partition
                .unknown_reason
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"));
            println!(
                "  partition {:?}: {}{reason}, {} ops, {} states, {} steps",
                partition.name,
                partition.verdict.as_str(),
                partition.operations.len(),
                partition.states,
                partition.steps
            );
        }
    }
}
