//! Checking recorded history files by model name: what `dst check` and `dst bench check` run.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use crate::history::History;
use crate::linearizability::{
    self, explain, CasRegister, CheckConfig, CheckReport, KeyValue, Model, Register,
};
use crate::readers::{edn, etcd, Parsed, ReadError};

/// A model and the file format that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelName {
    /// CAS register, Jepsen etcd log format.
    Etcd,
    /// Read/write register, Jepsen EDN.
    Register,
    /// CAS register, Jepsen EDN.
    CasRegister,
    /// Key-value store partitioned by key, Jepsen EDN.
    Kv,
}

impl FromStr for ModelName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "etcd" => Ok(ModelName::Etcd),
            "register" => Ok(ModelName::Register),
            "cas-register" => Ok(ModelName::CasRegister),
            "kv" => Ok(ModelName::Kv),
            other => Err(format!(
                "unknown model `{other}` (etcd, register, cas-register, kv)"
            )),
        }
    }
}

/// One row of a reference corpus's `expected.csv` (`file,model,expected_linearizable,notes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceRow {
    /// Path relative to the corpus directory.
    pub file: String,
    pub model: ModelName,
    /// The expected verdict; `n/a` (an empty history) counts as linearizable.
    pub linearizable: bool,
}

/// Reads `dir/expected.csv`. A line without the three leading columns, or with a verdict
/// other than `true`, `false` or `n/a`, is an error naming it.
pub fn reference_rows(dir: &Path) -> Result<Vec<ReferenceRow>, String> {
    let path = dir.join("expected.csv");
    let csv = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (number, line) in csv.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("{}:{}: {what}", path.display(), number + 1);
        // The notes column may hold commas: split off the first three columns only.
        let mut fields = line.splitn(4, ',');
        let (Some(file), Some(model), Some(verdict)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected file,model,expected_linearizable"));
        };
        let model = if model.starts_with("kv") {
            ModelName::Kv
        } else {
            ModelName::Etcd
        };
        let linearizable = match verdict {
            "true" | "n/a" => true,
            "false" => false,
            _ => return Err(bad("expected_linearizable must be true, false or n/a")),
        };
        rows.push(ReferenceRow {
            file: file.to_string(),
            model,
            linearizable,
        });
    }
    Ok(rows)
}

/// The result of checking one file.
#[derive(Clone, Debug)]
pub struct FileCheck {
    pub report: CheckReport,
    pub operations: usize,
    pub parse_seconds: f64,
    /// Check time only, parsing excluded.
    pub check_seconds: f64,
    /// The HTML explanation, when asked for.
    pub html: Option<String>,
}

/// Seconds since `start`: tooling time measurement, never part of a verdict.
#[allow(clippy::disallowed_methods)]
fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// Parses `text` as a history of `model` and checks it. `explain` names the page title when an
/// HTML explanation is wanted.
pub fn check_text(
    model: ModelName,
    text: &str,
    config: &CheckConfig,
    explain: Option<&str>,
) -> Result<FileCheck, ReadError> {
    let start = now();
    match model {
        ModelName::Etcd => finish(&CasRegister, etcd::read(text)?, start, config, explain),
        ModelName::Register => finish(&Register, edn::read_register(text)?, start, config, explain),
        ModelName::CasRegister => finish(
            &CasRegister,
            edn::read_cas_register(text)?,
            start,
            config,
            explain,
        ),
        ModelName::Kv => finish(&KeyValue, edn::read_kv(text)?, start, config, explain),
    }
}

fn finish<M: Model>(
    model: &M,
    parsed: Parsed<M::Input, M::Output>,
    start: Instant,
    config: &CheckConfig,
    explain: Option<&str>,
) -> Result<FileCheck, ReadError> {
    let parse_seconds = seconds_since(start);
    let history: History<M::Input, M::Output> = parsed.history;
    let start = now();
    let report = linearizability::check(model, &history, config);
    let check_seconds = seconds_since(start);
    let html =
        explain.map(|title| explain::html(model, &history, &report, title, &parsed.annotations));
    Ok(FileCheck {
        report,
        operations: history.operations.len(),
        parse_seconds,
        check_seconds,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(name: &str, csv: &str) -> Result<Vec<ReferenceRow>, String> {
        let dir = std::env::temp_dir().join(format!("dst-reference-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("expected.csv"), csv).expect("write csv");
        let rows = reference_rows(&dir);
        std::fs::remove_dir_all(&dir).ok();
        rows
    }

    #[test]
    fn reference_rows_read_the_three_columns_and_reject_bad_verdicts() {
        let csv = "file,model,expected_linearizable,notes\n\
                   jepsen/a.log,etcd-register,false,notes, with commas\n\
                   kv/b.txt,kv (partitioned),true,\n\
                   jepsen/c.log,etcd-register,n/a,empty\n";
        let rows = rows_of("good", csv).expect("well-formed");
        let summary: Vec<_> = rows
            .iter()
            .map(|row| (row.file.as_str(), row.model, row.linearizable))
            .collect();
        assert_eq!(
            summary,
            [
                ("jepsen/a.log", ModelName::Etcd, false),
                ("kv/b.txt", ModelName::Kv, true),
                ("jepsen/c.log", ModelName::Etcd, true),
            ]
        );
        let bad = rows_of(
            "bad",
            "file,model,expected_linearizable\njepsen/a.log,etcd,maybe\n",
        );
        let error = bad.expect_err("an unknown verdict is an error");
        assert!(error.contains(":2:"), "the error names the line: {error}");
        let short = rows_of("short", "header\njepsen/a.log\n");
        assert!(short.is_err(), "a line without three columns is an error");
    }
}
