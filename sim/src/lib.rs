//! # dst-sim: the seeded, single-threaded discrete-event simulator
//!
//! One `u64` seed determines a whole run. Protocol nodes are sans-IO state machines
//! ([`Node`]) driven through a [`NodeCtx`] that buffers their effects; clients are
//! [`Client`]s driven through a [`ClientCtx`]. Every nondeterministic choice the simulator
//! or a node makes goes through one [`DecisionSource`], so a run can be recorded, replayed,
//! shrunk, or driven by another exploration strategy without touching protocol code.
//!
//! Data flows one way: seed -> decisions -> events -> node handlers -> effects -> history.

pub mod auth;
pub mod byzantine;
pub mod clock;
pub mod decision;
pub mod encode;
pub mod engine;
pub mod faults;
pub mod hash;
pub mod net;
pub mod node;
pub mod panic;
pub mod queue;
pub mod storage;
pub mod testing;
pub mod time;
pub mod trace;
pub mod twins;

pub use auth::{CpuCosts, Digest, Principal, Signature, Signed};
pub use byzantine::{Adversarial, Behaviour, Byzantine, Tagged};
pub use decision::{DecisionKind, DecisionSource, SeededSource};
pub use engine::{
    check_determinism, EndReason, NoClient, RunSummary, Sim, SimConfig, SimStats, TieBreak,
};
pub use faults::{parse_plan, FaultAction, FaultProfile, ScriptedFault, PROFILE_NAMES};
pub use hash::stable_hash;
pub use net::{Latency, LinkConfig};
pub use node::{
    Client, ClientCtx, ClientEffect, ClientId, Effect, Node, NodeCtx, NodeId, StateMachine, TimerId,
};
pub use storage::{Storage, StorageError, StorageFaults, StorageKey};
pub use time::{MS, SEC, US};
pub use trace::{Decision, ReplaySource, Trace, TraceHeader};
pub use twins::{TwinMsg, TwinsHost, TwinsScenario};
