//! The toy hybrid language model: configuration, weights drawn from a seed, per-session state,
//! and the one per-token kernel that both prefill and decode run.
//!
//! Layout: byte embedding (tied LM head); per layer `x += mixer(rms(x))`, `x += mlp(rms(x))`
//! with a SwiGLU MLP; final RMSNorm. The state of a session is what the mixers carry between
//! tokens plus the final hidden vector of the last token (from which the next token is drawn).

use serde::{Deserialize, Serialize};

use crate::attention::{attention_step, AttentionParams, KvCache};
use crate::codec::{Reader, Sink};
use crate::mamba::{mamba_step, MambaParams, MambaState, X_PROJ};
use crate::numerics::{
    argmax, counter_word, dot, matvec, rms_norm, silu, symmetric_unit, unit_interval, Kernel,
};
use crate::{CONV_K, DT_RANK, D_INNER, D_MODEL, MLP_HIDDEN, STATE_N, VOCAB};

/// Which mixer a layer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LayerKind {
    /// Selective state space (fixed-size state).
    Mamba,
    /// Windowed attention (a ring buffer of `window_tokens` keys and values).
    Attention,
}

impl LayerKind {
    fn tag(self) -> u8 {
        match self {
            LayerKind::Mamba => 0,
            LayerKind::Attention => 1,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, String> {
        match tag {
            0 => Ok(LayerKind::Mamba),
            1 => Ok(LayerKind::Attention),
            other => Err(format!("unknown layer kind tag {other}")),
        }
    }
}

/// Most layers a configuration may have (bounds decoding of untrusted snapshots).
pub const LAYERS_MAX: usize = 16;
/// Largest context any configuration may allow.
pub const CONTEXT_TOKENS_LIMIT: u32 = 1 << 24;
/// The sliding window of the hybrid and SWA-only models.
pub const WINDOW_TOKENS_DEFAULT: u32 = 64;

/// What defines a model's weights and state shapes. Part of the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelConfig {
    pub seed: u64,
    pub version: u32,
    pub layers: Vec<LayerKind>,
    pub window_tokens: u32,
    /// Tokens a session may hold in total (appended plus generated).
    pub context_tokens_max: u32,
}

impl ModelConfig {
    /// `[Mamba, SWA, Mamba, SWA]`, window 64: constant state per session.
    pub fn hybrid(seed: u64) -> Self {
        ModelConfig {
            seed,
            version: 1,
            layers: vec![
                LayerKind::Mamba,
                LayerKind::Attention,
                LayerKind::Mamba,
                LayerKind::Attention,
            ],
            window_tokens: WINDOW_TOKENS_DEFAULT,
            context_tokens_max: 1 << 20,
        }
    }

    /// Four SWA layers, window 64.
    pub fn swa_only(seed: u64) -> Self {
        ModelConfig {
            layers: vec![LayerKind::Attention; 4],
            ..Self::hybrid(seed)
        }
    }

    /// Four attention layers whose window is the whole context: the KV cache grows per token.
    pub fn full_attention(seed: u64, context_tokens_max: u32) -> Self {
        ModelConfig {
            layers: vec![LayerKind::Attention; 4],
            window_tokens: context_tokens_max,
            context_tokens_max,
            ..Self::hybrid(seed)
        }
    }

    /// Checks the shape limits (used on configurations read from untrusted bytes).
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() || self.layers.len() > LAYERS_MAX {
            return Err(format!("{} layers (1..={LAYERS_MAX})", self.layers.len()));
        }
        if self.window_tokens == 0 || self.window_tokens > self.context_tokens_max {
            return Err(format!(
                "window {} outside 1..={}",
                self.window_tokens, self.context_tokens_max
            ));
        }
        if self.context_tokens_max > CONTEXT_TOKENS_LIMIT {
            return Err(format!(
                "context {} over {CONTEXT_TOKENS_LIMIT}",
                self.context_tokens_max
            ));
        }
        Ok(())
    }

    pub fn encode(&self, sink: &mut impl Sink) {
        sink.put_u64(self.seed);
        sink.put_u32(self.version);
        sink.put_u8(self.layers.len() as u8);
        for layer in &self.layers {
            sink.put_u8(layer.tag());
        }
        sink.put_u32(self.window_tokens);
        sink.put_u32(self.context_tokens_max);
    }

    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, String> {
        let seed = reader.u64("model seed")?;
        let version = reader.u32("model version")?;
        let count = reader.u8("layer count")? as usize;
        if count == 0 || count > LAYERS_MAX {
            return Err(format!("{count} layers (1..={LAYERS_MAX})"));
        }
        let mut layers = Vec::with_capacity(count);
        for _ in 0..count {
            layers.push(LayerKind::from_tag(reader.u8("layer kind")?)?);
        }
        let config = ModelConfig {
            seed,
            version,
            layers,
            window_tokens: reader.u32("window")?,
            context_tokens_max: reader.u32("context limit")?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// A layer's mixer weights.
#[derive(Clone, Debug)]
pub enum Mixer {
    Mamba(MambaParams),
    Attention(AttentionParams),
}

/// One residual block's weights.
#[derive(Clone, Debug)]
pub struct Block {
    pub norm_mixer: Vec<f32>,
    pub mixer: Mixer,
    pub norm_mlp: Vec<f32>,
    /// `D_MODEL x MLP_HIDDEN` each, input-major.
    pub w_gate: Vec<f32>,
    pub w_up: Vec<f32>,
    /// `MLP_HIDDEN x D_MODEL`.
    pub w_down: Vec<f32>,
}

/// All weights. Not replicated state: every replica derives them from `(seed, version)`.
#[derive(Clone, Debug)]
pub struct Weights {
    /// `VOCAB x D_MODEL`, token-major; also the LM head.
    pub embedding: Vec<f32>,
    pub blocks: Vec<Block>,
    pub norm_final: Vec<f32>,
}

/// Draws tensors from a counter-based stream keyed by `(seed, version, tensor tag)`.
struct TensorSource {
    base: u64,
}

impl TensorSource {
    /// Uniform in `[-scale, scale)`.
    fn uniform(&self, tag: u64, len: usize, scale: f32) -> Vec<f32> {
        let key =
            dst_sim::decision::splitmix64(self.base ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (0..len as u64)
            .map(|index| symmetric_unit(counter_word(key, index)) * scale)
            .collect()
    }

    /// Uniform in `[0, 1)`.
    fn unit(&self, tag: u64, len: usize) -> Vec<f32> {
        let key =
            dst_sim::decision::splitmix64(self.base ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (0..len as u64)
            .map(|index| unit_interval(counter_word(key, index)))
            .collect()
    }
}

/// `sqrt(3 / fan_in)`: the bound of a uniform with variance `1 / fan_in`.
fn init_scale(fan_in: usize) -> f32 {
    libm::sqrtf(3.0 / fan_in as f32)
}

impl Weights {
    /// The weights of `config` (seed, version and layer pattern).
    pub fn generate(config: &ModelConfig) -> Self {
        let base = dst_sim::decision::splitmix64(config.seed)
            ^ dst_sim::decision::splitmix64(0x7665_7273_696f_6e00 ^ config.version as u64);
        let source = TensorSource { base };
        let blocks = config
            .layers
            .iter()
            .enumerate()
            .map(|(index, &kind)| generate_block(&source, 16 + 64 * index as u64, kind))
            .collect();
        Weights {
            embedding: source.uniform(1, VOCAB * D_MODEL, 1.0),
            blocks,
            norm_final: vec![1.0; D_MODEL],
        }
    }

    /// Every tensor, in a fixed order (for fault injection by parameter index).
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut tensors = vec![&mut self.embedding];
        for block in &mut self.blocks {
            tensors.push(&mut block.norm_mixer);
            match &mut block.mixer {
                Mixer::Mamba(p) => tensors.extend([
                    &mut p.w_in,
                    &mut p.conv_w,
                    &mut p.conv_b,
                    &mut p.w_x,
                    &mut p.w_dt,
                    &mut p.b_dt,
                    &mut p.a,
                    &mut p.d_skip,
                    &mut p.w_out,
                ]),
                Mixer::Attention(p) => {
                    tensors.extend([&mut p.w_q, &mut p.w_k, &mut p.w_v, &mut p.w_o])
                }
            }
            tensors.extend([
                &mut block.norm_mlp,
                &mut block.w_gate,
                &mut block.w_up,
                &mut block.w_down,
            ]);
        }
        tensors.push(&mut self.norm_final);
        tensors
    }
}

fn generate_block(source: &TensorSource, tag: u64, kind: LayerKind) -> Block {
    let output_scale = 0.5;
    let mixer = match kind {
        LayerKind::Mamba => Mixer::Mamba(generate_mamba(source, tag)),
        LayerKind::Attention => Mixer::Attention(AttentionParams {
            w_q: source.uniform(tag + 1, D_MODEL * D_MODEL, init_scale(D_MODEL)),
            w_k: source.uniform(tag + 2, D_MODEL * D_MODEL, init_scale(D_MODEL)),
            w_v: source.uniform(tag + 3, D_MODEL * D_MODEL, init_scale(D_MODEL)),
            w_o: source.uniform(
                tag + 4,
                D_MODEL * D_MODEL,
                init_scale(D_MODEL) * output_scale,
            ),
        }),
    };
    Block {
        norm_mixer: vec![1.0; D_MODEL],
        mixer,
        norm_mlp: vec![1.0; D_MODEL],
        w_gate: source.uniform(tag + 20, D_MODEL * MLP_HIDDEN, init_scale(D_MODEL)),
        w_up: source.uniform(tag + 21, D_MODEL * MLP_HIDDEN, init_scale(D_MODEL)),
        w_down: source.uniform(
            tag + 22,
            MLP_HIDDEN * D_MODEL,
            init_scale(MLP_HIDDEN) * output_scale,
        ),
    }
}

fn generate_mamba(source: &TensorSource, tag: u64) -> MambaParams {
    // Δ at initialisation is log-uniform in [1e-3, 1e-1]; b_dt is its inverse softplus.
    let (dt_low, dt_high) = (libm::logf(1e-3), libm::logf(1e-1));
    let b_dt = source
        .unit(tag + 10, D_INNER)
        .into_iter()
        .map(|fraction| {
            let dt = libm::expf(dt_low + fraction * (dt_high - dt_low));
            dt + libm::logf(-libm::expm1f(-dt))
        })
        .collect();
    let mut a = Vec::with_capacity(D_INNER * STATE_N);
    for _ in 0..D_INNER {
        for n in 0..STATE_N {
            let a_log = libm::logf((n + 1) as f32);
            a.push(-libm::expf(a_log));
        }
    }
    MambaParams {
        w_in: source.uniform(tag + 5, D_MODEL * 2 * D_INNER, init_scale(D_MODEL)),
        conv_w: source.uniform(tag + 6, D_INNER * CONV_K, init_scale(CONV_K)),
        conv_b: source.uniform(tag + 7, D_INNER, 0.1),
        w_x: source.uniform(tag + 8, D_INNER * X_PROJ, init_scale(D_INNER)),
        w_dt: source.uniform(tag + 9, DT_RANK * D_INNER, init_scale(DT_RANK)),
        b_dt,
        a,
        d_skip: vec![1.0; D_INNER],
        w_out: source.uniform(tag + 11, D_INNER * D_MODEL, init_scale(D_INNER) * 0.5),
    }
}

/// A layer's per-session state.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerState {
    Mamba(MambaState),
    Attention(KvCache),
}

/// Everything a session carries between tokens.
/// invariant: `hidden.len() == D_MODEL` iff `position > 0`, else empty.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionState {
    /// Tokens consumed so far.
    pub position: u64,
    /// Final-normalised hidden vector of the last token: the LM head's input.
    pub hidden: Vec<f32>,
    pub layers: Vec<LayerState>,
}

impl SessionState {
    /// The empty state of a session of `config`.
    pub fn new(config: &ModelConfig) -> Self {
        let layers = config
            .layers
            .iter()
            .map(|kind| match kind {
                LayerKind::Mamba => LayerState::Mamba(MambaState::new()),
                LayerKind::Attention => LayerState::Attention(KvCache::default()),
            })
            .collect();
        SessionState {
            position: 0,
            hidden: Vec::new(),
            layers,
        }
    }

    /// Canonical little-endian encoding.
    pub fn encode(&self, sink: &mut impl Sink) {
        sink.put_u64(self.position);
        sink.put_f32s(&self.hidden);
        for layer in &self.layers {
            match layer {
                LayerState::Mamba(state) => {
                    sink.put_u8(LayerKind::Mamba.tag());
                    sink.put_f32s(&state.conv);
                    sink.put_f32s(&state.ssm);
                }
                LayerState::Attention(cache) => {
                    sink.put_u8(LayerKind::Attention.tag());
                    sink.put_u32(cache.slots() as u32);
                    sink.put_f32s(&cache.keys);
                    sink.put_f32s(&cache.values);
                }
            }
        }
    }

    /// Decodes and validates against `config`; every shape is implied by the config and the
    /// position, so a malformed encoding is an error, never a panic or a huge allocation.
    pub fn decode(reader: &mut Reader<'_>, config: &ModelConfig) -> Result<Self, String> {
        let position = reader.u64("position")?;
        if position > config.context_tokens_max as u64 {
            return Err(format!("position {position} over the context limit"));
        }
        let hidden = reader.f32s(if position > 0 { D_MODEL } else { 0 }, "hidden")?;
        let mut layers = Vec::with_capacity(config.layers.len());
        for &kind in &config.layers {
            let tag = reader.u8("layer tag")?;
            if LayerKind::from_tag(tag)? != kind {
                return Err(format!("layer tag {tag} does not match the model"));
            }
            layers.push(match kind {
                LayerKind::Mamba => LayerState::Mamba(MambaState {
                    conv: reader.f32s((CONV_K - 1) * D_INNER, "conv window")?,
                    ssm: reader.f32s(D_INNER * STATE_N, "ssm state")?,
                }),
                LayerKind::Attention => {
                    let slots = reader.u32("kv slots")? as u64;
                    if slots != position.min(config.window_tokens as u64) {
                        return Err(format!("{slots} kv slots at position {position}"));
                    }
                    let floats = slots as usize * D_MODEL;
                    LayerState::Attention(KvCache {
                        keys: reader.f32s(floats, "keys")?,
                        values: reader.f32s(floats, "values")?,
                    })
                }
            });
        }
        Ok(SessionState {
            position,
            hidden,
            layers,
        })
    }

    /// Every float of the state in encoding order (for fault injection by index).
    pub fn floats_mut(&mut self) -> Vec<&mut [f32]> {
        let mut parts: Vec<&mut [f32]> = vec![&mut self.hidden];
        for layer in &mut self.layers {
            match layer {
                LayerState::Mamba(state) => {
                    parts.push(&mut state.conv);
                    parts.push(&mut state.ssm);
                }
                LayerState::Attention(cache) => {
                    parts.push(&mut cache.keys);
                    parts.push(&mut cache.values);
                }
            }
        }
        parts
    }
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sampling {
    /// The largest logit; ties go to the lowest token id.
    Greedy,
    /// Softmax at `temperature_milli / 1000`, drawn with a counter-based generator keyed by
    /// `(seed, session, position)` over a CDF in ascending token order.
    Sampled { seed: u64, temperature_milli: u32 },
}

/// Weights, configuration and the kernel this replica runs.
#[derive(Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub weights: Weights,
    pub kernel: Kernel,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Model")
            .field("config", &self.config)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// The canonical model of `config`.
    pub fn new(config: ModelConfig) -> Self {
        let weights = Weights::generate(&config);
        Model {
            config,
            weights,
            kernel: Kernel::Canonical,
        }
    }

    /// One token for each session of the batch, layer by layer across the batch. The arithmetic
    /// of each session depends only on its own inputs (with the canonical kernel): batching
    /// changes the loop order across sessions, never the order inside a reduction.
    pub fn step_batch(&self, sessions: &mut [&mut SessionState], tokens: &[u8]) {
        assert_eq!(
            sessions.len(),
            tokens.len(),
            "step_batch: one token per session"
        );
        let splits = self.kernel.splits(sessions.len());
        let mut residuals: Vec<[f32; D_MODEL]> = tokens
            .iter()
            .map(|&token| {
                let mut row = [0.0f32; D_MODEL];
                let start = token as usize * D_MODEL;
                row.copy_from_slice(&self.weights.embedding[start..start + D_MODEL]);
                row
            })
            .collect();
        for (layer, block) in self.weights.blocks.iter().enumerate() {
            for (session, residual) in sessions.iter_mut().zip(&mut residuals) {
                self.mixer_residual(
                    block,
                    &mut session.layers[layer],
                    session.position,
                    residual,
                    splits,
                );
            }
            for residual in &mut residuals {
                mlp_residual(block, residual, splits);
            }
        }
        for (session, residual) in sessions.iter_mut().zip(&residuals) {
            let mut hidden = vec![0.0f32; D_MODEL];
            rms_norm(residual, &self.weights.norm_final, &mut hidden, splits);
            session.hidden = hidden;
            session.position += 1;
        }
    }

    fn mixer_residual(
        &self,
        block: &Block,
        state: &mut LayerState,
        position: u64,
        residual: &mut [f32; D_MODEL],
        splits: usize,
    ) {
        let mut normed = [0.0f32; D_MODEL];
        rms_norm(residual, &block.norm_mixer, &mut normed, splits);
        let mut mixed = [0.0f32; D_MODEL];
        match (&block.mixer, state) {
            (Mixer::Mamba(params), LayerState::Mamba(state)) => {
                mamba_step(params, state, &normed, &mut mixed, splits)
            }
            (Mixer::Attention(params), LayerState::Attention(cache)) => attention_step(
                params,
                cache,
                position,
                self.config.window_tokens as usize,
                &normed,
                &mut mixed,
                splits,
            ),
            _ => panic!("session state does not match the model's layer kinds"),
        }
        for (x, m) in residual.iter_mut().zip(&mixed) {
            *x += *m;
        }
    }

    /// Prefill: the decode kernel once per token, in order.
    pub fn prefill(&self, session: &mut SessionState, tokens: &[u8]) {
        for &token in tokens {
            self.step_batch(&mut [&mut *session], &[token]);
        }
    }

    /// Logits of the next token (tied LM head).
    pub fn logits(&self, session: &SessionState) -> [f32; VOCAB] {
        assert_eq!(
            session.hidden.len(),
            D_MODEL,
            "logits: session has no token yet"
        );
        let splits = self.kernel.splits(1);
        let mut logits = [0.0f32; VOCAB];
        for (token, logit) in logits.iter_mut().enumerate() {
            let row = &self.weights.embedding[token * D_MODEL..(token + 1) * D_MODEL];
            *logit = dot(row, &session.hidden, splits);
        }
        logits
    }

    /// Chooses the next token of `session` (whose id is `session_key`).
    pub fn choose(&self, session: &SessionState, session_key: u64, sampling: Sampling) -> u8 {
        let logits = self.logits(session);
        match sampling {
            Sampling::Greedy => argmax(&logits) as u8,
            Sampling::Sampled {
                seed,
                temperature_milli,
            } => sample(
                &logits,
                seed,
                session_key,
                session.position,
                temperature_milli,
            ),
        }
    }
}

/// `x += W_down (SiLU(W_gate rms(x)) ⊙ W_up rms(x))`.
fn mlp_residual(block: &Block, residual: &mut [f32; D_MODEL], splits: usize) {
    let mut normed = [0.0f32; D_MODEL];
    rms_norm(residual, &block.norm_mlp, &mut normed, splits);
    let mut gate = [0.0f32; MLP_HIDDEN];
    let mut up = [0.0f32; MLP_HIDDEN];
    matvec(&block.w_gate, &normed, &mut gate, splits);
    matvec(&block.w_up, &normed, &mut up, splits);
    for (g, &u) in gate.iter_mut().zip(&up) {
        *g = silu(*g) * u;
    }
    let mut down = [0.0f32; D_MODEL];
    matvec(&block.w_down, &gate, &mut down, splits);
    for (x, d) in residual.iter_mut().zip(&down) {
        *x += *d;
    }
}

/// Draws from `softmax(logits / T)`: weights `e^((l - max) / T)` summed in ascending token
/// order, a uniform `u` from `(seed, session, position)`, the first token whose running sum
/// exceeds `u * total`. Falls back to the arg-max if rounding leaves nothing chosen.
pub fn sample(
    logits: &[f32; VOCAB],
    seed: u64,
    session_key: u64,
    position: u64,
    temperature_milli: u32,
) -> u8 {
    assert!(
        temperature_milli > 0,
        "sample: temperature must be positive"
    );
    let best = argmax(logits);
    let max = logits[best];
    let inverse_temperature = 1000.0 / temperature_milli as f32;
    let mut weights = [0.0f32; VOCAB];
    let mut total = 0.0f32;
    for (weight, &logit) in weights.iter_mut().zip(logits) {
        *weight = libm::expf((logit - max) * inverse_temperature);
        total += *weight;
    }
    let key = dst_sim::decision::splitmix64(seed ^ dst_sim::decision::splitmix64(session_key));
    let target = unit_interval(counter_word(key, position)) * total;
    let mut running = 0.0f32;
    for (token, &weight) in weights.iter().enumerate() {
        running += weight;
        if running > target {
            return token as u8;
        }
    }
    best as u8
}
