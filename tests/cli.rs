//! The `dst` binary end to end: same seed, same hash across processes; record and replay;
//! bad input gives a one-line error and exit code 2.

use std::process::{Command, Output};

fn dst(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dst"))
        .args(args)
        .output()
        .expect("the dst binary runs")
}

/// Asserts the command succeeded, showing its stderr otherwise.
fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json_field(output: &Output, field: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    value[field].clone()
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_in_two_processes() {
    let args = [
        "run",
        "--protocol",
        "pingpong",
        "--seed",
        "5",
        "--profile",
        "heavy",
        "--ops",
        "20",
        "--json",
    ];
    let first = dst(&args);
    let second = dst(&args);
    assert_succeeded(&first);
    assert_eq!(
        json_field(&first, "trace_hash"),
        json_field(&second, "trace_hash")
    );
    assert_eq!(json_field(&first, "verdict"), "ok");
    let other = dst(&[
        "run",
        "--protocol",
        "pingpong",
        "--seed",
        "6",
        "--profile",
        "heavy",
        "--ops",
        "20",
        "--json",
    ]);
    assert_ne!(
        json_field(&first, "trace_hash"),
        json_field(&other, "trace_hash")
    );
}

#[test]
fn a_recorded_trace_replays_to_the_same_hash() {
    let directory = std::env::temp_dir().join(format!("dst-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("swarm.trace");
    let path_text = path.to_str().unwrap();
    let base = [
        "run",
        "--protocol",
        "pingpong",
        "--profile",
        "swarm",
        "--ops",
        "20",
        "--json",
    ];
    let recorded = dst(&[&base[..], &["--seed", "77", "--record", path_text]].concat());
    assert!(recorded.status.success());
    let replayed = dst(&[&base[..], &["--replay", path_text]].concat());
    assert_succeeded(&replayed);
    assert_eq!(
        json_field(&recorded, "trace_hash"),
        json_field(&replayed, "trace_hash")
    );

    let other_config = dst(&[
        "run",
        "--protocol",
        "pingpong",
        "--profile",
        "heavy",
        "--replay",
        path_text,
    ]);
    assert_eq!(other_config.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&other_config.stderr);
    assert!(
        stderr.contains("recorded for another configuration"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");

    // The trace alone is enough: its header keeps the recorded flags.
    let alone = dst(&["run", "--replay", path_text, "--json"]);
    assert_succeeded(&alone);
    assert_eq!(
        json_field(&recorded, "trace_hash"),
        json_field(&alone, "trace_hash")
    );
    assert_eq!(json_field(&alone, "protocol"), "pingpong");
    // Any configuration flag turns that off: the flags given must match the trace (here
    // the profile, left at its default, does not).
    let with_protocol = dst(&["run", "--replay", path_text, "--protocol", "pingpong"]);
    assert_eq!(with_protocol.status.code(), Some(2));
    std::fs::remove_dir_all(&directory).ok();
}

#[test]
fn the_determinism_self_check_passes_a_deterministic_protocol() {
    let output = dst(&[
        "run",
        "--protocol",
        "pingpong",
        "--seed",
        "3",
        "--profile",
        "swarm",
        "--ops",
        "5",
        "--check-determinism",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deterministic"));
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let cases: [&[&str]; 21] = [
        &[
            "explore",
            "--protocol",
            "pingpong",
            "--corpus",
            "/dev/null/corpus",
        ],
        &["run", "--protocol", "nonesuch"],
        &["run", "--protocol", "pingpong", "--end-ms", "0"],
        &[
            "explore",
            "--protocol",
            "pingpong",
            "--end-ms",
            "18446744073709551615",
        ],
        &[
            "shrink",
            "--protocol",
            "pingpong",
            "--seed",
            "1",
            "--quiet-at-ms",
            "1000000001",
        ],
        &["run", "--protocol", "pingpong", "--profile", "nonesuch"],
        &[
            "run",
            "--protocol",
            "pingpong",
            "--replay",
            "/nonexistent/trace",
        ],
        &[
            "run",
            "--protocol",
            "pingpong",
            "--plan",
            "at 5ms explode 1",
        ],
        &["run", "--protocol", "pingpong", "--plan", "at 5ms crash 17"],
        &["run", "--protocol", "pingpong", "--replay", "Cargo.toml"],
        &["run", "--protocol", "raft", "--option", "prevote=false"],
        &["run", "--protocol", "raft", "--option", "pre_vote=perhaps"],
        &["run", "--protocol", "raft", "--profile", "byzantine"],
        &["run", "--protocol", "pbft", "--profile", "wipes"],
        &["run", "--protocol", "raft", "--byzantine", "1"],
        &["run", "--protocol", "raft", "--strategy", "nonesuch"],
        &[
            "compare",
            "--protocols",
            "raft",
            "--variant",
            "raft:nonesuch=1",
        ],
        &["compare", "--protocols", "raft", "--variant", "raft"],
        &["run", "--protocol", "raft", "--service", "inference"],
        &["run", "--protocol", "fastbft", "--service", "nonesuch"],
        &[
            "run",
            "--protocol",
            "fastbft",
            "--service",
            "inference",
            "--service-fault",
            "1:melt",
        ],
    ];
    for args in cases {
        let output = dst(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("dst: error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A workload cut short by the time limit passes every check, so the summary names it:
/// one client cannot finish 200 operations in 50 virtual ms, and has room in 60 s.
#[test]
fn explore_names_runs_the_time_limit_cut_short() {
    let explore = |end_ms: &str, json: bool| {
        let mut args = vec![
            "explore",
            "--protocol",
            "raft",
            "--profile",
            "none",
            "--clients",
            "1",
            "--ops",
            "200",
            "--seeds",
            "3",
            "--end-ms",
            end_ms,
        ];
        if json {
            args.push("--json");
        }
        let output = dst(&args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        output
    };
    let short = explore("50", true);
    assert_eq!(json_field(&short, "unfinished"), 3);
    assert_eq!(json_field(&short, "unfinished_by_reason")["TimeLimit"], 3);
    // Each run lasted exactly the 50 ms limit.
    let virtual_seconds = json_field(&short, "virtual_seconds").as_f64().unwrap();
    assert!((virtual_seconds - 0.15).abs() < 1e-9, "{virtual_seconds}");
    let text = String::from_utf8_lossy(&explore("50", false).stdout).to_string();
    assert!(
        text.contains("3 runs ended before their clients finished (TimeLimit: 3)")
            && text.contains("--end-ms")
            && text.contains(" virtual s a seed)"),
        "{text}"
    );
    let roomy = explore("60000", true);
    assert_eq!(json_field(&roomy, "unfinished"), 0);
}

fn failing_seeds(output: &Output) -> Vec<u64> {
    let failing = json_field(output, "failing_seeds");
    let mut seeds: Vec<u64> = failing
        .as_array()
        .expect("failing_seeds is a list")
        .iter()
        .map(|f| f["seed"].as_u64().expect("seed"))
        .collect();
    seeds.sort_unstable();
    seeds
}

#[test]
fn a_campaign_split_into_four_shards_finds_the_same_failures() {
    // Without client checksums, corrupted client traffic breaks Raft on some seeds.
    let base = [
        "explore",
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        "--seeds",
        "24",
        "--ops",
        "80",
        "--json",
    ];
    let whole = dst(&base);
    assert_eq!(
        whole.status.code(),
        Some(1),
        "the campaign must find failures"
    );
    let expected = failing_seeds(&whole);
    assert!(!expected.is_empty());
    // Each failure was announced when found (these are fewer than the 20 announced).
    let stderr = String::from_utf8_lossy(&whole.stderr);
    let mut announced: Vec<u64> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("dst: found seed "))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect();
    announced.sort_unstable();
    assert_eq!(announced, expected, "{stderr}");
    let mut union = Vec::new();
    for shard in 0..4 {
        let shard_arg = format!("{shard}/4");
        let output = dst(&[&base[..], &["--shard", &shard_arg]].concat());
        union.extend(failing_seeds(&output));
    }
    union.sort_unstable();
    assert_eq!(union, expected);
}

#[test]
fn a_campaign_keeps_shrunk_failures_that_replay() {
    let directory = std::env::temp_dir().join(format!("dst-campaign-{}", std::process::id()));
    let corpus = directory.to_str().unwrap();
    let output = dst(&[
        "explore",
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        // A budget: some of these seeds fail (which ones changes with the protocol).
        "--seeds",
        "24",
        "--ops",
        "60",
        // A model override is part of the run: the entries must replay with it.
        "--latency-us",
        "3000",
        "--shrink-attempts",
        "40",
        "--corpus",
        corpus,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let check = dst(&["corpus", "check", corpus]);
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && checked.contains("still fails with ["),
        "{checked}"
    );
    let entries = dst::corpus::load_all(&directory);
    assert!(
        !entries.is_empty(),
        "no entry kept: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for (path, loaded) in entries {
        let (entry, trace) = loaded.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!entry.client_checksums);
        assert_eq!(entry.latency_us, Some(3000));
        let replay = dst::corpus::check(&entry, trace);
        assert!(replay.is_ok(), "{}: {replay:?}", path.display());
    }
    std::fs::remove_dir_all(&directory).ok();
}

#[test]
fn shard_corpora_merge_into_the_corpus_of_one_run() {
    let root = std::env::temp_dir().join(format!("dst-merge-{}", std::process::id()));
    let base = [
        "explore",
        "--protocol",
        "raft",
        "--profile",
        "corruption",
        "--no-client-checksums",
        "--seeds",
        "12",
        "--ops",
        "60",
        "--shrink-attempts",
        "20",
    ];
    let whole = root.join("whole");
    dst(&[&base[..], &["--corpus", whole.to_str().unwrap()]].concat());
    let mut shards = Vec::new();
    for shard in 0..4 {
        let dir = root.join(format!("shard{shard}"));
        let shard_arg = format!("{shard}/4");
        dst(&[
            &base[..],
            &["--shard", &shard_arg, "--corpus", dir.to_str().unwrap()],
        ]
        .concat());
        shards.push(dir);
    }
    let merged = root.join("merged");
    let mut args = vec!["corpus".to_string(), "merge".into(), "--into".into()];
    args.push(merged.to_str().unwrap().into());
    args.extend(shards.iter().map(|d| d.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = dst(&args);
    assert_succeeded(&output);
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = dst::corpus::load_all(dir)
            .into_iter()
            .map(|(_, loaded)| {
                let (entry, _) = loaded.expect("readable entry");
                format!("{} seed {}", entry.signature, entry.seed)
            })
            .collect();
        names.sort();
        names
    };
    let expected = names(&whole);
    assert!(!expected.is_empty());
    assert_eq!(
        names(&merged),
        expected,
        "merged shards differ from the unsharded run"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn compare_runs_every_row_on_the_same_seeds_and_writes_csv_and_svg() {
    let dir = std::env::temp_dir().join(format!("dst-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let csv = dir.join("table.csv");
    let svg = dir.join("plot.svg");
    let output = dst(&[
        "compare",
        "--protocols",
        "raft,multipaxos",
        "--variant",
        "raft:pre_vote=false,batch_max=4",
        "--seeds",
        "2",
        "--ops",
        "20",
        "--json",
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ]);
    assert_succeeded(&output);
    let rows = json_field(&output, "rows");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "two protocols and one variant");
    assert_eq!(
        rows[2]["options"]["pre_vote"], "false",
        "the variant's options are recorded"
    );
    assert_eq!(rows[2]["options"]["batch_max"], "4");
    for row in rows {
        assert_eq!(row["seeds"], 2);
        assert_eq!(row["seeds_with_violations"], 0, "{row}");
        assert!(
            row["ops_per_virtual_second"]["mean"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        );
    }
    let table = std::fs::read_to_string(&csv).expect("csv written");
    assert_eq!(table.lines().count(), 4, "header and three rows: {table}");
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.starts_with("<svg") && plot.contains("client operations per virtual second"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_inference_service_runs_replicated_by_fastbft_and_a_faulty_majority_is_caught() {
    let clean = dst(&[
        "run",
        "--protocol",
        "fastbft",
        "--service",
        "inference",
        "--seed",
        "1",
        "--ops",
        "12",
        "--json",
    ]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    assert_eq!(json_field(&clean, "verdict"), "ok");
    let one_faulty = dst(&[
        "run",
        "--protocol",
        "fastbft",
        "--service",
        "inference",
        "--seed",
        "1",
        "--ops",
        "12",
        "--service-fault",
        "2:split-k@2",
        "--json",
    ]);
    assert_eq!(
        json_field(&one_faulty, "verdict"),
        "ok",
        "one faulty replica is outvoted"
    );
    let colluders = dst(&[
        "run",
        "--protocol",
        "pbft",
        "--service",
        "inference",
        "--seed",
        "1",
        "--ops",
        "12",
        "--service-fault",
        "1:forge-output@3,2:forge-output@3",
        "--json",
    ]);
    assert_eq!(
        json_field(&colluders, "verdict"),
        "violation",
        "f+1 forgers must be caught"
    );
}

#[test]
fn tracing_output_names_the_node_and_virtual_time_of_every_ignored_message() {
    let args = [
        "run",
        "--protocol",
        "raft",
        "--seed",
        "3",
        "--profile",
        "light",
        "--ops",
        "20",
        "--json",
        "--tracing",
        "debug",
    ];
    let output = dst(&args);
    assert_succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ignored: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ignored message"))
        .collect();
    assert!(
        !ignored.is_empty(),
        "no ignored message was traced:\n{stderr}"
    );
    for line in ignored {
        assert!(
            line.contains("node{id=") && line.contains("ms}") && line.contains("reason="),
            "an ignored message without its node span or reason: {line}"
        );
    }
    let quiet = dst(&args[..args.len() - 2]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("ignored message"),
        "tracing output without --tracing"
    );
}

#[test]
fn a_twins_run_prints_the_leader_order_its_replicas_used() {
    let output = dst(&[
        "run",
        "--protocol",
        "pbft",
        "--profile",
        "twins",
        "--seed",
        "3",
    ]);
    assert_succeeded(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value_in = |prefix: &str| {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{stdout}"));
        line.split_whitespace()
            .find_map(|word| word.strip_prefix("leader_order="))
            .unwrap_or_else(|| panic!("no leader_order in: {line}"))
            .to_string()
    };
    let drawn = value_in("SEED=");
    assert_ne!(drawn, "0", "seed 3 draws another order");
    assert_eq!(value_in("options:"), drawn, "options show the order in use");
}

/// Starts a campaign that finds failures (with a corpus), waits until it announces one,
/// sends `signal`, and returns its exit code, standard output and corpus folder.
#[cfg(unix)]
fn campaign_stopped_by(
    signal: libc::c_int,
    name: &str,
) -> (Option<i32>, String, std::path::PathBuf) {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("dst-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dst"))
        .args([
            "explore",
            "--protocol",
            "raft",
            "--profile",
            "corruption",
            "--no-client-checksums",
            "--ops",
            "60",
            // Bounded, should the signal go unheeded: the test then fails instead of hanging.
            "--time",
            "60",
            "--shrink-attempts",
            "20",
            "--json",
            "--corpus",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the dst binary runs");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let announced = stderr
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.starts_with("dst: found seed"));
    assert!(announced, "the campaign found nothing");
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    stderr.for_each(drop);
    let output = child.wait_with_output().expect("the campaign ends");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    (output.status.code(), stdout, dir)
}

/// The corpus folder's entries all replay as they expect; returns their names.
#[cfg(unix)]
fn checked_corpus(dir: &std::path::Path) -> Vec<String> {
    let check = dst(&["corpus", "check", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    text.lines()
        .filter_map(|line| line.split_once(": still fails"))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(unix)]
#[test]
fn a_terminated_campaign_reports_and_keeps_shrunk_what_it_found() {
    let (code, stdout, dir) = campaign_stopped_by(libc::SIGTERM, "sigterm");
    assert_eq!(code, Some(1), "{stdout}");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .expect("a summary");
    let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["interrupted"], true);
    assert!(summary["violations"].as_u64() > Some(0), "{summary}");
    let names = checked_corpus(&dir);
    assert!(!names.is_empty(), "{stdout}");
    assert!(names.iter().all(|n| !n.ends_with("-unshrunk")), "{names:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[test]
fn a_killed_campaign_keeps_what_it_found_unshrunk() {
    let (code, _, dir) = campaign_stopped_by(libc::SIGKILL, "sigkill");
    assert_eq!(code, None, "killed by the signal");
    let names = checked_corpus(&dir);
    assert!(names.iter().any(|n| n.ends_with("-unshrunk")), "{names:?}");
    std::fs::remove_dir_all(&dir).ok();
}
