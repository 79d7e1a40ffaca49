//! The reference model and the workload without replication: histories built by hand from
//! the service itself, and deliberately broken ones the checker must reject.

use dst_checkers::linearizability::{CheckConfig, Verdict};
use dst_checkers::{History, Operation, Outcome};
use dst_inference::faulty::{fault_of, faulty_nodes, parse_fault_plan};
use dst_inference::spec::check_inference_linearizability;
use dst_inference::{
    Command, FaultyService, InferenceService, InferenceSpec, InferenceWorkload,
    InferenceWorkloadConfig, ModelConfig, Output, Sampling, ServiceConfig, ServiceFault, SessionId,
};
use dst_protocols::workload::Workload;
use dst_sim::{SeededSource, StateMachine};

fn config() -> ServiceConfig {
    ServiceConfig::new(ModelConfig::hybrid(7))
}

/// Operations `(client, command)` applied in order to one service; each returns before the
/// next is called.
fn sequential(commands: &[(u64, Command)]) -> History<Command, Output> {
    let mut service = InferenceService::new(config());
    let operations = commands
        .iter()
        .enumerate()
        .map(|(index, (client, command))| Operation {
            client: *client,
            input: command.clone(),
            outcome: Outcome::Ok(service.apply(command)),
            call: 2 * index as u64,
            ret: 2 * index as u64 + 1,
            hint: None,
        })
        .collect();
    History { operations }
}

fn verdict(history: &History<Command, Output>) -> Verdict {
    let spec = InferenceSpec::new(config());
    let (report, violation) =
        check_inference_linearizability(&spec, history, &CheckConfig::default());
    assert_eq!(
        violation.is_some(),
        report.verdict == Verdict::NotLinearizable,
        "a violation iff not linearizable"
    );
    report.verdict
}

fn s(id: u64) -> SessionId {
    SessionId(id)
}

/// Two clients, two sessions, every command kind and two typed errors.
fn script() -> Vec<(u64, Command)> {
    vec![
        (0, Command::OpenSession),
        (1, Command::OpenSession),
        (
            0,
            Command::Append {
                session: s(0),
                text: b"hi".to_vec(),
            },
        ),
        (
            1,
            Command::Append {
                session: s(1),
                text: b"yo!".to_vec(),
            },
        ),
        (
            0,
            Command::Generate {
                session: s(0),
                tokens: 4,
                sampling: Sampling::Greedy,
            },
        ),
        (
            1,
            Command::Generate {
                session: s(1),
                tokens: 3,
                sampling: Sampling::Sampled {
                    seed: 9,
                    temperature_milli: 800,
                },
            },
        ),
        (0, Command::ReadDigest { session: s(0) }),
        (
            1,
            Command::AppendTokens {
                session: s(1),
                tokens: vec![97, 300],
            },
        ),
        (0, Command::Close { session: s(0) }),
        (0, Command::ReadDigest { session: s(0) }),
        (1, Command::ReadDigest { session: s(1) }),
    ]
}

#[test]
fn the_service_run_sequentially_is_linearizable() {
    let history = sequential(&script());
    assert!(matches!(
        history.operations[7].outcome,
        Outcome::Ok(Output::Error(_))
    ));
    assert_eq!(verdict(&history), Verdict::Linearizable);
}

#[test]
fn a_changed_token_is_caught() {
    let mut history = sequential(&script());
    let Outcome::Ok(Output::Generated { tokens, .. }) = &mut history.operations[4].outcome else {
        panic!("operation 4 is a generation");
    };
    tokens[2] ^= 1;
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn a_wrong_digest_is_caught() {
    let mut history = sequential(&script());
    let Outcome::Ok(Output::Digest { digest, .. }) = &mut history.operations[10].outcome else {
        panic!("operation 10 reads a digest");
    };
    *digest ^= 1 << 40;
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn a_read_of_a_closed_session_that_succeeds_is_caught() {
    let mut history = sequential(&script());
    let read = sequential(&script()[..7]).operations[6].outcome.clone();
    // The read after the close returns the digest the session had before it.
    history.operations[9].outcome = read;
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn session_ids_out_of_real_time_order_are_caught() {
    let mut history = sequential(&script());
    // Open 0 returned before open 1 was called, but got the later id (and vice versa).
    history.operations[0].outcome = Outcome::Ok(Output::Opened { session: s(1) });
    history.operations[1].outcome = Outcome::Ok(Output::Opened { session: s(0) });
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
    // Concurrent opens may get their ids in either order.
    history.operations[0].ret = 3;
    history.operations[1].call = 1;
    history.operations[1].ret = 2;
    assert_eq!(verdict(&history), Verdict::Linearizable);
}

#[test]
fn a_session_id_handed_out_twice_is_caught() {
    let mut history = sequential(&script()[..2]);
    history.operations[1].outcome = Outcome::Ok(Output::Opened { session: s(0) });
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn a_stale_read_is_caught_and_an_unknown_write_may_or_may_not_have_happened() {
    let commands = script();
    let before = sequential(&commands[..7]).operations[6].outcome.clone();
    // Move the read of session 0 after a second generation that completed before it.
    let mut extended = commands[..6].to_vec();
    extended.push((
        0,
        Command::Generate {
            session: s(0),
            tokens: 2,
            sampling: Sampling::Greedy,
        },
    ));
    extended.push((0, Command::ReadDigest { session: s(0) }));
    let mut history = sequential(&extended);
    history.operations[7].outcome = before.clone();
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
    // The same read is legal if the generation's outcome is unknown (it may not have
    // happened) ...
    history.operations[6].outcome = Outcome::Unknown;
    history.operations[6].ret = u64::MAX;
    assert_eq!(verdict(&history), Verdict::Linearizable);
    // ... and so is the up-to-date read.
    let mut history = sequential(&extended);
    history.operations[6].outcome = Outcome::Unknown;
    history.operations[6].ret = u64::MAX;
    assert_eq!(verdict(&history), Verdict::Linearizable);
}

#[test]
fn the_workload_is_deterministic_and_within_bounds() {
    let draw = |seed: u64| {
        let config = InferenceWorkloadConfig::small(40);
        let mut workload = InferenceWorkload::new(config.clone());
        let mut source = SeededSource::new(seed);
        let mut service = InferenceService::new(ServiceConfig::new(ModelConfig::hybrid(1)));
        let mut commands = Vec::new();
        while let Some(step) = workload.next_step(&mut source) {
            assert!(step.think_ns <= config.think_ns_max);
            let output = service.apply(&step.command);
            workload.observe(&step.command, &output);
            commands.push((step.command, output));
        }
        commands
    };
    let commands = draw(5);
    assert_eq!(commands.len(), 40);
    assert_eq!(commands, draw(5), "one seed, one command stream");
    assert_ne!(commands, draw(6));
    let mut generated = 0;
    for (command, output) in &commands {
        if let Command::Generate { tokens, .. } = command {
            assert!(*tokens <= 8, "at most 8 tokens per generation");
            generated += 1;
        }
        if let Command::Append { text, .. } = command {
            assert!(!text.is_empty() && text.len() <= 6);
        }
        // Only deliberate bad input is refused.
        if let Output::Error(error) = output {
            let deliberate = matches!(command, Command::AppendTokens { .. })
                || matches!(command, Command::ReadDigest { .. });
            assert!(deliberate, "{command:?} refused: {error:?}");
        }
    }
    assert!(generated >= 5, "a workload mostly generates: {generated}");
}

#[test]
fn service_faults_parse_print_and_reject_bad_input() {
    for name in ServiceFault::NAMES {
        let fault = ServiceFault::parse(name).expect("every listed name parses");
        assert_eq!(ServiceFault::parse(&fault.to_string()), Ok(fault));
    }
    assert_eq!(
        ServiceFault::parse("weight-flip=3@10"),
        Ok(ServiceFault::WeightFlip {
            at_apply: 10,
            bit: 3
        })
    );
    assert_eq!(
        ServiceFault::parse("split-k@7"),
        Ok(ServiceFault::SplitK {
            at_apply: 7,
            splits: 4
        })
    );
    for bad in [
        "",
        "bogus",
        "weight-flip@",
        "weight-flip@0",
        "weight-flip@x",
        "weight-flip=32",
        "split-k=1",
        "split-k=9",
        "forge-output=2",
        "none@3",
        "stale-model=-1",
    ] {
        assert!(ServiceFault::parse(bad).is_err(), "{bad:?} accepted");
    }
    let plan = parse_fault_plan("1:weight-flip@10, 2:split-k", 4).expect("valid plan");
    assert_eq!(
        fault_of(&plan, 2),
        ServiceFault::SplitK {
            at_apply: 1,
            splits: 4
        }
    );
    assert_eq!(fault_of(&plan, 0), ServiceFault::None);
    assert_eq!(faulty_nodes(&plan).len(), 2);
    for bad in [
        "4:split-k",
        "1:split-k,1:none",
        "x:split-k",
        "split-k",
        "1:nope",
    ] {
        assert!(parse_fault_plan(bad, 4).is_err(), "plan {bad:?} accepted");
    }
}

/// Runs the script on an honest and a faulty service; returns both outputs and digests.
fn beside_honest(fault: &str) -> (Vec<Output>, Vec<Output>, FaultyService, FaultyService) {
    let fault = ServiceFault::parse(fault).expect("valid fault");
    let mut honest = FaultyService::new(InferenceService::new(config()), ServiceFault::None);
    let mut faulty = FaultyService::new(InferenceService::new(config()), fault);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (_, command) in script() {
        good.push(honest.apply(&command));
        bad.push(faulty.apply(&command));
    }
    (good, bad, honest, faulty)
}

#[test]
fn each_service_fault_changes_what_the_replica_holds_or_says() {
    for fault in [
        "weight-flip@3",
        "session-flip@4",
        "stale-model@3",
        "split-k@3",
    ] {
        let (good, bad, honest, faulty) = beside_honest(fault);
        // Outputs before the strike agree. (Session 1, which a flip at apply 4 hits, stays open.)
        assert_eq!(good[..2], bad[..2], "{fault}");
        assert_ne!(
            honest.digest(),
            faulty.digest(),
            "{fault}: state digest unchanged"
        );
        // Reloading the state reloads the canonical model: the replica is honest again.
        let mut restored = FaultyService::restore(&faulty.snapshot()).expect("own snapshot");
        let mut reference = InferenceService::restore(&faulty.snapshot()).expect("snapshot");
        let command = Command::Generate {
            session: s(1),
            tokens: 2,
            sampling: Sampling::Greedy,
        };
        assert_eq!(
            restored.apply(&command),
            reference.apply(&command),
            "{fault}"
        );
    }
    let (good, bad, honest, faulty) = beside_honest("forge-output@5");
    assert_eq!(honest.digest(), faulty.digest(), "forging keeps the state");
    assert_eq!(good[..4], bad[..4]);
    assert_ne!(good[4], bad[4], "the generation is forged");
    assert_ne!(good[6], bad[6], "the digest read is forged");
    assert_eq!(good[8], bad[8], "a close has nothing to forge");
}
