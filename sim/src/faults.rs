//! Fault plans: named profiles whose random fault process the seed drives, hand-written
//! scripted plans for regression tests, and the quiet phase that ends every run.

use serde::{Deserialize, Serialize};

use crate::decision::{Decide, DecisionKind, DecisionSource};
use crate::net::{Latency, LinkConfig, PPM};
use crate::node::NodeId;
use crate::storage::StorageFaults;
use crate::time::{fmt_ms, MS};

/// One fault, applied at a point in virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultAction {
    /// Symmetric partition: links between different groups are cut both ways.
    Partition {
        groups: Vec<Vec<NodeId>>,
    },
    /// Cut the links from every node of `from` to every node of `to`, one way.
    OneWay {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
    },
    /// Cut individual links both ways (a partial, non-clique partition).
    Cut {
        links: Vec<(NodeId, NodeId)>,
    },
    /// Restore the given directed links.
    Restore {
        links: Vec<(NodeId, NodeId)>,
    },
    /// Restore every link and release every clog.
    Heal,
    /// Hold everything sent from -> to for a while.
    Clog {
        from: NodeId,
        to: NodeId,
        duration_ns: u64,
    },
    /// Release a clog.
    Unclog {
        from: NodeId,
        to: NodeId,
    },
    Crash(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    Resume(NodeId),
    /// Lose the node's disk and restart it empty.
    Wipe(NodeId),
    ClockJump {
        node: NodeId,
        delta_ns: i64,
    },
    ClockDrift {
        node: NodeId,
        drift_ppm: i64,
    },
    /// Faults stop, the network heals, every node comes back: liveness is judged from here.
    Quiet,
}

impl FaultAction {
    /// Every node the action names.
    pub fn nodes(&self) -> Vec<NodeId> {
        match self {
            FaultAction::Partition { groups } => groups.concat(),
            FaultAction::OneWay { from, to } => [from.as_slice(), to.as_slice()].concat(),
            FaultAction::Cut { links } | FaultAction::Restore { links } => {
                links.iter().flat_map(|&(a, b)| [a, b]).collect()
            }
            FaultAction::Clog { from, to, .. } | FaultAction::Unclog { from, to } => {
                vec![*from, *to]
            }
            FaultAction::Crash(n)
            | FaultAction::Restart(n)
            | FaultAction::Pause(n)
            | FaultAction::Resume(n)
            | FaultAction::Wipe(n) => vec![*n],
            FaultAction::ClockJump { node, .. } | FaultAction::ClockDrift { node, .. } => {
                vec![*node]
            }
            FaultAction::Heal | FaultAction::Quiet => Vec::new(),
        }
    }
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |nodes: &[NodeId]| {
            nodes
                .iter()
                .map(|n| n.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            FaultAction::Partition { groups } => {
                let parts: Vec<String> = groups.iter().map(|g| ids(g)).collect();
                write!(formatter, "partition {}", parts.join(" | "))
            }
            FaultAction::OneWay { from, to } => {
                write!(formatter, "oneway {} -> {}", ids(from), ids(to))
            }
            FaultAction::Cut { links } => {
                let parts: Vec<String> = links
                    .iter()
                    .map(|(a, b)| format!("{}-{}", a.0, b.0))
                    .collect();
                write!(formatter, "cut {}", parts.join(" "))
            }
            FaultAction::Restore { links } => write!(formatter, "restore {} links", links.len()),
            FaultAction::Heal => write!(formatter, "heal"),
            FaultAction::Clog {
                from,
                to,
                duration_ns,
            } => write!(
                formatter,
                "clog {}->{} for {}",
                from.0,
                to.0,
                fmt_ms(*duration_ns)
            ),
            FaultAction::Unclog { from, to } => write!(formatter, "unclog {}->{}", from.0, to.0),
            FaultAction::Crash(n) => write!(formatter, "crash {}", n.0),
            FaultAction::Restart(n) => write!(formatter, "restart {}", n.0),
            FaultAction::Pause(n) => write!(formatter, "pause {}", n.0),
            FaultAction::Resume(n) => write!(formatter, "resume {}", n.0),
            FaultAction::Wipe(n) => write!(formatter, "wipe {}", n.0),
            FaultAction::ClockJump { node, delta_ns } => {
                write!(formatter, "jump {} {}ms", node.0, delta_ns / MS as i64)
            }
            FaultAction::ClockDrift { node, drift_ppm } => {
                write!(formatter, "drift {} {}", node.0, drift_ppm)
            }
            FaultAction::Quiet => write!(formatter, "quiet"),
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedFault {
    pub at_ns: u64,
    pub action: FaultAction,
}

/// Relative weights of the random fault kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWeights {
    pub partition: u64,
    pub one_way: u64,
    pub partial: u64,
    pub crash: u64,
    pub pause: u64,
    pub clog: u64,
    pub swizzle: u64,
    pub clock_jump: u64,
    /// A node loses its whole disk (a replaced machine) and restarts empty. Off in every
    /// profile but `wipes`: a wiped node is only recoverable by protocols that re-admit a
    /// machine as a new member (Raft's membership changes).
    #[serde(default)]
    pub wipe: u64,
}

impl FaultWeights {
    fn total(&self) -> u64 {
        self.partition
            + self.one_way
            + self.partial
            + self.crash
            + self.pause
            + self.clog
            + self.swizzle
            + self.clock_jump
            + self.wipe
    }
}

/// A fault profile: link fault rates, storage faults, and a random fault process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultProfile {
    pub name: String,
    pub link: LinkConfig,
    pub storage: StorageFaults,
    /// Mean virtual time between random fault events; 0 turns the process off.
    pub fault_interval_ns: u64,
    pub weights: FaultWeights,
    /// How long a partition, pause, clog or crash lasts: uniform in this range.
    pub fault_duration_min_ns: u64,
    pub fault_duration_max_ns: u64,
    /// Per-node clock drift is drawn uniformly in `-drift_ppm_max..=drift_ppm_max`.
    pub drift_ppm_max: u64,
    /// Clock jumps are drawn uniformly in `-jump_ns_max..=jump_ns_max`.
    pub jump_ns_max: u64,
}

/// The profile names `dst` accepts.
pub const PROFILE_NAMES: [&str; 11] = [
    "none",
    "light",
    "heavy",
    "partitions",
    "clocks",
    "storage",
    "corruption",
    "swarm",
    "wipes",
    "byzantine",
    "twins",
];

impl FaultProfile {
    fn quiet_base(name: &str) -> FaultProfile {
        FaultProfile {
            name: name.to_string(),
            link: LinkConfig::default(),
            storage: StorageFaults::default(),
            fault_interval_ns: 0,
            weights: FaultWeights::default(),
            fault_duration_min_ns: 50 * MS,
            fault_duration_max_ns: 1000 * MS,
            drift_ppm_max: 0,
            jump_ns_max: 0,
        }
    }

    /// A named profile; `swarm` draws its knobs from the decision source.
    pub fn named(name: &str, decisions: &mut dyn DecisionSource) -> Result<FaultProfile, String> {
        let mut profile = FaultProfile::quiet_base(name);
        match name {
            // Twins runs get their partitions from the Twins scenario.
            "none" | "twins" => {}
            // Byzantine runs: the typed adversaries on top of a lightly faulty network.
            "light" | "byzantine" => {
                profile.link.loss_ppm = 5_000;
                profile.link.duplicate_ppm = 2_000;
                profile.link.reorder_ppm = 5_000;
                profile.fault_interval_ns = 1000 * MS;
                profile.weights = FaultWeights {
                    partition: 2,
                    crash: 2,
                    pause: 1,
                    clog: 1,
                    ..FaultWeights::default()
                };
                profile.drift_ppm_max = 100;
            }
            "heavy" => {
                profile.link.latency = Latency::Exponential {
                    min_ns: MS,
                    mean_ns: 5 * MS,
                    max_ns: 200 * MS,
                };
                profile.link.loss_ppm = 50_000;
                profile.link.duplicate_ppm = 20_000;
                profile.link.reorder_ppm = 50_000;
                profile.fault_interval_ns = 250 * MS;
                profile.weights = FaultWeights {
                    partition: 3,
                    one_way: 2,
                    partial: 2,
                    crash: 3,
                    pause: 2,
                    clog: 2,
                    swizzle: 1,
                    clock_jump: 1,
                    wipe: 0,
                };
                profile.storage.crash_keep_ppm = 200_000;
                profile.drift_ppm_max = 500;
                profile.jump_ns_max = 200 * MS;
            }
            "partitions" => {
                profile.fault_interval_ns = 300 * MS;
                profile.weights = FaultWeights {
                    partition: 3,
                    one_way: 2,
                    partial: 2,
                    clog: 1,
                    swizzle: 1,
                    ..FaultWeights::default()
                };
            }
            "clocks" => {
                profile.fault_interval_ns = 300 * MS;
                profile.weights = FaultWeights {
                    clock_jump: 3,
                    pause: 1,
                    ..FaultWeights::default()
                };
                profile.drift_ppm_max = 2_000;
                profile.jump_ns_max = 500 * MS;
            }
            "storage" => {
                profile.fault_interval_ns = 300 * MS;
                profile.weights = FaultWeights {
                    crash: 1,
                    ..FaultWeights::default()
                };
                profile.storage = StorageFaults {
                    crash_keep_ppm: 500_000,
                    read_corrupt_ppm: 2_000,
                    misdirect_ppm: 1_000,
                    io_error_ppm: 5_000,
                    capacity_bytes: 0,
                };
            }
            // Machines replaced now and then, on top of crashes and a faulty disk.
            "wipes" => {
                profile.fault_interval_ns = 400 * MS;
                profile.weights = FaultWeights {
                    crash: 2,
                    pause: 1,
                    partition: 1,
                    wipe: 1,
                    ..FaultWeights::default()
                };
                profile.storage.crash_keep_ppm = 200_000;
                profile.storage.read_corrupt_ppm = 500;
            }
            "corruption" => {
                profile.link.corrupt_ppm = 10_000;
                profile.storage.read_corrupt_ppm = 1_000;
                profile.fault_interval_ns = 1000 * MS;
                profile.weights = FaultWeights {
                    crash: 1,
                    ..FaultWeights::default()
                };
            }
            "swarm" => profile = FaultProfile::swarm(decisions),
            other => {
                return Err(format!(
                    "unknown profile '{other}' (expected one of: {})",
                    PROFILE_NAMES.join(", ")
                ))
            }
        }
        Ok(profile)
    }

    /// TigerBeetle-style swarm testing: the seed decides which fault kinds are on and how hard.
    fn swarm(decisions: &mut dyn DecisionSource) -> FaultProfile {
        let mut profile = FaultProfile::quiet_base("swarm");
        let mut knob = |bound: u64| decisions.below(DecisionKind::Knob, bound);
        let on = |value: u64| value % 2 == 1;
        let (loss, dup, reorder, corrupt) = (knob(2), knob(2), knob(2), knob(2));
        profile.link.loss_ppm = if on(loss) { knob(100_000) } else { 0 };
        profile.link.duplicate_ppm = if on(dup) { knob(50_000) } else { 0 };
        profile.link.reorder_ppm = if on(reorder) { knob(100_000) } else { 0 };
        profile.link.corrupt_ppm = if on(corrupt) { knob(20_000) } else { 0 };
        profile.link.latency = match knob(3) {
            0 => Latency::Uniform {
                min_ns: MS,
                max_ns: MS + knob(20) * MS,
            },
            1 => Latency::Constant {
                latency_ns: MS + knob(10) * MS,
            },
            _ => Latency::Exponential {
                min_ns: MS,
                mean_ns: MS + knob(10) * MS,
                max_ns: 300 * MS,
            },
        };
        profile.weights = FaultWeights {
            partition: knob(4),
            one_way: knob(3),
            partial: knob(3),
            crash: knob(4),
            pause: knob(3),
            clog: knob(3),
            swizzle: knob(2),
            clock_jump: knob(2),
            // Not drawn: swarm runs every protocol, and a wipe needs membership changes.
            wipe: 0,
        };
        profile.fault_interval_ns = (50 + knob(1000)) * MS;
        profile.drift_ppm_max = knob(1000);
        profile.jump_ns_max = knob(300) * MS;
        if on(knob(2)) {
            profile.storage = StorageFaults {
                crash_keep_ppm: knob(PPM),
                read_corrupt_ppm: knob(5_000),
                misdirect_ppm: knob(2_000),
                io_error_ppm: knob(10_000),
                capacity_bytes: 0,
            };
        }
        profile
    }

    /// Every knob, for the run log ("SEED=... knob=value ...").
    pub fn knobs(&self) -> Vec<(String, String)> {
        let link = &self.link;
        let storage = &self.storage;
        let weights = &self.weights;
        let mut knobs = vec![
            ("latency".to_string(), format!("{:?}", link.latency)),
            ("loss_ppm".into(), link.loss_ppm.to_string()),
            ("duplicate_ppm".into(), link.duplicate_ppm.to_string()),
            ("reorder_ppm".into(), link.reorder_ppm.to_string()),
            ("corrupt_ppm".into(), link.corrupt_ppm.to_string()),
            (
                "fault_interval_ms".into(),
                (self.fault_interval_ns / MS).to_string(),
            ),
            ("drift_ppm_max".into(), self.drift_ppm_max.to_string()),
            ("jump_ms_max".into(), (self.jump_ns_max / MS).to_string()),
            ("crash_keep_ppm".into(), storage.crash_keep_ppm.to_string()),
            (
                "read_corrupt_ppm".into(),
                storage.read_corrupt_ppm.to_string(),
            ),
            ("misdirect_ppm".into(), storage.misdirect_ppm.to_string()),
            ("io_error_ppm".into(), storage.io_error_ppm.to_string()),
        ];
        knobs.push(("weights".into(), format!("{weights:?}")));
        knobs
    }

    /// True if the random fault process can produce anything.
    pub fn has_fault_process(&self) -> bool {
        self.fault_interval_ns > 0 && self.weights.total() > 0
    }
}

/// Parses a scripted plan: one fault per line or `;`-separated, each `at <time> <action>`.
///
/// Actions: `partition 0,1 | 2,3,4`, `oneway 0,1 -> 2`, `cut 0-1 1-2`, `heal`, `crash 2`,
/// `restart 2`, `pause 1`, `resume 1`, `wipe 3`, `clog 0->1 for 50ms`, `unclog 0->1`,
/// `jump 1 -50ms`, `drift 1 200`, `quiet`. Times take `ns`, `us`, `ms` or `s`.
pub fn parse_plan(text: &str) -> Result<Vec<ScriptedFault>, String> {
    let mut plan = Vec::new();
    for (number, raw) in text.split(['\n', ';']).enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fault =
            parse_fault(line).map_err(|e| format!("plan item {}: '{line}': {e}", number + 1))?;
        plan.push(fault);
    }
    plan.sort_by_key(|fault| fault.at_ns);
    Ok(plan)
}

fn parse_fault(line: &str) -> Result<ScriptedFault, String> {
    let rest = line
        .strip_prefix("at ")
        .ok_or("expected 'at <time> <action>'")?;
    let (time, action) = rest.trim().split_once(' ').ok_or("missing action")?;
    let at_ns = parse_duration(time)?;
    let action = action.trim();
    let (verb, args) = action.split_once(' ').unwrap_or((action, ""));
    let args = args.trim();
    let action = match verb {
        "partition" => FaultAction::Partition {
            groups: args.split('|').map(parse_nodes).collect::<Result<_, _>>()?,
        },
        "oneway" => {
            let (from, to) = args.split_once("->").ok_or("expected 'oneway A -> B'")?;
            FaultAction::OneWay {
                from: parse_nodes(from)?,
                to: parse_nodes(to)?,
            }
        }
        "cut" => FaultAction::Cut {
            links: args
                .split_whitespace()
                .map(|l| parse_link(l, '-'))
                .collect::<Result<_, _>>()?,
        },
        "heal" => FaultAction::Heal,
        "quiet" => FaultAction::Quiet,
        "crash" => FaultAction::Crash(parse_node(args)?),
        "restart" => FaultAction::Restart(parse_node(args)?),
        "pause" => FaultAction::Pause(parse_node(args)?),
        "resume" => FaultAction::Resume(parse_node(args)?),
        "wipe" => FaultAction::Wipe(parse_node(args)?),
        "clog" => {
            let (link, duration) = args
                .split_once(" for ")
                .ok_or("expected 'clog A->B for T'")?;
            let (from, to) = parse_link(link.trim(), '>')?;
            FaultAction::Clog {
                from,
                to,
                duration_ns: parse_duration(duration.trim())?,
            }
        }
        "unclog" => {
            let (from, to) = parse_link(args, '>')?;
            FaultAction::Unclog { from, to }
        }
        "jump" => {
            let (node, delta) = args.split_once(' ').ok_or("expected 'jump N ±T'")?;
            let negative = delta.trim().starts_with('-');
            let magnitude = parse_duration(delta.trim().trim_start_matches(['-', '+']))? as i64;
            FaultAction::ClockJump {
                node: parse_node(node)?,
                delta_ns: if negative { -magnitude } else { magnitude },
            }
        }
        "drift" => {
            let (node, ppm) = args.split_once(' ').ok_or("expected 'drift N PPM'")?;
            FaultAction::ClockDrift {
                node: parse_node(node)?,
                drift_ppm: ppm.trim().parse().map_err(|_| format!("bad ppm '{ppm}'"))?,
            }
        }
        other => return Err(format!("unknown action '{other}'")),
    };
    Ok(ScriptedFault { at_ns, action })
}

/// Parses `150ms`, `2s`, `30us`, `100ns` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("bad time '{text}'"))?;
    let scale = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" | "" => MS,
        "s" => 1_000 * MS,
        _ => return Err(format!("bad time unit in '{text}'")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("time '{text}' is too large"))
}

fn parse_node(text: &str) -> Result<NodeId, String> {
    text.trim()
        .parse()
        .map(NodeId)
        .map_err(|_| format!("bad node id '{}'", text.trim()))
}

fn parse_nodes(text: &str) -> Result<Vec<NodeId>, String> {
    text.split(',').map(parse_node).collect()
}

fn parse_link(text: &str, separator: char) -> Result<(NodeId, NodeId), String> {
    let text = text.replace("->", ">");
    let (a, b) = text
        .split_once(separator)
        .ok_or_else(|| format!("bad link '{text}'"))?;
    Ok((parse_node(a)?, parse_node(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SeededSource;

    #[test]
    fn plan_parses_every_action() {
        let plan = parse_plan(
            "at 120ms partition 1,2 | 3,4,0\nat 300ms heal; at 50ms crash 2; at 80ms restart 2\n\
             at 1s clog 0->1 for 50ms; at 2s jump 1 -50ms; at 3s drift 2 200; at 4s oneway 0 -> 1,2\n\
             at 5s cut 0-1 1-2 # comment\nat 6s pause 3; at 7s resume 3; at 8s wipe 4; at 9s quiet",
        )
        .expect("plan parses");
        assert_eq!(plan.len(), 13);
        assert_eq!(plan[0].at_ns, 50 * MS, "sorted by time");
        assert_eq!(
            plan[2].action,
            FaultAction::Partition {
                groups: vec![
                    vec![NodeId(1), NodeId(2)],
                    vec![NodeId(3), NodeId(4), NodeId(0)]
                ]
            }
        );
        assert!(plan.iter().any(|f| f.action
            == FaultAction::ClockJump {
                node: NodeId(1),
                delta_ns: -50 * MS as i64
            }));
    }

    #[test]
    fn bad_plans_name_the_problem() {
        let error = parse_plan("at 10ms explode 3").unwrap_err();
        assert!(error.contains("unknown action 'explode'"), "{error}");
        assert!(parse_plan("crash 1").unwrap_err().contains("expected 'at"));
        assert!(parse_plan("at 10xs crash 1").unwrap_err().contains("unit"));
        assert!(parse_plan("at 10ms crash x")
            .unwrap_err()
            .contains("bad node id"));
    }

    #[test]
    fn unknown_profile_is_an_error() {
        let mut decisions = SeededSource::new(1);
        let error = FaultProfile::named("nonsense", &mut decisions).unwrap_err();
        assert!(error.contains("unknown profile"), "{error}");
        for name in PROFILE_NAMES {
            assert!(FaultProfile::named(name, &mut decisions).is_ok(), "{name}");
        }
    }

    #[test]
    fn swarm_knobs_depend_on_the_seed() {
        let knobs = |seed| {
            let mut decisions = SeededSource::new(seed);
            FaultProfile::named("swarm", &mut decisions)
                .unwrap()
                .knobs()
        };
        assert_eq!(knobs(5), knobs(5));
        assert!((0..10).any(|seed| knobs(seed) != knobs(5)));
    }
}
