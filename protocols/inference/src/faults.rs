//! Fault hooks a fault plan calls on one replica's service.
//!
//! They model what goes wrong with real inference replicas: memory corruption in weights or in
//! session state, a replica that loaded a stale model version, a replica whose kernel is not
//! the canonical one. None of them changes the replicated configuration, so a faulty replica
//! still claims to run the agreed model; only its outputs and digests reveal it. A weight or
//! kernel fault lives in the local model and is undone by [`StateMachine::restore`], which
//! rebuilds the canonical model from the snapshot's configuration.
//!
//! [`StateMachine::restore`]: dst_sim::StateMachine::restore

use std::sync::Arc;

use crate::model::{Model, ModelConfig, Weights};
use crate::numerics::Kernel;
use crate::service::{InferenceService, SessionId};

impl InferenceService {
    /// Flips bit `bit % 32` of parameter `parameter % parameter_count` (parameters numbered
    /// across tensors in a fixed order). Returns the parameter index that was hit.
    pub fn fault_flip_weight_bit(&mut self, parameter: u64, bit: u8) -> u64 {
        let model = Arc::make_mut(&mut self.model);
        let mut tensors = model.weights.tensors_mut();
        let count: u64 = tensors.iter().map(|t| t.len() as u64).sum();
        let target = parameter % count;
        let mut offset = target;
        for tensor in tensors.iter_mut() {
            if offset < tensor.len() as u64 {
                let value = &mut tensor[offset as usize];
                *value = f32::from_bits(value.to_bits() ^ (1 << (bit % 32)));
                return target;
            }
            offset -= tensor.len() as u64;
        }
        unreachable!("parameter index reduced modulo the parameter count")
    }

    /// Flips bit `bit % 32` of float `float % float_count` of a session's state. The session's
    /// digest is recomputed (a digest always describes the state actually held). Returns false
    /// if the session is not open or holds no float yet.
    pub fn fault_flip_session_bit(&mut self, session: SessionId, float: u64, bit: u8) -> bool {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return false;
        };
        let inner = Arc::make_mut(entry);
        let mut parts = inner.state.floats_mut();
        let count: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if count == 0 {
            return false;
        }
        let mut offset = float % count;
        for part in parts.iter_mut() {
            if offset < part.len() as u64 {
                let value = &mut part[offset as usize];
                *value = f32::from_bits(value.to_bits() ^ (1 << (bit % 32)));
                break;
            }
            offset -= part.len() as u64;
        }
        inner.refresh_digest();
        true
    }

    /// Replaces the local weights with those of model `version` while the replicated
    /// configuration still names the agreed version: a replica that loaded a stale model.
    pub fn fault_load_model_version(&mut self, version: u32) {
        let config = ModelConfig {
            version,
            ..self.config.model.clone()
        };
        let kernel = self.model.kernel;
        let weights = Weights::generate(&config);
        self.model = Arc::new(Model {
            config: self.config.model.clone(),
            weights,
            kernel,
        });
    }

    /// Switches this replica's kernel (e.g. [`Kernel::SplitK`]: a non-canonical kernel).
    pub fn fault_set_kernel(&mut self, kernel: Kernel) {
        Arc::make_mut(&mut self.model).kernel = kernel;
    }
}
