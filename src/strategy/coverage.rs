//! The `coverage` strategy: feedback-guided exploration over decision traces, in the manner
//! of coverage-guided fuzzers (AFL, libFuzzer) with the decision trace as the input.
//!
//! Each run yields a set of coarse features of what the protocol and the simulator did: which
//! messages nodes ignored and why, which faults happened, how often each network and storage
//! effect happened, how many slots were committed, elections held and the p99 client latency
//! (log2 buckets), how the run ended, which properties broke, and pairs of (fault kind,
//! ignored-message reason). A run that shows a
//! feature no earlier run showed keeps its recorded trace in the pool. Later runs either start
//! fresh from their seed or mutate a pooled trace: zero a chunk of decisions (remove faults),
//! push decisions to their maximum (add faults, longest latencies), randomise some, splice
//! two traces, or cut one short. A mutated trace is replayed leniently and, past its end, the
//! run continues from its seed, so a mutation explores instead of going quiet.
//!
//! Every run is recorded, so a failure is kept as its recording, which replays exactly.

use std::collections::BTreeSet;

use dst_sim::decision::{splitmix64, Decide, DecisionKind, SeededSource};

use super::prefix::PrefixSource;
use crate::runner::{RunOutcome, RunSpec};

/// Bound on the traces kept for mutation; the oldest go first.
pub const POOL_MAX: usize = 256;
/// Runs that start fresh before any mutation.
const FRESH_FIRST: u64 = 8;
/// Distinguishes the mutation draws from the runs' own streams.
const COVERAGE_SALT: u64 = 0x434f_5645_5200_0001;

/// A coverage-guided campaign over one configuration.
pub struct Coverage {
    template: RunSpec,
    rng: SeededSource,
    pool: Vec<Vec<u64>>,
    seen: BTreeSet<String>,
    runs: u64,
    mutated: u64,
}

impl Coverage {
    /// A campaign running `template` (its strategy should be `coverage`); `campaign_seed`
    /// drives the choice of parents and mutations.
    pub fn new(template: &RunSpec, campaign_seed: u64) -> Self {
        let mut template = template.clone();
        template.record = true;
        template.replay = None;
        Coverage {
            template,
            rng: SeededSource::new(splitmix64(campaign_seed ^ COVERAGE_SALT)),
            pool: Vec::new(),
            seen: BTreeSet::new(),
            runs: 0,
            mutated: 0,
        }
    }

    /// Runs once more, labelled `seed` (its tail draws from `seed`). The outcome carries the
    /// recorded trace.
    pub fn run(&mut self, seed: u64) -> Result<RunOutcome, String> {
        let mut spec = self.template.clone();
        spec.seed = seed;
        let fresh = self.pool.is_empty()
            || self.runs < FRESH_FIRST
            || self.rng.below(DecisionKind::Knob, 4) == 0;
        let prefix = if fresh {
            Vec::new()
        } else {
            self.mutated += 1;
            self.mutant()
        };
        self.runs += 1;
        let outcome = super::run_with_source(&spec, Box::new(PrefixSource::new(prefix, seed)))?;
        let found = features(&outcome);
        let before = self.seen.len();
        self.seen.extend(found);
        if self.seen.len() > before {
            let trace = outcome.trace.as_ref().expect("coverage runs are recorded");
            if self.pool.len() == POOL_MAX {
                self.pool.remove(0);
            }
            self.pool
                .push(trace.decisions.iter().map(|d| d.value).collect());
        }
        Ok(outcome)
    }

    /// One line for the campaign summary.
    pub fn describe(&self) -> String {
        format!(
            "coverage: {} runs ({} mutated), {} features, {} traces pooled",
            self.runs,
            self.mutated,
            self.seen.len(),
            self.pool.len()
        )
    }

    /// A mutated copy of a pooled trace: one to three stacked mutations.
    fn mutant(&mut self) -> Vec<u64> {
        let parent = self.pick();
        let mut values = self.pool[parent].clone();
        let stacked = 1 + self.rng.below(DecisionKind::Knob, 3);
        for _ in 0..stacked {
            self.mutate(&mut values);
        }
        values
    }

    fn pick(&mut self) -> usize {
        self.rng.below(DecisionKind::Knob, self.pool.len() as u64) as usize
    }

    fn mutate(&mut self, values: &mut Vec<u64>) {
        if values.is_empty() {
            return;
        }
        let len = values.len() as u64;
        let at = self.rng.below(DecisionKind::Knob, len) as usize;
        let span = (1 + self.rng.below(DecisionKind::Knob, 16)) as usize;
        let end = (at + span).min(values.len());
        match self.rng.below(DecisionKind::Knob, 5) {
            0 => values[at..end].iter_mut().for_each(|v| *v = 0),
            1 => values[at..end].iter_mut().for_each(|v| *v = u64::MAX),
            2 => {
                for value in &mut values[at..end] {
                    let shift = self.rng.below(DecisionKind::Knob, 64);
                    *value = self.rng.next_u64() >> shift;
                }
            }
            3 => {
                let other = self.pick();
                let donor = &self.pool[other];
                let from = self
                    .rng
                    .below(DecisionKind::Knob, donor.len().max(1) as u64)
                    as usize;
                values.truncate(at);
                values.extend_from_slice(donor.get(from..).unwrap_or_default());
            }
            _ => values.truncate(at),
        }
    }
}

/// The coarse features of a run that coverage feedback counts as "new protocol states".
pub fn features(outcome: &RunOutcome) -> BTreeSet<String> {
    let summary = &outcome.summary;
    let stats = &summary.stats;
    let mut found = BTreeSet::new();
    let bucket = |count: u64| 64 - count.leading_zeros();
    for (reason, &count) in &stats.ignored {
        found.insert(format!("ignored:{reason}:{}", bucket(count)));
    }
    let mut fault_kinds = BTreeSet::new();
    for (_, fault) in &summary.fault_log {
        let fault = fault.to_string();
        let kind = fault.split_whitespace().next().unwrap_or_default();
        fault_kinds.insert(kind.to_string());
    }
    for kind in &fault_kinds {
        found.insert(format!("fault:{kind}"));
        for reason in stats.ignored.keys() {
            found.insert(format!("pair:{kind}:{reason}"));
        }
    }
    let storage = &stats.storage;
    let counters = [
        ("lost", stats.dropped_loss),
        ("partitioned", stats.dropped_partition),
        ("down", stats.dropped_down),
        ("duplicated", stats.duplicated),
        ("reordered", stats.reordered),
        ("corrupted", stats.corrupted),
        ("corrupt_rejected", stats.corrupt_rejected),
        ("corrupt_delivered", stats.corrupt_delivered),
        ("crashes", stats.crashes),
        ("restarts", stats.restarts),
        ("pauses", stats.pauses),
        ("timers", stats.timers_fired),
        ("torn", storage.torn_on_crash),
        ("lost_writes", storage.lost_on_crash),
        ("corrupted_reads", storage.corrupted_reads),
        ("misdirected", storage.misdirected_writes),
        ("io_errors", storage.io_errors),
        ("commits", outcome.metrics.commits),
        ("elections", outcome.metrics.view_changes.unwrap_or(0)),
        (
            "latency_ms_p99",
            outcome.metrics.latency_ms_p99.unwrap_or(0.0) as u64,
        ),
        (
            "pending",
            summary.clients_pending.iter().map(|&p| p as u64).sum(),
        ),
    ];
    for (name, count) in counters {
        found.insert(format!("{name}:{}", bucket(count)));
    }
    found.insert(format!("end:{:?}", summary.end_reason));
    for violation in &outcome.violations {
        found.insert(format!("violation:{}", violation.property));
    }
    found
}
