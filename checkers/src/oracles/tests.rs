//! Each oracle passes a correct record and catches a deliberately broken one.

use std::collections::BTreeSet;

use super::*;

const MS: u64 = 1_000_000;

fn id(client: u32, sequence: u64) -> RequestId {
    RequestId::new(client, sequence)
}

fn entry(request: RequestId) -> Entry {
    Entry {
        request: Some(request),
        command_digest: digest_of(request),
    }
}

fn digest_of(request: RequestId) -> u64 {
    1000 * u64::from(request.client) + request.sequence
}

fn noop() -> Entry {
    Entry {
        request: None,
        command_digest: 0,
    }
}

fn invoke(record: &mut RunRecord, time_ms: u64, request: RequestId, read_only: bool) {
    record.invocations.push(Invocation {
        time_ns: time_ms * MS,
        request,
        command_digest: digest_of(request),
        read_only,
    });
}

fn commit(record: &mut RunRecord, time_ms: u64, node: u32, slot: u64, entry: Entry) {
    record.commits.push(CommitRecord {
        time_ns: time_ms * MS,
        node,
        slot,
        entry,
    });
}

fn apply(record: &mut RunRecord, time_ms: u64, node: u32, slot: u64, entry: Entry, digest: u64) {
    record.applies.push(ApplyRecord {
        time_ns: time_ms * MS,
        node,
        slot,
        request: entry.request,
        state_digest: digest,
    });
}

fn complete(record: &mut RunRecord, time_ms: u64, request: RequestId) {
    record.completions.push(Completion {
        time_ns: time_ms * MS,
        request,
    });
}

/// Three nodes, two clients: a no-op, two writes, a read served without the log.
fn correct_record() -> RunRecord {
    let mut record = RunRecord::default();
    invoke(&mut record, 1, id(0, 1), false);
    invoke(&mut record, 2, id(1, 1), false);
    let log = [noop(), entry(id(0, 1)), entry(id(1, 1))];
    for (index, entry) in log.iter().enumerate() {
        let slot = index as u64 + 1;
        for node in 0..3 {
            commit(&mut record, 10 + slot, node, slot, *entry);
            apply(&mut record, 10 + slot, node, slot, *entry, 77 * slot);
        }
    }
    complete(&mut record, 20, id(0, 1));
    complete(&mut record, 21, id(1, 1));
    invoke(&mut record, 22, id(0, 2), true);
    complete(&mut record, 23, id(0, 2));
    record
}

fn properties(violations: &[Violation]) -> BTreeSet<String> {
    violations
        .iter()
        .map(|violation| violation.property.to_string())
        .collect()
}

#[test]
fn correct_record_passes_every_safety_oracle() {
    let record = correct_record();
    let violations = check_safety(&record, &SafetyOptions::default());
    assert!(violations.is_empty(), "{violations:#?}");
    let strict = SafetyOptions {
        committers_required: 3,
        ..SafetyOptions::default()
    };
    assert!(check_durability(&record, &strict).is_empty());
}

#[test]
fn agreement_catches_two_nodes_committing_different_entries() {
    let mut record = correct_record();
    commit(&mut record, 30, 2, 4, entry(id(0, 1)));
    commit(&mut record, 31, 1, 4, noop());
    let violations = check_agreement(&record);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0].property, Property::Agreement);
    assert!(
        violations[0].detail.contains("slot 4") && violations[0].detail.contains("n1"),
        "{}",
        violations[0]
    );
}

#[test]
fn agreement_catches_a_node_recommitting_a_slot_after_restart() {
    let mut record = correct_record();
    commit(&mut record, 40, 0, 2, entry(id(1, 1)));
    let violations = check_agreement(&record);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].detail.contains("n0 re-committed"),
        "{}",
        violations[0]
    );
}

#[test]
fn agreement_catches_an_apply_of_another_request() {
    let mut record = correct_record();
    apply(&mut record, 40, 1, 3, entry(id(0, 1)), 1);
    let violations = check_agreement(&record);
    assert_eq!(properties(&violations), ["agreement".to_string()].into());
}

#[test]
fn applies_are_matched_with_the_commits_of_their_own_slot() {
    let mut record = correct_record();
    // Slot 5 is committed but not applied; slots 4 and 6 are applied but not committed, 6
    // with two different requests; slot 7 is applied with a request other than its commit's.
    commit(&mut record, 30, 0, 5, entry(id(0, 1)));
    apply(&mut record, 31, 0, 4, entry(id(0, 1)), 1);
    apply(&mut record, 31, 0, 6, entry(id(0, 1)), 1);
    apply(&mut record, 31, 1, 6, entry(id(1, 1)), 1);
    commit(&mut record, 32, 2, 7, entry(id(1, 1)));
    apply(&mut record, 33, 2, 7, entry(id(0, 1)), 1);
    let details: Vec<String> = check_agreement(&record)
        .into_iter()
        .map(|violation| violation.detail)
        .collect();
    assert_eq!(
        details,
        [
            "slot 6: n1 applied c1#1 but n0 applied c0#1",
            "slot 7: n2 applied c0#1 at t=33.000ms but n2 committed c1#1 there",
        ]
    );
}

#[test]
fn durability_catches_an_acknowledged_write_never_committed() {
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    complete(&mut record, 51, id(1, 2));
    let violations = check_durability(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("c1#2"), "{}", violations[0]);
    assert!(violations[0].detail.contains("never committed"));
}

#[test]
fn durability_ignores_reads_that_skip_the_log() {
    let record = correct_record();
    // c0#2 is read-only and was never committed: still fine.
    assert!(record
        .commits
        .iter()
        .all(|commit| commit.entry.request != Some(id(0, 2))));
    assert!(check_durability(&record, &SafetyOptions::default()).is_empty());
}

#[test]
fn durability_catches_an_acknowledgement_before_commit() {
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    complete(&mut record, 51, id(1, 2));
    commit(&mut record, 52, 0, 4, entry(id(1, 2)));
    let violations = check_durability(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("before its first commit"));
}

#[test]
fn speculative_acknowledgements_may_precede_the_commit_but_not_replace_it() {
    let speculative = SafetyOptions {
        speculative_acknowledgements: true,
        ..SafetyOptions::default()
    };
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    complete(&mut record, 51, id(1, 2));
    commit(&mut record, 52, 0, 4, entry(id(1, 2)));
    assert!(check_durability(&record, &speculative).is_empty());
    invoke(&mut record, 60, id(1, 3), false);
    complete(&mut record, 61, id(1, 3));
    let violations = check_durability(&record, &speculative);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("never committed"));
}

#[test]
fn durability_catches_too_few_committers() {
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    commit(&mut record, 51, 0, 4, entry(id(1, 2)));
    complete(&mut record, 52, id(1, 2));
    let majority = SafetyOptions {
        committers_required: 2,
        ..SafetyOptions::default()
    };
    assert!(check_durability(&record, &SafetyOptions::default()).is_empty());
    let violations = check_durability(&record, &majority);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("2 required"));
}

#[test]
fn durability_catches_an_acknowledged_write_lost_after_commit() {
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    commit(&mut record, 51, 0, 4, entry(id(1, 2)));
    complete(&mut record, 52, id(1, 2));
    // n0 crashed having committed alone; the others later put a no-op at slot 4.
    commit(&mut record, 60, 1, 4, noop());
    commit(&mut record, 60, 2, 4, noop());
    let violations = check_durability(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].detail.contains("was lost"),
        "{}",
        violations[0]
    );
    // Agreement sees the same run as a conflict at slot 4.
    assert!(!check_agreement(&record).is_empty());
}

#[test]
fn validity_catches_a_request_no_client_invoked() {
    let mut record = correct_record();
    commit(&mut record, 30, 0, 4, entry(id(5, 1)));
    let violations = check_validity(&record);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("no client invoked"));
}

#[test]
fn validity_catches_a_changed_command() {
    let mut record = correct_record();
    invoke(&mut record, 50, id(1, 2), false);
    let forged = Entry {
        request: Some(id(1, 2)),
        command_digest: 0xbad,
    };
    commit(&mut record, 51, 0, 4, forged);
    commit(&mut record, 51, 1, 4, forged);
    let violations = check_validity(&record);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("invoked command digest"));
}

#[test]
fn validity_catches_a_commit_before_its_invocation() {
    let mut record = correct_record();
    commit(&mut record, 50, 0, 4, entry(id(1, 2)));
    invoke(&mut record, 55, id(1, 2), false);
    let violations = check_validity(&record);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("before its invocation"));
}

#[test]
fn exactly_once_strict_catches_a_request_at_two_slots() {
    let mut record = correct_record();
    commit(&mut record, 30, 0, 4, entry(id(0, 1)));
    let strict = SafetyOptions {
        duplicate_log_entries_allowed: false,
        ..SafetyOptions::default()
    };
    let violations = check_exactly_once(&record, &strict);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("slots [2, 4]"));
}

#[test]
fn exactly_once_with_sessions_passes_a_deduplicated_retry() {
    let mut record = correct_record();
    // The retry of c0#1 lands at slot 4; the sessions skip it: the state stays as at slot 3.
    for node in 0..3 {
        commit(&mut record, 30, node, 4, entry(id(0, 1)));
        apply(&mut record, 30, node, 4, entry(id(0, 1)), 77 * 3);
    }
    let violations = check_safety(&record, &SafetyOptions::default());
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn exactly_once_with_sessions_catches_a_retry_applied_twice() {
    let mut record = correct_record();
    for node in 0..3 {
        commit(&mut record, 30, node, 4, entry(id(0, 1)));
        apply(&mut record, 30, node, 4, entry(id(0, 1)), 0xabc);
    }
    let violations = check_exactly_once(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].detail.contains("applied twice") && violations[0].detail.contains("slot 4"),
        "{}",
        violations[0]
    );
}

#[test]
fn exactly_once_catches_diverging_state_digests() {
    let mut record = correct_record();
    apply(&mut record, 40, 1, 3, entry(id(1, 1)), 0xdead);
    let violations = check_exactly_once(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(violations[0].detail.contains("slot 3: state digest"));
}

#[test]
fn exactly_once_catches_a_double_completion() {
    let mut record = correct_record();
    complete(&mut record, 40, id(0, 1));
    let violations = check_exactly_once(&record, &SafetyOptions::default());
    assert_eq!(properties(&violations), ["exactly_once".to_string()].into());
}

#[test]
fn reports_are_capped_per_property() {
    let mut record = correct_record();
    for slot in 10..100 {
        commit(&mut record, 30, 0, slot, noop());
        commit(&mut record, 30, 1, slot, entry(id(0, 1)));
    }
    let violations = check_agreement(&record);
    assert_eq!(violations.len(), VIOLATIONS_PER_PROPERTY_MAX + 1);
    assert!(violations
        .last()
        .is_some_and(|last| last.detail.contains("more")));
}

fn liveness_input() -> LivenessInput {
    LivenessInput {
        quiet_start_ns: 100 * MS,
        bound_ns: 50 * MS,
        end_ns: 300 * MS,
        correct_clients: None,
        nodes_available: 3,
        nodes_required: 2,
    }
}

#[test]
fn liveness_passes_when_open_requests_complete_in_the_bound() {
    let mut record = correct_record();
    invoke(&mut record, 90, id(1, 2), false);
    complete(&mut record, 140, id(1, 2));
    invoke(&mut record, 200, id(1, 3), false);
    complete(&mut record, 249, id(1, 3));
    let report = check_liveness(&record, &liveness_input());
    assert!(report.violations.is_empty(), "{report:#?}");
    assert_eq!(report.judged, 2);
    assert_eq!(report.skipped, None);
}

#[test]
fn liveness_catches_a_request_pending_at_the_end() {
    let mut record = correct_record();
    invoke(&mut record, 90, id(1, 2), false);
    let report = check_liveness(&record, &liveness_input());
    assert_eq!(report.violations.len(), 1, "{report:#?}");
    assert_eq!(report.violations[0].property, Property::Liveness);
    assert!(report.violations[0].detail.contains("still pending"));
}

#[test]
fn liveness_catches_a_late_completion_and_a_late_abandon() {
    let mut record = correct_record();
    invoke(&mut record, 150, id(1, 2), false);
    complete(&mut record, 201, id(1, 2));
    invoke(&mut record, 150, id(0, 3), false);
    record.abandonments.push(Abandonment {
        time_ns: 260 * MS,
        request: id(0, 3),
    });
    let report = check_liveness(&record, &liveness_input());
    assert_eq!(report.violations.len(), 2, "{report:#?}");
    assert!(report.violations[0].detail.contains("completed only"));
    assert!(report.violations[1].detail.contains("abandoned"));
}

#[test]
fn liveness_does_not_judge_what_could_not_recover() {
    let mut record = correct_record();
    invoke(&mut record, 90, id(1, 2), false);
    let minority = LivenessInput {
        nodes_available: 1,
        ..liveness_input()
    };
    let report = check_liveness(&record, &minority);
    assert!(report.violations.is_empty());
    assert!(report
        .skipped
        .is_some_and(|why| why.contains("recovery impossible")));

    let short = LivenessInput {
        end_ns: 120 * MS,
        ..liveness_input()
    };
    let report = check_liveness(&record, &short);
    assert!(report.violations.is_empty(), "{report:#?}");
    assert_eq!((report.judged, report.unjudged), (0, 1));

    let faulty_client = LivenessInput {
        correct_clients: Some([0].into()),
        ..liveness_input()
    };
    assert!(check_liveness(&record, &faulty_client)
        .violations
        .is_empty());
}

#[test]
fn liveness_leaves_requests_abandoned_early_or_cut_by_the_end_unjudged() {
    let mut record = correct_record();
    invoke(&mut record, 120, id(1, 2), false);
    record.abandonments.push(Abandonment {
        time_ns: 130 * MS,
        request: id(1, 2),
    });
    invoke(&mut record, 280, id(0, 3), false);
    // Ended before the quiet phase: not judged at all.
    invoke(&mut record, 10, id(0, 4), false);
    record.abandonments.push(Abandonment {
        time_ns: 40 * MS,
        request: id(0, 4),
    });
    let report = check_liveness(&record, &liveness_input());
    assert!(report.violations.is_empty(), "{report:#?}");
    assert_eq!(report.unjudged, 2);
}

#[test]
fn registry_reports_failing_checks_by_name() {
    let mut registry: InvariantRegistry<RunRecord> = InvariantRegistry::new();
    registry
        .register("at_most_three_nodes", |record: &RunRecord| {
            match record.commits.iter().find(|commit| commit.node >= 3) {
                Some(commit) => Err(format!("commit from n{}", commit.node)),
                None => Ok(()),
            }
        })
        .register("always_fine", |_: &RunRecord| Ok(()));
    assert_eq!(registry.names(), ["at_most_three_nodes", "always_fine"]);
    let mut record = correct_record();
    assert!(registry.check(&record).is_empty());
    commit(&mut record, 30, 7, 9, noop());
    let violations = registry.check(&record);
    assert_eq!(violations.len(), 1);
    assert_eq!(
        violations[0].to_string(),
        "invariant:at_most_three_nodes: commit from n7"
    );
}

#[test]
#[should_panic(expected = "registered twice")]
fn registry_rejects_duplicate_names() {
    let mut registry: InvariantRegistry<u32> = InvariantRegistry::new();
    registry.register("x", |_| Ok(()));
    registry.register("x", |_| Ok(()));
}

#[test]
fn node_reported_breaks_become_named_invariant_violations() {
    let mut record = correct_record();
    record.reported.push(ReportedViolation {
        time_ns: 5 * MS,
        node: 1,
        what: "election_safety: two leaders in term 4".to_string(),
    });
    record.reported.push(ReportedViolation {
        time_ns: 6 * MS,
        node: 2,
        what: "log went backwards: 5 < 7".to_string(),
    });
    let violations = check_safety(&record, &SafetyOptions::default());
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert_eq!(
        violations[0].property,
        Property::Invariant("election_safety".to_string())
    );
    assert!(violations[0].detail.contains("n1") && violations[0].detail.contains("term 4"));
    assert_eq!(
        violations[1].property,
        Property::Invariant("protocol".to_string())
    );
}
