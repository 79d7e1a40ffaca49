//! Recording and replaying decision traces.
//!
//! A run's decisions, in order, fully determine it given its configuration. A trace file holds
//! a one-line JSON header (the configuration it was recorded with, and the trace hash it
//! produced) and the decisions as (kind tag, LEB128 value) pairs. Replay needs no seed.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::decision::{DecisionKind, DecisionSource, Divergence, SeededSource};

const MAGIC: &str = "DSTTRACE 1";

/// One recorded decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: DecisionKind,
    pub value: u64,
}

/// The configuration a trace was recorded with, as the CLI understands it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub protocol: String,
    pub profile: String,
    pub nodes: u32,
    pub clients: u32,
    pub ops: u64,
    /// The seed the trace was recorded from (informational: replay does not use it).
    pub seed: u64,
    /// Any further configuration that changes the meaning of the decisions.
    pub config: String,
    /// The trace hash the recorded run produced.
    pub trace_hash: String,
    /// Set when the recorded run replayed a trace and went on past its end: the decision
    /// index where that trace ended. A replay of this trace reports itself exhausted from
    /// there, as the recorded run's source did (its fault process stopped), while the
    /// decisions drawn after it, recorded too, are still replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted_at: Option<u64>,
    /// The `dst run` flags that give this configuration, so that a replay needs no others
    /// (empty in traces recorded before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// A decision trace with its header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub header: TraceHeader,
    pub decisions: Vec<Decision>,
}

impl Trace {
    /// Serialises to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 + self.decisions.len() * 3);
        let header = serde_json::to_string(&self.header).expect("header serialises");
        bytes.extend_from_slice(MAGIC.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        for decision in &self.decisions {
            bytes.push(decision.kind as u8);
            let mut value = decision.value;
            loop {
                let byte = (value & 0x7f) as u8;
                value >>= 7;
                if value == 0 {
                    bytes.push(byte);
                    break;
                }
                bytes.push(byte | 0x80);
            }
        }
        bytes
    }

    /// Parses bytes; errors name what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, String> {
        let rest = bytes
            .strip_prefix(MAGIC.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"\n"))
            .ok_or("not a dst trace file (bad magic line)")?;
        let header_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated header")?;
        let header: TraceHeader = serde_json::from_slice(&rest[..header_end])
            .map_err(|e| format!("malformed trace header: {e}"))?;
        let mut decisions = Vec::new();
        let mut body = &rest[header_end + 1..];
        while let Some((&tag, after)) = body.split_first() {
            let kind = DecisionKind::from_tag(tag).ok_or_else(|| {
                format!("bad decision kind {tag} at decision {}", decisions.len())
            })?;
            let (value, after) = read_varint(after)
                .ok_or_else(|| format!("truncated value at decision {}", decisions.len()))?;
            decisions.push(Decision { kind, value });
            body = after;
        }
        Ok(Trace { header, decisions })
    }

    /// Where a replay of this trace runs out of decisions (see `TraceHeader::exhausted_at`).
    pub fn replay_end(&self) -> usize {
        let recorded = self
            .header
            .exhausted_at
            .map_or(usize::MAX, |at| at as usize);
        recorded.min(self.decisions.len())
    }

    /// Writes atomically (write a temporary file, then rename).
    pub fn write_atomic(&self, path: &Path) -> Result<(), String> {
        write_atomic(path, &self.to_bytes())
    }

    /// Reads a trace file.
    pub fn read(path: &Path) -> Result<Trace, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Trace::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= ((byte & 0x7f) as u64) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

/// Writes `bytes` to `path` atomically: a killed process leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temporary = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Replays a recorded trace. Past the end it answers 0 (the ordinary choice) and reports
/// itself exhausted, so the random fault process stops: what a shrinker that cuts the tail of
/// a trace wants. A kind mismatch is remembered as divergence.
pub struct ReplaySource {
    decisions: Vec<Decision>,
    // invariant: end <= decisions.len().
    /// The source reports itself exhausted from here on.
    end: usize,
    position: usize,
    divergence: Option<Divergence>,
}

impl ReplaySource {
    /// Replays these decisions in order.
    pub fn new(decisions: Vec<Decision>) -> Self {
        ReplaySource {
            end: decisions.len(),
            decisions,
            position: 0,
            divergence: None,
        }
    }

    /// Replays a trace, exhausted where the run it records found its own source exhausted.
    pub fn of(trace: &Trace) -> Self {
        ReplaySource {
            end: trace.replay_end(),
            ..ReplaySource::new(trace.decisions.clone())
        }
    }

    /// Decisions consumed so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl DecisionSource for ReplaySource {
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        let index = self.position;
        self.position += 1;
        match self.decisions.get(index) {
            Some(decision) => {
                if decision.kind != kind && self.divergence.is_none() {
                    self.divergence = Some(Divergence {
                        index,
                        wanted: kind,
                        found: Some(decision.kind),
                    });
                }
                decision.value.min(bound - 1)
            }
            None => {
                if self.divergence.is_none() {
                    self.divergence = Some(Divergence {
                        index,
                        wanted: kind,
                        found: None,
                    });
                }
                0
            }
        }
    }

    fn divergence(&self) -> Option<Divergence> {
        self.divergence.clone()
    }

    fn exhausted(&self) -> bool {
        self.position >= self.end
    }
}

/// The run's source: the seeded generator is called directly (the hot path), anything else
/// through a trait object.
enum Source {
    Seeded(SeededSource),
    Other(Box<dyn DecisionSource>),
}

/// Wraps the run's source; optionally records every decision.
pub struct Decider {
    source: Source,
    recording: Option<Vec<Decision>>,
    count: u64,
}

impl Decider {
    /// Wraps `source`; records when `record` is true.
    pub fn new(source: Box<dyn DecisionSource>, record: bool) -> Self {
        Decider {
            source: Source::Other(source),
            recording: record.then(Vec::new),
            count: 0,
        }
    }
    /// Turns recording on or off (what was recorded so far is kept when turning it on).
    pub fn set_recording(&mut self, record: bool) {
        if !record {
            self.recording = None;
        } else if self.recording.is_none() {
            self.recording = Some(Vec::new());
        }
    }
    /// Decisions taken so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The recorded decisions (empty when not recording).
    pub fn take_recording(&mut self) -> Vec<Decision> {
        self.recording.take().unwrap_or_default()
    }
    /// Divergence reported by a replay source.
    pub fn divergence(&self) -> Option<Divergence> {
        match &self.source {
            Source::Seeded(_) => None,
            Source::Other(source) => source.divergence(),
        }
    }
}

impl Decider {
    /// Replay, other sources and recording runs.
    #[cold]
    #[inline(never)]
    fn choose_slow(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        let value = match &mut self.source {
            Source::Seeded(source) => source.choose(kind, bound),
            Source::Other(source) => source.choose(kind, bound),
        };
        debug_assert!(
            value < bound,
            "decision {kind:?} out of range: {value} >= {bound}"
        );
        self.count += 1;
        if let Some(recording) = &mut self.recording {
            recording.push(Decision { kind, value });
        }
        value
    }
}

impl From<SeededSource> for Decider {
    fn from(source: SeededSource) -> Self {
        Decider {
            source: Source::Seeded(source),
            recording: None,
            count: 0,
        }
    }
}

impl From<ReplaySource> for Decider {
    fn from(source: ReplaySource) -> Self {
        Decider::new(Box::new(source), false)
    }
}

impl From<Box<dyn DecisionSource>> for Decider {
    fn from(source: Box<dyn DecisionSource>) -> Self {
        Decider::new(source, false)
    }
}

impl DecisionSource for Decider {
    #[inline(always)]
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        // The seeded, unrecorded run is the hot path of every simulation: keep it small
        // enough to inline at each of the engine's call sites.
        if let (Source::Seeded(source), None) = (&mut self.source, &self.recording) {
            self.count += 1;
            return source.choose(kind, bound);
        }
        self.choose_slow(kind, bound)
    }
    fn divergence(&self) -> Option<Divergence> {
        Decider::divergence(self)
    }
    fn exhausted(&self) -> bool {
        match &self.source {
            Source::Seeded(_) => false,
            Source::Other(source) => source.exhausted(),
        }
    }
    #[inline]
    fn hint(&mut self, hint: crate::decision::Hint) {
        if let Source::Other(source) = &mut self.source {
            source.hint(hint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_round_trips_through_bytes() {
        let trace = Trace {
            header: TraceHeader {
                protocol: "pingpong".into(),
                seed: 42,
                args: vec!["--plan".into(), "at 5ms heal".into()],
                ..TraceHeader::default()
            },
            decisions: vec![
                Decision {
                    kind: DecisionKind::Latency,
                    value: 300,
                },
                Decision {
                    kind: DecisionKind::Drop,
                    value: u64::MAX,
                },
            ],
        };
        assert_eq!(Trace::from_bytes(&trace.to_bytes()).unwrap(), trace);
    }

    #[test]
    fn malformed_traces_are_errors() {
        assert!(Trace::from_bytes(b"hello").unwrap_err().contains("magic"));
        assert!(Trace::from_bytes(b"DSTTRACE 1\n{bad\n")
            .unwrap_err()
            .contains("header"));
        let mut bytes = Trace::default().to_bytes();
        bytes.extend_from_slice(&[1, 0x80]);
        assert!(Trace::from_bytes(&bytes)
            .unwrap_err()
            .contains("truncated value"));
        let mut bytes = Trace::default().to_bytes();
        bytes.push(200);
        assert!(Trace::from_bytes(&bytes)
            .unwrap_err()
            .contains("bad decision kind"));
    }

    #[test]
    fn replay_reports_kind_mismatch_and_exhaustion() {
        let mut replay = ReplaySource::new(vec![Decision {
            kind: DecisionKind::Drop,
            value: 5,
        }]);
        assert_eq!(
            replay.choose(DecisionKind::Latency, 3),
            2,
            "values clamp to the bound"
        );
        assert_eq!(replay.divergence().unwrap().index, 0);
        assert_eq!(
            replay.choose(DecisionKind::Latency, 3),
            0,
            "past the end: zeros"
        );
    }
}
