//! Checking recorded history files by model name: what `dst check` and `dst bench check` run.

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
