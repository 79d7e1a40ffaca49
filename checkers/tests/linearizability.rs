//! The checker on histories made here: small hand-made ones for every model (with failed and
//! unknown operations), and histories recorded from a simulated correct register and from
//! deliberately broken ones (stale reads, lost writes).

use dst_checkers::history::{History, Operation, Outcome};
use dst_checkers::linearizability::{
    check, CasRegister, CheckConfig, KeyValue, KvInput, KvOp, Model, Precedence, Register,
    RegisterInput, Verdict,
};

type RegisterHistory = History<RegisterInput, Option<i64>>;

fn op<I, O>(client: u64, input: I, outcome: Outcome<O>, call: u64, ret: u64) -> Operation<I, O> {
    let ret = if matches!(outcome, Outcome::Unknown) {
        u64::MAX
    } else {
        ret
    };
    Operation {
        client,
        input,
        outcome,
        call,
        ret,
        hint: None,
    }
}

fn history<I, O>(operations: Vec<Operation<I, O>>) -> History<I, O> {
    History { operations }
}

fn verdict<M: Model>(model: &M, history: &History<M::Input, M::Output>) -> Verdict {
    check(model, history, &CheckConfig::default()).verdict
}

use RegisterInput::{Cas, Read, Write};

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(
        verdict(&CasRegister, &RegisterHistory::new()),
        Verdict::Linearizable
    );
}

#[test]
fn concurrent_write_and_read_may_see_either_value() {
    let h = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 4),
        op(1, Read, Outcome::Ok(Some(1)), 2, 3),
        op(2, Read, Outcome::Ok(None), 2, 5),
    ]);
    let report = check(&Register, &h, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::Linearizable);
    // The witness puts the nil read before the write and the read of 1 after it.
    let order = &report.partitions[0].linearization;
    assert_eq!(order.len(), 3);
    let position = |op: usize| order.iter().position(|&o| o == op).expect("in witness");
    assert!(
        position(2) < position(0) && position(0) < position(1),
        "{order:?}"
    );
}

#[test]
fn a_stale_read_after_a_completed_write_is_caught() {
    let h = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 2),
        op(0, Write(2), Outcome::Ok(None), 3, 4),
        op(1, Read, Outcome::Ok(Some(1)), 5, 6),
    ]);
    let report = check(&Register, &h, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let partition = report.first_illegal().expect("an illegal partition");
    assert_eq!(
        partition.failing_operation,
        Some(2),
        "the stale read cannot be placed"
    );
    assert_eq!(partition.longest_prefix, vec![0, 1]);
}

#[test]
fn reading_nil_is_legal_only_while_the_register_is_nil() {
    let ok = history(vec![
        op(1, Read, Outcome::Ok(None), 1, 2),
        op(0, Write(1), Outcome::Ok(None), 3, 4),
    ]);
    assert_eq!(verdict(&CasRegister, &ok), Verdict::Linearizable);
    let bad = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 2),
        op(1, Read, Outcome::Ok(None), 3, 4),
    ]);
    assert_eq!(verdict(&CasRegister, &bad), Verdict::NotLinearizable);
}

#[test]
fn a_failed_cas_did_not_happen_and_a_successful_one_did() {
    let failed = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 2),
        op(0, Cas { from: 1, to: 2 }, Outcome::Fail, 3, 4),
        op(1, Read, Outcome::Ok(Some(1)), 5, 6),
    ]);
    assert_eq!(verdict(&CasRegister, &failed), Verdict::Linearizable);
    let succeeded = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 2),
        op(0, Cas { from: 1, to: 2 }, Outcome::Ok(None), 3, 4),
        op(1, Read, Outcome::Ok(Some(1)), 5, 6),
    ]);
    assert_eq!(verdict(&CasRegister, &succeeded), Verdict::NotLinearizable);
    let impossible = history(vec![op(0, Cas { from: 7, to: 2 }, Outcome::Ok(None), 1, 2)]);
    assert_eq!(verdict(&CasRegister, &impossible), Verdict::NotLinearizable);
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // The timed-out write may land after the read of 1 ...
    let late = history(vec![
        op(0, Write(2), Outcome::Unknown, 1, 0),
        op(1, Write(1), Outcome::Ok(None), 2, 3),
        op(1, Read, Outcome::Ok(Some(1)), 4, 5),
        op(2, Read, Outcome::Ok(Some(2)), 6, 7),
    ]);
    assert_eq!(verdict(&CasRegister, &late), Verdict::Linearizable);
    // ... or never.
    let never = history(vec![
        op(0, Write(2), Outcome::Unknown, 1, 0),
        op(1, Read, Outcome::Ok(None), 2, 3),
    ]);
    assert_eq!(verdict(&CasRegister, &never), Verdict::Linearizable);
    // But not before its call.
    let early = history(vec![
        op(1, Read, Outcome::Ok(Some(2)), 1, 2),
        op(0, Write(2), Outcome::Unknown, 3, 0),
    ]);
    assert_eq!(verdict(&CasRegister, &early), Verdict::NotLinearizable);
    // And at most once: two reads of 2 around a write of 1 need two writes of 2.
    let twice = history(vec![
        op(0, Write(2), Outcome::Unknown, 1, 0),
        op(1, Read, Outcome::Ok(Some(2)), 2, 3),
        op(1, Write(1), Outcome::Ok(None), 4, 5),
        op(1, Read, Outcome::Ok(Some(2)), 6, 7),
    ]);
    assert_eq!(verdict(&CasRegister, &twice), Verdict::NotLinearizable);
}

#[test]
fn identical_unknown_writes_can_each_take_effect() {
    // Two timed-out writes of 2: one before the write of 1, one after.
    let h = history(vec![
        op(0, Write(2), Outcome::Unknown, 1, 0),
        op(2, Write(2), Outcome::Unknown, 2, 0),
        op(1, Read, Outcome::Ok(Some(2)), 3, 4),
        op(1, Write(1), Outcome::Ok(None), 5, 6),
        op(1, Read, Outcome::Ok(Some(2)), 7, 8),
    ]);
    assert_eq!(verdict(&CasRegister, &h), Verdict::Linearizable);
}

#[test]
fn the_register_model_rejects_cas() {
    let h = history(vec![op(0, Cas { from: 0, to: 1 }, Outcome::Ok(None), 1, 2)]);
    assert_eq!(verdict(&Register, &h), Verdict::NotLinearizable);
}

fn kv(key: &str, op: KvOp) -> KvInput {
    KvInput {
        key: key.to_string(),
        op,
    }
}

fn get(value: &str) -> Outcome<Option<String>> {
    Outcome::Ok(Some(value.to_string()))
}

#[test]
fn kv_appends_are_ordered_by_what_gets_observe() {
    let append = |v: &str| KvOp::Append(v.to_string());
    let ok = history(vec![
        op(0, kv("k", append("a")), Outcome::Ok(None), 1, 4),
        op(1, kv("k", append("b")), Outcome::Ok(None), 2, 5),
        op(2, kv("k", KvOp::Get), get("ba"), 3, 6),
        op(2, kv("j", KvOp::Put("x".into())), Outcome::Ok(None), 7, 8),
        op(3, kv("j", KvOp::Get), get("x"), 9, 10),
    ]);
    assert_eq!(verdict(&KeyValue, &ok), Verdict::Linearizable);
    // b returned before a was called, so "ab" is impossible.
    let bad = history(vec![
        op(1, kv("k", append("b")), Outcome::Ok(None), 1, 2),
        op(0, kv("k", append("a")), Outcome::Ok(None), 3, 4),
        op(2, kv("k", KvOp::Get), get("ab"), 5, 6),
    ]);
    let report = check(&KeyValue, &bad, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    assert_eq!(report.first_illegal().map(|p| p.name.as_str()), Some("k"));
}

#[test]
fn kv_put_resets_and_cas_compares() {
    let h = history(vec![
        op(
            0,
            kv("k", KvOp::Append("a".into())),
            Outcome::Ok(None),
            1,
            2,
        ),
        op(0, kv("k", KvOp::Put("p".into())), Outcome::Ok(None), 3, 4),
        op(
            0,
            kv("k", KvOp::Append("a".into())),
            Outcome::Ok(None),
            5,
            6,
        ),
        op(
            0,
            kv(
                "k",
                KvOp::Cas {
                    from: "pa".into(),
                    to: "c".into(),
                },
            ),
            Outcome::Ok(None),
            7,
            8,
        ),
        op(
            0,
            kv(
                "k",
                KvOp::Cas {
                    from: "pa".into(),
                    to: "d".into(),
                },
            ),
            Outcome::Fail,
            9,
            10,
        ),
        op(1, kv("k", KvOp::Get), get("c"), 11, 12),
    ]);
    assert_eq!(verdict(&KeyValue, &h), Verdict::Linearizable);
    let mut bad = h.clone();
    bad.operations[5].outcome = get("pa");
    assert_eq!(verdict(&KeyValue, &bad), Verdict::NotLinearizable);
}

#[test]
fn every_partition_is_reported_when_asked() {
    let append = |v: &str| KvOp::Append(v.to_string());
    let h = history(vec![
        op(0, kv("a", append("1")), Outcome::Ok(None), 1, 2),
        op(0, kv("a", KvOp::Get), get("2"), 3, 4),
        op(0, kv("b", append("1")), Outcome::Ok(None), 5, 6),
        op(0, kv("b", KvOp::Get), get("2"), 7, 8),
        op(0, kv("c", KvOp::Get), get(""), 9, 10),
    ]);
    let first = check(&KeyValue, &h, &CheckConfig::default());
    assert_eq!(first.verdict, Verdict::NotLinearizable);
    assert_eq!(
        first.partitions[1].unknown_reason.as_deref(),
        Some("cancelled")
    );
    let all = check(
        &KeyValue,
        &h,
        &CheckConfig {
            all_partitions: true,
            threads: 2,
            ..CheckConfig::default()
        },
    );
    let verdicts: Vec<Verdict> = all.partitions.iter().map(|p| p.verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            Verdict::NotLinearizable,
            Verdict::NotLinearizable,
            Verdict::Linearizable
        ]
    );
    let whole = check(
        &KeyValue,
        &h,
        &CheckConfig {
            partition: false,
            ..CheckConfig::default()
        },
    );
    assert_eq!(whole.verdict, Verdict::NotLinearizable);
}

#[test]
fn a_step_budget_gives_unknown_naming_the_partition() {
    let h = recorded_register(7, Flaw::None, 6, 400);
    let config = CheckConfig {
        steps_max: 1,
        ..CheckConfig::default()
    };
    let report = check(&CasRegister, &h, &config);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.undecided, vec![String::new()]);
}

/// A nondeterministic model: a counter whose increment adds 1 or 2.
struct SloppyCounter;

impl Model for SloppyCounter {
    type Input = bool; // true: increment, false: read
    type Output = u64;
    type State = u64;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, increment: &bool, output: Option<&u64>, next: &mut Vec<u64>) {
        match (increment, output) {
            (true, _) => next.extend([state + 1, state + 2]),
            (false, Some(seen)) if seen != state => {}
            (false, _) => next.push(*state),
        }
    }
}

#[test]
fn nondeterministic_models_explore_every_choice() {
    let h = history(vec![
        op(0, true, Outcome::Ok(0), 1, 2),
        op(0, true, Outcome::Ok(0), 3, 4),
        op(1, false, Outcome::Ok(3), 5, 6),
    ]);
    assert_eq!(verdict(&SloppyCounter, &h), Verdict::Linearizable);
    let mut bad = h.clone();
    bad.operations[2].outcome = Outcome::Ok(5);
    assert_eq!(verdict(&SloppyCounter, &bad), Verdict::NotLinearizable);
}

// ---- Histories recorded from a simulated register, correct and broken. ----

#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    None,
    /// Reads are served by a replica that applies writes late.
    StaleReads,
    /// Some acknowledged writes are dropped.
    LostWrites,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Clients issue reads, writes and compare-and-sets; each operation takes effect atomically
/// at one event between its call and return (or, with a flaw, not quite).
fn recorded_register(seed: u64, flaw: Flaw, clients: u64, events: u64) -> RegisterHistory {
    let mut rng = seed;
    let mut register: Option<i64> = None;
    let mut replica: Vec<Option<i64>> = vec![None]; // history of values, for stale reads
                                                    // Per client: the open operation's index and whether it has taken effect.
    let mut open: Vec<Option<(usize, bool)>> = vec![None; clients as usize];
    let mut h = RegisterHistory::new();
    for time in 1..=events {
        let client = (splitmix64(&mut rng) % clients) as usize;
        match open[client] {
            None => {
                let input = match splitmix64(&mut rng) % 3 {
                    0 => Read,
                    1 => Write((splitmix64(&mut rng) % 5) as i64),
                    _ => Cas {
                        from: (splitmix64(&mut rng) % 5) as i64,
                        to: (splitmix64(&mut rng) % 5) as i64,
                    },
                };
                open[client] = Some((h.operations.len(), false));
                h.operations
                    .push(op(client as u64, input, Outcome::Unknown, time, u64::MAX));
            }
            Some((index, false)) => {
                let operation = &mut h.operations[index];
                operation.outcome = match operation.input {
                    Read if flaw == Flaw::StaleReads => {
                        let lag = (splitmix64(&mut rng) % 3) as usize;
                        Outcome::Ok(replica[replica.len().saturating_sub(1 + lag)])
                    }
                    Read => Outcome::Ok(register),
                    Write(value) => {
                        if !(flaw == Flaw::LostWrites && splitmix64(&mut rng).is_multiple_of(4)) {
                            register = Some(value);
                            replica.push(register);
                        }
                        Outcome::Ok(None)
                    }
                    Cas { from, to } if register == Some(from) => {
                        register = Some(to);
                        replica.push(register);
                        Outcome::Ok(None)
                    }
                    Cas { .. } => Outcome::Fail,
                };
                open[client] = Some((index, true));
            }
            Some((index, true)) => {
                let operation = &mut h.operations[index];
                // Now and then the client times out: the result becomes unknown.
                if splitmix64(&mut rng).is_multiple_of(10) && operation.outcome != Outcome::Fail {
                    operation.outcome = Outcome::Unknown;
                } else {
                    operation.ret = time;
                }
                open[client] = None;
            }
        }
    }
    h
}

#[test]
fn histories_of_a_correct_register_are_linearizable() {
    for seed in 0..40 {
        let h = recorded_register(seed, Flaw::None, 5, 300);
        let report = check(&CasRegister, &h, &CheckConfig::default());
        assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        // Same history, same witness.
        let again = check(&CasRegister, &h, &CheckConfig::default());
        assert_eq!(
            report.partitions[0].linearization,
            again.partitions[0].linearization
        );
    }
}

#[test]
fn histories_of_a_stale_reading_register_are_caught() {
    let caught = (0..40)
        .filter(|&seed| {
            let h = recorded_register(seed, Flaw::StaleReads, 5, 300);
            verdict(&CasRegister, &h) == Verdict::NotLinearizable
        })
        .count();
    assert!(
        caught >= 30,
        "only {caught} of 40 stale-read histories caught"
    );
}

#[test]
fn histories_of_a_write_losing_register_are_caught() {
    // A lost write is only visible when a later read or compare-and-set observes its absence;
    // about half of these short histories do (20 of 40 today).
    let caught = (0..40)
        .filter(|&seed| {
            let h = recorded_register(seed, Flaw::LostWrites, 5, 300);
            verdict(&CasRegister, &h) == Verdict::NotLinearizable
        })
        .count();
    assert!(
        caught >= 15,
        "only {caught} of 40 lost-write histories caught"
    );
}

#[test]
fn explanations_name_the_failing_operation_in_json_and_html() {
    let h = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 2),
        op(0, Write(2), Outcome::Ok(None), 3, 4),
        op(1, Read, Outcome::Ok(Some(1)), 5, 6),
    ]);
    let config = CheckConfig {
        explain: true,
        ..CheckConfig::default()
    };
    let report = check(&Register, &h, &config);
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["verdict"], "not_linearizable");
    assert_eq!(json["partitions"][0]["failing_operation"], 2);
    // Each linearized operation points at the longest partial linearization containing it.
    let partition = &report.partitions[0];
    let (_, best) = partition
        .longest_partial
        .iter()
        .find(|(op, _)| *op == 1)
        .expect("op 1 was linearized");
    assert_eq!(partition.partial_linearizations[*best], vec![0, 1]);
    let annotations = [dst_checkers::readers::Annotation {
        position: 4,
        label: "partition starts".into(),
    }];
    let html =
        dst_checkers::linearizability::explain::html(&Register, &h, &report, "stale", &annotations);
    assert!(html.contains("class=\"failing\"") && html.contains("op 2 (client 1): read() -&gt; 1"));
    assert!(html.contains("partition starts"));
}

/// A simulated key-value store over two keys; with `stale`, gets may return an older value.
/// Appended and put values are short and sometimes repeat, so the precedence inference meets
/// ambiguous splits as well as unique ones.
fn recorded_kv(
    seed: u64,
    stale: bool,
    clients: u64,
    events: u64,
) -> History<KvInput, Option<String>> {
    let mut rng = seed;
    let mut store: Vec<Vec<String>> = vec![vec![String::new()]; 2]; // per key: values over time
    let mut open: Vec<Option<(usize, bool)>> = vec![None; clients as usize];
    let mut h = History::new();
    for time in 1..=events {
        let client = (splitmix64(&mut rng) % clients) as usize;
        match open[client] {
            None => {
                let key = (splitmix64(&mut rng) % 2).to_string();
                // Even seeds write unique values (every get splits uniquely), odd ones repeat.
                let value = if seed.is_multiple_of(2) {
                    format!("<{time}>")
                } else {
                    format!("<{}>", splitmix64(&mut rng) % 12)
                };
                let input = match splitmix64(&mut rng) % 5 {
                    0 | 1 => kv(&key, KvOp::Get),
                    2 => kv(&key, KvOp::Put(value)),
                    _ => kv(&key, KvOp::Append(value)),
                };
                open[client] = Some((h.operations.len(), false));
                h.operations
                    .push(op(client as u64, input, Outcome::Unknown, time, u64::MAX));
            }
            Some((index, false)) => {
                let operation = &mut h.operations[index];
                let values = &mut store[operation.input.key.parse::<usize>().expect("key")];
                let current = values.last().expect("a value").clone();
                operation.outcome = match &operation.input.op {
                    KvOp::Get if stale => {
                        let lag = (splitmix64(&mut rng) % 3) as usize;
                        Outcome::Ok(Some(values[values.len().saturating_sub(1 + lag)].clone()))
                    }
                    KvOp::Get => Outcome::Ok(Some(current)),
                    KvOp::Put(value) => {
                        values.push(value.clone());
                        Outcome::Ok(None)
                    }
                    KvOp::Append(value) => {
                        values.push(format!("{current}{value}"));
                        Outcome::Ok(None)
                    }
                    KvOp::Cas { .. } => unreachable!("not generated"),
                };
                open[client] = Some((index, true));
            }
            Some((index, true)) => {
                let operation = &mut h.operations[index];
                if splitmix64(&mut rng).is_multiple_of(15) {
                    operation.outcome = Outcome::Unknown;
                } else {
                    operation.ret = time;
                }
                open[client] = None;
            }
        }
    }
    h
}

#[test]
fn histories_of_a_correct_kv_store_are_linearizable_with_or_without_partitions() {
    for seed in 0..60 {
        let h = recorded_kv(seed, false, 6, 240);
        for partition in [true, false] {
            let config = CheckConfig {
                partition,
                ..CheckConfig::default()
            };
            let report = check(&KeyValue, &h, &config);
            assert_eq!(
                report.verdict,
                Verdict::Linearizable,
                "seed {seed}, partition {partition}"
            );
        }
    }
}

#[test]
fn histories_of_a_stale_reading_kv_store_are_caught() {
    let caught = (0..60)
        .filter(|&seed| {
            let h = recorded_kv(seed, true, 6, 240);
            let partitioned = check(&KeyValue, &h, &CheckConfig::default()).verdict;
            let whole = check(
                &KeyValue,
                &h,
                &CheckConfig {
                    partition: false,
                    ..CheckConfig::default()
                },
            )
            .verdict;
            assert_eq!(
                partitioned, whole,
                "seed {seed}: partitioning changed the verdict"
            );
            partitioned == Verdict::NotLinearizable
        })
        .count();
    assert!(
        caught >= 40,
        "only {caught} of 60 stale-read kv histories caught"
    );
}

/// The parts of `Model` a test wrapper around another model (`self.0`) passes through.
macro_rules! delegate_model {
    () => {
        type Input = M::Input;
        type Output = M::Output;
        type State = M::State;

        fn init(&self) -> M::State {
            self.0.init()
        }

        fn step(
            &self,
            state: &M::State,
            input: &M::Input,
            output: Option<&M::Output>,
            next: &mut Vec<M::State>,
        ) {
            self.0.step(state, input, output, next);
        }

        fn partition(&self, input: &M::Input) -> Option<String> {
            self.0.partition(input)
        }
    };
}

/// The same model without its pruning hints (read-only operations, precedences): the plain
/// Wing & Gong search, as an independent oracle for the hints.
struct Plain<M>(M);

impl<M: Model> Model for Plain<M> {
    delegate_model!();
}

#[test]
fn pruning_hints_never_change_a_verdict() {
    for seed in 0..80u64 {
        let stale = !seed.is_multiple_of(3);
        let h = recorded_kv(seed, stale, 5, 160);
        let hinted = check(&KeyValue, &h, &CheckConfig::default());
        let plain = check(&Plain(KeyValue), &h, &CheckConfig::default());
        assert_eq!(hinted.verdict, plain.verdict, "kv seed {seed}");
        // The failing point is the first return nothing explains, whatever the search order.
        let failing = |r: &dst_checkers::linearizability::CheckReport| {
            r.first_illegal().and_then(|p| p.failing_operation)
        };
        assert_eq!(failing(&hinted), failing(&plain), "kv seed {seed}");
        let r = recorded_register(
            seed,
            if stale { Flaw::StaleReads } else { Flaw::None },
            5,
            200,
        );
        let hinted = check(&CasRegister, &r, &CheckConfig::default()).verdict;
        let plain = check(&Plain(CasRegister), &r, &CheckConfig::default()).verdict;
        assert_eq!(hinted, plain, "register seed {seed}");
    }
}

/// The same model with its group windows spelled out as one `NotBetween` (or `Before`) per
/// member they hold back: the form the compact windows must be equivalent to.
struct Expanded<M>(M);

impl<M: Model> Model for Expanded<M> {
    delegate_model!();

    fn is_read_only(&self, input: &M::Input) -> bool {
        self.0.is_read_only(input)
    }

    fn precedences(&self, operations: &[(&M::Input, Option<&M::Output>)]) -> Vec<Precedence> {
        let compact = self.0.precedences(operations);
        let members = |wanted: usize| -> Vec<usize> {
            compact
                .iter()
                .filter_map(|p| match *p {
                    Precedence::Member { op, group } if group == wanted => Some(op),
                    _ => None,
                })
                .collect()
        };
        let mut expanded = Vec::new();
        for precedence in &compact {
            match precedence {
                Precedence::Member { .. } => {}
                Precedence::NoneBetween {
                    group,
                    after,
                    before,
                    except,
                } => {
                    for op in members(*group) {
                        if except.contains(&op) || Some(op) == *after || op == *before {
                            continue;
                        }
                        expanded.push(match *after {
                            Some(after) => Precedence::NotBetween {
                                op,
                                after,
                                before: *before,
                            },
                            None => Precedence::Before(*before, op),
                        });
                    }
                }
                other => expanded.push(other.clone()),
            }
        }
        expanded
    }
}

#[test]
fn group_windows_search_exactly_as_their_expansion() {
    let mut windows = 0;
    for seed in 0..40u64 {
        let h = recorded_kv(seed, seed % 3 == 1, 5, 200);
        let inputs: Vec<_> = h
            .operations
            .iter()
            .map(|o| {
                let output = match &o.outcome {
                    Outcome::Ok(output) => Some(output),
                    _ => None,
                };
                (&o.input, output)
            })
            .collect();
        windows += KeyValue
            .precedences(&inputs)
            .iter()
            .filter(|p| matches!(p, Precedence::NoneBetween { .. }))
            .count();
        for config in [
            CheckConfig::default(),
            CheckConfig {
                explain: true,
                ..CheckConfig::default()
            },
            CheckConfig {
                partition: false,
                ..CheckConfig::default()
            },
        ] {
            let compact = serde_json::to_string(&check(&KeyValue, &h, &config)).expect("json");
            let expanded =
                serde_json::to_string(&check(&Expanded(KeyValue), &h, &config)).expect("json");
            assert_eq!(compact, expanded, "seed {seed}");
        }
    }
    assert!(
        windows > 500,
        "only {windows} group windows: the test proves little"
    );
}

/// `keeps_state`, where a model answers, says what `step` does.
fn keeps_state_agrees_with_step<M: Model>(
    model: &M,
    states: &[M::State],
    ops: &[(M::Input, Option<M::Output>)],
) -> usize {
    let mut answered = 0;
    for state in states {
        for (input, output) in ops {
            let Some(keeps) = model.keeps_state(state, input, output.as_ref()) else {
                continue;
            };
            answered += 1;
            let mut next = Vec::new();
            model.step(state, input, output.as_ref(), &mut next);
            assert_eq!(
                keeps,
                !next.is_empty(),
                "{state:?} {input:?} {output:?}: {next:?}"
            );
            assert!(
                next.iter().all(|n| n == state),
                "{state:?} {input:?}: {next:?}"
            );
        }
    }
    answered
}

#[test]
fn the_step_shortcut_agrees_with_step() {
    let register_ops: Vec<(RegisterInput, Option<Option<i64>>)> = vec![
        (Read, None),
        (Read, Some(None)),
        (Read, Some(Some(1))),
        (Read, Some(Some(2))),
        (Write(1), None),
        (Cas { from: 1, to: 2 }, None),
    ];
    let register_states = [None, Some(1), Some(2)];
    assert_eq!(
        keeps_state_agrees_with_step(&Register, &register_states, &register_ops),
        12
    );
    assert_eq!(
        keeps_state_agrees_with_step(&CasRegister, &register_states, &register_ops),
        12
    );
    let kv_states: Vec<std::collections::BTreeMap<String, String>> = vec![
        Default::default(),
        [("x".to_string(), "1".to_string())].into(),
        [
            ("x".to_string(), "12".to_string()),
            ("y".to_string(), "3".to_string()),
        ]
        .into(),
    ];
    let mut kv_ops = Vec::new();
    for key in ["x", "y"] {
        for output in [
            None,
            Some(None),
            Some(Some(String::new())),
            Some(Some("1".to_string())),
            Some(Some("12".to_string())),
        ] {
            kv_ops.push((kv(key, KvOp::Get), output));
        }
        kv_ops.push((kv(key, KvOp::Put("1".to_string())), None));
        kv_ops.push((kv(key, KvOp::Append("2".to_string())), None));
    }
    assert_eq!(
        keeps_state_agrees_with_step(&KeyValue, &kv_states, &kv_ops),
        30
    );
}

#[test]
fn ordering_hints_are_tried_first() {
    let mut h = history(vec![
        op(0, Write(1), Outcome::Ok(None), 1, 4),
        op(1, Write(2), Outcome::Ok(None), 2, 5),
        op(2, Write(3), Outcome::Ok(None), 3, 6),
    ]);
    let unhinted = check(&CasRegister, &h, &CheckConfig::default());
    assert_eq!(unhinted.partitions[0].linearization, vec![0, 1, 2]);
    for (operation, hint) in h.operations.iter_mut().zip([3, 1, 2]) {
        operation.hint = Some(hint);
    }
    let hinted = check(&CasRegister, &h, &CheckConfig::default());
    assert_eq!(hinted.partitions[0].linearization, vec![1, 2, 0]);
    // A hint that contradicts what was observed is only a first guess.
    h.operations.push(op(3, Read, Outcome::Ok(Some(1)), 7, 8));
    let report = check(&CasRegister, &h, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(report.partitions[0].linearization.last(), Some(&3));
}
