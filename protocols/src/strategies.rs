//! Proptest strategies for workloads and scripted fault plans (feature `proptest`).
//!
//! Property tests of any protocol draw a script of commands and a fault plan from these;
//! when a property fails, proptest shrinks both: fewer commands, fewer faults, smaller
//! values, earlier times. Plans are produced in the simulator's plan syntax
//! (`dst_sim::parse_plan`), so a shrunk counterexample can be pasted into `dst run --plan`.

use std::ops::Range;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::kv::KvCommand;
use crate::workload::{Burst, KvWorkloadConfig, Step};

/// A key among `k0 .. k{keys-1}`.
pub fn kv_key(keys: u32) -> impl Strategy<Value = String> {
    (0..keys.max(1)).prop_map(|key| format!("k{key}"))
}

/// A short non-empty value (the linearizability model reads an absent key as `""`).
pub fn kv_value() -> impl Strategy<Value = String> {
    (0u32..1000).prop_map(|value| format!("v{value}"))
}

/// Any key-value command over `keys` keys.
pub fn kv_command(keys: u32) -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        kv_key(keys).prop_map(|key| KvCommand::Get { key }),
        (kv_key(keys), kv_value()).prop_map(|(key, value)| KvCommand::Put { key, value }),
        (kv_key(keys), kv_value()).prop_map(|(key, value)| KvCommand::Append { key, value }),
        (kv_key(keys), option::of(kv_value()), kv_value())
            .prop_map(|(key, expected, new)| KvCommand::Cas { key, expected, new }),
    ]
}

/// A script of up to `steps_max` commands with think times up to `think_ns_max`, for
/// [`crate::workload::ScriptedWorkload`].
pub fn kv_script(
    keys: u32,
    steps_max: usize,
    think_ns_max: u64,
) -> impl Strategy<Value = Vec<Step<KvCommand>>> {
    vec((kv_command(keys), 0..=think_ns_max), 0..=steps_max).prop_map(|steps| {
        steps
            .into_iter()
            .map(|(command, think_ns)| Step { command, think_ns })
            .collect()
    })
}

/// A key-value workload shape with at most `requests_max` requests per client.
pub fn kv_workload_config(requests_max: u64) -> impl Strategy<Value = KvWorkloadConfig> {
    let weights = (0u32..5, 0u32..5, 0u32..5, 0u32..5);
    let burst = option::of(
        (1u32..8, 0u64..20_000_000).prop_map(|(length, pause_ns)| Burst { length, pause_ns }),
    );
    (0..=requests_max, 1u32..6, weights, 0u64..5_000_000, burst).prop_map(
        |(requests, keys, (get, put, append, cas), think_ns_max, burst)| KvWorkloadConfig {
            requests,
            keys,
            get_weight: get,
            put_weight: put,
            append_weight: append,
            cas_weight: cas,
            think_ns_max,
            burst,
        },
    )
}

/// One scripted fault, in plan syntax, for a cluster of `nodes`.
pub fn fault_action(nodes: u32) -> impl Strategy<Value = String> {
    fault_action_on(nodes, 0..nodes.max(2))
}

/// One scripted fault in a cluster of `nodes` whose crashes and pauses hit only `targets`
/// (partitions may split any nodes).
pub fn fault_action_on(nodes: u32, targets: Range<u32>) -> impl Strategy<Value = String> {
    let nodes = nodes.max(2);
    assert!(
        targets.start < targets.end && targets.end <= nodes,
        "fault targets {targets:?} must be a non-empty range of the {nodes} nodes"
    );
    let node = targets;
    // A proper, non-empty subset of the nodes: one side of a partition.
    let side = 1u64..((1u64 << nodes.min(16)) - 1);
    prop_oneof![
        node.clone().prop_map(|node| format!("crash {node}")),
        node.clone().prop_map(|node| format!("restart {node}")),
        node.clone().prop_map(|node| format!("pause {node}")),
        node.prop_map(|node| format!("resume {node}")),
        side.prop_map(move |mask| partition(nodes, mask)),
        Just("heal".to_string()),
    ]
}

fn partition(nodes: u32, mask: u64) -> String {
    let (left, right): (Vec<u32>, Vec<u32>) =
        (0..nodes.min(16)).partition(|node| mask & (1 << node) != 0);
    let join = |side: Vec<u32>| {
        side.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("partition {} | {}", join(left), join(right))
}

/// A plan of up to `faults_max` faults at times below `horizon_ms`, in time order.
pub fn fault_plan(nodes: u32, horizon_ms: u64, faults_max: usize) -> impl Strategy<Value = String> {
    fault_plan_on(nodes, 0..nodes.max(2), horizon_ms, faults_max)
}

/// [`fault_plan`] whose crashes and pauses hit only `targets`.
pub fn fault_plan_on(
    nodes: u32,
    targets: Range<u32>,
    horizon_ms: u64,
    faults_max: usize,
) -> impl Strategy<Value = String> {
    let fault = (0..horizon_ms.max(1), fault_action_on(nodes, targets));
    vec(fault, 0..=faults_max).prop_map(|mut faults| {
        faults.sort_by_key(|(time_ms, _)| *time_ms);
        faults
            .iter()
            .map(|(time_ms, action)| format!("at {time_ms}ms {action}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dst_sim::{ClientId, SeededSource, StateMachine};

    use super::*;
    use crate::api::Request;
    use crate::kv::KvStore;
    use crate::sessions::Sessions;
    use crate::workload::{KvWorkload, Workload};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn snapshot_restore_continues_like_the_original(
            before in vec(kv_command(3), 0..30),
            after in vec(kv_command(3), 0..10),
        ) {
            let mut original = KvStore::new();
            for command in &before {
                original.apply(command);
            }
            let mut restored = KvStore::restore(&original.snapshot()).expect("restores");
            for command in &after {
                prop_assert_eq!(original.apply(command), restored.apply(command));
            }
            prop_assert_eq!(original.digest(), restored.digest());
        }

        #[test]
        fn sessions_apply_retries_once(
            commands in vec((0u32..3, kv_command(2), 0usize..3), 0..40),
        ) {
            // Each client's requests, each delivered 1 to 3 times in a row (retries).
            let mut sessions = Sessions::new(KvStore::new());
            let mut plain = KvStore::new();
            let mut sequences: BTreeMap<u32, u64> = BTreeMap::new();
            for (client, command, repeats) in commands {
                let sequence = sequences.entry(client).or_insert(0);
                *sequence += 1;
                let request = Request { client: ClientId(client), sequence: *sequence, command };
                let expected = plain.apply(&request.command);
                for _ in 0..=repeats {
                    let output = sessions.apply(&request).into_output();
                    prop_assert_eq!(output.as_ref(), Some(&expected));
                }
            }
            prop_assert_eq!(sessions.service(), &plain);
        }

        #[test]
        fn generated_workloads_issue_exactly_their_requests(
            config in kv_workload_config(50),
            seed in any::<u64>(),
        ) {
            let mut workload = KvWorkload::new(1, config.clone());
            let mut source = SeededSource::new(seed);
            let steps: Vec<_> = std::iter::from_fn(|| workload.next_step(&mut source)).collect();
            prop_assert_eq!(steps.len() as u64, config.requests);
            prop_assert!(steps.iter().all(|step| step.command.key().starts_with('k')));
        }

        #[test]
        fn generated_plans_parse(plan in fault_plan(5, 2_000, 8)) {
            let parsed = dst_sim::parse_plan(&plan);
            prop_assert!(parsed.is_ok(), "{plan:?}: {parsed:?}");
        }
    }
}
