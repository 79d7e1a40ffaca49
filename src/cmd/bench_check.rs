//! `dst bench check DIR`: the linearizability checker over the reference histories.
//!
//! DIR holds `jepsen/`, `kv/` and `expected.csv` (`file,model,expected_linearizable,notes`).
//! Each file is checked `--repeat` times; per file the minimum and median check time (parsing
//! excluded) are reported beside the expected verdict, then totals per set. Exit 1 if any
//! verdict differs from the expected one, 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dst_checkers::files::{check_text, reference_rows, ModelName};
use dst_checkers::linearizability::{CheckConfig, Verdict};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object per file and line, then one for the totals.
    #[arg(long)]
    pub json: bool,
    /// Check times per file (min and median are reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Check partitionable models as one history.
    #[arg(long)]
    pub no_partition: bool,
    /// Partitions checked in parallel.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Wall-clock budget per check.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub timeout: f64,
    /// Only files whose path contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Reference directory.
    pub dir: PathBuf,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let rows = match reference_rows(&args.dir) {
        Ok(rows) => rows,
        Err(message) => return super::bad_input(message),
    };
    let config = CheckConfig {
        partition: !args.no_partition,
        threads: args.threads.max(1),
        timeout: Some(Duration::from_secs_f64(args.timeout.max(0.001))),
        ..CheckConfig::default()
    };
    let repeat = args.repeat.max(1);
    let mut totals: Vec<(&str, f64, f64, usize)> = vec![("etcd", 0.0, 0.0, 0), ("kv", 0.0, 0.0, 0)];
    let mut wrong = 0usize;
    for row in rows.iter().filter(|row| {
        args.only
            .as_ref()
            .is_none_or(|only| row.file.contains(only))
    }) {
        let path = args.dir.join(&row.file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => return super::bad_input(format!("{}: {error}", path.display())),
        };
        let mut times = Vec::with_capacity(repeat);
        let mut verdict = Verdict::Unknown;
        for _ in 0..repeat {
            match check_text(row.model, &text, &config, None) {
                Ok(result) => {
                    times.push(result.check_seconds);
                    verdict = result.report.verdict;
                }
                Err(error) => {
                    return super::bad_input(format!(
                        "{}:{}: {}",
                        path.display(),
                        error.line,
                        error.message
                    ))
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let (min, median) = (times[0], times[times.len() / 2]);
        let expected = if row.linearizable {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let ok = verdict == expected;
        wrong += usize::from(!ok);
        let set = usize::from(row.model == ModelName::Kv);
        totals[set].1 += min;
        totals[set].2 += median;
        totals[set].3 += 1;
        if args.json {
            let line = serde_json::json!({
                "file": row.file, "verdict": verdict, "expected": expected, "ok": ok,
                "check_seconds_min": min, "check_seconds_median": median,
            });
            println!("{line}");
        } else {
            let mark = if ok { "" } else { "  <-- WRONG" };
            println!(
                "{:<24} {:<17} min {:>10.6} s  median {:>10.6} s{mark}",
                row.file,
                verdict.as_str(),
                min,
                median
            );
        }
    }
    let (all_min, all_median) = (totals[0].1 + totals[1].1, totals[0].2 + totals[1].2);
    if args.json {
        let line = serde_json::json!({
            "total": true, "wrong": wrong, "repeat": repeat,
            "etcd_files": totals[0].3, "etcd_check_seconds_min": totals[0].1, "etcd_check_seconds_median": totals[0].2,
            "kv_files": totals[1].3, "kv_check_seconds_min": totals[1].1, "kv_check_seconds_median": totals[1].2,
            "check_seconds_min": all_min, "check_seconds_median": all_median,
        });
        println!("{line}");
    } else {
        for (name, min, median, files) in &totals {
            println!("total {name:<5} ({files} files): min {min:.6} s, median {median:.6} s");
        }
        println!("total all: min {all_min:.6} s, median {all_median:.6} s; {wrong} wrong verdicts (repeat {repeat})");
        println!("Porcupine v1.3.0 (DATA.md): etcd 0.403 s, kv partitioned 0.125 s (2 threads) / 0.168 s (1 thread)");
    }
    if wrong > 0 {
        ExitCode::from(super::EXIT_VIOLATION)
    } else {
        ExitCode::from(super::EXIT_OK)
    }
}
