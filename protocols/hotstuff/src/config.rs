//! The design options of a HotStuff replica, by name (for the runner and campaigns).

use dst_sim::MS;

/// Tunables of a [`crate::HotStuff`] replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotStuffConfig {
    /// Most client requests in one block.
    pub batch_max: usize,
    /// Pacemaker timeout of a round without timeouts before it.
    pub round_timeout_ns: u64,
    /// Cap of the doubling round timeout.
    pub round_timeout_max_ns: u64,
    /// Rounds each leader keeps before the next takes over: the leader of round `r` is
    /// `(r / leader_rounds) mod n` (in the rotation order of `leader_order`). A commit needs four consecutive rounds whose leaders
    /// are correct (three certified blocks, each QC collected by the next round's leader,
    /// then a proposal carrying the last QC); with one leader per round and n = 4 a single
    /// silent replica breaks every such run of four, so the default keeps leaders for two.
    pub leader_rounds: u64,
    /// Seed of the leader rotation order (`dst_protocols::leaders`); 0 rotates
    /// `0, 1, ..., n-1`. Twins runs draw it, so twinned replicas lead early or late.
    pub leader_order: u64,
    /// Most client requests buffered (one per client: a newer request replaces an older).
    pub mempool_max: usize,
    /// Most uncommitted blocks held; proposals past it are ignored.
    pub blocks_max: usize,
    /// Most blocks sent in answer to one fetch.
    pub fetch_blocks_max: usize,
}

impl Default for HotStuffConfig {
    fn default() -> Self {
        HotStuffConfig {
            batch_max: 16,
            round_timeout_ns: 200 * MS,
            round_timeout_max_ns: 5_000 * MS,
            leader_rounds: 2,
            leader_order: 0,
            mempool_max: 1_024,
            blocks_max: 2_048,
            fetch_blocks_max: 32,
        }
    }
}

fn parse_positive(name: &str, value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(format!("{name} must be positive")),
        Ok(parsed) => Ok(parsed),
        Err(_) => Err(format!("{name}: {value:?} is not a positive integer")),
    }
}

fn parse_ms(name: &str, value: &str) -> Result<u64, String> {
    parse_positive(name, value)?
        .checked_mul(MS)
        .ok_or_else(|| format!("{name}: {value} ms is too large"))
}

/// The design options, for `--option` and `dst compare --variant`.
impl dst_protocols::Configurable for HotStuffConfig {
    fn options(&self) -> dst_protocols::OptionList {
        HotStuffConfig::options(self)
    }
    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        HotStuffConfig::set_option(self, name, value)
    }
}

impl HotStuffConfig {
    /// Every named option with its current value.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("batch_max", self.batch_max.to_string()),
            ("round_timeout_ms", (self.round_timeout_ns / MS).to_string()),
            (
                "round_timeout_max_ms",
                (self.round_timeout_max_ns / MS).to_string(),
            ),
            ("leader_rounds", self.leader_rounds.to_string()),
            ("leader_order", self.leader_order.to_string()),
            ("mempool_max", self.mempool_max.to_string()),
            ("blocks_max", self.blocks_max.to_string()),
            ("fetch_blocks_max", self.fetch_blocks_max.to_string()),
        ]
    }

    /// Sets one option by name; an unknown name or a bad value is an error.
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        let as_count = |value: &str| parse_positive(name, value).map(|count| count as usize);
        match name {
            "batch_max" => self.batch_max = as_count(value)?,
            "round_timeout_ms" => self.round_timeout_ns = parse_ms(name, value)?,
            "round_timeout_max_ms" => self.round_timeout_max_ns = parse_ms(name, value)?,
            "leader_rounds" => self.leader_rounds = parse_positive(name, value)?,
            "leader_order" => {
                self.leader_order = dst_protocols::options::parse_number(name, value)?
            }
            "mempool_max" => self.mempool_max = as_count(value)?,
            "blocks_max" => self.blocks_max = as_count(value)?,
            "fetch_blocks_max" => self.fetch_blocks_max = as_count(value)?,
            other => {
                let known: Vec<&str> = self.options().iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown hotstuff option '{other}' (expected one of: {})",
                    known.join(", ")
                ));
            }
        }
        if self.round_timeout_max_ns < self.round_timeout_ns {
            self.round_timeout_max_ns = self.round_timeout_ns;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_option_can_be_set_back_to_its_value() {
        let config = HotStuffConfig::default();
        let mut copy = HotStuffConfig::default();
        for (name, value) in config.options() {
            copy.set_option(name, &value).expect("listed option");
        }
        assert_eq!(copy, config);
    }

    #[test]
    fn bad_names_and_values_are_errors() {
        let mut config = HotStuffConfig::default();
        assert!(config.set_option("nope", "1").is_err());
        assert!(config.set_option("batch_max", "0").is_err());
        assert!(config.set_option("batch_max", "many").is_err());
        assert!(config
            .set_option("round_timeout_ms", "99999999999999999")
            .is_err());
        config.set_option("batch_max", "4").expect("valid");
        assert_eq!(config.batch_max, 4);
    }
}
