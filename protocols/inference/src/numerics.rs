//! Scalar kernels with one canonical arithmetic order.
//!
//! Rules (from `shared/docs/hybrid-model.md`): every output element is one sequential
//! reduction in ascending index order starting from `0.0`; no fused multiply-add, no
//! reassociation, no parallel reductions; transcendentals come from `libm`. Batching may only
//! parallelise across sessions. [`Kernel::SplitK`] and [`Kernel::BatchVariant`] break these
//! rules on purpose: they are the faults a replica with a non-canonical kernel would have.

use serde::{Deserialize, Serialize};

/// Epsilon inside RMSNorm's square root.
pub const RMS_EPSILON: f32 = 1e-5;

/// How reductions are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kernel {
    /// One sequential reduction per output element, ascending index. The only kernel honest
    /// replicas run.
    Canonical,
    /// Every reduction split into `splits` contiguous partial sums added at the end, like a
    /// split-K GPU matmul. A fault: it gives different bits from the canonical kernel.
    SplitK { splits: u8 },
    /// Split-K with as many splits as sessions in the batch: the bits of one session depend on
    /// what else was batched with it (the failure of ordinary inference servers).
    BatchVariant,
}

/// Largest number of partial sums a non-canonical kernel uses.
pub const SPLITS_MAX: usize = 8;

impl Kernel {
    /// Number of partial sums for a reduction in a batch of `batch_len` sessions.
    pub fn splits(self, batch_len: usize) -> usize {
        match self {
            Kernel::Canonical => 1,
            Kernel::SplitK { splits } => (splits as usize).clamp(1, SPLITS_MAX),
            Kernel::BatchVariant => batch_len.clamp(1, SPLITS_MAX),
        }
    }
}

/// `y = W x` with `W` stored input-major (`w[j * out + i]` is the weight from input `j` to
/// output `i`). Each `y[i]` is `((0 + w0 x0) + w1 x1) + ...` in ascending `j`: the loop runs
/// over outputs innermost, which vectorises across outputs without touching the order of any
/// one output's sum.
pub fn matvec(w: &[f32], x: &[f32], y: &mut [f32], splits: usize) {
    let out = y.len();
    assert_eq!(w.len(), x.len() * out, "matvec: weight shape mismatch");
    if splits <= 1 {
        accumulate_rows(w, x, y, 0, x.len());
        return;
    }
    // Non-canonical: contiguous partial sums over the input index, added in chunk order.
    let chunk = x.len().div_ceil(splits);
    let mut partial = vec![0.0f32; out];
    let mut start = 0;
    let mut first = true;
    while start < x.len() {
        let end = (start + chunk).min(x.len());
        if first {
            accumulate_rows(w, x, y, start, end);
            first = false;
        } else {
            accumulate_rows(w, x, &mut partial, start, end);
            for (yi, pi) in y.iter_mut().zip(&partial) {
                *yi += *pi;
            }
        }
        start = end;
    }
}

/// Zeroes `y`, then adds rows `start..end` of `W x` in ascending order.
fn accumulate_rows(w: &[f32], x: &[f32], y: &mut [f32], start: usize, end: usize) {
    let out = y.len();
    y.fill(0.0);
    for (j, &xj) in x.iter().enumerate().take(end).skip(start) {
        let row = &w[j * out..(j + 1) * out];
        for (yi, &wi) in y.iter_mut().zip(row) {
            *yi += wi * xj;
        }
    }
}

/// Sequential dot product in ascending index order (or split, for a non-canonical kernel).
pub fn dot(a: &[f32], b: &[f32], splits: usize) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    if splits <= 1 {
        return dot_range(a, b, 0, a.len());
    }
    let chunk = a.len().div_ceil(splits);
    let mut total = dot_range(a, b, 0, chunk.min(a.len()));
    let mut start = chunk;
    while start < a.len() {
        let end = (start + chunk).min(a.len());
        total += dot_range(a, b, start, end);
        start = end;
    }
    total
}

fn dot_range(a: &[f32], b: &[f32], start: usize, end: usize) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in a[start..end].iter().zip(&b[start..end]) {
        sum += x * y;
    }
    sum
}

/// `y_i = (x_i * r) * g_i` with `r = 1 / sqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &[f32], gain: &[f32], y: &mut [f32], splits: usize) {
    assert!(
        x.len() == gain.len() && x.len() == y.len(),
        "rms_norm: shape mismatch"
    );
    let sum_squares = dot(x, x, splits);
    let mean = sum_squares / x.len() as f32;
    let inverse = 1.0 / libm::sqrtf(mean + RMS_EPSILON);
    for ((yi, &xi), &gi) in y.iter_mut().zip(x).zip(gain) {
        *yi = (xi * inverse) * gi;
    }
}

/// `x * sigmoid(x)`, written as `x / (1 + e^-x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// `ln(1 + e^x)`, linear above 20 where `e^x` would swamp the 1.
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        libm::log1pf(libm::expf(x))
    }
}

/// The larger of two scores without `f32::max`, whose choice between `+0.0` and `-0.0` is
/// unspecified. A NaN score never replaces the running maximum.
#[inline]
pub fn max_score(running: f32, score: f32) -> f32 {
    if score > running {
        score
    } else {
        running
    }
}

/// Index of the largest logit; ties (and NaNs) go to the lowest token id.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (index, &value) in logits.iter().enumerate().skip(1) {
        if value > logits[best] {
            best = index;
        }
    }
    best
}

/// Online (FlashAttention-style) softmax-weighted sum of values, one key at a time:
/// `m' = max(m, s)`, `c = e^(m - m')`, `p = e^(s - m')`, `l = l c + p`, `o = o c + p v`.
#[derive(Clone, Debug)]
pub struct OnlineSoftmax<const D: usize> {
    max: f32,
    normaliser: f32,
    accumulator: [f32; D],
}

impl<const D: usize> Default for OnlineSoftmax<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const D: usize> OnlineSoftmax<D> {
    /// Empty accumulator: `m = -inf`, `l = 0`, `o = 0`.
    pub fn new() -> Self {
        OnlineSoftmax {
            max: f32::NEG_INFINITY,
            normaliser: 0.0,
            accumulator: [0.0; D],
        }
    }

    /// Folds in one key's score and value.
    #[inline]
    pub fn push(&mut self, score: f32, value: &[f32]) {
        assert_eq!(value.len(), D, "online softmax: value width");
        let new_max = max_score(self.max, score);
        let correction = libm::expf(self.max - new_max);
        let weight = libm::expf(score - new_max);
        self.normaliser = self.normaliser * correction + weight;
        for (o, &v) in self.accumulator.iter_mut().zip(value) {
            *o = *o * correction + weight * v;
        }
        self.max = new_max;
    }

    /// Writes `o / l`. With no key pushed the output is NaN (0/0); callers always push at
    /// least the current token's own key.
    pub fn finish(&self, out: &mut [f32]) {
        assert_eq!(out.len(), D, "online softmax: output width");
        for (y, &o) in out.iter_mut().zip(&self.accumulator) {
            *y = o / self.normaliser;
        }
    }
}

/// Counter-based generator: the `index`-th word of the stream named `key`.
#[inline]
pub fn counter_word(key: u64, index: u64) -> u64 {
    dst_sim::decision::splitmix64(key ^ dst_sim::decision::splitmix64(index))
}

/// Maps the top 24 bits of `bits` to `[-1, 1)` exactly: an integer in `[-2^23, 2^23)` converted
/// (exactly) to f32 and scaled by a power of two, so no library float parsing is involved.
#[inline]
pub fn symmetric_unit(bits: u64) -> f32 {
    let integer = (bits >> 40) as i32 - (1 << 23);
    integer as f32 * (1.0 / 8_388_608.0)
}

/// Maps the top 24 bits of `bits` to `[0, 1)` exactly.
#[inline]
pub fn unit_interval(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_kernel_changes_bits_but_canonical_matches_plain_loop() {
        let x: Vec<f32> = (0..64)
            .map(|i| symmetric_unit(counter_word(1, i)))
            .collect();
        let w: Vec<f32> = (0..64 * 8)
            .map(|i| symmetric_unit(counter_word(2, i)))
            .collect();
        let mut canonical = [0.0f32; 8];
        matvec(&w, &x, &mut canonical, 1);
        for (i, &value) in canonical.iter().enumerate() {
            let mut sum = 0.0f32;
            for j in 0..64 {
                sum += w[j * 8 + i] * x[j];
            }
            assert_eq!(
                value.to_bits(),
                sum.to_bits(),
                "canonical order, output {i}"
            );
        }
        let mut split = [0.0f32; 8];
        matvec(&w, &x, &mut split, 4);
        assert_ne!(canonical, split, "split-K must give different bits here");
        let close = canonical
            .iter()
            .zip(&split)
            .all(|(a, b)| (a - b).abs() < 1e-4);
        assert!(close, "split-K is still a correct matvec");
    }

    #[test]
    fn argmax_breaks_ties_by_lowest_id() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[1.0, f32::NAN, 1.0, 0.5]), 0);
        assert_eq!(argmax(&[0.0, -0.0]), 0);
    }

    #[test]
    fn unit_maps_are_exact_and_in_range() {
        assert_eq!(symmetric_unit(0), -1.0);
        assert_eq!(symmetric_unit(u64::MAX), 1.0 - 1.0 / 8_388_608.0);
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
