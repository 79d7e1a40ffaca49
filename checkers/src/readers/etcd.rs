//! The Jepsen etcd log format (the CAS-register histories of the etcd 2.0 tests):
//!
//! ```text
//! INFO  jepsen.util - <process> :<type> :<f> <value>
//! ```
//!
//! Fields are separated by tabs or runs of spaces; `<value>` is `nil`, an integer, `[from to]`
//! or `:timed-out`. A `:fail :read :timed-out` is a read whose result is unknown: it constrains
//! nothing, so it is read as an indeterminate operation (the search drops it). Other `:fail`s
//! (a compare-and-set whose compare failed) did not happen. Blank lines are skipped; an empty
//! file is an empty history.

use super::{error, Builder, Completion, Parsed, ReadError};
use crate::linearizability::{RegisterInput, RegisterOutput};

/// Reads an etcd log as a CAS-register history.
pub fn read(text: &str) -> Result<Parsed<RegisterInput, RegisterOutput>, ReadError> {
    let mut builder = Builder::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((_, event)) = line.split_once(" - ") else {
            return error(
                number,
                "expected `INFO  jepsen.util - <process> :<type> :<f> <value>`",
            );
        };
        let mut fields = event.split_whitespace();
        let (Some(process), Some(kind), Some(function)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return error(number, "expected `<process> :<type> :<f> <value>`");
        };
        let value: Vec<&str> = fields.collect();
        let value = value.join(" ");
        let Ok(process) = process.parse::<u64>() else {
            return error(number, format!("process `{process}` is not a number"));
        };
        let function = function.trim_start_matches(':');
        match kind {
            ":invoke" => {
                let input = parse_input(number, function, &value)?;
                builder.invoke(number, process, function, input)?;
            }
            ":ok" => {
                let output = match function {
                    "read" => parse_value(number, &value)?,
                    _ => None,
                };
                builder.complete(number, process, function, Completion::Ok(output))?;
            }
            ":fail" if function == "read" => {
                builder.complete(number, process, function, Completion::Info)?;
            }
            ":fail" => builder.complete(number, process, function, Completion::Fail)?,
            ":info" => builder.complete(number, process, function, Completion::Info)?,
            other => return error(number, format!("unknown event type `{other}`")),
        }
    }
    Ok(builder.finish())
}

fn parse_input(line: usize, function: &str, value: &str) -> Result<RegisterInput, ReadError> {
    match function {
        "read" => Ok(RegisterInput::Read),
        "write" => match parse_value(line, value)? {
            Some(value) => Ok(RegisterInput::Write(value)),
            None => error(line, "a write of nil"),
        },
        "cas" => {
            let inner = value
                .trim()
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'));
            let parts: Vec<&str> = inner
                .map(|v| v.split_whitespace().collect())
                .unwrap_or_default();
            match parts.as_slice() {
                [from, to] => match (from.parse(), to.parse()) {
                    (Ok(from), Ok(to)) => Ok(RegisterInput::Cas { from, to }),
                    _ => error(line, format!("bad compare-and-set value `{value}`")),
                },
                _ => error(line, format!("expected `[from to]`, found `{value}`")),
            }
        }
        other => error(
            line,
            format!("unknown function `:{other}` for a CAS register"),
        ),
    }
}

fn parse_value(line: usize, value: &str) -> Result<Option<i64>, ReadError> {
    match value.trim() {
        "nil" => Ok(None),
        number => match number.parse() {
            Ok(number) => Ok(Some(number)),
            Err(_) => error(line, format!("expected nil or an integer, found `{value}`")),
        },
    }
}
