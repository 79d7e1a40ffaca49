//! # dst-checkers: independent oracles
//!
//! Linearizability, agreement, durability, validity, exactly-once and liveness checks over
//! what a run recorded. Nothing here calls protocol code: the oracles judge histories and
//! commit records, never the predicates of the code they judge.
//!
//! - [`linearizability`]: the linearizability checker, its models and explanations.
//! - [`readers`]: Jepsen EDN histories and the Jepsen etcd log format.

pub mod files;
pub mod history;
pub mod linearizability;
pub mod oracles;
pub mod readers;

pub use history::{History, Operation, Outcome};
