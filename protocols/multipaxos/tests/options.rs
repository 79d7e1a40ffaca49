//! Multi-Paxos's design options are named, listed with their values, and settable by name;
//! an unknown name or a bad value is an error.

use dst_multipaxos::PaxosConfig;
use dst_protocols::Configurable;

#[test]
fn every_listed_option_accepts_its_own_value() {
    let mut config = PaxosConfig::default();
    for (name, value) in config.options() {
        config
            .set_option(name, &value)
            .unwrap_or_else(|error| panic!("{name}={value}: {error}"));
    }
    assert_eq!(config, PaxosConfig::default());
}

#[test]
fn unknown_options_and_bad_values_are_errors() {
    let mut config = PaxosConfig::default();
    config.set_option("leader_lease", "on").expect("valid");
    assert!(config.leader_lease);
    assert!(config.set_option("lease", "on").is_err());
    assert!(config.set_option("window", "0").is_err());
    assert!(config.set_option("window", "-3").is_err());
}
