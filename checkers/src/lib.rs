//! # dst-checkers: independent oracles
//!
//! Linearizability, agreement, durability, validity, exactly-once and liveness checks over
//! what a run recorded. Nothing here calls protocol code: the oracles judge histories and
//! commit records, never the predicates of the code they judge.

pub mod history;
pub mod oracles;

pub use history::{History, Operation, Outcome};
