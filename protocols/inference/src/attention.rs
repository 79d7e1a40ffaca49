//! Sliding-window multi-head attention with the online softmax.
//!
//! For query `t`, visit keys `j = max(0, t - W + 1) ..= t` in ascending order with
//! `s = q·k_j / sqrt(d_h)` folded into an [`OnlineSoftmax`]. Keys and values live in a ring
//! buffer of `W` slots (slot `j mod W`), so the cache never holds more than the window. Full
//! attention is the same code with `W` = the context limit: the buffer then only grows.

use crate::numerics::{dot, matvec, OnlineSoftmax};
use crate::{D_MODEL, HEADS, HEAD_DIM};

/// Weights of one attention layer, all `D_MODEL x D_MODEL`, input-major.
#[derive(Clone, Debug)]
pub struct AttentionParams {
    pub w_q: Vec<f32>,
    pub w_k: Vec<f32>,
    pub w_v: Vec<f32>,
    pub w_o: Vec<f32>,
}

/// Ring buffer of keys and values; slot `j mod W` holds token `j`.
/// invariant: `keys.len() == values.len() == min(position, W) * D_MODEL`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KvCache {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

impl KvCache {
    /// Number of occupied slots.
    pub fn slots(&self) -> usize {
        self.keys.len() / D_MODEL
    }
}

/// One token at position `position` (tokens before it) through the attention mixer.
pub fn attention_step(
    params: &AttentionParams,
    cache: &mut KvCache,
    position: u64,
    window: usize,
    input: &[f32],
    out: &mut [f32],
    splits: usize,
) {
    assert!(window > 0, "attention_step: window must be positive");
    assert_eq!(
        cache.slots() as u64,
        position.min(window as u64),
        "attention_step: cache holds min(position, window) slots"
    );
    let mut query = [0.0f32; D_MODEL];
    let mut key = [0.0f32; D_MODEL];
    let mut value = [0.0f32; D_MODEL];
    matvec(&params.w_q, input, &mut query, splits);
    matvec(&params.w_k, input, &mut key, splits);
    matvec(&params.w_v, input, &mut value, splits);
    store(cache, position, window, &key, &value);

    let scale = libm::sqrtf(HEAD_DIM as f32);
    let first = (position + 1).saturating_sub(window as u64);
    let mut heads_out = [0.0f32; D_MODEL];
    for head in 0..HEADS {
        let lanes = head * HEAD_DIM..(head + 1) * HEAD_DIM;
        let q = &query[lanes.clone()];
        let mut softmax = OnlineSoftmax::<HEAD_DIM>::new();
        for j in first..=position {
            let base = (j % window as u64) as usize * D_MODEL + head * HEAD_DIM;
            let k = &cache.keys[base..base + HEAD_DIM];
            let v = &cache.values[base..base + HEAD_DIM];
            softmax.push(dot(q, k, splits) / scale, v);
        }
        softmax.finish(&mut heads_out[lanes]);
    }
    matvec(&params.w_o, &heads_out, out, splits);
}

/// Writes token `position`'s key and value into slot `position mod window`.
fn store(cache: &mut KvCache, position: u64, window: usize, key: &[f32], value: &[f32]) {
    let slot = (position % window as u64) as usize;
    if slot == cache.slots() {
        cache.keys.extend_from_slice(key);
        cache.values.extend_from_slice(value);
    } else {
        cache.keys[slot * D_MODEL..(slot + 1) * D_MODEL].copy_from_slice(key);
        cache.values[slot * D_MODEL..(slot + 1) * D_MODEL].copy_from_slice(value);
    }
}
