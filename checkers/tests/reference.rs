//! Every reference history (Porcupine's test corpus: 103 Jepsen etcd logs and 6 key-value
//! histories) gets the verdict in its `expected.csv`.
//!
//! The files stay outside the project: they are read from `$DST_REFERENCE_HISTORIES`, by
//! default `../shared/porcupine-data` beside the workspace. If the folder is missing the test
//! says so loudly and passes (CI always has it).

use std::path::PathBuf;
use std::time::Duration;

use dst_checkers::files::{check_text, reference_rows, ModelName};
use dst_checkers::linearizability::{CheckConfig, Verdict};

fn reference_dir() -> PathBuf {
    match std::env::var_os("DST_REFERENCE_HISTORIES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/porcupine-data"
        )),
    }
}

/// (file, model, expected linearizable) rows of `expected.csv`.
fn expected(dir: &std::path::Path) -> Vec<(String, ModelName, bool)> {
    reference_rows(dir)
        .unwrap_or_else(|error| panic!("{error}"))
        .into_iter()
        .map(|row| (row.file, row.model, row.linearizable))
        .collect()
}

#[test]
fn every_reference_history_gets_its_expected_verdict() {
    let dir = reference_dir();
    if !dir.join("expected.csv").exists() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: reference histories not found at {} (set DST_REFERENCE_HISTORIES) !!!!!!!!\n",
            dir.display()
        );
        return;
    }
    let rows = expected(&dir);
    assert_eq!(rows.len(), 109, "expected.csv should list 109 histories");
    let config = CheckConfig {
        timeout: Some(Duration::from_secs(120)),
        ..CheckConfig::default()
    };
    let mut wrong = Vec::new();
    for (file, model, linearizable) in &rows {
        let text = std::fs::read_to_string(dir.join(file)).expect("reference file is readable");
        let result = check_text(*model, &text, &config, None)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let want = if *linearizable {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        if result.report.verdict != want {
            wrong.push(format!(
                "{file}: got {:?}, expected {want:?}",
                result.report.verdict
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
