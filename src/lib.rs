//! The `dst` tool's library: the runner that builds, runs and judges one seed of a protocol,
//! shared by the CLI and the integration tests.

pub mod adversary;
pub mod corpus;
pub mod runner;
pub mod shrink;
pub mod strategy;
