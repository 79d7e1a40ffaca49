//! `dst bench inference [--json] [--quick]`: the hybrid-model inference service.
//!
//! Measures, for the hybrid, SWA-only and full-attention models: session state bytes against
//! context length, prefill and decode tokens/s, per-token decode latency (p50/p99), and the
//! hybrid's speed ratio over full attention at 4K and 16K context. Then runs the
//! reproducibility experiment (one prompt served many times under random batch sizes, prefill
//! splits and interleavings) with the canonical kernel and, as a control, a batch-variant one.
//!
//! A session at context `L` is reached by a real prefill of `L` tokens, except full attention
//! beyond `--prefill-real-max` tokens, whose quadratic prefill would dominate the run: there
//! the KV cache is filled with pseudo-random values of the right shape (decode cost depends on
//! the shape only, up to one effect: `libm::expf` takes a fast path for scores far below the
//! running maximum, and real attention scores are more spread out than synthetic ones, so a
//! synthetic full-attention state decodes somewhat slower (measured: 11.4 ms vs 7.7 ms per token
//! at 16K; `--prefill-real-max 16384` uses a real prefill, about 75 s of CPU). Which contexts
//! were synthetic is reported.
//!
//! Last, silent state corruption: a random bit flip in a session's state, after which an honest
//! and a corrupted copy decode side by side: the digest differs at once, the tokens later or
//! never (why replicas compare state digests, not only outputs).
//!
//! Decode tokens/s is `1 / median per-token latency` (the machine is shared; a mean over all
//! steps is reported too as `decode_tokens_per_sec_mean`).
//!
//! Exit code 1 if the canonical kernel gives more than one distinct output or state hash.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use dst_inference::experiment::{
    corruption_visibility, pseudo_text, reproducibility, state_bytes, synthetic_state,
};
use dst_inference::{Kernel, Model, ModelConfig, Sampling, SessionState};
use serde_json::{json, Value};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fewer contexts, decode steps and runs (about a tenth of the time).
    #[arg(long)]
    pub quick: bool,
    /// Runs of the reproducibility experiment (default 1000, or 100 with --quick).
    #[arg(long)]
    pub runs: Option<u32>,
    /// Longest context reached by a real prefill for full attention.
    #[arg(long, default_value_t = 4096)]
    pub prefill_real_max: u64,
    /// Model seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The three configurations compared.
const MODELS: [&str; 3] = ["hybrid", "swa_only", "full_attention"];
/// Largest context measured.
const CONTEXT_MAX: u64 = 16_384;
/// Decode steps timed per (model, context), fewer at long contexts.
fn decode_steps(context: u64, quick: bool) -> usize {
    let steps = if context >= 4096 { 24 } else { 64 };
    if quick {
        steps / 4
    } else {
        steps
    }
}

fn model_config(name: &str, seed: u64) -> ModelConfig {
    match name {
        "hybrid" => ModelConfig::hybrid(seed),
        "swa_only" => ModelConfig::swa_only(seed),
        // Room past the largest context for the decode steps.
        _ => ModelConfig::full_attention(seed, CONTEXT_MAX as u32 + 1024),
    }
}

/// What one (model, context) point measured.
struct Point {
    state_bytes: u64,
    prefill_tokens_per_sec: Option<f64>,
    /// From the median per-token latency: robust to other processes stealing the core.
    decode_tokens_per_sec: f64,
    /// Steps over total time, outliers included.
    decode_tokens_per_sec_mean: f64,
    p50_us: f64,
    p99_us: f64,
    synthetic: bool,
}

#[allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark
fn elapsed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = work();
    (value, start.elapsed())
}

/// Brings a session to `context` tokens, by prefill or synthetically.
fn reach_context(model: &Model, context: u64, real: bool) -> (SessionState, Option<f64>) {
    if !real {
        return (synthetic_state(&model.config, context, 7), None);
    }
    let text = pseudo_text(context as usize, 3);
    let mut state = SessionState::new(&model.config);
    let ((), time) = elapsed(|| model.prefill(&mut state, &text));
    (state, Some(context as f64 / time.as_secs_f64()))
}

fn measure(model: &Model, context: u64, real: bool, steps: usize) -> Point {
    let (mut state, prefill_tokens_per_sec) = reach_context(model, context, real);
    let bytes = state_bytes(&state);
    let mut latencies: Vec<Duration> = Vec::with_capacity(steps);
    // One untimed step warms the caches; the rest are timed one by one.
    for step in 0..=steps {
        let ((), time) = elapsed(|| {
            let token = model.choose(&state, 0, Sampling::Greedy);
            model.step_batch(&mut [&mut state], &[token]);
        });
        if step > 0 {
            latencies.push(time);
        }
    }
    let total: Duration = latencies.iter().sum();
    latencies.sort();
    // Nearest rank: the smallest latency at or above p percent of the samples.
    let percentile = |p: usize| {
        let rank = (latencies.len() * p).div_ceil(100).max(1);
        latencies[rank - 1].as_secs_f64() * 1e6
    };
    let p50_us = percentile(50);
    Point {
        state_bytes: bytes,
        prefill_tokens_per_sec,
        decode_tokens_per_sec: 1e6 / p50_us,
        decode_tokens_per_sec_mean: steps as f64 / total.as_secs_f64(),
        p50_us,
        p99_us: percentile(99),
        synthetic: !real,
    }
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    if args.runs == Some(0) {
        return super::bad_input("--runs must be at least 1");
    }
    let contexts: Vec<u64> = if args.quick {
        vec![64, 1024, 4096, 16_384]
    } else {
        vec![64, 256, 1024, 4096, 16_384]
    };
    let mut points: BTreeMap<(&str, u64), Point> = BTreeMap::new();
    for name in MODELS {
        let model = Model::new(model_config(name, args.seed));
        for &context in &contexts {
            let real = name != "full_attention" || context <= args.prefill_real_max;
            let point = measure(&model, context, real, decode_steps(context, args.quick));
            if !args.json {
                print_point(name, context, &point);
            }
            points.insert((name, context), point);
        }
    }
    let runs = args.runs.unwrap_or(if args.quick { 100 } else { 1000 });
    let prompt = pseudo_text(64, 11);
    let config = ModelConfig::hybrid(args.seed);
    let (canonical, canonical_time) =
        elapsed(|| reproducibility(&config, Kernel::Canonical, &prompt, 16, runs, args.seed));
    let (control, _) =
        elapsed(|| reproducibility(&config, Kernel::BatchVariant, &prompt, 16, runs, args.seed));
    let trials = if args.quick { 50 } else { 200 };
    let corruption = corruption_visibility(&config, trials, 64, args.seed);
    let mut report = report_json(&points, &contexts, &canonical, &control, canonical_time);
    report["silent_state_corruption"] = corruption_json(&corruption);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_summary(&report);
    }
    let reproducible = canonical.distinct_outputs == 1 && canonical.distinct_state_hashes == 1;
    if reproducible {
        ExitCode::from(super::EXIT_OK)
    } else {
        ExitCode::from(super::EXIT_VIOLATION)
    }
}

fn speedup(points: &BTreeMap<(&str, u64), Point>, context: u64) -> Option<f64> {
    let hybrid = points.get(&("hybrid", context))?;
    let full = points.get(&("full_attention", context))?;
    Some(hybrid.decode_tokens_per_sec / full.decode_tokens_per_sec)
}

fn report_json(
    points: &BTreeMap<(&str, u64), Point>,
    contexts: &[u64],
    canonical: &dst_inference::experiment::ReproducibilityReport,
    control: &dst_inference::experiment::ReproducibilityReport,
    canonical_time: Duration,
) -> Value {
    let per_model = |field: &dyn Fn(&Point) -> Value| -> Value {
        let mut models = serde_json::Map::new();
        for name in MODELS {
            let mut row = serde_json::Map::new();
            for &context in contexts {
                if let Some(point) = points.get(&(name, context)) {
                    row.insert(context.to_string(), field(point));
                }
            }
            models.insert(name.to_string(), Value::Object(row));
        }
        Value::Object(models)
    };
    let hybrid_bytes: Vec<u64> = contexts
        .iter()
        .filter(|&&c| c >= 64)
        .filter_map(|&c| points.get(&("hybrid", c)).map(|p| p.state_bytes))
        .collect();
    json!({
        "state_bytes": per_model(&|p| json!(p.state_bytes)),
        "decode_tokens_per_sec": per_model(&|p| json!(round(p.decode_tokens_per_sec))),
        "decode_tokens_per_sec_mean": per_model(&|p| json!(round(p.decode_tokens_per_sec_mean))),
        "decode_latency_us_p50": per_model(&|p| json!(round(p.p50_us))),
        "decode_latency_us_p99": per_model(&|p| json!(round(p.p99_us))),
        "prefill_tokens_per_sec": per_model(&|p| json!(p.prefill_tokens_per_sec.map(round))),
        "synthetic_state": per_model(&|p| json!(p.synthetic)),
        "hybrid_state_constant_beyond_window": hybrid_bytes.windows(2).all(|w| w[0] == w[1]),
        "speedup_vs_full_attention_4k": speedup(points, 4096).map(round),
        "speedup_vs_full_attention_16k": speedup(points, 16_384).map(round),
        "reproducibility_runs": canonical.runs,
        "reproducibility_seconds": round(canonical_time.as_secs_f64()),
        "distinct_outputs": canonical.distinct_outputs,
        "distinct_state_hashes": canonical.distinct_state_hashes,
        "control_batch_variant_kernel": {
            "distinct_outputs": control.distinct_outputs,
            "distinct_state_hashes": control.distinct_state_hashes,
        },
    })
}

/// A random bit flip in session state: caught by the digest at once; how long until the
/// greedy tokens differ, if ever within the horizon.
fn corruption_json(report: &dst_inference::experiment::CorruptionReport) -> Value {
    let mut lags = report.tokens_to_visible.clone();
    lags.sort_unstable();
    json!({
        "trials": report.trials,
        "digest_detected_at_once": report.digest_detected,
        "visible_in_tokens_within_horizon": lags.len(),
        "never_visible_within_horizon": report.never_visible,
        "horizon_tokens": report.horizon_tokens,
        "tokens_to_visible_p50": lags.get(lags.len() / 2),
        "tokens_to_visible_max": lags.last(),
    })
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn print_point(name: &str, context: u64, point: &Point) {
    let prefill = point
        .prefill_tokens_per_sec
        .map_or("synthetic".to_string(), |rate| format!("{rate:.0} tok/s"));
    println!(
        "{name:>15} ctx {context:>6}: state {:>10} B  decode {:>9.1} tok/s  p50 {:>9.1} us  p99 {:>9.1} us  prefill {prefill}",
        point.state_bytes, point.decode_tokens_per_sec, point.p50_us, point.p99_us
    );
}

fn print_summary(report: &Value) {
    println!(
        "silent state corruption: {}",
        report["silent_state_corruption"]
    );
    println!(
        "hybrid vs full attention: {}x at 4K, {}x at 16K; hybrid state constant beyond the window: {}",
        report["speedup_vs_full_attention_4k"],
        report["speedup_vs_full_attention_16k"],
        report["hybrid_state_constant_beyond_window"]
    );
    println!(
        "reproducibility ({} runs): {} distinct outputs, {} distinct state hashes (batch-variant control: {} outputs, {} hashes)",
        report["reproducibility_runs"],
        report["distinct_outputs"],
        report["distinct_state_hashes"],
        report["control_batch_variant_kernel"]["distinct_outputs"],
        report["control_batch_variant_kernel"]["distinct_state_hashes"]
    );
}
