//! Tests named after the claims in `shared/docs/hybrid-model.md` and issue 8.

use std::sync::Arc;

use dst_sim::decision::{DecisionKind, DecisionSource, SeededSource};
use dst_sim::StateMachine;

use crate::experiment::{pseudo_text, reproducibility, state_bytes};
use crate::mamba::{scan_chunked, scan_sequential, ScanInput};
use crate::numerics::{counter_word, softplus, symmetric_unit, OnlineSoftmax};
use crate::{
    Command, InferenceService, Kernel, Model, ModelConfig, Output, Sampling, ServiceConfig,
    ServiceError, SessionId, SessionState, STATE_N,
};

const SEED: u64 = 42;

fn service(model: ModelConfig) -> InferenceService {
    InferenceService::new(ServiceConfig::new(model))
}

fn open(service: &mut InferenceService) -> SessionId {
    match service.apply(&Command::OpenSession) {
        Output::Opened { session } => session,
        other => panic!("open failed: {other:?}"),
    }
}

fn append(service: &mut InferenceService, session: SessionId, text: &[u8]) -> Output {
    service.apply(&Command::Append {
        session,
        text: text.to_vec(),
    })
}

fn greedy(service: &mut InferenceService, session: SessionId, tokens: u32) -> Output {
    service.apply(&Command::Generate {
        session,
        tokens,
        sampling: Sampling::Greedy,
    })
}

fn session_digest(service: &mut InferenceService, session: SessionId) -> u64 {
    match service.apply(&Command::ReadDigest { session }) {
        Output::Digest { digest, .. } => digest,
        other => panic!("digest failed: {other:?}"),
    }
}

// ---- online softmax ----

/// Scores and values of one attention case (one head of width 16).
struct AttentionCase {
    scores: Vec<f32>,
    values: Vec<[f32; 16]>,
}

fn attention_case(len: usize, seed: u64, score_of: impl Fn(usize, f32) -> f32) -> AttentionCase {
    let scores = (0..len)
        .map(|j| score_of(j, symmetric_unit(counter_word(seed, j as u64))))
        .collect();
    let values = (0..len)
        .map(|j| {
            let mut row = [0.0f32; 16];
            for (i, v) in row.iter_mut().enumerate() {
                *v = symmetric_unit(counter_word(seed + 1, (j * 16 + i) as u64));
            }
            row
        })
        .collect();
    AttentionCase { scores, values }
}

/// Naive two-pass softmax over all keys `0..=t` with a `-inf` mask outside the window.
fn naive_masked(case: &AttentionCase, t: usize, window: usize) -> [f32; 16] {
    let first = (t + 1).saturating_sub(window);
    let masked: Vec<f32> = (0..=t)
        .map(|j| {
            if j >= first {
                case.scores[j]
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let max = masked
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    let weights: Vec<f32> = masked.iter().map(|&s| libm::expf(s - max)).collect();
    let total: f32 = weights.iter().sum();
    let mut out = [0.0f32; 16];
    for (j, &w) in weights.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(&case.values[j]) {
            *o += w * v;
        }
    }
    out.map(|o| o / total)
}

/// The same in f64: the oracle.
fn oracle(case: &AttentionCase, t: usize, window: usize) -> [f64; 16] {
    let first = (t + 1).saturating_sub(window);
    let max = (first..=t)
        .map(|j| case.scores[j] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0f64;
    let mut out = [0.0f64; 16];
    for j in first..=t {
        let w = (case.scores[j] as f64 - max).exp();
        total += w;
        for (o, &v) in out.iter_mut().zip(&case.values[j]) {
            *o += w * v as f64;
        }
    }
    out.map(|o| o / total)
}

fn online(case: &AttentionCase, t: usize, window: usize) -> [f32; 16] {
    let mut softmax = OnlineSoftmax::<16>::new();
    for j in (t + 1).saturating_sub(window)..=t {
        softmax.push(case.scores[j], &case.values[j]);
    }
    let mut out = [0.0f32; 16];
    softmax.finish(&mut out);
    out
}

/// Normwise relative error: `max |a - b| / max |b|` over the head's 16 lanes.
fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn check_softmax(case: &AttentionCase, window: usize, label: &str) {
    for t in 0..case.scores.len() {
        let expected = oracle(case, t, window);
        let online = online(case, t, window).map(|x| x as f64);
        let naive = naive_masked(case, t, window).map(|x| x as f64);
        let vs_oracle = relative_error(&online, &expected);
        let vs_naive = relative_error(&online, &naive);
        assert!(
            vs_oracle < 1e-6,
            "{label}: t={t} online vs f64 oracle {vs_oracle:e}"
        );
        assert!(
            vs_naive < 1e-6,
            "{label}: t={t} online vs naive {vs_naive:e}"
        );
    }
}

#[test]
fn online_softmax_matches_naive_and_oracle_on_partial_and_full_windows() {
    check_softmax(&attention_case(40, 1, |_, r| 4.0 * r), 64, "partial window");
    check_softmax(&attention_case(600, 2, |_, r| 4.0 * r), 64, "t >> W");
    check_softmax(&attention_case(50, 3, |_, r| 4.0 * r), 1, "W = 1");
}

#[test]
fn online_softmax_matches_oracle_near_plus_minus_80_and_on_ties() {
    check_softmax(
        &attention_case(200, 4, |j, r| if j % 2 == 0 { 80.0 + r } else { -80.0 + r }),
        64,
        "±80",
    );
    check_softmax(
        &attention_case(200, 5, |_, r| 80.0 - r.abs()),
        16,
        "near +80",
    );
    check_softmax(&attention_case(200, 6, |_, r| -80.0 + r), 16, "near -80");
    check_softmax(&attention_case(100, 7, |_, _| 1.5), 64, "all tied");
    check_softmax(
        &attention_case(100, 8, |j, _| (j % 3) as f32),
        8,
        "repeated ties",
    );
}

#[test]
fn naive_check_catches_a_broken_online_softmax() {
    // A deliberately wrong update (no rescaling of the accumulator) must fail the comparison.
    let case = attention_case(100, 9, |_, r| 8.0 * r);
    let t = 99;
    let mut max = f32::NEG_INFINITY;
    let (mut total, mut acc) = (0.0f32, [0.0f32; 16]);
    for j in (t + 1 - 64)..=t {
        let new_max = if case.scores[j] > max {
            case.scores[j]
        } else {
            max
        };
        let p = libm::expf(case.scores[j] - new_max);
        total = total * libm::expf(max - new_max) + p;
        for (o, &v) in acc.iter_mut().zip(&case.values[j]) {
            *o += p * v; // bug: o is not rescaled by e^(m - m')
        }
        max = new_max;
    }
    let broken: Vec<f64> = acc.iter().map(|&o| (o / total) as f64).collect();
    assert!(
        relative_error(&broken, &oracle(&case, t, 64)) > 1e-3,
        "the oracle must catch it"
    );
}

// ---- chunked vs sequential scan ----

fn scan_inputs(len: usize, seed: u64) -> Vec<ScanInput> {
    (0..len as u64)
        .map(|t| {
            let word = |k: u64| symmetric_unit(counter_word(seed, t * 64 + k));
            ScanInput {
                delta: softplus(3.0 * word(0) - 2.0),
                u: word(1),
                b: (0..STATE_N as u64).map(|n| word(2 + n)).collect(),
                c: (0..STATE_N as u64).map(|n| word(20 + n)).collect(),
            }
        })
        .collect()
}

#[test]
fn chunked_scan_matches_sequential_within_tolerance() {
    let a: Vec<f32> = (1..=STATE_N).map(|n| -(n as f32)).collect();
    let inputs = scan_inputs(300, 11);
    let initial: Vec<f32> = (0..STATE_N as u64)
        .map(|n| symmetric_unit(counter_word(12, n)))
        .collect();
    let mut sequential_state = initial.clone();
    let sequential = scan_sequential(&a, &mut sequential_state, &inputs);
    let mut any_bits_differ = false;
    for chunk in [1, 7, 64, inputs.len()] {
        let mut state = initial.clone();
        let chunked = scan_chunked(&a, &mut state, &inputs, chunk);
        for (t, (x, y)) in chunked.iter().zip(&sequential).enumerate() {
            let error = (x - y).abs() / y.abs().max(1e-2);
            assert!(error < 1e-4, "chunk {chunk}, t={t}: {x} vs {y}");
            any_bits_differ |= x.to_bits() != y.to_bits();
        }
        for (x, y) in state.iter().zip(&sequential_state) {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "chunk {chunk}: final state"
            );
        }
    }
    assert!(
        any_bits_differ,
        "the blocked scan is a different arithmetic order"
    );
}

// ---- bit-exactness ----

#[test]
fn prefill_of_t_tokens_equals_t_single_token_steps_bit_exact() {
    let text = pseudo_text(150, 1);
    let mut whole = service(ModelConfig::hybrid(SEED));
    let a = open(&mut whole);
    append(&mut whole, a, &text);
    let mut stepwise = service(ModelConfig::hybrid(SEED));
    let b = open(&mut stepwise);
    for byte in &text {
        append(&mut stepwise, b, &[*byte]);
    }
    let model = Model::new(ModelConfig::hybrid(SEED));
    let mut state = SessionState::new(&model.config);
    for &byte in &text {
        model.step_batch(&mut [&mut state], &[byte]);
    }
    assert_eq!(whole.session_state(a), stepwise.session_state(b));
    assert_eq!(whole.session_state(a), Some(&state));
    assert_eq!(
        session_digest(&mut whole, a),
        session_digest(&mut stepwise, b)
    );
    assert_eq!(greedy(&mut whole, a, 20), greedy(&mut stepwise, b, 20));
}

#[test]
fn interleaved_batched_sessions_equal_each_session_alone() {
    let model = Model::new(ModelConfig::hybrid(SEED));
    let texts: Vec<Vec<u8>> = (0..3)
        .map(|i| pseudo_text(90 + 7 * i, 100 + i as u64))
        .collect();
    let alone: Vec<SessionState> = texts
        .iter()
        .map(|text| {
            let mut state = SessionState::new(&model.config);
            model.prefill(&mut state, text);
            state
        })
        .collect();
    // Lock-step batches whose membership and order change every token.
    let mut states: Vec<SessionState> = (0..3).map(|_| SessionState::new(&model.config)).collect();
    let mut cursors = [0usize; 3];
    let mut random = SeededSource::new(3);
    while cursors.iter().zip(&texts).any(|(c, t)| *c < t.len()) {
        let mut order: Vec<usize> = (0..3).filter(|&i| cursors[i] < texts[i].len()).collect();
        let turn = random.choose(DecisionKind::NodeRandom, order.len() as u64) as usize;
        order.rotate_left(turn);
        order.truncate(1 + random.choose(DecisionKind::NodeRandom, order.len() as u64) as usize);
        let tokens: Vec<u8> = order.iter().map(|&i| texts[i][cursors[i]]).collect();
        let mut slots: Vec<Option<&mut SessionState>> = states.iter_mut().map(Some).collect();
        let mut batch: Vec<&mut SessionState> =
            order.iter().map(|&i| slots[i].take().unwrap()).collect();
        model.step_batch(&mut batch, &tokens);
        for &i in &order {
            cursors[i] += 1;
        }
    }
    assert_eq!(states, alone, "batching must not change any session's bits");
}

#[test]
fn interleaved_service_commands_equal_a_session_served_alone() {
    let texts = [pseudo_text(70, 5), pseudo_text(70, 6)];
    let mut shared = service(ModelConfig::hybrid(SEED));
    let ids = [open(&mut shared), open(&mut shared)];
    for round in 0..7 {
        for (id, text) in ids.iter().zip(&texts) {
            append(&mut shared, *id, &text[round * 10..round * 10 + 10]);
        }
    }
    for (id, text) in ids.iter().zip(&texts) {
        let mut alone = service(ModelConfig::hybrid(SEED));
        let only = open(&mut alone);
        append(&mut alone, only, text);
        assert_eq!(
            session_digest(&mut shared, *id),
            session_digest(&mut alone, only)
        );
        let (Output::Generated { tokens: x, .. }, Output::Generated { tokens: y, .. }) =
            (greedy(&mut shared, *id, 8), greedy(&mut alone, only, 8))
        else {
            panic!("generate failed");
        };
        assert_eq!(x, y);
    }
}

#[test]
fn random_prefill_splits_give_identical_state_hashes() {
    let text = pseudo_text(120, 9);
    let mut digests = std::collections::BTreeSet::new();
    let mut random = SeededSource::new(17);
    for _ in 0..12 {
        let mut replica = service(ModelConfig::hybrid(SEED));
        let session = open(&mut replica);
        let mut start = 0;
        while start < text.len() {
            let len = 1 + random.choose(DecisionKind::NodeRandom, 40) as usize;
            let end = (start + len).min(text.len());
            append(&mut replica, session, &text[start..end]);
            start = end;
        }
        digests.insert(session_digest(&mut replica, session));
    }
    assert_eq!(digests.len(), 1, "split points must not change the state");
}

#[test]
fn reproducibility_experiment_canonical_is_one_output_batch_variant_is_not() {
    let config = ModelConfig::hybrid(SEED);
    let prompt = pseudo_text(24, 2);
    let canonical = reproducibility(&config, Kernel::Canonical, &prompt, 6, 12, 1);
    assert_eq!(
        (canonical.distinct_outputs, canonical.distinct_state_hashes),
        (1, 1)
    );
    let control = reproducibility(&config, Kernel::BatchVariant, &prompt, 6, 12, 1);
    assert!(
        control.distinct_state_hashes > 1,
        "the control must show batch variance: {control:?}"
    );
}

#[test]
fn full_attention_is_swa_with_a_longer_window() {
    let text = pseudo_text(64, 4);
    let swa = Model::new(ModelConfig::swa_only(SEED));
    let full = Model::new(ModelConfig::full_attention(SEED, 256));
    let (mut a, mut b) = (
        SessionState::new(&swa.config),
        SessionState::new(&full.config),
    );
    swa.prefill(&mut a, &text);
    full.prefill(&mut b, &text);
    assert_eq!(a, b, "identical while the context fits the window");
    swa.prefill(&mut a, b"x");
    full.prefill(&mut b, b"x");
    assert_ne!(a.hidden, b.hidden, "past the window the two differ");
}

#[test]
fn hybrid_state_is_constant_beyond_the_window_and_full_attention_grows() {
    let hybrid = Model::new(ModelConfig::hybrid(SEED));
    let full = Model::new(ModelConfig::full_attention(SEED, 1024));
    let mut sizes = Vec::new();
    let (mut h, mut f) = (
        SessionState::new(&hybrid.config),
        SessionState::new(&full.config),
    );
    for len in [64usize, 100, 200] {
        let more = pseudo_text(len - h.position as usize, len as u64);
        hybrid.prefill(&mut h, &more);
        full.prefill(&mut f, &more);
        sizes.push((state_bytes(&h), state_bytes(&f)));
    }
    assert!(
        sizes.iter().all(|s| s.0 == sizes[0].0),
        "hybrid state grew: {sizes:?}"
    );
    assert_eq!(
        sizes[2].1 - sizes[1].1,
        100 * 4 * 2 * 64 * 4,
        "full attention: 2 KiB per token"
    );
}

#[test]
fn golden_digest_is_stable_across_builds() {
    // Pinned so that debug and release (and other machines) are checked against one value.
    let mut replica = service(ModelConfig::hybrid(SEED));
    let session = open(&mut replica);
    append(
        &mut replica,
        session,
        b"The quick brown fox jumps over the lazy dog. ",
    );
    greedy(&mut replica, session, 8);
    replica.apply(&Command::Generate {
        session,
        tokens: 8,
        sampling: Sampling::Sampled {
            seed: 7,
            temperature_milli: 800,
        },
    });
    assert_eq!(
        replica.digest(),
        GOLDEN_DIGEST,
        "digest changed: arithmetic order or encoding"
    );
}

const GOLDEN_DIGEST: u64 = 13_275_921_486_419_799_856;

// ---- snapshot, restore, rollback ----

fn busy_service() -> InferenceService {
    let mut replica = service(ModelConfig::hybrid(SEED));
    let ids: Vec<SessionId> = (0..3).map(|_| open(&mut replica)).collect();
    append(&mut replica, ids[0], &pseudo_text(80, 1));
    append(&mut replica, ids[1], b"hi");
    replica.apply(&Command::Close { session: ids[2] });
    replica
}

#[test]
fn snapshot_restore_round_trip_preserves_state_and_behaviour() {
    let mut original = busy_service();
    let bytes = original.snapshot();
    let mut restored = InferenceService::restore(&bytes).expect("restore");
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.digest(), original.digest());
    let command = Command::Generate {
        session: SessionId(0),
        tokens: 5,
        sampling: Sampling::Greedy,
    };
    assert_eq!(restored.apply(&command), original.apply(&command));
    assert_eq!(restored.digest(), original.digest());
    assert_eq!(
        restored.apply(&Command::ReadDigest {
            session: SessionId(2)
        }),
        Output::Error(ServiceError::SessionClosed {
            session: SessionId(2)
        })
    );
}

#[test]
fn malformed_snapshots_are_errors_never_panics() {
    let bytes = busy_service().snapshot();
    for len in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        assert!(
            InferenceService::restore(&bytes[..len]).is_err(),
            "truncated at {len}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        InferenceService::restore(&trailing).is_err(),
        "trailing byte"
    );
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert!(InferenceService::restore(&magic).is_err(), "bad magic");
    // Flip every bit of the header and the first session's framing: error or a valid state.
    for index in 0..80.min(bytes.len()) {
        for bit in 0..8 {
            let mut forged = bytes.clone();
            forged[index] ^= 1 << bit;
            if let Ok(service) = InferenceService::restore(&forged) {
                assert_eq!(
                    InferenceService::restore(&service.snapshot()).map(|s| s.digest()),
                    Ok(service.digest())
                );
            }
        }
    }
}

#[test]
fn clone_shares_sessions_and_rollback_restores_the_digest() {
    let mut replica = busy_service();
    let before = replica.digest();
    let speculative = replica.clone();
    for id in replica.session_ids() {
        let a = replica.sessions.get(&id).unwrap();
        let b = speculative.sessions.get(&id).unwrap();
        assert!(
            Arc::ptr_eq(a, b),
            "clone must share session state, not copy it"
        );
    }
    append(&mut replica, SessionId(1), b" more");
    assert_ne!(replica.digest(), before);
    let untouched = (
        replica.sessions.get(&SessionId(0)),
        speculative.sessions.get(&SessionId(0)),
    );
    assert!(
        Arc::ptr_eq(untouched.0.unwrap(), untouched.1.unwrap()),
        "only the touched session is copied"
    );
    let shown = format!("{speculative:?}");
    assert!(
        shown.len() < 1000,
        "Debug must stay short: {} bytes",
        shown.len()
    );
    let rolled_back = speculative;
    assert_eq!(
        rolled_back.digest(),
        before,
        "the clone is an intact rollback point"
    );
}

#[test]
fn step_is_a_pure_sequential_specification() {
    let replica = busy_service();
    let before = replica.digest();
    let command = greedy_command(SessionId(0), 2);
    let (after, output) = replica.step(&command);
    assert_eq!(
        replica.digest(),
        before,
        "step must not change the state it starts from"
    );
    let (again, same_output) = replica.step(&command);
    assert_eq!(
        (again.digest(), same_output),
        (after.digest(), output.clone())
    );
    assert_ne!(after.digest(), before);
    assert!(matches!(output, Output::Generated { .. }));
    assert_eq!(command.session(), Some(SessionId(0)));
    assert_eq!(Command::OpenSession.session(), None);
}

// ---- error replies ----

#[test]
fn bad_requests_get_typed_errors_and_leave_the_state_untouched() {
    let mut config = ServiceConfig::new(ModelConfig::full_attention(SEED, 16));
    config.sessions_max = 2;
    config.append_tokens_max = 8;
    config.generate_tokens_max = 4;
    let mut replica = InferenceService::new(config);
    let live = open(&mut replica);
    let closed = open(&mut replica);
    replica.apply(&Command::Close { session: closed });
    let before = replica.digest();
    let cases = [
        (
            Command::ReadDigest {
                session: SessionId(9),
            },
            ServiceError::UnknownSession {
                session: SessionId(9),
            },
        ),
        (
            greedy_command(closed, 1),
            ServiceError::SessionClosed { session: closed },
        ),
        (
            greedy_command(live, 1),
            ServiceError::EmptyContext { session: live },
        ),
        (
            Command::Append {
                session: live,
                text: vec![b'a'; 9],
            },
            ServiceError::InputTooLong {
                tokens: 9,
                append_tokens_max: 8,
            },
        ),
        (
            Command::AppendTokens {
                session: live,
                tokens: vec![1, 2, 256],
            },
            ServiceError::InvalidToken {
                index: 2,
                token: 256,
            },
        ),
    ];
    for (command, error) in cases {
        assert_eq!(replica.apply(&command), Output::Error(error), "{command:?}");
        assert_eq!(
            replica.digest(),
            before,
            "a rejected command changed the state"
        );
    }
    append(&mut replica, live, b"12345678");
    append(&mut replica, live, b"1234567");
    let full = ServiceError::ContextFull {
        position: 15,
        requested: 2,
        context_tokens_max: 16,
    };
    assert_eq!(
        append(&mut replica, live, b"ab"),
        Output::Error(full.clone())
    );
    assert_eq!(greedy(&mut replica, live, 2), Output::Error(full));
    assert_eq!(
        greedy(&mut replica, live, 5),
        Output::Error(ServiceError::GenerateTooLong {
            tokens: 5,
            generate_tokens_max: 4
        })
    );
    let hot = Command::Generate {
        session: live,
        tokens: 1,
        sampling: Sampling::Sampled {
            seed: 1,
            temperature_milli: 0,
        },
    };
    assert_eq!(
        replica.apply(&hot),
        Output::Error(ServiceError::InvalidTemperature {
            temperature_milli: 0
        })
    );
    open(&mut replica);
    assert_eq!(
        replica.apply(&Command::OpenSession),
        Output::Error(ServiceError::TooManySessions { sessions_max: 2 })
    );
    assert!(matches!(
        greedy(&mut replica, live, 1),
        Output::Generated { position: 16, .. }
    ));
}

fn greedy_command(session: SessionId, tokens: u32) -> Command {
    Command::Generate {
        session,
        tokens,
        sampling: Sampling::Greedy,
    }
}

#[test]
fn sampling_is_reproducible_and_depends_on_the_request_seed() {
    let run = |seed: u64| {
        let mut replica = service(ModelConfig::hybrid(SEED));
        let session = open(&mut replica);
        append(&mut replica, session, b"once upon a time");
        replica.apply(&Command::Generate {
            session,
            tokens: 24,
            sampling: Sampling::Sampled {
                seed,
                temperature_milli: 1500,
            },
        })
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

// ---- fault hooks ----

/// Two replicas given the same commands; returns their digests after each command.
fn diverge(fault: impl FnOnce(&mut InferenceService)) -> (Vec<u64>, Vec<u64>) {
    let mut fault = Some(fault);
    let mut honest = service(ModelConfig::hybrid(SEED));
    let mut faulty = service(ModelConfig::hybrid(SEED));
    let commands = [
        Command::OpenSession,
        Command::Append {
            session: SessionId(0),
            text: pseudo_text(30, 3),
        },
        greedy_command(SessionId(0), 4),
    ];
    let mut trace = (Vec::new(), Vec::new());
    for (index, command) in commands.iter().enumerate() {
        honest.apply(command);
        faulty.apply(command);
        if let (0, Some(fault)) = (index, fault.take()) {
            fault(&mut faulty);
        }
        trace.0.push(honest.digest());
        trace.1.push(faulty.digest());
    }
    (trace.0, trace.1)
}

#[test]
fn weight_bit_flip_shows_in_the_digest_after_the_next_token() {
    // Parameter 16384 is the first weight after the embedding (first layer's norm gain).
    let (honest, faulty) = diverge(|replica| {
        assert_eq!(replica.fault_flip_weight_bit(256 * 64, 22), 256 * 64);
    });
    assert_eq!(honest[0], faulty[0], "weights are not replicated state");
    assert_ne!(
        honest[1], faulty[1],
        "the corrupted weight changes the state it computes"
    );
}

#[test]
fn session_bit_flip_shows_in_the_digest_at_once_and_persists_in_the_ssm_state() {
    // Float 0 is the first layer's conv window (the session holds no hidden vector yet);
    // floats from 3 * 128 on are its SSM state.
    // A zero with bit 30 set becomes 2.0 (a tiny subnormal would be absorbed, unseen).
    let ssm_float = 3 * 128;
    let (honest, faulty) = diverge(|replica| {
        assert!(replica.fault_flip_session_bit(SessionId(0), ssm_float, 30));
        assert!(
            !replica.fault_flip_session_bit(SessionId(9), 0, 0),
            "no such session"
        );
    });
    assert_ne!(
        honest[0], faulty[0],
        "the digest covers the state, not just outputs"
    );
    assert_ne!(
        honest[2], faulty[2],
        "the SSM state carries the corruption forward"
    );
}

#[test]
fn a_subnormal_corruption_is_absorbed_by_later_tokens_but_the_digest_saw_it() {
    // Bit 20 of a zero in the conv window is a subnormal, lost when added to normal numbers.
    let (honest, faulty) = diverge(|replica| {
        assert!(replica.fault_flip_session_bit(SessionId(0), 5, 20));
    });
    assert_ne!(honest[0], faulty[0]);
    assert_eq!(honest[2], faulty[2], "absorbed: the state converges again");
}

#[test]
fn stale_model_version_and_split_kernel_diverge_once_tokens_flow() {
    for fault in [
        Box::new(|r: &mut InferenceService| r.fault_load_model_version(0))
            as Box<dyn FnOnce(&mut InferenceService)>,
        Box::new(|r: &mut InferenceService| r.fault_set_kernel(Kernel::SplitK { splits: 2 })),
    ] {
        let (honest, faulty) = diverge(fault);
        assert_eq!(honest[0], faulty[0]);
        assert_ne!(honest[1], faulty[1]);
    }
}

#[test]
fn restore_rebuilds_the_canonical_model_undoing_local_faults() {
    let mut faulty = busy_service();
    faulty.fault_set_kernel(Kernel::SplitK { splits: 3 });
    faulty.fault_flip_weight_bit(12345, 29);
    let mut repaired = InferenceService::restore(&faulty.snapshot()).expect("restore");
    let mut honest = busy_service();
    let command = greedy_command(SessionId(0), 3);
    assert_eq!(repaired.apply(&command), honest.apply(&command));
    assert_eq!(repaired.digest(), honest.digest());
    assert_eq!(repaired.model().kernel, Kernel::Canonical);
}

#[test]
fn batch_variant_kernel_equals_canonical_only_at_batch_one() {
    let canonical = Model::new(ModelConfig::hybrid(SEED));
    let mut variant = Model::new(ModelConfig::hybrid(SEED));
    variant.kernel = Kernel::BatchVariant;
    let text = pseudo_text(20, 8);
    let (mut a, mut b) = (
        SessionState::new(&canonical.config),
        SessionState::new(&canonical.config),
    );
    canonical.prefill(&mut a, &text);
    variant.prefill(&mut b, &text);
    assert_eq!(a, b, "batch of one: no split");
    let mut c = SessionState::new(&canonical.config);
    let mut other = SessionState::new(&canonical.config);
    for &byte in &text {
        variant.step_batch(&mut [&mut c, &mut other], &[byte, b'z']);
    }
    assert_ne!(a, c, "batch of two: the bits depend on the batch");
}

#[test]
fn random_command_streams_never_panic_and_replicas_agree() {
    let mut random = SeededSource::new(99);
    let mut below = |bound: u64| random.choose(DecisionKind::NodeRandom, bound);
    let mut config = ServiceConfig::new(ModelConfig::full_attention(SEED, 48));
    config.sessions_max = 3;
    config.append_tokens_max = 12;
    config.generate_tokens_max = 6;
    let mut replicas = [
        InferenceService::new(config.clone()),
        InferenceService::new(config),
    ];
    let mut errors = 0;
    for _ in 0..150 {
        let session = SessionId(below(6));
        let command = match below(7) {
            0 => Command::OpenSession,
            1 => Command::Append {
                session,
                text: (0..below(16)).map(|_| below(256) as u8).collect(),
            },
            2 => Command::AppendTokens {
                session,
                tokens: (0..below(6)).map(|_| below(300) as u32).collect(),
            },
            3 => Command::Generate {
                session,
                tokens: below(8) as u32,
                sampling: Sampling::Sampled {
                    seed: below(4),
                    temperature_milli: below(12_000) as u32,
                },
            },
            4 => greedy_command(session, below(8) as u32),
            5 => Command::ReadDigest { session },
            _ => Command::Close { session },
        };
        let outputs = [replicas[0].apply(&command), replicas[1].apply(&command)];
        assert_eq!(outputs[0], outputs[1], "{command:?}");
        errors += matches!(outputs[0], Output::Error(_)) as u32;
        assert_eq!(replicas[0].digest(), replicas[1].digest());
    }
    assert!(
        errors > 10 && errors < 140,
        "the stream must exercise both paths: {errors} errors"
    );
}

#[test]
fn corruption_visibility_counts_digest_detection_and_token_lag() {
    let report = crate::experiment::corruption_visibility(&ModelConfig::hybrid(SEED), 12, 8, 5);
    assert_eq!(report.trials, 12);
    assert_eq!(
        report.tokens_to_visible.len() as u32 + report.never_visible,
        12
    );
    assert!(
        report.digest_detected >= 11,
        "a flip changes the state bytes: {report:?}"
    );
    assert!(
        report.never_visible > 0,
        "low mantissa flips do not reach the tokens: {report:?}"
    );
}
