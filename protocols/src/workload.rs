//! Workloads: deterministic generators of client commands.
//!
//! A workload draws every choice through [`Draw`] (a client context's `random_below` in a
//! simulation, a seeded source in tests), so one seed gives one command stream. It decides
//! what to send next and how long to think before sending; the client decides when (one
//! request outstanding at a time). A workload may look at each output to shape later
//! commands (a compare-and-set expecting the value last read).
//!
//! Key-value workloads are configured by integer weights (no floats on the decision path):
//! few keys for high contention, a read share, a register variant (one key, get and put
//! only), and bursts (back-to-back requests, then a pause).

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;

use dst_sim::decision::{Decide, DecisionKind};
use dst_sim::{Client, ClientCtx, SeededSource};

use crate::kv::{KvCommand, KvOutput};
use crate::text::push_digits;

/// A source of uniform integers.
pub trait Draw {
    /// Uniform in `0..bound` (0 when `bound <= 1`).
    fn below(&mut self, bound: u64) -> u64;
}

impl<C: Client + ?Sized> Draw for ClientCtx<'_, C> {
    fn below(&mut self, bound: u64) -> u64 {
        self.random_below(bound)
    }
}

impl Draw for SeededSource {
    fn below(&mut self, bound: u64) -> u64 {
        Decide::below(self, DecisionKind::ClientRandom, bound)
    }
}

/// The next command and how long to wait before sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step<C> {
    pub command: C,
    pub think_ns: u64,
}

/// A deterministic command generator for one client.
pub trait Workload: 'static {
    type Command;
    type Output;
    /// The next command, or `None` when the workload is finished.
    fn next_step(&mut self, draw: &mut dyn Draw) -> Option<Step<Self::Command>>;
    /// The output a completed command returned.
    fn observe(&mut self, _command: &Self::Command, _output: &Self::Output) {}
}

/// Back-to-back requests, then a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    /// Requests per burst, sent with no think time.
    pub length: u32,
    /// Think time after each burst.
    pub pause_ns: u64,
}

/// Shape of a key-value workload. Weights are relative; all zero means only reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvWorkloadConfig {
    /// Commands this client issues in total.
    pub requests: u64,
    /// Keys are `k0 .. k{keys-1}`; few keys mean high contention.
    pub keys: u32,
    pub get_weight: u32,
    pub put_weight: u32,
    pub append_weight: u32,
    pub cas_weight: u32,
    /// Think time before each request is uniform in `0..=think_ns_max` (without bursts).
    pub think_ns_max: u64,
    pub burst: Option<Burst>,
}

impl KvWorkloadConfig {
    /// Few keys, every command kind, half reads: the default stress for linearizability.
    pub fn contention(requests: u64) -> Self {
        KvWorkloadConfig {
            requests,
            keys: 3,
            get_weight: 4,
            put_weight: 2,
            append_weight: 1,
            cas_weight: 1,
            think_ns_max: 2 * dst_sim::MS,
            burst: None,
        }
    }

    /// One key, get and put only (a read/write register).
    pub fn register(requests: u64) -> Self {
        KvWorkloadConfig {
            keys: 1,
            get_weight: 1,
            put_weight: 1,
            append_weight: 0,
            cas_weight: 0,
            ..Self::contention(requests)
        }
    }

    /// Sets the read share to `reads_per_mille / 1000`, keeping the write mix.
    pub fn with_reads_per_mille(mut self, reads_per_mille: u32) -> Self {
        let reads_per_mille = reads_per_mille.min(1000);
        let writes = self.put_weight + self.append_weight + self.cas_weight;
        if writes == 0 {
            self.put_weight = 1;
        }
        let writes = (self.put_weight + self.append_weight + self.cas_weight).max(1);
        // get / (get + writes) = r / 1000, scaled so writes keep their proportions.
        self.put_weight *= 1000 - reads_per_mille;
        self.append_weight *= 1000 - reads_per_mille;
        self.cas_weight *= 1000 - reads_per_mille;
        self.get_weight = reads_per_mille * writes;
        self
    }

    /// Sends requests in bursts.
    pub fn with_burst(mut self, burst: Burst) -> Self {
        self.burst = Some(burst);
        self
    }
}

/// A key-value workload for one client. Written values are unique (`"<client>.<n>"`), so a
/// history shows which write a read saw.
#[derive(Clone, Debug)]
pub struct KvWorkload {
    config: KvWorkloadConfig,
    client: u32,
    issued: u64,
    /// Last value this client saw per key (from reads and its own writes), for `Cas`.
    seen: BTreeMap<String, Option<String>>,
}

impl KvWorkload {
    /// The workload of client `client`.
    pub fn new(client: u32, config: KvWorkloadConfig) -> Self {
        KvWorkload {
            config,
            client,
            issued: 0,
            seen: BTreeMap::new(),
        }
    }

    /// Commands issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    fn think_ns(&mut self, draw: &mut dyn Draw) -> u64 {
        match self.config.burst {
            Some(burst) if burst.length > 0 => {
                let first_of_burst = (self.issued - 1).is_multiple_of(u64::from(burst.length));
                if first_of_burst && self.issued > 1 {
                    burst.pause_ns
                } else {
                    0
                }
            }
            _ => draw.below(self.config.think_ns_max.saturating_add(1)),
        }
    }

    fn command(&mut self, draw: &mut dyn Draw) -> KvCommand {
        let config = &self.config;
        // Built by hand: `format!` cost more than the rest of choosing a command.
        let mut key = String::with_capacity(8);
        key.push('k');
        push_digits(&mut key, draw.below(u64::from(config.keys.max(1))), 10, 1);
        let mut value = String::with_capacity(16);
        push_digits(&mut value, u64::from(self.client), 10, 1);
        value.push('.');
        push_digits(&mut value, self.issued, 10, 1);
        let weights = [
            config.get_weight,
            config.put_weight,
            config.append_weight,
            config.cas_weight,
        ];
        let total: u64 = weights.iter().map(|&weight| u64::from(weight)).sum();
        let mut pick = draw.below(total.max(1));
        let mut kind = 0;
        for (index, &weight) in weights.iter().enumerate() {
            if pick < u64::from(weight) {
                kind = index;
                break;
            }
            pick -= u64::from(weight);
        }
        match kind {
            1 => KvCommand::Put { key, value },
            2 => KvCommand::Append {
                key,
                value: format!("{value};"),
            },
            3 => {
                let expected = self.seen.get(&key).cloned().flatten();
                KvCommand::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
            _ => KvCommand::Get { key },
        }
    }
}

impl Workload for KvWorkload {
    type Command = KvCommand;
    type Output = KvOutput;

    fn next_step(&mut self, draw: &mut dyn Draw) -> Option<Step<KvCommand>> {
        if self.issued >= self.config.requests {
            return None;
        }
        self.issued += 1;
        let think_ns = self.think_ns(draw);
        let command = self.command(draw);
        Some(Step { command, think_ns })
    }

    fn observe(&mut self, command: &KvCommand, output: &KvOutput) {
        let seen = match (command, output) {
            (KvCommand::Get { .. }, KvOutput::Value(value)) => value.clone(),
            (KvCommand::Put { value, .. }, _) => Some(value.clone()),
            (KvCommand::Cas { new, .. }, KvOutput::Swapped(true)) => Some(new.clone()),
            // Appends and failed swaps leave the value unknown to this client.
            _ => return,
        };
        self.seen.insert(command.key().to_string(), seen);
    }
}

/// A fixed list of commands, sent in order with fixed think times: what property tests
/// generate and shrink. `O` is the output type of the service it drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedWorkload<C, O> {
    steps: VecDeque<Step<C>>,
    _output: PhantomData<fn(O)>,
}

impl<C, O> ScriptedWorkload<C, O> {
    /// A workload sending `steps` in order.
    pub fn new(steps: Vec<Step<C>>) -> Self {
        ScriptedWorkload {
            steps: steps.into(),
            _output: PhantomData,
        }
    }

    /// Steps not sent yet.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }
}

impl<C: 'static, O: 'static> Workload for ScriptedWorkload<C, O> {
    type Command = C;
    type Output = O;

    fn next_step(&mut self, _draw: &mut dyn Draw) -> Option<Step<C>> {
        self.steps.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(workload: &mut KvWorkload, seed: u64) -> Vec<Step<KvCommand>> {
        let mut source = SeededSource::new(seed);
        std::iter::from_fn(|| workload.next_step(&mut source)).collect()
    }

    fn reads(steps: &[Step<KvCommand>]) -> usize {
        steps
            .iter()
            .filter(|step| step.command.is_read_only())
            .count()
    }

    #[test]
    fn a_workload_is_deterministic_and_finite() {
        let config = KvWorkloadConfig::contention(200);
        let one = drain(&mut KvWorkload::new(1, config.clone()), 9);
        let two = drain(&mut KvWorkload::new(1, config.clone()), 9);
        let other = drain(&mut KvWorkload::new(1, config), 10);
        assert_eq!(one.len(), 200);
        assert_eq!(one, two);
        assert_ne!(one, other);
    }

    #[test]
    fn contention_uses_few_keys_and_every_kind() {
        let steps = drain(
            &mut KvWorkload::new(0, KvWorkloadConfig::contention(400)),
            1,
        );
        let keys: std::collections::BTreeSet<&str> =
            steps.iter().map(|step| step.command.key()).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        let kinds: std::collections::BTreeSet<u8> = steps
            .iter()
            .map(|step| match step.command {
                KvCommand::Get { .. } => 0,
                KvCommand::Put { .. } => 1,
                KvCommand::Append { .. } => 2,
                KvCommand::Cas { .. } => 3,
            })
            .collect();
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn register_is_one_key_get_and_put() {
        let steps = drain(&mut KvWorkload::new(0, KvWorkloadConfig::register(300)), 2);
        assert!(steps.iter().all(|step| step.command.key() == "k0"));
        assert!(steps
            .iter()
            .all(|step| matches!(step.command, KvCommand::Get { .. } | KvCommand::Put { .. })));
    }

    #[test]
    fn read_share_follows_the_configuration() {
        for (per_mille, low, high) in [(0, 0, 0), (900, 850, 950), (1000, 1000, 1000)] {
            let config = KvWorkloadConfig::contention(1000).with_reads_per_mille(per_mille);
            let steps = drain(&mut KvWorkload::new(0, config), 3);
            let count = reads(&steps);
            assert!(
                (low..=high).contains(&count),
                "{per_mille} per mille: {count} reads"
            );
        }
    }

    #[test]
    fn bursts_send_back_to_back_then_pause() {
        let burst = Burst {
            length: 4,
            pause_ns: 7,
        };
        let config = KvWorkloadConfig::contention(12).with_burst(burst);
        let steps = drain(&mut KvWorkload::new(0, config), 4);
        let thinks: Vec<u64> = steps.iter().map(|step| step.think_ns).collect();
        assert_eq!(thinks, [0, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0]);
    }

    #[test]
    fn cas_expects_the_value_last_seen() {
        let config = KvWorkloadConfig {
            keys: 1,
            get_weight: 0,
            put_weight: 0,
            append_weight: 0,
            cas_weight: 1,
            ..KvWorkloadConfig::contention(3)
        };
        let mut workload = KvWorkload::new(5, config);
        let mut source = SeededSource::new(0);
        let first = workload.next_step(&mut source).expect("three requests");
        assert!(matches!(
            &first.command,
            KvCommand::Cas { expected: None, .. }
        ));
        workload.observe(
            &KvCommand::Get {
                key: "k0".to_string(),
            },
            &KvOutput::Value(Some("x".to_string())),
        );
        let second = workload.next_step(&mut source).expect("three requests");
        assert!(
            matches!(&second.command, KvCommand::Cas { expected: Some(value), new, .. }
                if value == "x" && new == "5.2"),
            "{second:?}"
        );
    }
}
