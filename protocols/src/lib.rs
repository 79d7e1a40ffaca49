//! # dst-protocols: sans-IO protocol state machines, services and simulated clients
//!
//! Protocols are generic over the replicated service ([`dst_sim::StateMachine`]); clients
//! record the histories the checkers judge.
//!
//! - [`api`]: requests, replies and observations shared by every protocol.
//! - [`kv`]: the key-value service; [`sessions`]: exactly-once client sessions over any
//!   service; [`service`]: read-only commands; [`digest`]: stable digests (every protocol
//!   reports commits with [`digest::command_digest`]).
//! - [`client`]: the simulated client; [`bft_client`]: the client that needs f + 1
//!   matching replies; [`workload`]: command generators.
//! - `strategies` (feature `proptest`): proptest strategies for workloads and fault plans.
//! - [`harness`]: observations to client histories and oracle records; all oracles in one call.
//! - [`sealed`]: replica messages whose checksum belongs to their encoding.

pub mod api;
pub mod bft_client;
pub mod client;
pub mod digest;
pub mod harness;
pub mod kv;
pub mod leaders;
pub mod options;
pub mod sealed;
pub mod service;
pub mod sessions;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;
pub mod text;
pub mod workload;

pub use api::{Observation, Reply, Request};
pub use bft_client::{BftClient, BftClientConfig};
pub use client::{ClientConfig, ClientStats, ClientTimer, SimClient};
pub use digest::command_digest;
pub use kv::{KvCommand, KvOutput, KvStore};
pub use options::{Configurable, OptionList};
pub use sealed::{Checksummed, Seal, Sealed};
pub use service::Service;
pub use sessions::{SessionOutput, Sessions, SESSIONS_MAX};
pub use workload::{Burst, Draw, KvWorkload, KvWorkloadConfig, ScriptedWorkload, Step, Workload};
