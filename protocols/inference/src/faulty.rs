//! Service faults a fault plan injects into chosen replicas: [`FaultyService`] wraps the
//! service and strikes at the k-th apply.
//!
//! Textual form (for the runner): `NAME[=ARG][@K]`, `K` the 1-based apply count at which the
//! fault strikes (default 1: before the first command):
//! - `weight-flip[=BIT]@K`: flip bit `BIT` (default 26, an exponent bit) of one weight,
//!   chosen by `K`, before the K-th apply;
//! - `session-flip[=BIT]@K`: flip bit `BIT` (default 26) of one float of the state of the
//!   session the K-th command addresses (or opens), after that apply; if it addresses none,
//!   the next command that does is hit;
//! - `stale-model[=VERSION]@K`: from the K-th apply on, run the weights of model `VERSION`
//!   (default: the agreed version minus one) under the agreed configuration;
//! - `split-k[=SPLITS]@K`: from the K-th apply on, a non-canonical split-K kernel (default 4
//!   partial sums), like a batch-variant GPU matmul;
//! - `forge-output@K`: from the K-th apply on, the state stays correct but every generated
//!   token and every digest in an output is altered (a Byzantine service forging results).
//!
//! A faulty replica still claims to run the agreed model: only its outputs and digests reveal
//! it. Snapshots and digests are those of the inner service (the state actually held).
//! `restore` yields a fault-free service: a replica that reloads its state (crash recovery,
//! state transfer) reloads the canonical model too, as [`crate::faults`] documents.

use std::fmt;

use dst_sim::decision::splitmix64;
use dst_sim::StateMachine;

use crate::numerics::{Kernel, SPLITS_MAX};
use crate::service::{Command, InferenceService, Output};

/// Bit flipped when the textual form names none: an exponent bit, a large change.
pub const FLIP_BIT_DEFAULT: u8 = 26;
/// Partial sums of `split-k` when the textual form names none.
pub const SPLITS_DEFAULT: u8 = 4;

/// What goes wrong in one replica's service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceFault {
    None,
    WeightFlip { at_apply: u64, bit: u8 },
    SessionFlip { at_apply: u64, bit: u8 },
    StaleModel { at_apply: u64, version: Option<u32> },
    SplitK { at_apply: u64, splits: u8 },
    ForgeOutput { at_apply: u64 },
}

impl ServiceFault {
    /// The names [`ServiceFault::parse`] accepts.
    pub const NAMES: [&'static str; 6] = [
        "none",
        "weight-flip",
        "session-flip",
        "stale-model",
        "split-k",
        "forge-output",
    ];

    /// Parses `NAME[=ARG][@K]` (see the module doc). Errors name the problem.
    pub fn parse(text: &str) -> Result<ServiceFault, String> {
        let text = text.trim();
        let (head, at_apply) = match text.split_once('@') {
            Some((head, count)) => {
                let count: u64 = count
                    .trim()
                    .parse()
                    .map_err(|_| format!("service fault '{text}': '@{count}' is not a count"))?;
                if count == 0 {
                    return Err(format!(
                        "service fault '{text}': applies count from 1, not @0"
                    ));
                }
                (head, count)
            }
            None => (text, 1),
        };
        let (name, arg) = match head.split_once('=') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (head.trim(), None),
        };
        let fault = match name {
            "none" => ServiceFault::None,
            "weight-flip" => ServiceFault::WeightFlip {
                at_apply,
                bit: parse_arg(text, arg, 31, FLIP_BIT_DEFAULT as u64)? as u8,
            },
            "session-flip" => ServiceFault::SessionFlip {
                at_apply,
                bit: parse_arg(text, arg, 31, FLIP_BIT_DEFAULT as u64)? as u8,
            },
            "stale-model" => ServiceFault::StaleModel {
                at_apply,
                version: match arg {
                    None => None,
                    Some(_) => Some(parse_arg(text, arg, u32::MAX as u64, 0)? as u32),
                },
            },
            "split-k" => {
                let splits = parse_arg(text, arg, SPLITS_MAX as u64, SPLITS_DEFAULT as u64)?;
                if splits < 2 {
                    return Err(format!(
                        "service fault '{text}': split-k needs 2..={SPLITS_MAX} splits"
                    ));
                }
                ServiceFault::SplitK {
                    at_apply,
                    splits: splits as u8,
                }
            }
            "forge-output" if arg.is_none() => ServiceFault::ForgeOutput { at_apply },
            "forge-output" => {
                return Err(format!(
                    "service fault '{text}': forge-output takes no argument"
                ))
            }
            other => {
                return Err(format!(
                    "unknown service fault '{other}' (known: {})",
                    Self::NAMES.join(", ")
                ))
            }
        };
        if fault == ServiceFault::None && (arg.is_some() || text.contains('@')) {
            return Err(format!("service fault '{text}': none takes no argument"));
        }
        Ok(fault)
    }

    /// The apply count at which the fault strikes (`None` for no fault).
    pub fn at_apply(&self) -> Option<u64> {
        match *self {
            ServiceFault::None => None,
            ServiceFault::WeightFlip { at_apply, .. }
            | ServiceFault::SessionFlip { at_apply, .. }
            | ServiceFault::StaleModel { at_apply, .. }
            | ServiceFault::SplitK { at_apply, .. }
            | ServiceFault::ForgeOutput { at_apply } => Some(at_apply),
        }
    }
}

fn parse_arg(text: &str, arg: Option<&str>, max: u64, default: u64) -> Result<u64, String> {
    let Some(arg) = arg else {
        return Ok(default);
    };
    match arg.parse::<u64>() {
        Ok(value) if value <= max => Ok(value),
        _ => Err(format!(
            "service fault '{text}': argument '{arg}' is not an integer in 0..={max}"
        )),
    }
}

/// Canonical textual form (parses back to the same fault).
impl fmt::Display for ServiceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceFault::None => write!(f, "none"),
            ServiceFault::WeightFlip { at_apply, bit } => write!(f, "weight-flip={bit}@{at_apply}"),
            ServiceFault::SessionFlip { at_apply, bit } => {
                write!(f, "session-flip={bit}@{at_apply}")
            }
            ServiceFault::StaleModel {
                at_apply,
                version: Some(version),
            } => write!(f, "stale-model={version}@{at_apply}"),
            ServiceFault::StaleModel {
                at_apply,
                version: None,
            } => write!(f, "stale-model@{at_apply}"),
            ServiceFault::SplitK { at_apply, splits } => write!(f, "split-k={splits}@{at_apply}"),
            ServiceFault::ForgeOutput { at_apply } => write!(f, "forge-output@{at_apply}"),
        }
    }
}

/// The inference service with a fault that strikes at the k-th apply.
#[derive(Clone, Debug)]
pub struct FaultyService {
    inner: InferenceService,
    fault: ServiceFault,
    /// Commands applied so far by this instance.
    applied: u64,
    /// A session flip waiting for a command that addresses a session.
    flip_pending: bool,
}

impl FaultyService {
    /// `service` with `fault` (use [`ServiceFault::None`] for an honest replica).
    pub fn new(service: InferenceService, fault: ServiceFault) -> Self {
        FaultyService {
            inner: service,
            fault,
            applied: 0,
            flip_pending: false,
        }
    }

    pub fn fault(&self) -> ServiceFault {
        self.fault
    }

    pub fn service(&self) -> &InferenceService {
        &self.inner
    }

    /// Faults that change the local model, before the apply they strike at.
    fn strike_model(&mut self) {
        match self.fault {
            ServiceFault::WeightFlip { bit, at_apply } => {
                self.inner.fault_flip_weight_bit(splitmix64(at_apply), bit);
            }
            ServiceFault::StaleModel { version, .. } => {
                let agreed = self.inner.config().model.version;
                let stale = version.unwrap_or(agreed.wrapping_sub(1));
                self.inner.fault_load_model_version(stale);
            }
            ServiceFault::SplitK { splits, .. } => {
                self.inner.fault_set_kernel(Kernel::SplitK { splits });
            }
            ServiceFault::SessionFlip { .. } => self.flip_pending = true,
            ServiceFault::None | ServiceFault::ForgeOutput { .. } => {}
        }
    }

    fn flip_session(&mut self, command: &Command, output: &Output) {
        let target = command.session().or(match output {
            Output::Opened { session } => Some(*session),
            _ => None,
        });
        let bit = match self.fault {
            ServiceFault::SessionFlip { bit, .. } => bit,
            _ => return,
        };
        if let Some(session) = target {
            let float = splitmix64(self.applied ^ session.0);
            if self.inner.fault_flip_session_bit(session, float, bit) {
                self.flip_pending = false;
            }
        }
    }

    fn forging(&self) -> bool {
        matches!(self.fault, ServiceFault::ForgeOutput { at_apply } if self.applied >= at_apply)
    }
}

/// A forged output: plausible, wrong.
fn forge(output: Output) -> Output {
    match output {
        Output::Generated {
            session,
            tokens,
            position,
        } => Output::Generated {
            session,
            tokens: tokens.into_iter().map(|token| token ^ 1).collect(),
            position,
        },
        Output::Digest { session, digest } => Output::Digest {
            session,
            digest: digest ^ 1,
        },
        other => other,
    }
}

impl StateMachine for FaultyService {
    type Command = Command;
    type Output = Output;

    fn apply(&mut self, command: &Command) -> Output {
        self.applied += 1;
        if self.fault.at_apply() == Some(self.applied) {
            self.strike_model();
        }
        let output = self.inner.apply(command);
        if self.flip_pending {
            self.flip_session(command, &output);
        }
        if self.forging() {
            forge(output)
        } else {
            output
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        Ok(FaultyService::new(
            InferenceService::restore(bytes)?,
            ServiceFault::None,
        ))
    }

    fn digest(&self) -> u64 {
        self.inner.digest()
    }
}

/// Which replica runs which fault: the runner's `--service-fault` list, e.g.
/// `"1:weight-flip@10,2:weight-flip@10"` (`NODE:FAULT`, comma-separated).
pub fn parse_fault_plan(text: &str, nodes: u32) -> Result<Vec<(u32, ServiceFault)>, String> {
    let mut plan: Vec<(u32, ServiceFault)> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (node, fault) = item
            .split_once(':')
            .ok_or_else(|| format!("service fault '{item}': expected NODE:FAULT"))?;
        let node: u32 = node
            .trim()
            .parse()
            .map_err(|_| format!("service fault '{item}': '{node}' is not a node id"))?;
        if node >= nodes {
            return Err(format!(
                "service fault '{item}': node {node} not in a cluster of {nodes}"
            ));
        }
        if plan.iter().any(|(held, _)| *held == node) {
            return Err(format!("service fault '{item}': node {node} named twice"));
        }
        plan.push((node, ServiceFault::parse(fault)?));
    }
    Ok(plan)
}

/// The fault of `node` in a plan ([`ServiceFault::None`] if it has none).
pub fn fault_of(plan: &[(u32, ServiceFault)], node: u32) -> ServiceFault {
    plan.iter()
        .find(|(held, _)| *held == node)
        .map_or(ServiceFault::None, |(_, fault)| *fault)
}

/// The replicas a plan makes faulty (to mark Byzantine in `RunFacts`).
pub fn faulty_nodes(plan: &[(u32, ServiceFault)]) -> std::collections::BTreeSet<dst_sim::NodeId> {
    plan.iter()
        .filter(|(_, fault)| *fault != ServiceFault::None)
        .map(|(node, _)| dst_sim::NodeId(*node))
        .collect()
}
