//! Jepsen EDN histories: one event map per line, or all of them inside one vector.
//!
//! ```text
//! {:process 0, :type :invoke, :f :read, :value nil}
//! {:process 0, :type :ok, :f :read, :value 3}
//! {:process 3, :type :invoke, :f :append, :key "4", :value "x 3 1 y"}
//! ```
//!
//! `:type` is `:invoke`, `:ok`, `:fail` (did not happen) or `:info` (indeterminate). Events of a
//! non-numeric process (Jepsen's `:nemesis`) become annotations. Register histories use
//! `:read`/`:write`/`:cas` with `[from to]`; key-value histories use `:get`/`:put`/`:append`/
//! `:cas` with a `:key` (or a `[key value]` pair as the value).
//!
//! The EDN subset read: maps, vectors, lists, sets, strings, keywords, symbols, integers,
//! floats, `nil`, booleans, commas as whitespace, `;` comments.

use super::{error, Builder, Completion, Parsed, ReadError};
use crate::linearizability::{KvInput, KvOp, KvOutput, RegisterInput, RegisterOutput};

/// An EDN value.
#[derive(Clone, Debug, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(name) if name == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Nesting deeper than this is rejected (a bound on the parser's recursion).
const DEPTH_MAX: usize = 64;

struct Parser<'t> {
    text: &'t [u8],
    at: usize,
    line: usize,
}

impl Parser<'_> {
    fn skip_blank(&mut self) {
        while let Some(&byte) = self.text.get(self.at) {
            match byte {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' | b',' => {}
                b';' => {
                    while self.text.get(self.at).is_some_and(|&b| b != b'\n') {
                        self.at += 1;
                    }
                    continue;
                }
                _ => return,
            }
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_blank();
        self.text.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Edn, ReadError> {
        if depth > DEPTH_MAX {
            return error(self.line, "nesting too deep");
        }
        let Some(first) = self.peek() else {
            return error(self.line, "unexpected end of input");
        };
        match first {
            b'{' => {
                self.at += 1;
                let items = self.sequence(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return error(self.line, "a map with an odd number of forms");
                }
                let mut items = items.into_iter();
                let mut entries = Vec::new();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    entries.push((key, value));
                }
                Ok(Edn::Map(entries))
            }
            b'[' | b'(' => {
                self.at += 1;
                let close = if first == b'[' { b']' } else { b')' };
                Ok(Edn::Vector(self.sequence(close, depth)?))
            }
            b'#' if self.text.get(self.at + 1) == Some(&b'{') => {
                self.at += 2;
                Ok(Edn::Vector(self.sequence(b'}', depth)?))
            }
            b'"' => self.string(),
            b'}' | b']' | b')' => error(self.line, format!("unexpected `{}`", first as char)),
            _ => self.atom(),
        }
    }

    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, ReadError> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None => return error(self.line, format!("missing `{}`", close as char)),
                Some(byte) if byte == close => {
                    self.at += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.value(depth + 1)?),
            }
        }
    }

    fn string(&mut self) -> Result<Edn, ReadError> {
        let start_line = self.line;
        self.at += 1;
        let mut bytes = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                return error(start_line, "unterminated string");
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(&escaped) = self.text.get(self.at) else {
                        return error(start_line, "unterminated string");
                    };
                    self.at += 1;
                    bytes.push(match escaped {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    bytes.push(byte);
                }
                _ => bytes.push(byte),
            }
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Edn::Str(text)),
            Err(_) => error(start_line, "a string that is not UTF-8"),
        }
    }

    fn atom(&mut self) -> Result<Edn, ReadError> {
        let start = self.at;
        while let Some(&byte) = self.text.get(self.at) {
            if byte.is_ascii_whitespace() || b",{}[]()\";".contains(&byte) {
                break;
            }
            self.at += 1;
        }
        let Ok(token) = std::str::from_utf8(&self.text[start..self.at]) else {
            return error(self.line, "a token that is not UTF-8");
        };
        if token.is_empty() {
            return error(self.line, "unexpected character");
        }
        Ok(match token {
            "nil" => Edn::Nil,
            "true" => Edn::Bool(true),
            "false" => Edn::Bool(false),
            _ if token.starts_with(':') => Edn::Keyword(token[1..].to_string()),
            _ => {
                let digits = token.trim_end_matches('N');
                if let Ok(number) = digits.parse::<i64>() {
                    Edn::Int(number)
                } else if let Ok(number) = token.parse::<f64>() {
                    Edn::Float(number)
                } else {
                    Edn::Symbol(token.to_string())
                }
            }
        })
    }
}

/// Parses EDN text into its top-level event maps with their line numbers; a top-level vector
/// (or list) contributes its elements.
pub fn events(text: &str) -> Result<Vec<(usize, Edn)>, ReadError> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let mut events = Vec::new();
    while let Some(first) = parser.peek() {
        if first == b'[' || first == b'(' {
            parser.at += 1;
            let close = if first == b'[' { b']' } else { b')' };
            loop {
                match parser.peek() {
                    None => return error(parser.line, format!("missing `{}`", close as char)),
                    Some(byte) if byte == close => {
                        parser.at += 1;
                        break;
                    }
                    Some(_) => {
                        let line = parser.line;
                        events.push((line, parser.value(1)?));
                    }
                }
            }
        } else {
            let line = parser.line;
            events.push((line, parser.value(0)?));
        }
    }
    Ok(events)
}

/// Reads an EDN history, converting each invocation with `input` and each `:ok` value with
/// `output` (both get the function name and the event map).
fn read_with<I, O>(
    text: &str,
    input: impl Fn(usize, &str, &Edn) -> Result<I, ReadError>,
    output: impl Fn(usize, &str, &Edn) -> Result<O, ReadError>,
) -> Result<Parsed<I, O>, ReadError> {
    let mut builder = Builder::new();
    for (line, event) in events(text)? {
        if !matches!(event, Edn::Map(_)) {
            return error(
                line,
                "expected an event map `{:process .., :type .., :f ..}`",
            );
        }
        let function = match event.get("f") {
            Some(Edn::Keyword(name) | Edn::Symbol(name) | Edn::Str(name)) => name.clone(),
            _ => return error(line, "missing `:f`"),
        };
        let Some(Edn::Keyword(kind)) = event.get("type") else {
            return error(line, "missing or non-keyword `:type`");
        };
        let process = match event.get("process") {
            Some(Edn::Int(process)) if *process >= 0 => *process as u64,
            Some(other) if !matches!(other, Edn::Int(_)) => {
                let value = event.get("value").map_or(String::new(), render);
                builder.annotate(format!("{} :{function} {value}", render(other)));
                continue;
            }
            _ => return error(line, "missing or negative `:process`"),
        };
        match kind.as_str() {
            "invoke" => {
                let input = input(line, &function, &event)?;
                builder.invoke(line, process, &function, input)?;
            }
            "ok" => {
                let output = output(line, &function, &event)?;
                builder.complete(line, process, &function, Completion::Ok(output))?;
            }
            "fail" => builder.complete(line, process, &function, Completion::Fail)?,
            "info" => builder.complete(line, process, &function, Completion::Info)?,
            other => return error(line, format!("unknown event type `:{other}`")),
        }
    }
    Ok(builder.finish())
}

/// Renders an EDN value back to text (for annotations and messages).
pub fn render(value: &Edn) -> String {
    let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(" ");
    match value {
        Edn::Nil => "nil".to_string(),
        Edn::Bool(value) => value.to_string(),
        Edn::Int(value) => value.to_string(),
        Edn::Float(value) => value.to_string(),
        Edn::Str(value) => format!("{value:?}"),
        Edn::Keyword(value) => format!(":{value}"),
        Edn::Symbol(value) => value.clone(),
        Edn::Vector(items) => format!("[{}]", join(&mut items.iter().map(render))),
        Edn::Map(entries) => format!(
            "{{{}}}",
            join(
                &mut entries
                    .iter()
                    .map(|(k, v)| format!("{} {}", render(k), render(v)))
            )
        ),
    }
}

fn int(line: usize, value: Option<&Edn>) -> Result<Option<i64>, ReadError> {
    match value {
        None | Some(Edn::Nil) => Ok(None),
        Some(Edn::Int(value)) => Ok(Some(*value)),
        Some(other) => error(
            line,
            format!("expected nil or an integer, found `{}`", render(other)),
        ),
    }
}

fn register_input(
    line: usize,
    function: &str,
    event: &Edn,
    cas: bool,
) -> Result<RegisterInput, ReadError> {
    let value = event.get("value");
    match function {
        "read" => Ok(RegisterInput::Read),
        "write" => match int(line, value)? {
            Some(value) => Ok(RegisterInput::Write(value)),
            None => error(line, "a write without an integer value"),
        },
        "cas" if cas => match value {
            Some(Edn::Vector(pair)) => match pair.as_slice() {
                [Edn::Int(from), Edn::Int(to)] => Ok(RegisterInput::Cas {
                    from: *from,
                    to: *to,
                }),
                _ => error(line, "expected `:value [from to]` for :cas"),
            },
            _ => error(line, "expected `:value [from to]` for :cas"),
        },
        other => error(
            line,
            format!(
                "`:{other}` does not fit the {} model",
                if cas { "cas-register" } else { "register" }
            ),
        ),
    }
}

fn register_output(line: usize, function: &str, event: &Edn) -> Result<RegisterOutput, ReadError> {
    match function {
        "read" => int(line, event.get("value")),
        _ => Ok(None),
    }
}

/// Reads a register history (`:read`, `:write`).
pub fn read_register(text: &str) -> Result<Parsed<RegisterInput, RegisterOutput>, ReadError> {
    read_with(
        text,
        |l, f, e| register_input(l, f, e, false),
        register_output,
    )
}

/// Reads a CAS-register history (`:read`, `:write`, `:cas [from to]`).
pub fn read_cas_register(text: &str) -> Result<Parsed<RegisterInput, RegisterOutput>, ReadError> {
    read_with(
        text,
        |l, f, e| register_input(l, f, e, true),
        register_output,
    )
}

fn text(line: usize, value: Option<&Edn>) -> Result<String, ReadError> {
    match value {
        None | Some(Edn::Nil) => Ok(String::new()),
        Some(Edn::Str(value)) => Ok(value.clone()),
        Some(Edn::Int(value)) => Ok(value.to_string()),
        Some(Edn::Keyword(value)) => Ok(value.clone()),
        Some(other) => error(
            line,
            format!("expected a string value, found `{}`", render(other)),
        ),
    }
}

/// The key and the value proper of a key-value event: `:key k, :value v` or `:value [k v]`.
fn key_and_value(line: usize, event: &Edn) -> Result<(String, Option<&Edn>), ReadError> {
    match (event.get("key"), event.get("value")) {
        (Some(key), value) => Ok((text(line, Some(key))?, value)),
        (None, Some(Edn::Vector(pair))) if pair.len() == 2 => {
            Ok((text(line, Some(&pair[0]))?, Some(&pair[1])))
        }
        _ => error(line, "missing `:key`"),
    }
}

fn kv_input(line: usize, function: &str, event: &Edn) -> Result<KvInput, ReadError> {
    let (key, value) = key_and_value(line, event)?;
    let op = match function {
        "get" | "read" => KvOp::Get,
        "put" | "write" => KvOp::Put(text(line, value)?),
        "append" => KvOp::Append(text(line, value)?),
        "cas" => match value {
            Some(Edn::Vector(pair)) if pair.len() == 2 => KvOp::Cas {
                from: text(line, Some(&pair[0]))?,
                to: text(line, Some(&pair[1]))?,
            },
            _ => return error(line, "expected `[from to]` for :cas"),
        },
        other => return error(line, format!("`:{other}` does not fit the kv model")),
    };
    Ok(KvInput { key, op })
}

fn kv_output(line: usize, function: &str, event: &Edn) -> Result<KvOutput, ReadError> {
    match function {
        "get" | "read" => Ok(Some(text(line, key_and_value(line, event)?.1)?)),
        _ => Ok(None),
    }
}

/// Reads a key-value history (`:get`, `:put`, `:append`, `:cas`).
pub fn read_kv(text: &str) -> Result<Parsed<KvInput, KvOutput>, ReadError> {
    read_with(text, kv_input, kv_output)
}
