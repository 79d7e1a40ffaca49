//! Exploration strategies, chosen by name with `--strategy`.
//!
//! Every strategy is an implementation of the one decision source (plus, where needed, a
//! setting of the engine), so every run it makes is recorded and replayed like any other.
//!
//! Per-seed strategies: a seed alone reproduces the run (`dst run --strategy S --seed N`).
//! - `random`: the seeded generator draws every decision with the profile's rates.
//! - `swarm`: each seed first draws which of the profile's fault kinds are on and how hard
//!   (TigerBeetle-style swarm testing over the chosen profile), then runs like `random`.
//! - `pct` or `pct:D`: priority-based scheduling with D priority change points (default 3)
//!   combined with the fault model ([`pct::PctSource`]).
//!
//! Campaign strategies: a run depends on the runs before it, so a failure is kept as its
//! recorded trace (a corpus entry or a trace file), which replays exactly. `dst run
//! --strategy S --seed N` without `--replay` is the campaign's first, unmutated run (random).
//! - `coverage`: feedback-guided mutation of decision traces ([`coverage`]).
//! - `exhaustive`: bounded enumeration of decision prefixes ([`exhaustive`]).

use std::cell::RefCell;

use dst_sim::decision::{DecisionSource, SeededSource};
use dst_sim::engine::TieBreak;
use dst_sim::trace::Decider;
use dst_sim::SimConfig;

use crate::runner::{self, RunOutcome, RunSpec};

pub mod bytes;
pub mod coverage;
pub mod exhaustive;
pub mod pct;
pub mod prefix;
pub mod swarm;

/// The strategy names `--strategy` accepts (`pct` also as `pct:D`).
pub const STRATEGIES: [&str; 5] = ["random", "swarm", "pct", "coverage", "exhaustive"];

/// PCT's default number of priority change points.
pub const PCT_DEPTH_DEFAULT: u32 = 3;
/// Bound on PCT's change points (each is one demotion; more is just random scheduling).
pub const PCT_DEPTH_MAX: u32 = 64;

/// A parsed strategy name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Random,
    Swarm,
    Pct { depth: u32 },
    Coverage,
    Exhaustive,
}

impl Strategy {
    /// Parses a strategy name; an unknown one is bad input.
    pub fn parse(name: &str) -> Result<Strategy, String> {
        let unknown = || {
            format!(
                "unknown strategy '{name}' (expected one of: {}; pct also as pct:D)",
                STRATEGIES.join(", ")
            )
        };
        match name {
            "random" => Ok(Strategy::Random),
            "swarm" => Ok(Strategy::Swarm),
            "pct" => Ok(Strategy::Pct {
                depth: PCT_DEPTH_DEFAULT,
            }),
            "coverage" => Ok(Strategy::Coverage),
            "exhaustive" => Ok(Strategy::Exhaustive),
            _ => {
                let depth = name.strip_prefix("pct:").ok_or_else(unknown)?;
                let depth: u32 = depth
                    .parse()
                    .map_err(|_| format!("strategy '{name}': D in pct:D must be a number"))?;
                if depth > PCT_DEPTH_MAX {
                    return Err(format!(
                        "strategy '{name}': at most {PCT_DEPTH_MAX} change points"
                    ));
                }
                Ok(Strategy::Pct { depth })
            }
        }
    }

    /// True for strategies whose runs depend on earlier runs of the campaign.
    pub fn is_campaign(self) -> bool {
        matches!(self, Strategy::Coverage | Strategy::Exhaustive)
    }
}

/// Checks a strategy name; an unknown one is bad input.
pub fn validate(name: &str) -> Result<(), String> {
    Strategy::parse(name).map(|_| ())
}

thread_local! {
    /// A source handed to the next run on this thread by [`run_with_source`].
    static INJECTED: RefCell<Option<Box<dyn DecisionSource>>> = const { RefCell::new(None) };
}

/// The decision source of a (validated) run that does not replay a trace.
pub fn decider(spec: &RunSpec) -> Decider {
    if let Some(source) = INJECTED.with(|slot| slot.borrow_mut().take()) {
        return Decider::new(source, false);
    }
    match Strategy::parse(&spec.strategy) {
        Ok(Strategy::Pct { depth }) => {
            let actors = spec.nodes + spec.clients;
            Decider::new(
                Box::new(pct::PctSource::new(spec.seed, actors, depth, horizon(spec))),
                false,
            )
        }
        _ => SeededSource::new(spec.seed).into(),
    }
}

/// Engine settings a strategy needs; also applied when a trace of the strategy is replayed.
pub fn configure(spec: &RunSpec, config: &mut SimConfig) {
    match Strategy::parse(&spec.strategy) {
        Ok(Strategy::Swarm) => swarm::draw(spec.seed, &mut config.profile),
        Ok(Strategy::Pct { .. }) => config.tie_break = TieBreak::Decide,
        _ => {}
    }
}

/// Runs `spec` with `source` taking the decisions (campaign strategies: mutated and
/// enumerated traces). Record the run (`spec.record`) to keep it: the recording replays it.
pub fn run_with_source(
    spec: &RunSpec,
    source: Box<dyn DecisionSource>,
) -> Result<RunOutcome, String> {
    assert!(
        spec.replay.is_none(),
        "run_with_source: a replaying spec ignores the source"
    );
    INJECTED.with(|slot| *slot.borrow_mut() = Some(source));
    let outcome = runner::run(spec);
    // An invalid spec returns before taking the source: never leak it into the next run.
    INJECTED.with(|slot| slot.borrow_mut().take());
    outcome
}

/// Rough number of messages in a run, where PCT spreads its change points.
fn horizon(spec: &RunSpec) -> u64 {
    // Measured: a Raft op costs a few messages per replica, and elections and heartbeats add
    // a few thousand in a 10 s safety phase.
    spec.ops
        .saturating_mul(u64::from(spec.nodes))
        .saturating_mul(4)
        + 2_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_are_errors() {
        assert_eq!(
            Strategy::parse("pct").unwrap(),
            Strategy::Pct {
                depth: PCT_DEPTH_DEFAULT
            }
        );
        assert_eq!(
            Strategy::parse("pct:7").unwrap(),
            Strategy::Pct { depth: 7 }
        );
        assert!(Strategy::parse("pct:x").unwrap_err().contains("pct:D"));
        assert!(Strategy::parse("pct:1000").unwrap_err().contains("at most"));
        assert!(Strategy::parse("dfs")
            .unwrap_err()
            .contains("unknown strategy"));
        for name in STRATEGIES {
            assert!(validate(name).is_ok(), "{name}");
        }
        assert!(Strategy::Coverage.is_campaign() && !Strategy::Swarm.is_campaign());
    }
}
