//! # dst-sim: the seeded, single-threaded discrete-event simulator
//!
//! One `u64` seed determines a whole run. Protocol nodes are sans-IO state machines
//! ([`Node`]) driven through a [`NodeCtx`] that buffers their effects; clients are
//! [`Client`]s driven through a [`ClientCtx`]. Every nondeterministic choice the simulator
//! or a node makes goes through one [`DecisionSource`], so a run can be recorded, replayed,
//! shrunk, or driven by another exploration strategy without touching protocol code.
//!
//! Data flows one way: seed -> decisions -> events -> node handlers -> effects -> history.

pub mod decision;
pub mod node;
pub mod storage;
pub mod time;

pub use decision::{DecisionKind, DecisionSource, SeededSource};
pub use node::{
    Client, ClientCtx, ClientEffect, ClientId, Effect, Node, NodeCtx, NodeId, StateMachine,
    TimerId,
};
pub use time::{MS, SEC, US};
pub use storage::{Storage, StorageError, StorageFaults};
