//! Prints every report the linearizability checker gives for a set of histories, so two
//! builds of the checker can be compared line by line (verdicts, witnesses, explanations):
//! `cargo run --release -p dst-checkers --example compare_reports -- [--porcupine DIR] [HISTORY_DIR...]`.
//!
//! A history directory holds key-value histories as JSON (`History<KvInput, KvOutput>`, one
//! per file). Each is checked whole, with explanations, with every partition decided, without
//! partitions (under a step budget), and in mutated copies where one get returns a value it
//! should not (so illegal histories and their explanations are compared too). The porcupine
//! directory is the reference corpus (`expected.csv`, `jepsen/`, `kv/`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use dst_checkers::files::{check_text, reference_rows, ModelName, ReferenceRow};
use dst_checkers::linearizability::{check, CheckConfig, KeyValue, KvInput, KvOp};
use dst_checkers::{History, Outcome};

type KvHistory = History<KvInput, Option<String>>;

fn configs() -> Vec<(&'static str, CheckConfig)> {
    vec![
        ("default", CheckConfig::default()),
        (
            "explain",
            CheckConfig {
                explain: true,
                ..CheckConfig::default()
            },
        ),
        (
            "all",
            CheckConfig {
                all_partitions: true,
                ..CheckConfig::default()
            },
        ),
        (
            "whole",
            CheckConfig {
                partition: false,
                steps_max: 200_000,
                ..CheckConfig::default()
            },
        ),
    ]
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Copies of `history` in which one get returns another get's value, a longer value or "".
fn mutants(history: &KvHistory, seed: u64) -> Vec<KvHistory> {
    let gets: Vec<usize> = history
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| op.input.op == KvOp::Get && matches!(op.outcome, Outcome::Ok(Some(_))))
        .map(|(index, _)| index)
        .collect();
    if gets.len() < 2 {
        return Vec::new();
    }
    let mut rng = seed;
    (0..4)
        .map(|kind| {
            let mut mutant = history.clone();
            let target = gets[splitmix64(&mut rng) as usize % gets.len()];
            let donor = gets[splitmix64(&mut rng) as usize % gets.len()];
            let donated = match &history.operations[donor].outcome {
                Outcome::Ok(Some(value)) => value.clone(),
                _ => unreachable!("gets are ok with a value"),
            };
            let Outcome::Ok(Some(value)) = &mut mutant.operations[target].outcome else {
                unreachable!("gets are ok with a value")
            };
            match kind {
                0 => *value = donated,
                1 => value.push_str(&donated),
                2 => value.clear(),
                _ => *value = format!("{donated}{value}"),
            }
            mutant
        })
        .collect()
}

fn kv_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            kv_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[allow(clippy::disallowed_methods)] // tooling: how long each part took
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut porcupine = None;
    let mut dirs = Vec::new();
    let mut only_default = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--porcupine" {
            porcupine = iter.next().map(PathBuf::from);
        } else if arg == "--only-default" {
            // For profiling: the harness's configuration only, no mutants.
            only_default = true;
        } else {
            dirs.push(PathBuf::from(arg));
        }
    }
    let mut configs = configs();
    if only_default {
        configs.truncate(1);
    }
    let start = Instant::now();
    let mut files = Vec::new();
    for dir in &dirs {
        kv_files(dir, &mut files);
    }
    for (number, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("readable history");
        let history: KvHistory = serde_json::from_str(&text).expect("a kv history");
        for (name, config) in &configs {
            let report = check(&KeyValue, &history, config);
            let json = serde_json::to_string(&report).expect("serialisable");
            println!("{} {name} {json}", path.display());
        }
        let mutants = if only_default {
            Vec::new()
        } else {
            mutants(&history, number as u64)
        };
        for (index, mutant) in mutants.iter().enumerate() {
            for (name, config) in configs.iter().take(3) {
                let report = check(&KeyValue, mutant, config);
                let json = serde_json::to_string(&report).expect("serialisable");
                println!("{} mutant{index} {name} {json}", path.display());
            }
        }
    }
    eprintln!("histories: {:.3} s", start.elapsed().as_secs_f64());
    let Some(dir) = porcupine else {
        return;
    };
    let start = Instant::now();
    let rows = reference_rows(&dir).unwrap_or_else(|error| panic!("{error}"));
    for ReferenceRow { file, model, .. } in rows {
        let text = std::fs::read_to_string(dir.join(&file)).expect("readable reference file");
        for (name, config) in configs.iter().take(3) {
            if model == ModelName::Etcd && *name == "explain" {
                continue;
            }
            let checked = check_text(model, &text, config, None).expect("parsable");
            let json = serde_json::to_string(&checked.report).expect("serialisable");
            println!("{file} {name} {json}");
        }
    }
    eprintln!("porcupine: {:.3} s", start.elapsed().as_secs_f64());
}
