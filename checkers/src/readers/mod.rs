//! Readers for recorded histories: Jepsen EDN histories and the Jepsen etcd log format.
//!
//! Both are streams of invoke and completion events without timestamps: the order of events is
//! the only time information, so an event's position is its index in the stream. Completions
//! are matched to their process's open invocation. `:ok` took effect, `:fail` did not, `:info`
//! (and an invocation still open at the end) may or may not have, at any time after its call.
//!
//! Bad input is an error naming the line, never a panic.

pub mod edn;
pub mod etcd;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{History, Operation, Outcome};

/// A malformed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ReadError {}

pub(crate) fn error<T>(line: usize, message: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError {
        line,
        message: message.into(),
    })
}

/// Something drawn beside the operations in an explanation (for example a fault the nemesis
/// injected), at a position of the history's event order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub position: u64,
    pub label: String,
}

/// A history as read, with the annotations found beside it.
#[derive(Clone, Debug)]
pub struct Parsed<I, O> {
    pub history: History<I, O>,
    pub annotations: Vec<Annotation>,
}

/// How a completion event ended its operation.
pub(crate) enum Completion<O> {
    Ok(O),
    Fail,
    Info,
}

/// Builds a history from invoke and completion events.
pub(crate) struct Builder<I, O> {
    history: History<I, O>,
    /// Per process: the open operation and the name of its function (to match completions).
    open: BTreeMap<u64, (usize, String)>,
    position: u64,
    pub annotations: Vec<Annotation>,
}

impl<I, O> Builder<I, O> {
    pub fn new() -> Self {
        Builder {
            history: History::new(),
            open: BTreeMap::new(),
            position: 0,
            annotations: Vec::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.position += 1;
        self.position
    }

    pub fn annotate(&mut self, label: String) {
        let position = self.tick();
        self.annotations.push(Annotation { position, label });
    }

    pub fn invoke(
        &mut self,
        line: usize,
        process: u64,
        function: &str,
        input: I,
    ) -> Result<(), ReadError> {
        if self.open.contains_key(&process) {
            return error(
                line,
                format!("process {process} invokes while its previous operation is open"),
            );
        }
        let call = self.tick();
        self.open.insert(
            process,
            (self.history.operations.len(), function.to_string()),
        );
        self.history.operations.push(Operation {
            client: process,
            input,
            outcome: Outcome::Unknown,
            call,
            ret: u64::MAX,
            hint: None,
        });
        Ok(())
    }

    pub fn complete(
        &mut self,
        line: usize,
        process: u64,
        function: &str,
        completion: Completion<O>,
    ) -> Result<(), ReadError> {
        let Some((index, invoked)) = self.open.remove(&process) else {
            return error(
                line,
                format!("process {process} completes an operation it never invoked"),
            );
        };
        if invoked != function {
            return error(
                line,
                format!("process {process} invoked :{invoked} but completes :{function}"),
            );
        }
        let ret = self.tick();
        let operation = &mut self.history.operations[index];
        match completion {
            Completion::Ok(output) => {
                operation.outcome = Outcome::Ok(output);
                operation.ret = ret;
            }
            Completion::Fail => {
                operation.outcome = Outcome::Fail;
                operation.ret = ret;
            }
            // Indeterminate: open until the end of time.
            Completion::Info => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Parsed<I, O> {
        Parsed {
            history: self.history,
            annotations: self.annotations,
        }
    }
}
