//! # dst-protocols: sans-IO protocol state machines, services and simulated clients
//!
//! Protocols are generic over the replicated service ([`dst_sim::StateMachine`]); clients
//! record the histories the checkers judge.

pub mod api;

pub use api::{Observation, Reply, Request};
