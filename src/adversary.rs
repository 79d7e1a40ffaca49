//! Who is Byzantine in a run, and how: drawn once at the start of the run from the decision
//! source (as `Knob` decisions, so a trace replays the same adversary and the shrinker can
//! zero it towards "node 0, first behaviour").
//!
//! - Profile `byzantine`: `byzantine` nodes (default f = (n-1)/3) are wrapped in a
//!   [`Byzantine`] wrapper with a typed behaviour (`--behaviour`, or drawn per node).
//! - Profile `twins`: `byzantine` identities (default f) run as twins; the scenario (which
//!   instances hear each other in each of [`TWINS_ROUNDS`] rounds) is drawn from the
//!   enumerated scenarios, reduced by twin swaps, and so is the leader rotation order.
//! - Any other profile: nobody is Byzantine.

use std::collections::BTreeSet;

use dst_sim::decision::{Decide, DecisionKind, DecisionSource};
use dst_sim::{Adversarial, Behaviour, Byzantine, Node, NodeId, TwinsHost, TwinsScenario, MS};

/// Rounds of a Twins scenario.
pub const TWINS_ROUNDS: u32 = 3;
/// Length of one Twins round: a few view-change timeouts of the BFT protocols.
pub const TWINS_ROUND_NS: u64 = 400 * MS;
/// Scenarios enumerated per Twins configuration (the seed picks one).
pub const TWINS_BUDGET: usize = 100_000;
/// Leader rotation orders a Twins run draws from (seeds of `dst_protocols::leaders`; more
/// than the n! orders of the clusters we run).
pub const LEADER_ORDERS: u64 = 1 << 20;

/// The adversary of one run.
#[derive(Clone, Debug, Default)]
pub struct Adversary {
    /// Byzantine identities (wrapped or twinned).
    pub byzantine: BTreeSet<NodeId>,
    /// The behaviour of each wrapped node (profile `byzantine`).
    pub behaviours: Vec<(NodeId, Behaviour)>,
    /// The scenario (profile `twins`).
    pub twins: Option<TwinsScenario>,
    /// Seed of the leader rotation order (profile `twins`; 0: `0, 1, ..., n-1`): which
    /// replica, twinned or not, leads which view (`dst_protocols::leaders`).
    pub leader_order: u64,
}

impl Adversary {
    /// What was drawn, for the run's log.
    pub fn knobs(&self) -> Vec<(String, String)> {
        let mut knobs = Vec::new();
        for (node, behaviour) in &self.behaviours {
            knobs.push((format!("byzantine_{node}"), behaviour_name(behaviour)));
        }
        if let Some(scenario) = &self.twins {
            let twins: Vec<String> = scenario.twins.iter().map(|n| n.to_string()).collect();
            knobs.push(("twins".into(), twins.join(",")));
            knobs.push(("twins_rounds".into(), format!("{:?}", scenario.rounds)));
            knobs.push(("leader_order".into(), self.leader_order.to_string()));
        }
        knobs
    }

    /// `config` with the drawn leader order, unless the run set `leader_order` itself.
    pub fn configure<C: dst_protocols::Configurable>(
        &self,
        mut config: C,
        options: &[(String, String)],
    ) -> C {
        let explicit = options.iter().any(|(name, _)| name == "leader_order");
        if self.leader_order != 0 && !explicit {
            config
                .set_option("leader_order", &self.leader_order.to_string())
                .expect("every leader-based BFT protocol takes leader_order");
        }
        config
    }

    /// Wraps honest nodes: Byzantine ones get their behaviour, the others pass through.
    pub fn byzantine_factory<N: Adversarial>(
        &self,
        mut make: impl FnMut(NodeId) -> N + 'static,
    ) -> Box<dyn FnMut(NodeId) -> Byzantine<N>> {
        let behaviours = self.behaviours.clone();
        Box::new(move |id| {
            let behaviour = behaviours
                .iter()
                .find(|(node, _)| *node == id)
                .map_or(Behaviour::Honest, |(_, behaviour)| behaviour.clone());
            let twin = (behaviour == Behaviour::Equivocate).then(|| make(id));
            Byzantine::new(behaviour, make(id), twin)
        })
    }

    /// Hosts every node for a Twins run.
    pub fn twins_factory<N: Node>(
        &self,
        mut make: impl FnMut(NodeId) -> N + 'static,
    ) -> Box<dyn FnMut(NodeId) -> TwinsHost<N>> {
        let scenario = self.twins.clone().expect("a twins run has a scenario");
        Box::new(move |id| {
            let twin = scenario.twins.contains(&id).then(|| make(id));
            TwinsHost::new(scenario.clone(), make(id), twin)
        })
    }
}

fn behaviour_name(behaviour: &Behaviour) -> String {
    match behaviour {
        Behaviour::Honest => "honest",
        Behaviour::Silent => "silent",
        Behaviour::Withhold { .. } => "withhold",
        Behaviour::Equivocate => "equivocate",
        Behaviour::Replay { .. } => "replay",
        Behaviour::Forge { .. } => "forge",
        Behaviour::Lie => "lie",
    }
    .to_string()
}

/// Checks the adversary options of a run (bad input is an error, never a panic).
pub fn validate(
    profile: &str,
    nodes: u32,
    byzantine: Option<u32>,
    behaviour: Option<&str>,
) -> Result<(), String> {
    let adversarial = matches!(profile, "byzantine" | "twins");
    if profile == "twins" && nodes + byzantine.unwrap_or((nodes.saturating_sub(1)) / 3) > 16 {
        return Err(format!(
            "--profile twins supports at most 16 instances, not {nodes} nodes plus twins"
        ));
    }
    if !adversarial && (byzantine.is_some() || behaviour.is_some()) {
        return Err("--byzantine and --behaviour need --profile byzantine or twins".into());
    }
    if let Some(count) = byzantine {
        if count >= nodes {
            return Err(format!(
                "--byzantine {count} leaves no correct replica among {nodes}"
            ));
        }
        if profile == "twins" && (count > 2 || nodes + count > 16) {
            return Err(
                "--profile twins supports at most 2 twinned identities and 16 instances".into(),
            );
        }
    }
    if let Some(name) = behaviour {
        if profile == "twins" {
            return Err("--behaviour applies to --profile byzantine, not twins".into());
        }
        Behaviour::named(name, NodeId(0), nodes)?;
    }
    Ok(())
}

/// Draws the adversary of a run (after the profile's own knobs).
pub fn draw(
    profile: &str,
    nodes: u32,
    byzantine: Option<u32>,
    behaviour: Option<&str>,
    decisions: &mut dyn DecisionSource,
) -> Adversary {
    let count = byzantine.unwrap_or(nodes.saturating_sub(1) / 3);
    match profile {
        "byzantine" => {
            let chosen = choose_nodes(nodes, count, decisions);
            let behaviours = chosen
                .iter()
                .map(|&node| {
                    let name = match behaviour {
                        Some(name) => name,
                        None => {
                            let names = Behaviour::NAMES;
                            names[decisions.below(DecisionKind::Knob, names.len() as u64) as usize]
                        }
                    };
                    let behaviour = Behaviour::named(name, node, nodes).expect("validated");
                    (node, behaviour)
                })
                .collect();
            Adversary {
                byzantine: chosen.into_iter().collect(),
                behaviours,
                twins: None,
                leader_order: 0,
            }
        }
        "twins" => {
            let twins = choose_nodes(nodes, count, decisions);
            let code = twins_code(nodes, &twins, decisions);
            let scenario =
                TwinsScenario::from_code(nodes, twins.clone(), TWINS_ROUNDS, TWINS_ROUND_NS, code);
            // Twins gets its power from choosing who leads when (a twin first, say); zeroed,
            // the draw is the plain rotation.
            let leader_order = decisions.below(DecisionKind::Knob, LEADER_ORDERS);
            Adversary {
                byzantine: twins.into_iter().collect(),
                behaviours: Vec::new(),
                twins: Some(scenario),
                leader_order,
            }
        }
        _ => Adversary::default(),
    }
}

/// A scenario code: one of the enumerated canonical scenarios when there are few enough,
/// else a uniform draw (symmetry reduction only pays when enumerating).
fn twins_code(nodes: u32, twins: &[NodeId], decisions: &mut dyn DecisionSource) -> u64 {
    let instances = nodes + twins.len() as u32;
    let total = (1u64 << (instances - 1)).pow(TWINS_ROUNDS);
    if total <= 4 * TWINS_BUDGET as u64 {
        let codes = TwinsScenario::canonical_codes(nodes, twins, TWINS_ROUNDS, TWINS_BUDGET);
        codes[decisions.below(DecisionKind::Knob, codes.len() as u64) as usize]
    } else {
        decisions.below(DecisionKind::Knob, total)
    }
}

/// `count` distinct nodes; zeroed decisions pick the lowest ids (node 0 leads view 0).
fn choose_nodes(nodes: u32, count: u32, decisions: &mut dyn DecisionSource) -> Vec<NodeId> {
    let mut free: Vec<NodeId> = (0..nodes).map(NodeId).collect();
    let mut chosen: Vec<NodeId> = (0..count.min(nodes))
        .map(|_| free.remove(decisions.below(DecisionKind::Knob, free.len() as u64) as usize))
        .collect();
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use dst_hotstuff::HotStuffConfig;
    use dst_sim::SeededSource;

    #[test]
    fn twins_runs_draw_leader_orders_and_an_explicit_option_wins() {
        let orders: BTreeSet<u64> = (0..20)
            .map(|seed| draw("twins", 4, None, None, &mut SeededSource::new(seed)).leader_order)
            .collect();
        assert!(orders.len() > 10, "twins runs choose who leads: {orders:?}");
        let byzantine = draw("byzantine", 4, None, None, &mut SeededSource::new(1));
        assert_eq!(byzantine.leader_order, 0, "only Twins reorders leaders");

        let adversary = Adversary {
            leader_order: 77,
            ..Adversary::default()
        };
        let drawn = adversary.configure(HotStuffConfig::default(), &[]);
        assert_eq!(drawn.leader_order, 77);
        let explicit = vec![("leader_order".to_string(), "5".to_string())];
        let config = HotStuffConfig {
            leader_order: 5,
            ..HotStuffConfig::default()
        };
        assert_eq!(adversary.configure(config, &explicit).leader_order, 5);
    }
}
