//! Liveness after the quiet phase, in the style of TigerBeetle's VOPR.
//!
//! A run has a fault phase, then at `quiet_start_ns` faults stop: the network heals and
//! crashed nodes restart. From then on every request of a correct client that is still open
//! must complete within `bound_ns` of `max(invoke, quiet_start)`.
//!
//! No false alarms: the oracle judges nothing unless recovery was possible at all (at least
//! `nodes_required` correct nodes connected after the quiet start, for example a majority
//! for crash-fault tolerance), and it leaves a request unjudged when the run ended, or its
//! client gave up, before the request had its whole bound. A run that ends early because
//! every client finished is judged on what completed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::index::RequestMap;
use super::record::{RequestId, RunRecord};
use super::safety::at;
use super::{Collector, Property, Violation};

/// What the liveness oracle needs besides the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessInput {
    /// When faults stopped (the network healed, crashed nodes restarted).
    pub quiet_start_ns: u64,
    /// Time a request has, from `max(invoke, quiet_start)`, to complete. Keep it at most the
    /// clients' patience: a request its client abandons before the deadline is unjudged.
    pub bound_ns: u64,
    /// When the run ended.
    pub end_ns: u64,
    /// Correct clients; `None` means every client is correct.
    pub correct_clients: Option<BTreeSet<u32>>,
    /// Correct nodes that are up and connected to each other in the quiet phase.
    pub nodes_available: u32,
    /// Nodes the protocol needs to make progress (a majority for crash-fault tolerance).
    pub nodes_required: u32,
}

/// The liveness oracle's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessReport {
    pub violations: Vec<Violation>,
    /// Requests that had their whole bound in the quiet phase and were judged.
    pub judged: usize,
    /// Requests open after the quiet start that could not be judged (run ended, or their
    /// client gave up, before the deadline).
    pub unjudged: usize,
    /// Why nothing was judged, when recovery was not possible.
    pub skipped: Option<String>,
}

/// How one request ended, if it did.
#[derive(Clone, Copy)]
enum End {
    Completed(u64),
    Abandoned(u64),
}

/// Checks that every request open in the quiet phase completed within the bound.
pub fn check_liveness(record: &RunRecord, input: &LivenessInput) -> LivenessReport {
    let mut report = LivenessReport::default();
    if input.nodes_available < input.nodes_required {
        report.skipped = Some(format!(
            "recovery impossible: {} of {} required nodes correct and connected",
            input.nodes_available, input.nodes_required
        ));
        return report;
    }
    let ends = index_ends(record);
    let mut collector = Collector::new(Property::Liveness);
    for invocation in &record.invocations {
        let request = invocation.request;
        let correct = match &input.correct_clients {
            Some(clients) => clients.contains(&request.client),
            None => true,
        };
        let end = ends.get(request);
        let ended_before_quiet = match end {
            Some(End::Completed(time_ns)) | Some(End::Abandoned(time_ns)) => {
                time_ns < input.quiet_start_ns
            }
            None => false,
        };
        if !correct || ended_before_quiet {
            continue;
        }
        let start_ns = invocation.time_ns.max(input.quiet_start_ns);
        let deadline_ns = start_ns.saturating_add(input.bound_ns);
        judge(
            request,
            start_ns,
            deadline_ns,
            end,
            input,
            &mut report,
            &mut collector,
        );
    }
    report.violations = collector.finish();
    report
}

fn judge(
    request: RequestId,
    start_ns: u64,
    deadline_ns: u64,
    end: Option<End>,
    input: &LivenessInput,
    report: &mut LivenessReport,
    collector: &mut Collector,
) {
    let bound_ms = input.bound_ns / 1_000_000;
    match end {
        Some(End::Completed(time_ns)) if time_ns <= deadline_ns => report.judged += 1,
        Some(End::Completed(time_ns)) => {
            report.judged += 1;
            collector.report(format!(
                "{request} open since {} completed only at {}, bound {bound_ms}ms",
                at(start_ns),
                at(time_ns)
            ));
        }
        Some(End::Abandoned(time_ns)) if time_ns >= deadline_ns => {
            report.judged += 1;
            collector.report(format!(
                "{request} open since {} abandoned at {} without completing, bound {bound_ms}ms",
                at(start_ns),
                at(time_ns)
            ));
        }
        None if input.end_ns >= deadline_ns => {
            report.judged += 1;
            collector.report(format!(
                "{request} open since {} still pending at the end {}, bound {bound_ms}ms",
                at(start_ns),
                at(input.end_ns)
            ));
        }
        Some(End::Abandoned(_)) | None => report.unjudged += 1,
    }
}

/// How each request first ended: its first completion, else its first abandonment.
fn index_ends(record: &RunRecord) -> RequestMap<End> {
    let mut ends = RequestMap::new(record.invocations.len());
    for completion in &record.completions {
        ends.insert_first(completion.request, End::Completed(completion.time_ns));
    }
    for abandonment in &record.abandonments {
        ends.insert_first(abandonment.request, End::Abandoned(abandonment.time_ns));
    }
    ends
}
