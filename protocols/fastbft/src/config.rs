//! Configuration and quorum arithmetic (`n = 3f + 2c + 1`).

use dst_sim::{NodeId, MS, SEC};

/// Named design options of FastBFT (see [`FastBftConfig::options`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastBftConfig {
    /// Extra replicas that keep the fast path alive: `n = 3f + 2c + 1`.
    pub c: u32,
    /// Seed of the primary rotation order (`dst_protocols::leaders`); 0: the primary of view
    /// `v` is `v mod n`. Twins runs draw it. Clients must use the same (`client_config`).
    pub leader_order: u64,
    /// `Tfast`, the client's wait for the fast path (see [`FastBftConfig::client_config`]).
    pub fast_timeout_ns: u64,
    /// A checkpoint every this many slots (also taken at the tip after an idle tick).
    pub checkpoint_interval: u64,
    /// Idle time after which replicas checkpoint their tip (so the tail becomes final).
    pub checkpoint_idle_ns: u64,
    /// A checkpoint this replica voted for that is not stable after this long means the view
    /// is not making progress: complain (IHTP).
    pub checkpoint_stall_ns: u64,
    /// A backup that forwarded a request waits this long for its ORDER-REQ before it sends
    /// I-HATE-THE-PRIMARY.
    pub request_timeout_ns: u64,
    /// Wait for a hole to fill before asking everyone, then before complaining.
    pub fill_hole_timeout_ns: u64,
    /// First NEW-VIEW timeout; doubles per consecutive view change, capped.
    pub view_change_timeout_ns: u64,
    pub view_change_timeout_ns_max: u64,
}

impl Default for FastBftConfig {
    fn default() -> Self {
        FastBftConfig {
            c: 0,
            leader_order: 0,
            fast_timeout_ns: 50 * MS,
            checkpoint_interval: 128,
            checkpoint_idle_ns: 50 * MS,
            checkpoint_stall_ns: SEC,
            request_timeout_ns: 200 * MS,
            fill_hole_timeout_ns: 50 * MS,
            view_change_timeout_ns: 300 * MS,
            view_change_timeout_ns_max: 5 * SEC,
        }
    }
}

fn parse_u64(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("option {name}: {value:?} is not a non-negative integer"))
}

fn parse_ms(name: &str, value: &str) -> Result<u64, String> {
    let ms = parse_u64(name, value)?;
    if ms == 0 || ms > 3_600_000 {
        return Err(format!(
            "option {name}: {ms} ms is out of range 1..=3600000"
        ));
    }
    Ok(ms * MS)
}

/// The design options, for `--option` and `dst compare --variant`.
impl dst_protocols::Configurable for FastBftConfig {
    fn options(&self) -> dst_protocols::OptionList {
        FastBftConfig::options(self)
    }
    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        FastBftConfig::set_option(self, name, value)
    }
}

impl FastBftConfig {
    /// Every named option with its current value.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("c", self.c.to_string()),
            ("fast_timeout_ms", (self.fast_timeout_ns / MS).to_string()),
            ("checkpoint_interval", self.checkpoint_interval.to_string()),
            (
                "checkpoint_stall_ms",
                (self.checkpoint_stall_ns / MS).to_string(),
            ),
            (
                "checkpoint_idle_ms",
                (self.checkpoint_idle_ns / MS).to_string(),
            ),
            (
                "request_timeout_ms",
                (self.request_timeout_ns / MS).to_string(),
            ),
            (
                "fill_hole_timeout_ms",
                (self.fill_hole_timeout_ns / MS).to_string(),
            ),
            (
                "view_change_timeout_ms",
                (self.view_change_timeout_ns / MS).to_string(),
            ),
            (
                "view_change_timeout_ms_max",
                (self.view_change_timeout_ns_max / MS).to_string(),
            ),
            ("leader_order", self.leader_order.to_string()),
        ]
    }

    /// Sets one named option; an unknown name or a bad value is an error.
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "c" => {
                let c = parse_u64(name, value)?;
                self.c = u32::try_from(c)
                    .ok()
                    .filter(|c| *c <= 64)
                    .ok_or(format!("option c: {c} is out of range 0..=64"))?;
            }
            "checkpoint_interval" => {
                let k = parse_u64(name, value)?;
                if !(1..=1_000_000).contains(&k) {
                    return Err(format!(
                        "option checkpoint_interval: {k} is out of range 1..=1000000"
                    ));
                }
                self.checkpoint_interval = k;
            }
            "leader_order" => self.leader_order = parse_u64(name, value)?,
            "fast_timeout_ms" => self.fast_timeout_ns = parse_ms(name, value)?,
            "checkpoint_idle_ms" => self.checkpoint_idle_ns = parse_ms(name, value)?,
            "checkpoint_stall_ms" => self.checkpoint_stall_ns = parse_ms(name, value)?,
            "request_timeout_ms" => self.request_timeout_ns = parse_ms(name, value)?,
            "fill_hole_timeout_ms" => self.fill_hole_timeout_ns = parse_ms(name, value)?,
            "view_change_timeout_ms" => self.view_change_timeout_ns = parse_ms(name, value)?,
            "view_change_timeout_ms_max" => {
                self.view_change_timeout_ns_max = parse_ms(name, value)?
            }
            other => {
                let known: Vec<&str> = self.options().iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown FastBFT option {other:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The client settings that must agree with the replicas' (`c`, `Tfast`).
    pub fn client_config(&self) -> crate::client::FastBftClientConfig {
        crate::client::FastBftClientConfig {
            c: self.c,
            leader_order: self.leader_order,
            fast_timeout_ns: self.fast_timeout_ns,
            ..crate::client::FastBftClientConfig::default()
        }
    }

    /// High water mark distance: the primary orders at most this far past the stable
    /// checkpoint.
    pub fn window(&self) -> u64 {
        2 * self.checkpoint_interval
    }
}

/// Cluster size and fault thresholds, with the quorums of the brief (section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub n: u32,
    pub f: u32,
    pub c: u32,
    /// The primary rotation order's seed (`FastBftConfig::leader_order`).
    pub leader_order: u64,
}

impl Params {
    /// The thresholds of a cluster of `n` with `c` extra replicas: `f = (n - 1 - 2c) / 3`.
    pub fn new(n: u32, c: u32) -> Params {
        let f = n.saturating_sub(1 + 2 * c) / 3;
        Params {
            n,
            f,
            c,
            leader_order: 0,
        }
    }
    /// The same cluster with the primary rotation order drawn from `leader_order`.
    pub fn with_leader_order(self, leader_order: u64) -> Params {
        Params {
            leader_order,
            ..self
        }
    }
    /// Fast quorum `n - c`.
    pub fn fast_quorum(&self) -> usize {
        (self.n - self.c.min(self.n)) as usize
    }
    /// Slow (commit) quorum `2f + c + 1`.
    pub fn slow_quorum(&self) -> usize {
        (2 * self.f + self.c + 1) as usize
    }
    /// View-change quorum `n - f`.
    pub fn view_change_quorum(&self) -> usize {
        (self.n - self.f) as usize
    }
    /// Fast-evidence threshold `f + c + 1`.
    pub fn fast_evidence(&self) -> usize {
        (self.f + self.c + 1) as usize
    }
    /// `f + 1`: at least one correct replica.
    pub fn one_correct(&self) -> usize {
        (self.f + 1) as usize
    }
    /// The primary of `view`.
    pub fn primary(&self, view: u64) -> NodeId {
        dst_protocols::leaders::rotation_leader(self.leader_order, self.n, view)
    }
    /// True if `node` names a replica of this cluster.
    pub fn is_replica(&self, node: NodeId) -> bool {
        node.0 < self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_follow_the_brief() {
        let zyzzyva = Params::new(4, 0);
        assert_eq!(
            (zyzzyva.f, zyzzyva.fast_quorum(), zyzzyva.slow_quorum()),
            (1, 4, 3)
        );
        assert_eq!(
            (zyzzyva.view_change_quorum(), zyzzyva.fast_evidence()),
            (3, 2)
        );
        let wide = Params::new(6, 1);
        assert_eq!((wide.f, wide.fast_quorum(), wide.slow_quorum()), (1, 5, 4));
        assert_eq!((wide.view_change_quorum(), wide.fast_evidence()), (5, 3));
    }

    #[test]
    fn options_round_trip_and_reject_bad_input() {
        let mut config = FastBftConfig::default();
        for (name, value) in config.clone().options() {
            config.set_option(name, &value).expect("own values parse");
        }
        assert_eq!(config, FastBftConfig::default());
        config.set_option("c", "1").expect("c=1");
        assert_eq!(config.c, 1);
        assert!(config.set_option("c", "x").is_err());
        assert!(config.set_option("checkpoint_interval", "0").is_err());
        assert!(config.set_option("nonsense", "1").is_err());
    }
}
