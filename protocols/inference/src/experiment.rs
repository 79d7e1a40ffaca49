//! The reproducibility experiment and helpers for the benchmark.
//!
//! The experiment is a toy version of Thinking Machines' "defeating nondeterminism in LLM
//! inference" (1000 identical requests gave 80 distinct completions on an ordinary server):
//! one prompt is served `runs` times, each time alongside other sessions, with random prefill
//! split points, random batch sizes and a random interleaving of sessions inside batches. With
//! the canonical kernel every run must produce the same completion and the same state hash;
//! with [`Kernel::BatchVariant`] (the control) they differ.

use std::collections::{BTreeSet, VecDeque};

use dst_sim::decision::{DecisionKind, DecisionSource, SeededSource};

use crate::codec::StableHasher;
use crate::model::{LayerState, Sampling};
use crate::model::{Model, ModelConfig, SessionState};
use crate::numerics::{counter_word, symmetric_unit, Kernel};
use crate::D_MODEL;

/// Largest batch the experiment's scheduler forms.
pub const BATCH_MAX: u64 = 8;
/// Most other sessions served alongside the target in one run.
pub const NEIGHBOURS_MAX: u64 = 3;
/// Most prefill split points in one prompt.
pub const SPLITS_MAX: u64 = 4;

/// What the experiment found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReproducibilityReport {
    pub runs: u32,
    pub distinct_outputs: usize,
    pub distinct_state_hashes: usize,
}

/// One session's remaining work in a run.
struct Work {
    state: SessionState,
    /// Prompt pieces still to prefill (split points drawn per run).
    pieces: VecDeque<Vec<u8>>,
    generate_left: u32,
    generated: Vec<u8>,
}

impl Work {
    fn done(&self) -> bool {
        self.pieces.is_empty() && self.generate_left == 0
    }

    /// The next token to feed: the next prompt byte, else a greedy draw (recorded).
    fn next_token(&mut self, model: &Model) -> u8 {
        if let Some(piece) = self.pieces.front_mut() {
            let token = piece.remove(0);
            if piece.is_empty() {
                self.pieces.pop_front();
            }
            return token;
        }
        let token = model.choose(&self.state, 0, Sampling::Greedy);
        self.generated.push(token);
        self.generate_left -= 1;
        token
    }

    /// How many tokens this session runs when picked: the rest of its current prompt piece, or
    /// a random number of generation steps.
    fn burst(&self, random: &mut SeededSource) -> usize {
        match self.pieces.front() {
            Some(piece) => piece.len(),
            None => 1 + random.choose(DecisionKind::NodeRandom, self.generate_left as u64) as usize,
        }
    }
}

fn below(random: &mut SeededSource, bound: u64) -> u64 {
    random.choose(DecisionKind::NodeRandom, bound)
}

/// Cuts `prompt` at up to [`SPLITS_MAX`] random points.
fn split_prompt(prompt: &[u8], random: &mut SeededSource) -> VecDeque<Vec<u8>> {
    let mut cuts: BTreeSet<usize> = BTreeSet::new();
    for _ in 0..below(random, SPLITS_MAX + 1) {
        cuts.insert(1 + below(random, prompt.len().max(2) as u64 - 1) as usize);
    }
    let mut pieces = VecDeque::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([prompt.len()]) {
        if cut > start && cut <= prompt.len() {
            pieces.push_back(prompt[start..cut].to_vec());
            start = cut;
        }
    }
    pieces
}

/// Serves `prompt` then `generate` greedy tokens, `runs` times, under random scheduling.
pub fn reproducibility(
    config: &ModelConfig,
    kernel: Kernel,
    prompt: &[u8],
    generate: u32,
    runs: u32,
    seed: u64,
) -> ReproducibilityReport {
    assert!(
        !prompt.is_empty(),
        "reproducibility: the prompt must not be empty"
    );
    let mut model = Model::new(config.clone());
    model.kernel = kernel;
    let mut outputs = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for run in 0..runs {
        let mut random = SeededSource::new(dst_sim::decision::splitmix64(seed ^ run as u64));
        let (generated, hash) = one_run(&model, prompt, generate, &mut random);
        outputs.insert(generated);
        hashes.insert(hash);
    }
    ReproducibilityReport {
        runs,
        distinct_outputs: outputs.len(),
        distinct_state_hashes: hashes.len(),
    }
}

/// One run: returns the target's completion and the hash of its final state.
fn one_run(
    model: &Model,
    prompt: &[u8],
    generate: u32,
    random: &mut SeededSource,
) -> (Vec<u8>, u64) {
    let neighbours = below(random, NEIGHBOURS_MAX + 1) as usize;
    let target = below(random, neighbours as u64 + 1) as usize;
    let mut works: Vec<Work> = (0..=neighbours)
        .map(|index| {
            let own_prompt: Vec<u8> = if index == target {
                prompt.to_vec()
            } else {
                (0..8 + below(random, 25))
                    .map(|_| below(random, 256) as u8)
                    .collect()
            };
            Work {
                state: SessionState::new(&model.config),
                pieces: split_prompt(&own_prompt, random),
                generate_left: if index == target {
                    generate
                } else {
                    below(random, 17) as u32
                },
                generated: Vec::new(),
            }
        })
        .collect();
    loop {
        let mut active: Vec<usize> = (0..works.len()).filter(|&i| !works[i].done()).collect();
        if active.is_empty() {
            break;
        }
        // A random batch: a random number of sessions in a random order.
        let batch_len = (1 + below(random, BATCH_MAX) as usize).min(active.len());
        for slot in 0..batch_len {
            let pick = slot + below(random, (active.len() - slot) as u64) as usize;
            active.swap(slot, pick);
        }
        active.truncate(batch_len);
        let bursts: Vec<usize> = active.iter().map(|&i| works[i].burst(random)).collect();
        run_bursts(model, &mut works, &active, &bursts);
    }
    (
        works[target].generated.clone(),
        state_hash(&works[target].state),
    )
}

/// Steps the chosen sessions in lock-step; a session leaves the batch when its burst ends, so
/// the batch shrinks token by token.
fn run_bursts(model: &Model, works: &mut [Work], chosen: &[usize], bursts: &[usize]) {
    let longest = bursts.iter().copied().max().unwrap_or(0);
    for step in 0..longest {
        let members: Vec<usize> = chosen
            .iter()
            .zip(bursts)
            .filter(|&(_, &burst)| burst > step)
            .map(|(&index, _)| index)
            .collect();
        let tokens: Vec<u8> = members
            .iter()
            .map(|&i| works[i].next_token(model))
            .collect();
        // Hand the batch over in the scheduler's (random) order.
        let mut slots: Vec<Option<&mut SessionState>> =
            works.iter_mut().map(|w| Some(&mut w.state)).collect();
        let mut batch: Vec<&mut SessionState> = members
            .iter()
            .map(|&i| slots[i].take().expect("a session appears once per batch"))
            .collect();
        model.step_batch(&mut batch, &tokens);
    }
}

/// A session state of `config` at `position` tokens with pseudo-random contents, for timing
/// decode at long contexts without paying a quadratic prefill: decode cost depends only on the
/// state's shape, never on its values.
pub fn synthetic_state(config: &ModelConfig, position: u64, seed: u64) -> SessionState {
    let mut state = SessionState::new(config);
    state.position = position;
    if position > 0 {
        state.hidden = vec![0.0; D_MODEL];
    }
    let slots = position.min(config.window_tokens as u64) as usize;
    for layer in &mut state.layers {
        if let LayerState::Attention(cache) = layer {
            cache.keys = vec![0.0; slots * D_MODEL];
            cache.values = vec![0.0; slots * D_MODEL];
        }
    }
    let mut index = 0u64;
    for part in state.floats_mut() {
        for value in part.iter_mut() {
            *value = symmetric_unit(counter_word(seed, index));
            index += 1;
        }
    }
    state
}

/// Bytes of the canonical encoding of a session state.
pub fn state_bytes(state: &SessionState) -> u64 {
    let mut counter = crate::codec::ByteCounter::default();
    state.encode(&mut counter);
    counter.0
}

/// A deterministic pseudo-text of `len` bytes.
pub fn pseudo_text(len: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ,.etaoin ";
    (0..len as u64)
        .map(|i| ALPHABET[(counter_word(seed, i) % ALPHABET.len() as u64) as usize])
        .collect()
}

/// Hash of a session state (as in the service's session digest, without its domain tag).
pub fn state_hash(state: &SessionState) -> u64 {
    let mut hasher = StableHasher::new(0);
    state.encode(&mut hasher);
    hasher.finish()
}

/// How a silent bit flip in session state shows: at once in the digest, and in the generated
/// tokens only after some tokens, or never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionReport {
    pub trials: u32,
    /// Trials whose flip changed the service digest immediately.
    pub digest_detected: u32,
    /// For trials whose greedy output diverged within the horizon: tokens until it did
    /// (1 = the very next token).
    pub tokens_to_visible: Vec<u32>,
    /// Trials whose output never diverged within `horizon_tokens`.
    pub never_visible: u32,
    pub horizon_tokens: u32,
}

/// Flips one random bit of one random float of a session's state after a prompt, then decodes
/// `horizon_tokens` greedy tokens on the corrupted and an honest copy, one at a time.
pub fn corruption_visibility(
    config: &ModelConfig,
    trials: u32,
    horizon_tokens: u32,
    seed: u64,
) -> CorruptionReport {
    use crate::service::{Command, InferenceService, Output, ServiceConfig, SessionId};
    use dst_sim::StateMachine;
    let mut honest = InferenceService::new(ServiceConfig::new(config.clone()));
    let session = SessionId(0);
    honest.apply(&Command::OpenSession);
    honest.apply(&Command::Append {
        session,
        text: pseudo_text(64, seed),
    });
    let mut random = SeededSource::new(seed);
    let mut report = CorruptionReport {
        trials,
        digest_detected: 0,
        tokens_to_visible: Vec::new(),
        never_visible: 0,
        horizon_tokens,
    };
    let next = |replica: &mut InferenceService| match replica.apply(&Command::Generate {
        session,
        tokens: 1,
        sampling: Sampling::Greedy,
    }) {
        Output::Generated { tokens, .. } => tokens,
        other => panic!("corruption_visibility: generate failed: {other:?}"),
    };
    for _ in 0..trials {
        let (mut clean, mut corrupted) = (honest.clone(), honest.clone());
        let float = below(&mut random, u64::MAX);
        let bit = below(&mut random, 32) as u8;
        corrupted.fault_flip_session_bit(session, float, bit);
        report.digest_detected += (corrupted.digest() != clean.digest()) as u32;
        let visible = (1..=horizon_tokens).find(|_| next(&mut clean) != next(&mut corrupted));
        match visible {
            Some(tokens) => report.tokens_to_visible.push(tokens),
            None => report.never_visible += 1,
        }
    }
    report
}
