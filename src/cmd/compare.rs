//! `dst compare`: protocols and protocol variants on identical seeds, workloads and fault
//! plans, with confidence intervals over seeds; a terminal table, CSV and SVG plots.
//!
//! Each row is a protocol with options: every name in `--protocols` with its defaults, and
//! every `--variant protocol:name=value[,name=value]` as one more row. Every row runs seeds
//! `first-seed ..` under the same profile, so the network, faults and client workloads
//! drawn from a seed are the same for every row (as far as the protocols' own randomness
//! and message counts leave the decision stream aligned). Cluster sizes tolerate the same
//! number of faults `f`: 2f+1 replicas for crash-tolerant protocols, 3f+1 for BFT ones.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use dst::runner::{self, RunOutcome, RunSpec};
use serde::Serialize;
use serde_json::json;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Protocols to compare, with their default options.
    #[arg(long, value_delimiter = ',', default_value = "raft,multipaxos")]
    protocols: Vec<String>,
    /// One more row: `protocol:name=value[,name=value...]`.
    #[arg(long = "variant", value_name = "PROTOCOL:NAME=VALUE")]
    variants: Vec<String>,
    /// Fault profile shared by every row.
    #[arg(long, default_value = "none")]
    profile: String,
    /// Seeds per row.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Faults tolerated: 2f+1 replicas for CFT protocols, 3f+1 for BFT ones.
    #[arg(long, default_value_t = 1)]
    faults: u32,
    #[arg(long, default_value_t = 3)]
    clients: u32,
    #[arg(long, default_value_t = 200)]
    ops: u64,
    /// Byzantine replicas under --profile byzantine or twins (default f).
    #[arg(long)]
    byzantine: Option<u32>,
    /// Behaviour of the Byzantine replicas under --profile byzantine.
    #[arg(long)]
    behaviour: Option<String>,
    /// Virtual CPU per signature (us).
    #[arg(long)]
    sign_us: Option<u64>,
    /// Virtual CPU per verification (us).
    #[arg(long)]
    verify_us: Option<u64>,
    /// Message corruption rate (ppm), overriding the profile's.
    #[arg(long)]
    corrupt_ppm: Option<u64>,
    /// Constant one-way delay (us), overriding the profile's latency.
    #[arg(long)]
    latency_us: Option<u64>,
    /// Worker threads (seeds are independent simulations).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the table as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write bar charts (throughput, latency, messages, memory) as SVG to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One protocol configuration compared.
#[derive(Clone, Debug)]
struct Row {
    label: String,
    protocol: String,
    options: Vec<(String, String)>,
}

/// A mean over seeds with the half-width of its 95% confidence interval.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: f64,
    pub samples: usize,
}

impl Estimate {
    fn of(values: &[f64]) -> Option<Estimate> {
        if values.is_empty() {
            return None;
        }
        let samples = values.len();
        let mean = values.iter().sum::<f64>() / samples as f64;
        let variance = if samples > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (samples - 1) as f64
        } else {
            0.0
        };
        let ci95 = 1.96 * (variance / samples as f64).sqrt();
        Some(Estimate {
            mean,
            ci95,
            samples,
        })
    }
}

/// What one row measured over all its seeds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowResult {
    pub label: String,
    pub protocol: String,
    pub nodes: u32,
    pub options: BTreeMap<String, String>,
    /// Client operations completed per virtual second (closed-loop clients).
    pub ops_per_virtual_second: Option<Estimate>,
    pub commits_per_virtual_second: Option<Estimate>,
    pub latency_ms_p50: Option<Estimate>,
    pub latency_ms_p99: Option<Estimate>,
    pub latency_delays_p50: Option<Estimate>,
    pub messages_per_commit: Option<Estimate>,
    pub bytes_per_commit: Option<Estimate>,
    pub view_changes: Option<Estimate>,
    pub fast_path_share: Option<Estimate>,
    pub replica_memory_bytes_max: Option<u64>,
    pub seeds: u64,
    pub seeds_with_violations: u64,
    /// Corrupted messages that decoded and reached a replica.
    pub corrupt_delivered: u64,
    /// Messages replicas rejected as corrupt, forged or unverifiable (checksums, digests,
    /// signatures), plus those that did not even decode.
    pub corrupt_detected: u64,
}

/// Entry point.
pub fn main(args: Args) -> ExitCode {
    let rows = match rows(&args) {
        Ok(rows) => rows,
        Err(error) => return super::bad_input(error),
    };
    if args.jobs == 0 || args.seeds == 0 {
        return super::bad_input("--jobs and --seeds must be at least 1");
    }
    let outcomes = run_all(&args, &rows);
    let results: Vec<RowResult> = rows
        .iter()
        .zip(outcomes)
        .map(|(row, outcomes)| summarise(&args, row, &outcomes))
        .collect();
    if let Some(path) = &args.csv {
        if let Err(error) = dst_sim::trace::write_atomic(path, csv(&results).as_bytes()) {
            return super::bad_input(error);
        }
    }
    if let Some(path) = &args.plot {
        let written = plot(&results, &args.profile)
            .and_then(|svg| dst_sim::trace::write_atomic(path, svg.as_bytes()));
        if let Err(error) = written {
            return super::bad_input(error);
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"profile": args.profile, "seeds": args.seeds, "first_seed": args.first_seed,
                   "faults": args.faults, "rows": results})
        );
    } else {
        print_table(&args, &results);
    }
    ExitCode::SUCCESS
}

fn rows(args: &Args) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = args
        .protocols
        .iter()
        .map(|protocol| Row {
            label: protocol.clone(),
            protocol: protocol.clone(),
            options: Vec::new(),
        })
        .collect();
    for variant in &args.variants {
        let (protocol, assignments) = variant
            .split_once(':')
            .ok_or_else(|| format!("--variant '{variant}' is not protocol:name=value"))?;
        let options = assignments
            .split(',')
            .map(dst_protocols::options::parse_assignment)
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(Row {
            label: variant.clone(),
            protocol: protocol.to_string(),
            options,
        });
    }
    if rows.is_empty() {
        return Err("nothing to compare: give --protocols or --variant".into());
    }
    for row in &rows {
        runner::validate(&spec(args, row, args.first_seed))?;
    }
    Ok(rows)
}

/// Replicas tolerating `faults` faults: 2f+1 for CFT protocols, 3f+1 for BFT ones, and
/// 3f+2c+1 for FastBFT with a `c` option.
fn nodes_for(row: &Row, faults: u32) -> u32 {
    if !runner::BFT_PROTOCOLS.contains(&row.protocol.as_str()) {
        return 2 * faults + 1;
    }
    let c = row
        .options
        .iter()
        .rev()
        .find(|(name, _)| row.protocol == "fastbft" && name == "c")
        .and_then(|(_, value)| value.parse::<u32>().ok())
        .unwrap_or(0);
    3 * faults + 2 * c + 1
}

fn spec(args: &Args, row: &Row, seed: u64) -> RunSpec {
    let mut spec = RunSpec::new(&row.protocol, seed, &args.profile);
    spec.nodes = nodes_for(row, args.faults);
    spec.clients = args.clients;
    spec.ops = args.ops;
    spec.options = row.options.clone();
    spec.measure = true;
    spec.byzantine = args.byzantine;
    spec.behaviour = args.behaviour.clone();
    spec.sign_us = args.sign_us;
    spec.verify_us = args.verify_us;
    spec.corrupt_ppm = args.corrupt_ppm;
    spec.latency_us = args.latency_us;
    spec
}

/// Runs every (row, seed) pair on `jobs` threads; outcomes come back per row in seed order.
fn run_all(args: &Args, rows: &[Row]) -> Vec<Vec<RunOutcome>> {
    let tasks: Vec<(usize, u64)> = (0..rows.len())
        .flat_map(|row| (0..args.seeds).map(move |index| (row, args.first_seed + index)))
        .collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, RunOutcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(tasks.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(row, seed)) = tasks.get(index) else {
                    break;
                };
                let outcome = runner::run(&spec(args, &rows[row], seed)).expect("validated spec");
                done.lock().expect("results lock").push((index, outcome));
            });
        }
    });
    let mut done = done
        .into_inner()
        .expect("no worker panicked holding the lock");
    done.sort_by_key(|(index, _)| *index);
    let mut per_row: Vec<Vec<RunOutcome>> = rows.iter().map(|_| Vec::new()).collect();
    for (index, outcome) in done {
        per_row[tasks[index].0].push(outcome);
    }
    per_row
}

/// Ignore reasons that mean "this message was corrupt, forged or could not be verified".
fn is_detection(reason: &str) -> bool {
    [
        "checksum",
        "corrupt",
        "digest",
        "signature",
        "verify",
        "forged",
        "decode",
    ]
    .iter()
    .any(|word| reason.contains(word))
}

fn summarise(args: &Args, row: &Row, outcomes: &[RunOutcome]) -> RowResult {
    let collect = |pick: &dyn Fn(&RunOutcome) -> Option<f64>| -> Option<Estimate> {
        Estimate::of(&outcomes.iter().filter_map(pick).collect::<Vec<_>>())
    };
    let options = runner::protocol_options(&spec(args, row, args.first_seed)).unwrap_or_default();
    RowResult {
        label: row.label.clone(),
        protocol: row.protocol.clone(),
        nodes: nodes_for(row, args.faults),
        options: options.into_iter().collect(),
        ops_per_virtual_second: collect(&|o| {
            let seconds = o.summary.virtual_ns as f64 / 1e9;
            (seconds > 0.0).then(|| o.metrics.completed as f64 / seconds)
        }),
        commits_per_virtual_second: collect(&|o| {
            let seconds = o.summary.virtual_ns as f64 / 1e9;
            (seconds > 0.0).then(|| o.metrics.commits as f64 / seconds)
        }),
        latency_ms_p50: collect(&|o| o.metrics.latency_ms_p50),
        latency_ms_p99: collect(&|o| o.metrics.latency_ms_p99),
        latency_delays_p50: collect(&|o| o.metrics.latency_delays_p50),
        messages_per_commit: collect(&|o| o.metrics.messages_per_commit),
        bytes_per_commit: collect(&|o| o.metrics.bytes_per_commit),
        view_changes: collect(&|o| o.metrics.view_changes.map(|v| v as f64)),
        fast_path_share: collect(&|o| o.metrics.fast_path_share),
        replica_memory_bytes_max: outcomes
            .iter()
            .filter_map(|o| o.metrics.replica_memory_bytes_max)
            .max(),
        seeds: outcomes.len() as u64,
        seeds_with_violations: outcomes.iter().filter(|o| !o.violations.is_empty()).count() as u64,
        corrupt_delivered: outcomes
            .iter()
            .map(|o| o.summary.stats.corrupt_delivered)
            .sum(),
        corrupt_detected: outcomes
            .iter()
            .map(|o| {
                let ignored: u64 = o
                    .summary
                    .stats
                    .ignored
                    .iter()
                    .filter(|(reason, _)| is_detection(reason))
                    .map(|(_, count)| *count)
                    .sum();
                ignored + o.summary.stats.corrupt_rejected
            })
            .sum(),
    }
}

fn cell(estimate: Option<Estimate>, decimals: usize) -> String {
    match estimate {
        Some(e) => format!("{:.*} ±{:.*}", decimals, e.mean, decimals, e.ci95),
        None => "-".into(),
    }
}

const HEADER: [&str; 13] = [
    "protocol",
    "n",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "p50 delays",
    "msgs/commit",
    "bytes/commit",
    "view changes",
    "fast path",
    "mem/replica max",
    "violations",
    "corrupt delivered/invalid rejected",
];

fn table_row(result: &RowResult) -> Vec<String> {
    vec![
        result.label.clone(),
        result.nodes.to_string(),
        cell(result.ops_per_virtual_second, 1),
        cell(result.latency_ms_p50, 2),
        cell(result.latency_ms_p99, 2),
        cell(result.latency_delays_p50, 2),
        cell(result.messages_per_commit, 1),
        cell(result.bytes_per_commit, 0),
        cell(result.view_changes, 1),
        cell(result.fast_path_share, 2),
        result
            .replica_memory_bytes_max
            .map_or("-".into(), |b| b.to_string()),
        format!("{}/{}", result.seeds_with_violations, result.seeds),
        format!("{}/{}", result.corrupt_delivered, result.corrupt_detected),
    ]
}

fn print_table(args: &Args, results: &[RowResult]) {
    println!(
        "profile={} seeds={}..{} f={} clients={} ops={} (mean ±95% CI over seeds)",
        args.profile,
        args.first_seed,
        args.first_seed + args.seeds - 1,
        args.faults,
        args.clients,
        args.ops
    );
    let mut lines: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    lines.extend(results.iter().map(table_row));
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    }
}

fn csv(results: &[RowResult]) -> String {
    let mut out = String::from(
        "protocol,nodes,ops_per_s,ops_per_s_ci95,commits_per_s,latency_ms_p50,latency_ms_p50_ci95,\
         latency_ms_p99,latency_delays_p50,messages_per_commit,bytes_per_commit,view_changes,\
         fast_path_share,replica_memory_bytes_max,seeds,seeds_with_violations,\
         corrupt_delivered,corrupt_detected\n",
    );
    let mean = |e: Option<Estimate>| e.map_or(String::new(), |e| format!("{:.4}", e.mean));
    let ci = |e: Option<Estimate>| e.map_or(String::new(), |e| format!("{:.4}", e.ci95));
    for r in results {
        let label = r.label.replace('"', "\"\"");
        out.push_str(&format!(
            "\"{label}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.nodes,
            mean(r.ops_per_virtual_second),
            ci(r.ops_per_virtual_second),
            mean(r.commits_per_virtual_second),
            mean(r.latency_ms_p50),
            ci(r.latency_ms_p50),
            mean(r.latency_ms_p99),
            mean(r.latency_delays_p50),
            mean(r.messages_per_commit),
            mean(r.bytes_per_commit),
            mean(r.view_changes),
            mean(r.fast_path_share),
            r.replica_memory_bytes_max
                .map_or(String::new(), |b| b.to_string()),
            r.seeds,
            r.seeds_with_violations,
            r.corrupt_delivered,
            r.corrupt_detected,
        ));
    }
    out
}

/// Which measurement a chart shows.
type Pick = fn(&RowResult) -> Option<Estimate>;

/// Four bar charts with 95% confidence whiskers, as an SVG document.
fn plot(results: &[RowResult], profile: &str) -> Result<String, String> {
    use plotters::prelude::*;
    let panels: [(&str, Pick); 4] = [
        ("client operations per virtual second", |r| {
            r.ops_per_virtual_second
        }),
        ("median latency (ms)", |r| r.latency_ms_p50),
        ("messages per commit", |r| r.messages_per_commit),
        ("peak replica memory (KiB)", |r| {
            r.replica_memory_bytes_max.map(|b| Estimate {
                mean: b as f64 / 1024.0,
                ci95: 0.0,
                samples: 1,
            })
        }),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(
                &format!("dst compare, profile {profile}"),
                ("sans-serif", 22),
            )
            .map_err(|e| e.to_string())?;
        for (area, (title, pick)) in root.split_evenly((2, 2)).iter().zip(panels) {
            let values: Vec<Estimate> = results
                .iter()
                .map(|r| pick(r).unwrap_or_default())
                .collect();
            let top = values
                .iter()
                .map(|e| e.mean + e.ci95)
                .fold(0.0f64, f64::max)
                .max(1e-9)
                * 1.15;
            let labels: Vec<String> = results.iter().map(|r| r.label.clone()).collect();
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..labels.len() as f64, 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(labels.len().max(1))
                .x_label_formatter(&|x| {
                    let index = x.floor() as usize;
                    labels.get(index).cloned().unwrap_or_default()
                })
                .draw()
                .map_err(|e| e.to_string())?;
            let bars = values.iter().enumerate().map(|(i, e)| {
                let x = i as f64;
                Rectangle::new([(x + 0.2, 0.0), (x + 0.8, e.mean)], BLUE.mix(0.6).filled())
            });
            chart.draw_series(bars).map_err(|e| e.to_string())?;
            let whiskers = values.iter().enumerate().map(|(i, e)| {
                let x = i as f64 + 0.5;
                PathElement::new(
                    vec![(x, (e.mean - e.ci95).max(0.0)), (x, e.mean + e.ci95)],
                    BLACK.stroke_width(2),
                )
            });
            chart.draw_series(whiskers).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
