//! Exploration strategies: each is an implementation of the one decision source (plus, where
//! needed, a setting of the engine), chosen by name with `--strategy`.
//!
//! - `random`: the seeded generator draws every decision with the profile's rates.

use dst_sim::decision::SeededSource;
use dst_sim::trace::Decider;
use dst_sim::SimConfig;

use crate::runner::RunSpec;

/// The strategies `--strategy` accepts.
pub const STRATEGIES: [&str; 1] = ["random"];

/// Checks a strategy name; an unknown one is bad input.
pub fn validate(name: &str) -> Result<(), String> {
    if STRATEGIES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown strategy '{name}' (expected one of: {})",
            STRATEGIES.join(", ")
        ))
    }
}

/// The decision source of a (validated) run that does not replay a trace.
pub fn decider(spec: &RunSpec) -> Decider {
    SeededSource::new(spec.seed).into()
}

/// Engine settings a strategy needs (none for `random`).
pub fn configure(_spec: &RunSpec, _config: &mut SimConfig) {}
