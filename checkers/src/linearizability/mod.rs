//! # Linearizability checking
//!
//! A history is linearizable if its operations can be put in one sequential order that the
//! [`Model`] accepts and that respects real time: an operation that returned before another was
//! called comes first. [`check`] decides this, explains its answer and stays inside budgets.
//!
//! How (see `search.rs` for the search itself):
//! - **P-compositionality** (Horn & Kroening): if the model names a partition per operation (the
//!   key of a key-value operation), each partition is checked alone; the history is
//!   linearizable iff every partition is. Partitions run on up to `threads` threads; the first
//!   illegal partition cancels the partitions after it (in partition order, so the reported
//!   witness is the same on every run) unless every verdict is asked for.
//! - **Wing & Gong search with Lowe's memo**, keyed by an incremental (Zobrist) hash of the
//!   linearized set and the interned model state, in a memo of bounded memory.
//! - **Interning**: model states get dense ids and each (operation, state) step is computed once.
//! - **Choice order**: ordering hints first, then the operation that must return soonest, so a
//!   long-running operation is linearized just in time rather than speculatively.
//! - **Model knowledge, stated by the model and checked by tests against the plain search**:
//!   read-only operations are linearized eagerly when legal ([`Model::is_read_only`]); proven
//!   orderings prune ([`Model::precedences`]; for key-value, a get's value orders the writes
//!   it is made of and keeps other writes out of the window between the last reset and it).
//! - **Canonical failing point**: on a violation, prefix probes find the first return event no
//!   linearization of the history before it explains, independent of the search order (within
//!   a probe budget of a few times the search's own steps; past it, the search's deepest
//!   failure is reported instead).
//! - **Budgets**: steps, bytes and wall time. Running out gives [`Verdict::Unknown`] naming the
//!   undecided partitions, never a guess.
//!
//! Outcomes: [`Outcome::Fail`] did not happen and is dropped; [`Outcome::Unknown`] may take
//! effect at any point after its call, or never.

pub mod explain;
mod intern;
mod kv_order;
pub(crate) mod memo;
pub mod model;
mod order;
mod search;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::history::{History, Outcome};
pub use model::{
    CasRegister, KeyValue, KvInput, KvOp, KvOutput, Model, Precedence, Register, RegisterInput,
    RegisterOutput,
};
use search::{Limits, Partials, Prepared, SearchResult, StopReason};

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Use the model's partition function (P-compositionality).
    pub partition: bool,
    /// Decide every partition instead of stopping at the first illegal one.
    pub all_partitions: bool,
    /// Partitions checked in parallel.
    pub threads: usize,
    /// Wall-clock budget for the whole check.
    pub timeout: Option<Duration>,
    /// Search-step budget per partition.
    pub steps_max: u64,
    /// Memory budget for the whole check (split between threads).
    pub memory_bytes_max: usize,
    /// Record per operation the longest partial linearization containing it.
    pub explain: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            partition: true,
            all_partitions: false,
            threads: 1,
            timeout: None,
            steps_max: u64::MAX,
            memory_bytes_max: 1 << 30,
            explain: false,
        }
    }
}

/// A verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// A budget ran out (or the partition was cancelled) before a verdict.
    Unknown,
}

impl Verdict {
    /// The verdict as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        }
    }
}

/// The verdict of one partition, with its witness. Operation indices refer to
/// `History::operations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionReport {
    /// The partition's name (`""` when the history is not partitioned).
    pub name: String,
    /// Operations in the partition (failed ones included).
    pub operations: Vec<usize>,
    pub verdict: Verdict,
    /// Why the verdict is unknown: `steps`, `memory`, `timeout` or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_reason: Option<String>,
    /// Linearizable: a linearization (unknown operations that are left out never took effect).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub linearization: Vec<usize>,
    /// Not linearizable: the first operation that cannot be placed after the longest prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_operation: Option<usize>,
    /// Not linearizable: the longest linearizable prefix found.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub longest_prefix: Vec<usize>,
    /// Explain mode: distinct partial linearizations ...
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub partial_linearizations: Vec<Vec<usize>>,
    /// ... and, per operation of the partition, the index of the longest one containing it.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub longest_partial: Vec<(usize, usize)>,
    /// Distinct model states the search met.
    pub states: usize,
    /// Search steps taken.
    pub steps: u64,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    pub verdict: Verdict,
    /// Partitions in name order.
    pub partitions: Vec<PartitionReport>,
    /// Names of the partitions whose verdict is unknown when the overall verdict is unknown.
    pub undecided: Vec<String>,
}

impl CheckReport {
    /// The first illegal partition, if any.
    pub fn first_illegal(&self) -> Option<&PartitionReport> {
        self.partitions
            .iter()
            .find(|partition| partition.verdict == Verdict::NotLinearizable)
    }
}

/// Checks `history` against `model`.
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    config: &CheckConfig,
) -> CheckReport {
    #[allow(clippy::disallowed_methods)] // the budget is wall time by definition
    let deadline = config.timeout.map(|timeout| Instant::now() + timeout);
    let groups = partitions(model, history, config.partition);
    let mut reports: Vec<Option<PartitionReport>> = vec![None; groups.len()];
    // Rounds of growing step budgets over the undecided partitions: an easy illegal partition
    // is found before a hard one is finished, and which one is found does not depend on
    // threads or timing. Restarting costs at most a third more steps (the budget quadruples).
    let mut budget = if groups.len() > 1 {
        ROUND_STEPS_FIRST
    } else {
        u64::MAX
    };
    loop {
        let round_steps = budget.min(config.steps_max);
        let todo: Vec<usize> = (0..groups.len())
            .filter(|&index| reports[index].as_ref().is_none_or(|r| retryable(r, config)))
            .collect();
        if todo.is_empty() {
            break;
        }
        for (index, report) in run_round(
            model,
            history,
            &groups,
            &todo,
            round_steps,
            deadline,
            config,
        ) {
            reports[index] = Some(report);
        }
        let illegal = reports
            .iter()
            .flatten()
            .any(|report| report.verdict == Verdict::NotLinearizable);
        if (illegal && !config.all_partitions) || round_steps >= config.steps_max {
            break;
        }
        budget = budget.saturating_mul(4);
    }
    let reports = reports
        .into_iter()
        .zip(&groups)
        .map(|(report, (name, members))| report.unwrap_or_else(|| cancelled(name.clone(), members)))
        .collect();
    summarise(reports, config)
}

/// Step budget of the first round when there are several partitions.
const ROUND_STEPS_FIRST: u64 = 1 << 14;

/// A partition stopped only by a round's step budget is tried again with a larger one.
fn retryable(report: &PartitionReport, config: &CheckConfig) -> bool {
    report.verdict == Verdict::Unknown
        && report.unknown_reason.as_deref() == Some("steps")
        && report.steps < config.steps_max
}

/// Checks the partitions `todo` (indices into `groups`) on up to `config.threads` threads.
fn run_round<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    groups: &[(String, Vec<usize>)],
    todo: &[usize],
    steps_max: u64,
    deadline: Option<Instant>,
    config: &CheckConfig,
) -> Vec<(usize, PartitionReport)> {
    let threads = config.threads.clamp(1, todo.len().max(1));
    let cancel = AtomicUsize::new(usize::MAX);
    let next = AtomicUsize::new(0);
    let memory = config.memory_bytes_max / threads;
    let run = || {
        let mut done = Vec::new();
        while let Some(&index) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (name, members) = &groups[index];
            let limits = Limits {
                steps_max,
                memory_bytes_max: memory,
                deadline,
                cancel_at_or_below: &cancel,
                partition: index,
                explain: config.explain,
            };
            let report = check_partition(model, history, name, members, &limits);
            if report.verdict == Verdict::NotLinearizable && !config.all_partitions {
                // Later partitions stop; earlier ones continue, so the reported illegal
                // partition is the first in name order whatever the thread timing.
                cancel.fetch_min(index + 1, Ordering::Relaxed);
            }
            done.push((index, report));
        }
        done
    };
    if threads == 1 {
        return run();
    }
    // Threads are fine here: the checker is tooling, and the result does not depend on which
    // thread checked which partition.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(run)).collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("checker thread panicked"))
            .collect()
    })
}

fn summarise(mut partitions: Vec<PartitionReport>, config: &CheckConfig) -> CheckReport {
    let first_illegal = partitions
        .iter()
        .position(|partition| partition.verdict == Verdict::NotLinearizable);
    if let (Some(first), false) = (first_illegal, config.all_partitions) {
        // Whether a later partition finished before the cancel depends on timing: hide it.
        for partition in partitions.iter_mut().skip(first + 1) {
            *partition = cancelled(std::mem::take(&mut partition.name), &partition.operations);
        }
    }
    let undecided: Vec<String> = partitions
        .iter()
        .filter(|partition| partition.verdict == Verdict::Unknown)
        .map(|partition| partition.name.clone())
        .collect();
    let verdict = if first_illegal.is_some() {
        Verdict::NotLinearizable
    } else if !undecided.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    let undecided = if verdict == Verdict::Unknown {
        undecided
    } else {
        Vec::new()
    };
    CheckReport {
        verdict,
        partitions,
        undecided,
    }
}

fn cancelled(name: String, operations: &[usize]) -> PartitionReport {
    PartitionReport {
        name,
        operations: operations.to_vec(),
        verdict: Verdict::Unknown,
        unknown_reason: Some("cancelled".to_string()),
        linearization: Vec::new(),
        failing_operation: None,
        longest_prefix: Vec::new(),
        partial_linearizations: Vec::new(),
        longest_partial: Vec::new(),
        states: 0,
        steps: 0,
    }
}

/// Groups operation indices by partition name, in name order.
fn partitions<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    use_partitions: bool,
) -> Vec<(String, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (index, operation) in history.operations.iter().enumerate() {
        let name = if use_partitions {
            model.partition(&operation.input).unwrap_or_default()
        } else {
            String::new()
        };
        groups.entry(name).or_default().push(index);
    }
    groups.into_iter().collect()
}

fn check_partition<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    name: &str,
    members: &[usize],
    limits: &Limits<'_>,
) -> PartitionReport {
    let mut report = cancelled(name.to_string(), members);
    if limits.cancel_at_or_below.load(Ordering::Relaxed) <= limits.partition {
        return report;
    }
    // Sized up front: the elements are large and a filtered collect would grow step by step.
    let mut prepared: Vec<Prepared<'_, M>> = Vec::with_capacity(members.len());
    prepared.extend(members.iter().filter_map(|&index| {
        let operation = &history.operations[index];
        let (ret, output) = match &operation.outcome {
            Outcome::Ok(output) => (Some(operation.ret), Some(output)),
            Outcome::Fail => return None,
            Outcome::Unknown => (None, None),
        };
        Some(Prepared {
            index,
            call: operation.call,
            ret,
            input: &operation.input,
            output,
            hint: operation.hint,
        })
    }));
    let mut interner = intern::Interner::new(model, prepared.len());
    let mut partials = Partials::default();
    let result = search::search(model, &prepared, &mut interner, limits, &mut partials);
    let global = |local: &[u32]| -> Vec<usize> {
        local
            .iter()
            .map(|&op| prepared[op as usize].index)
            .collect()
    };
    report.states = interner.state_count();
    report.steps = partials.steps;
    report.unknown_reason = None;
    match result {
        SearchResult::Linearizable { order } => {
            report.verdict = Verdict::Linearizable;
            report.linearization = global(&order);
        }
        SearchResult::Illegal { prefix, blocked } => {
            report.verdict = Verdict::NotLinearizable;
            let probe_steps = partials
                .steps
                .saturating_mul(PROBE_STEPS_FACTOR)
                .max(PROBE_STEPS_MIN);
            let hint = prepared.get(blocked as usize).map(|op| op.index);
            match first_unexplained(model, &prepared, limits, probe_steps, hint) {
                Some((failing, prefix)) => {
                    report.failing_operation = Some(failing);
                    report.longest_prefix = prefix;
                }
                None => {
                    report.longest_prefix = global(&prefix);
                    report.failing_operation = prepared.get(blocked as usize).map(|op| op.index);
                }
            }
        }
        SearchResult::Stopped(reason) => {
            report.verdict = Verdict::Unknown;
            report.unknown_reason = Some(
                match reason {
                    StopReason::Steps => "steps",
                    StopReason::Memory => "memory",
                    StopReason::Timeout => "timeout",
                    StopReason::Cancelled => "cancelled",
                }
                .to_string(),
            );
        }
    }
    report.partial_linearizations = partials.snapshots.iter().map(|s| global(s)).collect();
    report.longest_partial = partials
        .best
        .iter()
        .enumerate()
        .filter_map(|(op, best)| best.map(|snapshot| (prepared[op].index, snapshot)))
        .collect();
    report
}

/// All prefix probes together may take this many times the steps of the search that found
/// the violation (and at least `PROBE_STEPS_MIN`).
const PROBE_STEPS_FACTOR: u64 = 4;
const PROBE_STEPS_MIN: u64 = 20_000;

/// The first return event no linearization of the history before it explains, and a
/// linearization of the history just before that event: a canonical failing point that does
/// not depend on the search order. Prefix legality is monotone (a prefix of a legal prefix is
/// legal), so a binary search over return events finds it with O(log n) searches of
/// truncated histories (two when the search's deepest failure is the answer), where an operation still running at the cut may or may not have taken
/// effect (it becomes unknown) and operations called after it are gone. `None` when a probe
/// runs out of budget (the caller keeps the search's own deepest failure).
fn first_unexplained<M: Model>(
    model: &M,
    prepared: &[Prepared<'_, M>],
    limits: &Limits<'_>,
    probe_steps: u64,
    hint: Option<usize>,
) -> Option<(usize, Vec<usize>)> {
    let mut returns: Vec<(u64, usize)> = prepared
        .iter()
        .filter_map(|op| op.ret.map(|ret| (ret, op.index)))
        .collect();
    returns.sort_unstable();
    // Invariant: the prefix through returns[legal] is linearizable (-1: the empty prefix) and
    // the prefix through returns[illegal] is not (the whole partition is not).
    let (mut legal, mut illegal) = (-1isize, returns.len() as isize - 1);
    let mut witness = Vec::new();
    // One step budget shared by all probes bounds the explanation's cost.
    let mut steps_left = probe_steps;
    // The search's own deepest failure is usually the answer: probe at it, then just before.
    let hinted = hint.and_then(|op| returns.iter().position(|&(_, index)| index == op));
    let mut guesses = hinted
        .map(|at| [at as isize, at as isize - 1])
        .into_iter()
        .flatten();
    while illegal - legal > 1 {
        let middle = match guesses.next() {
            Some(guess) if legal < guess && guess < illegal => guess,
            _ => (legal + illegal) / 2,
        };
        let cut = returns[middle as usize].0;
        let truncated: Vec<Prepared<'_, M>> = prepared
            .iter()
            .filter(|op| op.call <= cut)
            .map(|op| Prepared {
                ret: op.ret.filter(|&ret| ret <= cut),
                output: op.ret.filter(|&ret| ret <= cut).and(op.output),
                ..*op
            })
            .collect();
        let mut interner = intern::Interner::new(model, truncated.len());
        let mut partials = Partials::default();
        let probe_limits = Limits {
            steps_max: steps_left,
            explain: false,
            ..*limits
        };
        let result = search::search(
            model,
            &truncated,
            &mut interner,
            &probe_limits,
            &mut partials,
        );
        steps_left = steps_left.saturating_sub(partials.steps);
        match result {
            SearchResult::Linearizable { order } => {
                legal = middle;
                witness = order
                    .iter()
                    .map(|&op| truncated[op as usize].index)
                    .collect();
            }
            SearchResult::Illegal { .. } => illegal = middle,
            SearchResult::Stopped(_) => return None,
        }
    }
    let failing = returns.get(illegal.max(0) as usize)?.1;
    Some((failing, witness))
}
