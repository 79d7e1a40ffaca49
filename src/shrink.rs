//! Shrinking a failing run by editing its decision trace.
//!
//! Every nondeterministic choice of a run is one recorded decision, and value 0 is always the
//! ordinary choice (no fault, minimum latency, first in order). So a run shrinks by cutting
//! the tail of its trace (a replay continues with zeros) and by zeroing decisions, delta-
//! debugging style, while the failure keeps its signature (the same property breaks). Each
//! accepted candidate is re-recorded, so the result is the exact trace of a real run and
//! replays deterministically.

use crate::runner::{self, RunOutcome, RunSpec};
use dst_sim::Trace;

/// The outcome of shrinking.
#[derive(Debug)]
pub struct Shrunk {
    /// The property the failure breaks (kept throughout).
    pub signature: String,
    pub events_before: u64,
    pub events_after: u64,
    pub decisions_before: usize,
    pub decisions_after: usize,
    pub nonzero_before: usize,
    pub nonzero_after: usize,
    pub faults_before: usize,
    pub faults_after: usize,
    /// Replays tried.
    pub attempts: u32,
    /// The final run, recorded.
    pub outcome: RunOutcome,
    pub trace: Trace,
}

/// Shrinks the failing run of `spec` (which must fail). `attempts_max` bounds the replays.
///
/// First the configuration shrinks (fewer operations, clients and nodes, rerun from the same
/// seed), then the decision trace of the smallest failing configuration. A spec that replays
/// a recorded trace (a failure found by a campaign strategy, which its seed alone does not
/// reproduce) keeps its configuration, since the trace belongs to it; its trace shrinks.
pub fn shrink(spec: &RunSpec, attempts_max: u32) -> Result<Shrunk, String> {
    let original = runner::run(spec)?;
    let Some(first) = original.violations.first() else {
        return Err(format!(
            "seed {} does not fail: nothing to shrink",
            spec.seed
        ));
    };
    let signature = first.property.clone();
    let mut recording = if spec.replay.is_some() {
        spec.clone()
    } else {
        shrink_config(spec, &signature)
    };
    recording.record = true;
    let start = runner::run(&recording)?;
    let trace = start.trace.clone().expect("recorded run has a trace");
    let mut state = State {
        spec: recording,
        signature: signature.clone(),
        best: start,
        best_trace: trace.clone(),
        attempts: 0,
        attempts_max,
    };
    state.cut_tail();
    state.zero_chunks();
    let (best, best_trace) = (state.best, state.best_trace);
    Ok(Shrunk {
        signature,
        events_before: original.summary.events,
        events_after: best.summary.events,
        decisions_before: trace.decisions.len(),
        decisions_after: best_trace.decisions.len(),
        nonzero_before: nonzero(&trace),
        nonzero_after: nonzero(&best_trace),
        faults_before: original.summary.fault_log.len(),
        faults_after: best.summary.fault_log.len(),
        attempts: state.attempts,
        outcome: best,
        trace: best_trace,
    })
}

/// Fewer operations, clients and nodes, as long as the seed still fails the same way.
fn shrink_config(spec: &RunSpec, signature: &str) -> RunSpec {
    let fails = |candidate: &RunSpec| {
        runner::run(candidate).is_ok_and(|o| o.violations.iter().any(|v| v.property == signature))
    };
    let mut best = spec.clone();
    let reductions: [fn(&RunSpec) -> Option<RunSpec>; 3] = [
        |s| {
            (s.ops > 1).then(|| RunSpec {
                ops: s.ops / 2,
                ..s.clone()
            })
        },
        |s| {
            (s.clients > 1).then(|| RunSpec {
                clients: s.clients - 1,
                ..s.clone()
            })
        },
        |s| {
            (s.nodes > 3).then(|| RunSpec {
                nodes: s.nodes - 2,
                ..s.clone()
            })
        },
    ];
    for reduce in reductions {
        while let Some(candidate) = reduce(&best) {
            if !fails(&candidate) {
                break;
            }
            best = candidate;
        }
    }
    best
}

fn nonzero(trace: &Trace) -> usize {
    trace.decisions.iter().filter(|d| d.value != 0).count()
}

struct State {
    spec: RunSpec,
    signature: String,
    best: RunOutcome,
    best_trace: Trace,
    attempts: u32,
    attempts_max: u32,
}

impl State {
    /// Replays `decisions`; keeps the result if it fails the same way and is no larger.
    fn try_candidate(&mut self, decisions: Vec<dst_sim::Decision>) -> bool {
        if self.attempts >= self.attempts_max {
            return false;
        }
        self.attempts += 1;
        let mut spec = self.spec.clone();
        let mut trace = self.best_trace.clone();
        trace.decisions = decisions;
        spec.replay = Some(trace);
        let Ok(outcome) = runner::run(&spec) else {
            return false;
        };
        let same = outcome
            .violations
            .iter()
            .any(|v| v.property == self.signature);
        let recorded = outcome.trace.clone().expect("recording run");
        let smaller = outcome.summary.events <= self.best.summary.events
            || nonzero(&recorded) < nonzero(&self.best_trace);
        if same && smaller {
            self.best = outcome;
            self.best_trace = recorded;
            return true;
        }
        false
    }

    /// Binary search for the shortest prefix that still fails.
    fn cut_tail(&mut self) {
        let mut low = 0usize;
        let mut high = self.best_trace.decisions.len();
        while low < high && self.attempts < self.attempts_max {
            let middle = low + (high - low) / 2;
            let prefix = self.best_trace.decisions[..middle].to_vec();
            if self.try_candidate(prefix) {
                high = self.best_trace.decisions.len().min(middle);
            } else {
                low = middle + 1;
            }
        }
    }

    /// Delta debugging over the nonzero decisions: zero ever smaller chunks of them.
    fn zero_chunks(&mut self) {
        let mut chunks = 2usize;
        loop {
            let indices: Vec<usize> = nonzero_indices(&self.best_trace);
            if indices.is_empty() || self.attempts >= self.attempts_max {
                return;
            }
            let chunk_size = indices.len().div_ceil(chunks);
            let mut progressed = false;
            for chunk in indices.chunks(chunk_size) {
                let mut decisions = self.best_trace.decisions.clone();
                for &index in chunk {
                    if let Some(decision) = decisions.get_mut(index) {
                        decision.value = 0;
                    }
                }
                if self.try_candidate(decisions) {
                    progressed = true;
                    break;
                }
            }
            if progressed {
                chunks = (chunks - 1).max(2);
            } else if chunk_size == 1 {
                return;
            } else {
                chunks = (chunks * 2).min(indices.len());
            }
        }
    }
}

fn nonzero_indices(trace: &Trace) -> Vec<usize> {
    trace
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.value != 0)
        .map(|(index, _)| index)
        .collect()
}

/// A one-screen summary of a run: configuration, faults, violations.
pub fn event_summary(outcome: &RunOutcome) -> String {
    let spec = &outcome.spec;
    let summary = &outcome.summary;
    let mut lines = vec![format!(
        "{} nodes={} clients={} ops={} profile={}: {} events, {:.1} virtual ms, {} decisions",
        spec.protocol,
        spec.nodes,
        spec.clients,
        spec.ops,
        spec.profile,
        summary.events,
        summary.virtual_ns as f64 / 1e6,
        summary.stats.decisions
    )];
    let stats = &summary.stats;
    lines.push(format!(
        "network: {} sent, {} delivered, {} lost, {} partitioned, {} duplicated, {} reordered, {} corrupted ({} rejected)",
        stats.messages_sent,
        stats.messages_delivered,
        stats.dropped_loss,
        stats.dropped_partition,
        stats.duplicated,
        stats.reordered,
        stats.corrupted,
        stats.corrupt_rejected
    ));
    let faults = &summary.fault_log;
    for (time_ns, fault) in faults.iter().take(12) {
        lines.push(format!("  {} {fault}", dst_sim::time::fmt_ms(*time_ns)));
    }
    if faults.len() > 12 {
        lines.push(format!("  ... {} more faults", faults.len() - 12));
    }
    for violation in &outcome.violations {
        lines.push(format!(
            "violation [{}]: {}",
            violation.property, violation.detail
        ));
    }
    lines.join("\n")
}
