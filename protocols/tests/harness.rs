//! Observations to histories and oracle records, and the all-oracles call on hand-made runs:
//! a correct run passes, each deliberately broken one is caught by the right property.

use dst_checkers::linearizability::{CheckConfig, Verdict};
use dst_checkers::oracles::Property;
use dst_checkers::Outcome;
use dst_protocols::harness::{
    check_kv_run, client_history, kv_model_history, run_record, Observed, RunFacts,
};
use dst_protocols::{command_digest, KvCommand, KvOutput, Observation};
use dst_sim::{ClientId, NodeId, MS, SEC};

type Obs = Observed<KvCommand, KvOutput>;

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn get(key: &str) -> KvCommand {
    KvCommand::Get {
        key: key.to_string(),
    }
}

fn invoke(time_ms: u64, client: u32, sequence: u64, command: KvCommand) -> Obs {
    (
        time_ms * MS,
        Observation::Invoke {
            client: ClientId(client),
            sequence,
            command,
        },
    )
}

fn complete(time_ms: u64, client: u32, sequence: u64, output: KvOutput) -> Obs {
    (
        time_ms * MS,
        Observation::Complete {
            client: ClientId(client),
            sequence,
            output,
        },
    )
}

fn commit_everywhere(
    time_ms: u64,
    slot: u64,
    client: u32,
    sequence: u64,
    command: &KvCommand,
) -> Vec<Obs> {
    (0..3)
        .flat_map(|node| {
            [
                (
                    time_ms * MS,
                    Observation::Commit {
                        node: NodeId(node),
                        slot,
                        request: Some((ClientId(client), sequence)),
                        command_digest: command_digest(command),
                    },
                ),
                (
                    time_ms * MS,
                    Observation::Apply {
                        node: NodeId(node),
                        slot,
                        request: Some((ClientId(client), sequence)),
                        state_digest: 1000 + slot,
                    },
                ),
            ]
        })
        .collect()
}

/// c0 puts x=1 (slot 1), then c1 reads x=1 without the log.
fn correct_run() -> Vec<Obs> {
    let mut run = vec![invoke(1, 0, 1, put("x", "1"))];
    run.extend(commit_everywhere(5, 1, 0, 1, &put("x", "1")));
    run.push(complete(6, 0, 1, KvOutput::Written));
    run.push(invoke(7, 1, 1, get("x")));
    run.push(complete(8, 1, 1, KvOutput::Value(Some("1".to_string()))));
    run
}

fn facts() -> RunFacts {
    RunFacts {
        liveness_bound_ns: SEC,
        ..RunFacts::crash_fault_tolerant(3, 20 * MS, 2 * SEC)
    }
}

fn properties(run: &[Obs]) -> Vec<String> {
    check_kv_run(run, &facts(), &CheckConfig::default())
        .violations
        .iter()
        .map(|violation| violation.property.to_string())
        .collect()
}

#[test]
fn a_correct_run_passes_every_oracle() {
    let verdict = check_kv_run(&correct_run(), &facts(), &CheckConfig::default());
    assert!(verdict.is_clean(), "{:#?}", verdict.violations);
    assert_eq!(
        verdict.linearizability.map(|report| report.verdict),
        Some(Verdict::Linearizable)
    );
    assert_eq!(verdict.liveness.skipped, None);
}

#[test]
fn the_history_has_positions_outcomes_and_hints() {
    let mut run = correct_run();
    run.push(invoke(9, 0, 2, put("x", "2")));
    run.push((
        10 * MS,
        Observation::Abandon {
            client: ClientId(0),
            sequence: 2,
        },
    ));
    run.push(invoke(11, 1, 2, get("y")));
    let history = client_history(&run);
    let operations = &history.operations;
    assert_eq!(operations.len(), 4);
    assert_eq!((operations[0].call, operations[0].ret), (0, 7));
    assert_eq!(operations[0].hint, Some(1), "hint is the commit slot");
    assert_eq!(operations[0].outcome, Outcome::Ok(KvOutput::Written));
    assert_eq!(operations[1].hint, None, "a read off the log has no slot");
    assert_eq!(operations[2].outcome, Outcome::Unknown, "abandoned");
    assert_eq!(operations[2].ret, u64::MAX);
    assert_eq!(
        operations[3].outcome,
        Outcome::Unknown,
        "pending at the end"
    );
    assert_eq!(operations[3].client, 1);

    let model = kv_model_history(&history);
    assert_eq!(
        model.operations[1].outcome,
        Outcome::Ok(Some("1".to_string()))
    );
    assert_eq!(model.operations[0].outcome, Outcome::Ok(None));
}

#[test]
fn a_failed_cas_is_an_operation_that_did_not_happen() {
    let cas = KvCommand::Cas {
        key: "x".to_string(),
        expected: Some("9".to_string()),
        new: "3".to_string(),
    };
    let mut run = correct_run();
    run.push(invoke(9, 0, 2, cas.clone()));
    run.extend(commit_everywhere(10, 2, 0, 2, &cas));
    run.push(complete(11, 0, 2, KvOutput::Swapped(false)));
    let model = kv_model_history(&client_history(&run));
    assert_eq!(model.operations[2].outcome, Outcome::Fail);
    assert!(properties(&run).is_empty());
}

#[test]
fn the_record_digests_commands_like_the_protocols() {
    let record = run_record(&correct_run(), KvCommand::is_read_only);
    assert_eq!(record.invocations.len(), 2);
    assert_eq!(
        record.invocations[0].command_digest,
        record.commits[0].entry.command_digest
    );
    assert!(record.invocations[1].read_only);
    assert_eq!(record.commits.len(), 3);
    assert_eq!(record.applies.len(), 3);
    assert_eq!(record.completions.len(), 2);
}

#[test]
fn a_stale_read_is_not_linearizable() {
    let mut run = correct_run();
    run.pop();
    run.push(complete(8, 1, 1, KvOutput::Value(None)));
    let verdict = check_kv_run(&run, &facts(), &CheckConfig::default());
    assert_eq!(verdict.violations.len(), 1, "{:#?}", verdict.violations);
    assert_eq!(verdict.violations[0].property, Property::Linearizability);
    assert!(verdict.violations[0].detail.contains("key \"x\""));
}

#[test]
fn conflicting_commits_break_agreement() {
    let mut run = correct_run();
    run.push((
        9 * MS,
        Observation::Commit {
            node: NodeId(2),
            slot: 1,
            request: None,
            command_digest: 0,
        },
    ));
    assert!(properties(&run).contains(&"agreement".to_string()));
}

#[test]
fn an_acknowledged_write_never_committed_breaks_durability() {
    let mut run = correct_run();
    run.push(invoke(9, 0, 2, put("x", "2")));
    run.push(complete(10, 0, 2, KvOutput::Written));
    assert_eq!(properties(&run), ["durability"]);
}

#[test]
fn a_forged_command_breaks_validity() {
    let mut run = correct_run();
    run.push(invoke(9, 0, 2, put("x", "2")));
    run.extend(commit_everywhere(10, 2, 0, 2, &put("x", "666")));
    run.push(complete(11, 0, 2, KvOutput::Written));
    assert_eq!(properties(&run), ["validity"]);
}

#[test]
fn a_request_open_after_the_quiet_phase_breaks_liveness() {
    let mut run = correct_run();
    run.push(invoke(30, 0, 2, put("x", "2")));
    let short = RunFacts {
        end_ns: 500 * MS,
        ..facts()
    };
    let verdict = check_kv_run(&run, &short, &CheckConfig::default());
    assert!(verdict.violations.is_empty(), "the bound had not passed");
    assert_eq!(verdict.liveness.unjudged, 1);
    let verdict = check_kv_run(&run, &facts(), &CheckConfig::default());
    assert_eq!(verdict.violations.len(), 1, "{:#?}", verdict.violations);
    assert_eq!(verdict.violations[0].property, Property::Liveness);
}

#[test]
fn node_and_engine_invariant_failures_are_violations() {
    let mut run = correct_run();
    run.push((
        9 * MS,
        Observation::InvariantViolated {
            node: NodeId(1),
            what: "election_safety: two leaders in term 3".to_string(),
        },
    ));
    let engine = RunFacts {
        engine_invariant_failures: vec!["n2 at 5.000ms: log shrank".to_string()],
        ..facts()
    };
    let verdict = check_kv_run(&run, &engine, &CheckConfig::default());
    let names: Vec<String> = verdict
        .violations
        .iter()
        .map(|violation| violation.property.to_string())
        .collect();
    assert_eq!(
        names,
        ["invariant:election_safety", "invariant:check_invariants"]
    );
}

#[test]
fn a_panic_that_ended_the_run_is_a_violation() {
    let engine = RunFacts {
        engine_panic: Some("event 41 at 5.000ms: commit index only grows".to_string()),
        ..facts()
    };
    let verdict = check_kv_run(&correct_run(), &engine, &CheckConfig::default());
    assert_eq!(verdict.violations.len(), 1, "{:#?}", verdict.violations);
    assert_eq!(verdict.violations[0].property, Property::Panic);
    assert!(verdict.violations[0]
        .detail
        .contains("commit index only grows"));
}
