//! Check time over the reference histories without the CLI (`dst bench check` is the main
//! benchmark): `cargo bench -p dst-checkers --bench reference [-- FILTER [--no-partition]]`.
//! Reads `$DST_REFERENCE_HISTORIES` or `../shared/porcupine-data` beside the workspace.

use std::path::PathBuf;
use std::time::Duration;

use dst_checkers::files::{check_text, reference_rows, ReferenceRow};
use dst_checkers::linearizability::CheckConfig;

fn main() {
    let dir = std::env::var_os("DST_REFERENCE_HISTORIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/porcupine-data"
            ))
        });
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let filter = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let config = CheckConfig {
        partition: !args.iter().any(|a| a == "--no-partition"),
        all_partitions: args.iter().any(|a| a == "--all-partitions"),
        timeout: Some(Duration::from_secs(60)),
        ..CheckConfig::default()
    };
    let rows = match reference_rows(&dir) {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("no reference histories: {error}");
            return;
        }
    };
    let mut total = 0.0;
    for ReferenceRow {
        file,
        model,
        linearizable: expected,
    } in rows.into_iter().filter(|row| row.file.contains(&filter))
    {
        let text = std::fs::read_to_string(dir.join(&file)).expect("readable reference file");
        let best = (0..3)
            .map(|_| check_text(model, &text, &config, None).expect("parsable reference file"))
            .min_by(|a, b| a.check_seconds.total_cmp(&b.check_seconds))
            .expect("three runs");
        total += best.check_seconds;
        let steps: u64 = best.report.partitions.iter().map(|p| p.steps).sum();
        println!(
            "{file:<24} {:<16} expected {expected:<5} {:.6} s  {steps} steps",
            best.report.verdict.as_str(),
            best.check_seconds
        );
        if config.all_partitions {
            for p in &best.report.partitions {
                println!(
                    "    {:?} {} {:?} {} steps",
                    p.name,
                    p.verdict.as_str(),
                    p.unknown_reason,
                    p.steps
                );
            }
        }
    }
    println!("total check time (min of 3): {total:.6} s");
}
