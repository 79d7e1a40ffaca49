//! # dst-inference: a hybrid attention + state-space language model as a replicated service
//!
//! A toy model after Samba (arXiv:2406.07522): byte vocabulary (256), d_model 64, layers
//! `[Mamba, SWA, Mamba, SWA]`, each a pre-RMSNorm mixer with a residual and a pre-RMSNorm
//! SwiGLU MLP (hidden 128) with a residual; final RMSNorm; LM head tied to the embedding.
//! Mamba: d_inner 128, N 16, conv 4 ([`mamba`]). Sliding-window attention: 4 heads x 16, window
//! 64, online softmax ([`attention`]). The SWA-only and full-attention configurations are the
//! same code ([`ModelConfig`]); full attention is a window as long as the context.
//! Weights come from a seed and a version through a counter-based generator; no downloads.
//!
//! ## Determinism (replicas must agree bit for bit)
//! 1. One canonical arithmetic order per output element, set only by that session's own inputs;
//!    prefill is a loop over the decode kernel; batching runs sessions layer by layer but never
//!    splits a reduction ([`numerics`]).
//! 2. No `mul_add`, no reassociation, no parallel reductions, no `f32::max` (its choice between
//!    signed zeros is unspecified).
//! 3. Transcendentals from `libm`; `+ - * / sqrt` are exact IEEE operations.
//! 4. Greedy ties go to the lowest token id; sampling is keyed by (seed, session, position) and
//!    walks a CDF in ascending token order.
//! 5. Canonical little-endian serialisation of the whole state, hashed into the digest
//!    ([`codec`]).
//!
//! ## The service
//! [`InferenceService`] implements [`dst_sim::StateMachine`]; its module doc states the rules.
//! It is also the sequential specification for linearizability checking (its `apply` is pure).
//! [`faults`] holds the hooks a fault plan calls on one replica. [`experiment`] holds the
//! reproducibility experiment and the helpers the benchmark uses.

pub mod attention;
pub mod codec;
pub mod experiment;
pub mod faults;
pub mod faulty;
pub mod mamba;
pub mod model;
pub mod numerics;
pub mod replication;
pub mod service;
pub mod spec;
pub mod workload;

#[cfg(test)]
mod tests;

pub use faulty::{FaultyService, ServiceFault};
pub use model::{LayerKind, Model, ModelConfig, Sampling, SessionState};
pub use numerics::Kernel;
pub use service::{Command, InferenceService, Output, ServiceConfig, ServiceError, SessionId};
pub use spec::{check_inference_run, InferenceSpec};
pub use workload::{InferenceWorkload, InferenceWorkloadConfig};

/// Byte vocabulary.
pub const VOCAB: usize = 256;
/// Width of the residual stream.
pub const D_MODEL: usize = 64;
/// Mamba's inner width (expand 2).
pub const D_INNER: usize = 128;
/// Mamba's state size per channel.
pub const STATE_N: usize = 16;
/// Mamba's causal convolution width.
pub const CONV_K: usize = 4;
/// Rank of Mamba's Δ projection (d_model / 16).
pub const DT_RANK: usize = 4;
/// Attention heads.
pub const HEADS: usize = 4;
/// Width of one attention head.
pub const HEAD_DIM: usize = D_MODEL / HEADS;
/// SwiGLU hidden width.
pub const MLP_HIDDEN: usize = 128;
