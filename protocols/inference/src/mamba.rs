//! The Mamba (selective state space) mixer, one token at a time.
//!
//! Per token: `[x; z] = W_in h`; `u = SiLU(causal_conv_K(x) + b)`; `[δ; B; C] = W_x u`;
//! `Δ = softplus(W_dt δ + b_dt)`; per channel `d` and state `n`:
//! `s[d,n] = exp(Δ_d A[d,n]) s[d,n] + Δ_d B_n u_d` with `A = -exp(A_log)`, `A_log = log(1..N)`;
//! `y_d = Σ_n s[d,n] C_n + D_d u_d`; `y = y ⊙ SiLU(z)`; output `W_out y`.
//!
//! The recurrence is evaluated sequentially (the canonical order). [`scan_chunked`] is the
//! blocked form a parallel GPU kernel would use; it exists to show, in tests, that the two agree
//! within tolerance but not bit for bit, which is why replicas may only run the sequential one.

use crate::numerics::{matvec, silu, softplus};
use crate::{CONV_K, DT_RANK, D_INNER, D_MODEL, STATE_N};

/// Width of `W_x`'s output: `[δ; B; C]`.
pub const X_PROJ: usize = DT_RANK + 2 * STATE_N;

/// Weights of one Mamba layer. Matrices are stored input-major (see [`matvec`]).
#[derive(Clone, Debug)]
pub struct MambaParams {
    /// `D_MODEL x 2 D_INNER`: `[x; z]`.
    pub w_in: Vec<f32>,
    /// `D_INNER x CONV_K`, oldest tap first.
    pub conv_w: Vec<f32>,
    pub conv_b: Vec<f32>,
    /// `D_INNER x X_PROJ`.
    pub w_x: Vec<f32>,
    /// `DT_RANK x D_INNER`.
    pub w_dt: Vec<f32>,
    pub b_dt: Vec<f32>,
    /// `A = -exp(A_log)`, `D_INNER x STATE_N`, derived once when the weights are drawn.
    pub a: Vec<f32>,
    pub d_skip: Vec<f32>,
    /// `D_INNER x D_MODEL`.
    pub w_out: Vec<f32>,
}

/// A Mamba layer's per-session state: a fixed size, whatever the context length.
#[derive(Clone, Debug, PartialEq)]
pub struct MambaState {
    /// The last `CONV_K - 1` conv inputs, oldest first, `D_INNER` each.
    pub conv: Vec<f32>,
    /// `s[d, n]`, `D_INNER x STATE_N`.
    pub ssm: Vec<f32>,
}

impl MambaState {
    pub fn new() -> Self {
        MambaState {
            conv: vec![0.0; (CONV_K - 1) * D_INNER],
            ssm: vec![0.0; D_INNER * STATE_N],
        }
    }
}

impl Default for MambaState {
    fn default() -> Self {
        Self::new()
    }
}

/// One token through the mixer: reads `input` (already normalised), updates `state`, writes
/// the mixer output.
pub fn mamba_step(
    params: &MambaParams,
    state: &mut MambaState,
    input: &[f32],
    out: &mut [f32],
    splits: usize,
) {
    assert!(
        input.len() == D_MODEL && out.len() == D_MODEL,
        "mamba_step: width"
    );
    let mut xz = [0.0f32; 2 * D_INNER];
    matvec(&params.w_in, input, &mut xz, splits);
    let (x, z) = xz.split_at(D_INNER);

    let mut u = [0.0f32; D_INNER];
    causal_conv(params, &mut state.conv, x, &mut u);

    let mut dbc = [0.0f32; X_PROJ];
    matvec(&params.w_x, &u, &mut dbc, splits);
    let (delta_low, bc) = dbc.split_at(DT_RANK);
    let (b, c) = bc.split_at(STATE_N);

    let mut delta = [0.0f32; D_INNER];
    matvec(&params.w_dt, delta_low, &mut delta, splits);
    for (value, &bias) in delta.iter_mut().zip(&params.b_dt) {
        *value = softplus(*value + bias);
    }

    let mut y = [0.0f32; D_INNER];
    for d in 0..D_INNER {
        let row = d * STATE_N..(d + 1) * STATE_N;
        let sum = ssm_step(
            &mut state.ssm[row.clone()],
            &params.a[row],
            delta[d],
            b,
            c,
            u[d],
        );
        y[d] = (sum + params.d_skip[d] * u[d]) * silu(z[d]);
    }
    matvec(&params.w_out, &y, out, splits);
}

/// Depthwise causal convolution over the last `CONV_K` inputs (oldest tap first), plus bias,
/// then SiLU; shifts `x` into the conv window.
fn causal_conv(params: &MambaParams, window: &mut [f32], x: &[f32], u: &mut [f32]) {
    for d in 0..D_INNER {
        let taps = &params.conv_w[d * CONV_K..(d + 1) * CONV_K];
        let mut sum = 0.0f32;
        for (k, &tap) in taps.iter().enumerate().take(CONV_K - 1) {
            sum += tap * window[k * D_INNER + d];
        }
        sum += taps[CONV_K - 1] * x[d];
        u[d] = silu(sum + params.conv_b[d]);
    }
    window.copy_within(D_INNER.., 0);
    window[(CONV_K - 2) * D_INNER..].copy_from_slice(x);
}

/// One step of one channel's recurrence, in the canonical order:
/// `s_n = exp(Δ A_n) s_n + (Δ B_n) u`, then returns `Σ_n s_n C_n` (ascending `n`).
#[inline]
pub fn ssm_step(state: &mut [f32], a: &[f32], delta: f32, b: &[f32], c: &[f32], u: f32) -> f32 {
    let mut sum = 0.0f32;
    for n in 0..state.len() {
        let decay = libm::expf(delta * a[n]);
        state[n] = decay * state[n] + (delta * b[n]) * u;
        sum += state[n] * c[n];
    }
    sum
}

/// The inputs of one channel's recurrence at one time step.
#[derive(Clone, Debug)]
pub struct ScanInput {
    pub delta: f32,
    pub u: f32,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
}

/// The canonical sequential scan of one channel: `Σ_n s_n C_n` at every step.
pub fn scan_sequential(a: &[f32], state: &mut [f32], inputs: &[ScanInput]) -> Vec<f32> {
    inputs
        .iter()
        .map(|step| ssm_step(state, a, step.delta, &step.b, &step.c, step.u))
        .collect()
}

/// The blocked scan a parallel kernel uses: inside each chunk, a local state from zero and the
/// running product of decays; the chunk's carried-in state enters as `local + product * s_in`.
/// Mathematically equal to [`scan_sequential`]; numerically not bit-equal.
pub fn scan_chunked(
    a: &[f32],
    state: &mut [f32],
    inputs: &[ScanInput],
    chunk_len: usize,
) -> Vec<f32> {
    assert!(chunk_len > 0, "scan_chunked: chunk length must be positive");
    let width = state.len();
    let mut outputs = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(chunk_len) {
        let carried: Vec<f32> = state.to_vec();
        let mut local = vec![0.0f32; width];
        let mut product = vec![1.0f32; width];
        for step in chunk {
            let mut sum = 0.0f32;
            for n in 0..width {
                let decay = libm::expf(step.delta * a[n]);
                local[n] = decay * local[n] + (step.delta * step.b[n]) * step.u;
                product[n] *= decay;
                state[n] = local[n] + product[n] * carried[n];
                sum += state[n] * step.c[n];
            }
            outputs.push(sum);
        }
    }
    outputs
}
