//! Twins (Bano, Chursin, Malkhi, Spiegelman, "Twins: BFT Systems Made Robust", 2020): a
//! Byzantine node is emulated by two honest instances sharing one identity and one signing
//! key, each with its own disk. Partitions that change every round decide which instances
//! hear each other; equivocation, amnesia and withholding arise from the honest code alone.
//!
//! Every replica of a Twins run is hosted by a [`TwinsHost`], which runs one instance (or
//! two, for a twinned identity) and tags each message with the sending instance. A message
//! reaches an instance only if sender and receiver instances are in the same group of the
//! current round's partition. Client requests reach every instance; every instance answers.
//!
//! Rounds here are spans of virtual time (`round_ns`), not protocol views: the wrapper is
//! generic and cannot choose leaders. The protocol's own leader rotation decides who leads;
//! enumerating partitions over rounds whose length is near a view's covers the same ground
//! for rotating leaders. After the last round every honest instance is connected again and
//! the second instances are cut off (they behave as crashed Byzantine nodes), so liveness
//! can be judged.
//!
//! [`TwinsScenario::canonical_codes`] enumerates scenarios (partitions into at most two
//! groups per round) up to relabelling the groups and swapping the two instances of a twin.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::byzantine::Tagged;
use crate::node::{ClientId, Effect, Node, NodeCtx, NodeId};
use crate::storage::Storage;

/// A message between instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TwinMsg<M> {
    pub from_instance: u8,
    pub msg: M,
}

/// Which instances hear each other in each round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinsScenario {
    pub nodes: u32,
    /// Identities that run two instances.
    pub twins: Vec<NodeId>,
    pub round_ns: u64,
    // invariant: every round has one group (0 or 1) per instance; instance `i < nodes` is
    // the first instance of node `i`, instance `nodes + k` the second of `twins[k]`.
    pub rounds: Vec<Vec<u8>>,
}

impl TwinsScenario {
    /// Number of instances.
    pub fn instances(&self) -> usize {
        self.nodes as usize + self.twins.len()
    }

    fn index(&self, node: NodeId, instance: u8) -> Option<usize> {
        match instance {
            0 => (node.0 < self.nodes).then_some(node.0 as usize),
            _ => self
                .twins
                .iter()
                .position(|twin| *twin == node)
                .map(|k| self.nodes as usize + k),
        }
    }

    /// True if instance `a` hears instance `b` at `time_ns`.
    pub fn connected(&self, time_ns: u64, a: (NodeId, u8), b: (NodeId, u8)) -> bool {
        let (Some(left), Some(right)) = (self.index(a.0, a.1), self.index(b.0, b.1)) else {
            return false;
        };
        let round = (time_ns / self.round_ns.max(1)) as usize;
        match self.rounds.get(round) {
            Some(groups) => groups[left] == groups[right],
            // After the scenario: the first instances form one group, second ones are alone.
            None => (a.1 == 0 && b.1 == 0) || left == right,
        }
    }

    /// Scenario number `code` (see [`TwinsScenario::canonical_codes`]).
    pub fn from_code(
        nodes: u32,
        twins: Vec<NodeId>,
        rounds: u32,
        round_ns: u64,
        code: u64,
    ) -> Self {
        let instances = nodes as usize + twins.len();
        let per_round = 1u64 << (instances - 1);
        let mut rest = code;
        let rounds = (0..rounds)
            .map(|_| {
                let partition = rest % per_round;
                rest /= per_round;
                // Instance 0 is always in group 0: groups are unlabelled.
                (0..instances)
                    .map(|i| {
                        if i == 0 {
                            0
                        } else {
                            ((partition >> (i - 1)) & 1) as u8
                        }
                    })
                    .collect()
            })
            .collect();
        TwinsScenario {
            nodes,
            twins,
            round_ns,
            rounds,
        }
    }

    /// Codes of all scenarios with `rounds` rounds, one per class of scenarios equal up to
    /// swapping the two instances of twins, in increasing order. `budget` caps the count.
    pub fn canonical_codes(nodes: u32, twins: &[NodeId], rounds: u32, budget: usize) -> Vec<u64> {
        let instances = nodes as usize + twins.len();
        assert!(
            instances <= 16 && rounds <= 4,
            "scenario space too large to enumerate"
        );
        let total = (1u64 << (instances - 1)).pow(rounds);
        let mut codes = Vec::new();
        for code in 0..total {
            if codes.len() >= budget {
                break;
            }
            let scenario = Self::from_code(nodes, twins.to_vec(), rounds, 1, code);
            if scenario.is_canonical() {
                codes.push(code);
            }
        }
        codes
    }

    /// True if no swap of twin instances gives a smaller code.
    fn is_canonical(&self) -> bool {
        let own = self.signature();
        (1u32..(1 << self.twins.len())).all(|mask| {
            let mut swapped = self.clone();
            for (k, twin) in self.twins.iter().enumerate() {
                if mask & (1 << k) != 0 {
                    let (a, b) = (twin.0 as usize, self.nodes as usize + k);
                    for groups in &mut swapped.rounds {
                        groups.swap(a, b);
                    }
                }
            }
            swapped.signature() >= own
        })
    }

    /// The partitions as sets of instance sets, independent of group labels.
    fn signature(&self) -> Vec<BTreeSet<BTreeSet<usize>>> {
        self.rounds
            .iter()
            .map(|groups| {
                [0u8, 1]
                    .iter()
                    .map(|g| (0..groups.len()).filter(|i| groups[*i] == *g).collect())
                    .filter(|set: &BTreeSet<usize>| !set.is_empty())
                    .collect()
            })
            .collect()
    }
}

struct Instance<N> {
    node: N,
    /// The second instance's private disk (the first uses the node's).
    storage: Option<Storage>,
}

/// Hosts the instances of one identity in a Twins run.
pub struct TwinsHost<N: Node> {
    scenario: TwinsScenario,
    // invariant: one or two instances; index = instance number.
    instances: Vec<Instance<N>>,
}

impl<N: Node> TwinsHost<N> {
    /// Hosts `first`, and `second` if this identity is twinned.
    pub fn new(scenario: TwinsScenario, first: N, second: Option<N>) -> Self {
        let mut instances = vec![Instance {
            node: first,
            storage: None,
        }];
        if let Some(node) = second {
            instances.push(Instance {
                node,
                storage: Some(Storage::default()),
            });
        }
        TwinsHost {
            scenario,
            instances,
        }
    }

    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        instance: u8,
        handler: impl FnOnce(&mut N, &mut NodeCtx<'_, N>),
    ) {
        let Some(slot) = self.instances.get_mut(instance as usize) else {
            return;
        };
        let node = &mut slot.node;
        let effects = ctx.nest::<N>(slot.storage.as_mut(), |inner| handler(node, inner));
        if let Some(storage) = slot.storage.as_mut() {
            // A twin's private disk never crashes: its syncs complete at once.
            storage.complete_sync(storage.last_sequence());
        }
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => ctx.emit(Effect::Send {
                    to,
                    msg: TwinMsg {
                        from_instance: instance,
                        msg,
                    },
                }),
                Effect::Broadcast { msg } => ctx.emit(Effect::Broadcast {
                    msg: TwinMsg {
                        from_instance: instance,
                        msg,
                    },
                }),
                Effect::Reply { client, reply } => ctx.emit(Effect::Reply { client, reply }),
                Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                } => ctx.emit(Effect::SetTimer {
                    id,
                    delay_ns,
                    timer: Tagged { instance, timer },
                }),
                Effect::CancelTimer { id } => ctx.emit(Effect::CancelTimer { id }),
                Effect::Sync { up_to } if instance == 0 => ctx.emit(Effect::Sync { up_to }),
                Effect::Observe(obs) if instance == 0 => ctx.emit(Effect::Observe(obs)),
                Effect::Sync { .. } | Effect::Observe(_) => {}
            }
        }
    }

    fn count(&self) -> u8 {
        self.instances.len() as u8
    }
}

impl<N: Node> Node for TwinsHost<N> {
    type Msg = TwinMsg<N::Msg>;
    type Timer = Tagged<N::Timer>;
    type Request = N::Request;
    type Reply = N::Reply;
    type Obs = N::Obs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        for instance in 0..self.count() {
            self.drive(ctx, instance, |node, inner| node.on_start(inner));
        }
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        self.drive(ctx, 0, |node, inner| node.on_restart(inner));
        for instance in 1..self.count() {
            self.drive(ctx, instance, |node, inner| node.on_start(inner));
        }
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        let now_ns = ctx.now_ns();
        let me = ctx.id();
        let sender = (from, msg.from_instance);
        let hearing: Vec<u8> = (0..self.count())
            .filter(|instance| self.scenario.connected(now_ns, sender, (me, *instance)))
            .collect();
        if hearing.is_empty() {
            ctx.ignore("twins: sender instance partitioned away this round");
        }
        for instance in hearing {
            let inner_msg = msg.msg.clone();
            self.drive(ctx, instance, |node, inner| {
                node.on_message(inner, from, inner_msg)
            });
        }
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: Self::Timer) {
        let Tagged { instance, timer } = timer;
        self.drive(ctx, instance, |node, inner| node.on_timer(inner, timer));
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        for instance in 1..self.count() {
            let copy = request.clone();
            self.drive(ctx, instance, |node, inner| {
                node.on_request(inner, client, copy)
            });
        }
        self.drive(ctx, 0, |node, inner| {
            node.on_request(inner, client, request)
        });
    }

    fn check_invariants(&self) -> Result<(), String> {
        // A twinned identity is Byzantine: only single instances must keep their invariants.
        match self.instances.as_slice() {
            [only] => only.node.check_invariants(),
            _ => Ok(()),
        }
    }

    fn footprint_bytes(&self) -> u64 {
        self.instances[0].node.footprint_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_swaps_are_reduced() {
        let twins = [NodeId(0)];
        let all = 16u64.pow(2);
        let codes = TwinsScenario::canonical_codes(4, &twins, 2, usize::MAX);
        assert!(codes.len() < all as usize, "no reduction");
        assert!(
            codes.len() >= all as usize / 2,
            "over-reduced: {}",
            codes.len()
        );
        // Swapping the twins of a canonical scenario gives a non-canonical one (unless equal).
        let scenario = TwinsScenario::from_code(4, twins.to_vec(), 2, 1, codes[1]);
        assert!(scenario.is_canonical());
    }

    #[test]
    fn partitions_decide_who_hears_whom() {
        // Round 0: {n0a, n1} | {n2, n3, n0b}; afterwards: first instances together.
        let scenario = TwinsScenario {
            nodes: 4,
            twins: vec![NodeId(0)],
            round_ns: 100,
            rounds: vec![vec![0, 0, 1, 1, 1]],
        };
        let a = (NodeId(0), 0);
        let b = (NodeId(0), 1);
        assert!(scenario.connected(50, a, (NodeId(1), 0)));
        assert!(!scenario.connected(50, a, (NodeId(2), 0)));
        assert!(scenario.connected(50, b, (NodeId(3), 0)));
        assert!(
            scenario.connected(150, a, (NodeId(2), 0)),
            "healed after the last round"
        );
        assert!(
            !scenario.connected(150, b, (NodeId(2), 0)),
            "second instance cut off"
        );
        assert!(!scenario.connected(50, (NodeId(9), 0), a), "unknown node");
    }
}
